"""The access review: every user of a firm, with what they can reach and how they sign in.

Four queries whatever the number of users: the members, their assigned
households in this firm (one prefetch), who has a confirmed second factor, and
the firm's live API keys by who created them. API keys belong to the
integrations API; until that app is installed the column says so.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.apps import apps
from django.db.models import Prefetch
from django_otp.plugins.otp_totp.models import TOTPDevice

from connections import wording
from connections.models import Firm, Household, Membership

NO_API = "no API keys (the integrations API is not installed)"


@dataclass(frozen=True)
class AccessRow:
    user_id: int
    username: str
    name: str
    email: str
    role: str
    is_firm_admin: bool
    is_active: bool
    households: list[str]
    last_login: dt.datetime | None
    mfa: bool
    api_keys: str


def access_review(*, firm: Firm) -> list[AccessRow]:
    members = list(
        Membership.objects.filter(firm=firm)
        .select_related("user")
        .prefetch_related(
            Prefetch(
                "user__assigned_households",
                queryset=Household.objects.filter(firm=firm).only("id", "name").order_by("name"),
                to_attr="firm_households",
            )
        )
        .order_by("user__last_name", "user__first_name", "user__username")
    )
    with_mfa = set(
        TOTPDevice.objects.filter(user__membership__firm=firm, confirmed=True).values_list("user_id", flat=True)
    )
    keys_by_user = _live_api_keys_by_creator(firm) if apps.is_installed("api") else None
    return [
        AccessRow(
            user_id=m.user_id,
            username=m.user.get_username(),
            name=wording.person_name(m.user),
            email=m.user.email,
            role=m.get_role_display(),
            is_firm_admin=m.is_firm_admin,
            is_active=m.user.is_active,
            households=[h.name for h in getattr(m.user, "firm_households", [])],
            last_login=m.user.last_login,
            mfa=m.user_id in with_mfa,
            api_keys=NO_API if keys_by_user is None else "; ".join(keys_by_user.get(m.user_id, [])),
        )
        for m in members
    ]


def _live_api_keys_by_creator(firm: Firm) -> dict[int, list[str]]:
    """The firm's unrevoked API keys, as "name (scope, prefix)", by the user who created each."""
    from api.models import ApiKey

    keys: dict[int, list[str]] = {}
    for key in ApiKey.objects.filter(firm=firm, revoked_at__isnull=True, created_by__isnull=False).order_by("name"):
        assert key.created_by_id is not None
        keys.setdefault(key.created_by_id, []).append(f"{key.name} ({key.get_scope_display()}, {key.prefix})")
    return keys
