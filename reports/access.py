"""The access review: every user of a firm, with what they can reach and how they sign in.

Three queries whatever the number of users: the members, their assigned
households in this firm (one prefetch), and who has a confirmed second factor.
API keys belong to the integrations API; until that app is installed the
column says so.
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
    api_keys = "" if apps.is_installed("api") else NO_API
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
            api_keys=api_keys,
        )
        for m in members
    ]
