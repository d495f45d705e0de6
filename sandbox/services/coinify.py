"""Coinify's simulated world: users, their grants, and users as subjects.

Used by the ``/auth`` endpoint (:mod:`sandbox.views.coinify`) and, through
the registry in :mod:`sandbox.services`, by the control API and the commands.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import models, transaction
from django.db.models import Q

from .. import clock, state, tokens
from ..models import App, CoinifyUser, Provider, Token
from .common import AppKind, IssuedSecretWords, Person, SandboxError, check_columns, read_text

ACTIONS: tuple[str, ...] = ("revoke", "expire", "deactivate", "restore")
APPS: AppKind = AppKind.ID_ONLY
MODELS: tuple[type[models.Model], ...] = (CoinifyUser,)
# [doc] Access tokens live 20 minutes, refresh tokens 24 hours.
LIFETIMES: Mapping[str, int] = {"access": 1200, "refresh": 86_400}
# A user's new offline token, issued as Coinify's account page would issue one.
ISSUED_SECRET = IssuedSecretWords(heading="New offline token", label="Offline token")
# The OAuth2 error code an injected fault answers with, by status.
FAULT_ERRORS: dict[int, str] = {
    400: "invalid_request",
    401: "invalid_token",
    403: "forbidden",
    503: "temporarily_unavailable",
}


def oauth_error_body(*, error: str, description: str) -> dict[str, Any]:
    """Coinify's errors are OAuth2 error responses (docs/provider-assumptions.md)."""
    return {"error": error, "error_description": description}


def error_body(*, status: int, message: str) -> dict[str, Any]:
    """An injected fault's error: the OAuth2 code its status stands for, and ``message`` as the description."""
    error = FAULT_ERRORS.get(status, "server_error" if status >= 500 else "error")
    return oauth_error_body(error=error, description=message)


def _password_digest(salt: str, password: str) -> str:
    # A fast salted hash is enough for a simulator; it only keeps the plain
    # password out of the table.
    return hashlib.sha256(f"{salt}:{password}".encode()).hexdigest()


def coinify_password_matches(user: CoinifyUser, password: str) -> bool:
    return hmac.compare_digest(user.password_digest, _password_digest(user.password_salt, password))


def coinify_user_create(*, partner_id: str, email: str, password: str) -> tuple[CoinifyUser, str, bool]:
    """Create (or update the password of) a user; returns it with a new offline token.

    Each call issues a fresh offline token; earlier ones stay valid. The
    partner is registered implicitly when unknown.
    """
    if not (partner_id and email and password):
        raise SandboxError("partner_id, email and password are required.")
    check_columns(CoinifyUser, partner_id=partner_id, email=email)
    salt = secrets.token_hex(8)
    with transaction.atomic():
        App.objects.get_or_create(provider=Provider.COINIFY, client_id=partner_id)
        user, created = CoinifyUser.objects.update_or_create(
            partner_id=partner_id,
            email=email,
            defaults={"password_salt": salt, "password_digest": _password_digest(salt, password)},
        )
        offline = tokens.random_string(60)
        tokens.issue(Token.Kind.COINIFY_OFFLINE, str(user.pk), value=offline, lifetime=None)
    return user, offline, created


def coinify_grant_issue(*, user: CoinifyUser, snapshot: state.Snapshot) -> dict[str, Any]:
    """A fresh access and refresh token for a user, as the ``/auth`` reply."""
    access_lifetime = snapshot.lifetime(Provider.COINIFY, "access")
    access = tokens.jwt_like({"sub": str(user.pk), "partnerId": user.partner_id})
    refresh = tokens.random_string(64)
    at = clock.now()
    tokens.issue(Token.Kind.COINIFY_ACCESS, str(user.pk), value=access, lifetime=access_lifetime, at=at)
    tokens.issue(
        Token.Kind.COINIFY_REFRESH,
        str(user.pk),
        value=refresh,
        lifetime=snapshot.lifetime(Provider.COINIFY, "refresh"),
        at=at,
    )
    return {"access_token": access, "token_type": "bearer", "expires_in": access_lifetime, "refresh_token": refresh}


