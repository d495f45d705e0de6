"""Who must have a second factor, and who has one. Reads only; two small queries at most."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import User as AuthUser
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from connections.models import Membership

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


def session_verified(user: Any) -> bool:
    """Whether this session has given its second factor (``is_verified`` is django-otp's OTPMiddleware's)."""
    return bool(getattr(user, "is_verified", lambda: False)())


def authenticator_for(user: AuthUser, *, confirmed: bool = True) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=confirmed).order_by("id").first()


def has_second_factor(user: AuthUser) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def recovery_device_for(user: AuthUser) -> StaticDevice | None:
    return StaticDevice.objects.filter(user=user, confirmed=True).order_by("id").first()
