"""Who must have a second factor, and who has one. Reads only; one query for what every page asks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User as AuthUser
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from connections.models import Membership
from connections.selectors import membership_queryset
from connections.selectors.prebuilt import STAND_IN_USER_ID, prebuilt_statement

RECOVERY_CODES = 10
AUTHENTICATOR_NAME = "Authenticator app"


def second_factor_required(user: Any) -> bool:
    """Staff always in production (``MFA_REQUIRED_FOR_STAFF``); members when their firm requires it."""
    if not isinstance(user, AuthUser) or not user.is_authenticated:
        return False
    if user.is_staff and settings.MFA_REQUIRED_FOR_STAFF:
        return True
    try:
        membership = user.membership
    except Membership.DoesNotExist:
        return False
    return bool(membership.firm.mfa_required)


@dataclass(frozen=True)
class Standing:
    """What the second step needs to know about a signed-in user whose session has not given a code."""

    has_second_factor: bool
    required: bool


def standing(user: AuthUser) -> Standing:
    """Both answers in one query: the user's membership and firm, with whether a confirmed authenticator
    exists. Every page of an unverified session asks this, so it must not cost three queries; the
    membership it loads is left on ``user`` (pages read ``user.membership.firm`` and the user's time
    zone next: :func:`connections.selectors.membership_queryset`)."""
    rows: list[Any] = prebuilt_statement(("mfa_standing",), _standing_queryset).rows(
        now=timezone.now(), user=user.pk
    )
    membership = rows[0] if rows else None
    if membership is None:  # staff without a firm
        has = has_second_factor(user)
        return Standing(has, bool(user.is_staff and settings.MFA_REQUIRED_FOR_STAFF))
    user.membership = membership  # the reverse one-to-one cache: no second query for it later
    required = bool(user.is_staff and settings.MFA_REQUIRED_FOR_STAFF) or bool(membership.firm.mfa_required)
    return Standing(bool(membership.has_authenticator), required)


def _standing_queryset() -> QuerySet[Membership]:
    """What :func:`standing` reads, built once per process for a stand-in user (:func:`prebuilt_statement`)."""
    authenticator = TOTPDevice.objects.filter(user_id=OuterRef("user_id"), confirmed=True)
    return (
        membership_queryset(user_id=STAND_IN_USER_ID)
        .annotate(has_authenticator=Exists(authenticator))
        .order_by("pk")[:1]
    )


def session_verified(user: Any) -> bool:
    """Whether this session has given its second factor (``is_verified`` is django-otp's OTPMiddleware's)."""
    return bool(getattr(user, "is_verified", lambda: False)())


def authenticator_for(user: AuthUser, *, confirmed: bool = True) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=confirmed).order_by("id").first()


def has_second_factor(user: AuthUser) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def recovery_device_for(user: AuthUser) -> StaticDevice | None:
    return StaticDevice.objects.filter(user=user, confirmed=True).order_by("id").first()