# --- As a subject of the control API ------------------------------------------


def subject_create(*, mount: str, data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``partner_id`` (optional when exactly one partner is registered), ``email``, ``password``."""
    partner_id = read_text(data, "partner_id")
    if not partner_id:
        partners = list(App.objects.filter(provider=Provider.COINIFY).values_list("client_id", flat=True)[:2])
        if len(partners) != 1:
            raise SandboxError("partner_id is required (no single Coinify partner is registered).")
        partner_id = partners[0]
    user, offline, created = coinify_user_create(
        partner_id=partner_id,
        email=read_text(data, "email", required=True),
        password=read_text(data, "password", required=True),
    )
    return {
        "provider": mount,
        "user_id": user.pk,
        "email": user.email,
        "partner_id": user.partner_id,
        "offline_token": offline,
    }, created


def subject_list(*, mount: str) -> list[dict[str, Any]]:
    return [
        {"user_id": u.pk, "email": u.email, "partner_id": u.partner_id, "deactivated": u.deactivated_at is not None}
        for u in CoinifyUser.objects.order_by("id")
    ]


def subject_act(*, mount: str, data: dict[str, Any], action: str, at: datetime) -> int:
    """Revoke, expire, deactivate or restore the user ``user_id``."""
    user_id = read_text(data, "user_id", required=True)
    # isdigit() alone also takes digits int() refuses ("²").
    user = CoinifyUser.objects.filter(pk=int(user_id) if user_id.isascii() and user_id.isdigit() else -1).first()
    if user is None:
        raise SandboxError("No such Coinify user.", status=404)
    subject = str(user.pk)
    if action == "deactivate":
        CoinifyUser.objects.filter(pk=user.pk).update(deactivated_at=at)
        return 1
    if action == "restore":
        CoinifyUser.objects.filter(pk=user.pk).update(deactivated_at=None)
        return 1
    if action == "revoke":
        # Refresh and offline tokens die, and so do live access tokens, so the
        # next call is refused and the renewal that follows learns "revoked".
        return Token.objects.filter(
            kind__in=[Token.Kind.COINIFY_REFRESH, Token.Kind.COINIFY_OFFLINE, Token.Kind.COINIFY_ACCESS],
            subject=subject,
            revoked_at__isnull=True,
        ).update(revoked_at=at)
    # expire: refresh and access tokens lapse now; an offline token never expires.
    return (
        Token.objects.filter(kind__in=[Token.Kind.COINIFY_REFRESH, Token.Kind.COINIFY_ACCESS], subject=subject)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=at))
        .update(expires_at=at)
    )


# --- Grants without a browser (manage.py sandbox_grant) -------------------------


def grant_answer(*, mount: str, person: Person) -> dict[str, Any]:
    """The person's Coinify sign-in: the fields the partner's form posts."""
    person.require(mount, "app_id", "email")
    password = person.password or secrets.token_urlsafe(12)
    user, _offline, _created = coinify_user_create(partner_id=person.app_id, email=person.email, password=password)
    return {"fields": {"email": user.email, "password": password}, "subject": {"user_id": user.pk}}


def grant_break(*, mount: str, person: Person, how: str) -> dict[str, str] | None:
    """Revoked: every token dies. Expired: the sign-in lapses (an offline token never does)."""
    if how == "credentials_invalid":
        raise SandboxError(
            "Coinify checks the partner's tokens, not the password: a refused password only shows at sign-in."
        )
    user = CoinifyUser.objects.filter(partner_id=person.app_id, email=person.email).first()
    if user is None:
        raise SandboxError("No such Coinify user.", status=404)
    return {"action": "revoke" if how == "revoked" else "expire", "user_id": str(user.pk)}
