"""Sign-in hints: which simulated people can sign in, so a demo needs no command line.

A real provider never lists its users; a simulator in development may, and
that is all this is for. Shown only while ``SANDBOX_SIGN_IN_HINTS`` is on
(it is by default), and never while ``DEBUG`` is off. Secrets are kept here as digests,
so a hint never repeats one: a password is named only when it is one of the
development passwords the settings list (``SANDBOX_HINT_PASSWORDS``, the demo
logins' password) and it matches, and a Bloquo key pair or a Coinify
offline token is issued afresh, shown once, as the provider's own account
page would.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from . import tokens
from .models import BloquoKey, CoinifyUser, DapiConnection, Token, TurnqeyAuthorization
from .services.bloquo import BLOQUO_MOUNTS, bloquo_key_create, is_production_mount
from .services.coinify import coinify_password_matches
from .services.common import SandboxError

# Enough for any demo; a world bigger than this is not browsed by hand.
SHOWN = 50


def hints_enabled() -> bool:
    """In development only: ``DEBUG`` on, and ``SANDBOX_SIGN_IN_HINTS`` not turned off."""
    return bool(settings.DEBUG and getattr(settings, "SANDBOX_SIGN_IN_HINTS", True))


@dataclass(frozen=True)
class CoinifyHint:
    user_id: int
    email: str
    password: str  # a development password that signs this user in, or "" when none of them does
    deactivated: bool


@dataclass(frozen=True)
class BloquoHint:
    mount: str
    customer_id: str
    name: str
    email: str
    client_id: str
    revoked: bool
    production: bool


def coinify_hints() -> list[CoinifyHint]:
    passwords = [p for p in getattr(settings, "SANDBOX_HINT_PASSWORDS", ()) if p]
    hints = []
    for user in CoinifyUser.objects.order_by("email")[:SHOWN]:
        known = next((p for p in passwords if coinify_password_matches(user, p)), "")
        hints.append(
            CoinifyHint(user_id=user.pk, email=user.email, password=known, deactivated=user.deactivated_at is not None)
        )
    return hints


def bloquo_hints() -> list[BloquoHint]:
    return [
        BloquoHint(
            mount=key.provider,
            customer_id=key.customer_id,
            name=key.name,
            email=key.email,
            client_id=key.client_id,
            revoked=key.revoked_at is not None,
            production=is_production_mount(key.provider),
        )
        for key in BloquoKey.objects.filter(provider__in=BLOQUO_MOUNTS).order_by("provider", "name")[:SHOWN]
    ]


def dapi_usernames(*, app_key: str = "") -> list[str]:
    """The usernames that have signed in at Dapi Connect (for ``app_key`` when given), most recent first."""
    logins = DapiConnection.objects.filter(delinked_at__isnull=True)
    if app_key:
        logins = logins.filter(app_key=app_key)
    seen: dict[str, None] = {}
    for username in logins.order_by("-created_at").values_list("username", flat=True)[: SHOWN * 4]:
        seen.setdefault(username, None)
    return list(seen)[:SHOWN]


def turnqey_usernames(*, client_id: str, identity: str, platform: str) -> list[str]:
    """The usernames this identity authorized ``platform`` with before (a reconnect signs in as the same one)."""
    return list(
        TurnqeyAuthorization.objects.filter(client_id=client_id, identity=identity, platform=platform)
        .order_by("-updated_at")
        .values_list("username", flat=True)[:SHOWN]
    )


def bloquo_secret_issue(*, mount: str, customer_id: str) -> tuple[BloquoHint, str]:
    """A new secret for the customer's key pair (the old one stops working), as Bloquo's API settings would."""
    key = BloquoKey.objects.filter(provider=mount, customer_id=customer_id).first()
    if key is None:
        raise SandboxError("No such Bloquo customer.", status=404)
    key, client_id, client_secret = bloquo_key_create(provider=mount, client_id=key.client_id)
    hint = BloquoHint(
        mount=key.provider,
        customer_id=key.customer_id,
        name=key.name,
        email=key.email,
        client_id=client_id,
        revoked=False,
        production=is_production_mount(key.provider),
    )
    return hint, client_secret


def coinify_offline_token_issue(*, user_id: int) -> tuple[CoinifyHint, str]:
    """A new offline token for the user (earlier ones stay valid), as Coinify's account page would issue one."""
    user = CoinifyUser.objects.filter(pk=user_id, deactivated_at__isnull=True).first()
    if user is None:
        raise SandboxError("No such Coinify user, or the account is deactivated.", status=404)
    offline = tokens.random_string(60)
    tokens.issue(Token.Kind.COINIFY_OFFLINE, str(user.pk), value=offline, lifetime=None)
    return CoinifyHint(user_id=user.pk, email=user.email, password="", deactivated=False), offline
