"""Coinify simulator: end-user grants with rotating refresh tokens.

Paths beneath ``/sandbox/coinify/`` (doc and docs/provider-assumptions.md):

* ``POST /auth`` with a JSON body, ``grant_type`` ``password`` (``email``,
  ``password``, ``partnerId``), ``refresh_token`` or ``offline_token``;
* ``POST /auth/revoke`` ``{"token_type_hint": "refresh_token", "token": "…"}`` → 204;
* ``GET /me`` and ``PUT /me/deactivate`` with ``Authorization: Bearer``.

Errors are OAuth2 error responses. The ``error_description`` texts are part
of the contract: the client maps them to reasons.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_http_methods

from .. import clock, tokens
from ..data import accounts_for
from ..faults import provider_endpoint
from ..models import CoinifyUser, Token
from ..services.coinify import coinify_grant_issue, coinify_password_matches, oauth_error_body
from ..state import Snapshot
from .common import json_response, one, read_json, text_field

INVALID_CREDENTIALS = "Invalid email or password."
REFRESH_EXPIRED = "Refresh token has expired."
REFRESH_USED = "Refresh token has already been used."
REFRESH_REVOKED = "Refresh token has been revoked."
REFRESH_INVALID = "Refresh token is invalid."
OFFLINE_INVALID = "Offline token is invalid."
DEACTIVATED = "User account is deactivated."

GRANT_TYPES = ("password", "refresh_token", "offline_token")


def grant_type_of(request: HttpRequest) -> str:
    """The grant type of an ``/auth`` request body, for the log and fault matching."""
    if request.method != "POST" or not request.path_info.endswith("/auth"):
        return ""
    data = read_json(request)
    value = data.get("grant_type") if data else None
    return value[:30] if isinstance(value, str) else ""


def oauth_error(error: str, description: str, *, status: int = 400) -> HttpResponse:
    return json_response(oauth_error_body(error=error, description=description), status=status)


def _user(subject: str) -> CoinifyUser | None:
    return one(CoinifyUser.objects.filter(pk=int(subject))) if subject.isdigit() else None


def _grant(user: CoinifyUser, request: HttpRequest) -> HttpResponse:
    snap: Snapshot = request.sandbox  # type: ignore[attr-defined]
    return json_response(coinify_grant_issue(user=user, snapshot=snap), primary="access_token")


def _password_grant(request: HttpRequest, data: dict[str, Any]) -> HttpResponse:
    for name in ("email", "password", "partnerId"):
        if not text_field(data, name):
            return oauth_error("invalid_request", f"Missing required parameter: {name}.")
    password = data["password"]
    user = one(CoinifyUser.objects.filter(partner_id=text_field(data, "partnerId"), email=text_field(data, "email")))
    if user is None or not coinify_password_matches(user, password):
        return oauth_error("invalid_grant", INVALID_CREDENTIALS)
    if user.deactivated_at is not None:
        return oauth_error("invalid_grant", DEACTIVATED)
    with transaction.atomic():
        return _grant(user, request)


def _refresh_failure(row: tokens.TokenRow) -> str:
    if row.revoked_at is not None:
        return REFRESH_REVOKED
    if row.used_at is not None:
        return REFRESH_USED
    return REFRESH_EXPIRED


def _refresh_grant(request: HttpRequest, data: dict[str, Any]) -> HttpResponse:
    value = text_field(data, "refresh_token")
    if not value:
        return oauth_error("invalid_request", "Missing required parameter: refresh_token.")
    row = tokens.find(Token.Kind.COINIFY_REFRESH, value)
    if row is None:
        return oauth_error("invalid_grant", REFRESH_INVALID)
    user = _user(row.subject)
    if user is None:
        return oauth_error("invalid_grant", REFRESH_INVALID)
    if user.deactivated_at is not None:
        return oauth_error("invalid_grant", DEACTIVATED)
    at = clock.now()
    if not row.usable(at):
        return oauth_error("invalid_grant", _refresh_failure(row))
    with transaction.atomic():
        # Rotation: exactly one request may spend this refresh token, however
        # many arrive at once (conditional UPDATE in tokens.consume). The new
        # pair is issued in the same transaction, so a spent token always has
        # a successor.
        if not tokens.consume(row.id, at):
            latest = tokens.find(Token.Kind.COINIFY_REFRESH, value)
            return oauth_error("invalid_grant", _refresh_failure(latest) if latest else REFRESH_INVALID)
        return _grant(user, request)


def _offline_grant(request: HttpRequest, data: dict[str, Any]) -> HttpResponse:
    value = text_field(data, "offline_token")
    if not value:
        return oauth_error("invalid_request", "Missing required parameter: offline_token.")
    row = tokens.find(Token.Kind.COINIFY_OFFLINE, value)
    user = _user(row.subject) if row is not None else None
    if row is None or row.revoked_at is not None or user is None:
        return oauth_error("invalid_grant", OFFLINE_INVALID)
    if user.deactivated_at is not None:
        return oauth_error("invalid_grant", DEACTIVATED)
    with transaction.atomic():
        return _grant(user, request)


@provider_endpoint(grant_type=grant_type_of)
@require_http_methods(["POST"])
def auth(request: HttpRequest, ns: str) -> HttpResponse:
    data = read_json(request)
    if data is None:
        return oauth_error("invalid_request", "The request body must be a JSON object.")
    grant_type = data.get("grant_type")
    if not grant_type:
        return oauth_error("invalid_request", "Missing required parameter: grant_type.")
    if grant_type == "password":
        return _password_grant(request, data)
    if grant_type == "refresh_token":
        return _refresh_grant(request, data)
    if grant_type == "offline_token":
        return _offline_grant(request, data)
    return oauth_error("unsupported_grant_type", "The grant type is not supported.")


@provider_endpoint()
@require_http_methods(["POST"])
def revoke(request: HttpRequest, ns: str) -> HttpResponse:
    """RFC 7009: 204 whether or not the token was known or still live."""
    data = read_json(request)
    if data is None:
        return oauth_error("invalid_request", "The request body must be a JSON object.")
    if data.get("token_type_hint") != "refresh_token":
        return oauth_error("invalid_request", "token_type_hint must be refresh_token.")
    value = text_field(data, "token")
    if not value:
        return oauth_error("invalid_request", "Missing required parameter: token.")
    Token.objects.filter(kind=Token.Kind.COINIFY_REFRESH, digest=tokens.digest(value), revoked_at__isnull=True).update(
        revoked_at=clock.now()
    )
    return HttpResponse(status=204)


def _authenticated_user(request: HttpRequest) -> CoinifyUser | HttpResponse:
    """The user behind a live Bearer access token, or the 401/403 reply."""
    value = tokens.bearer(request.headers.get("Authorization", ""))
    if not value:
        return oauth_error("invalid_token", "Missing access token.", status=401)
    row = tokens.find(Token.Kind.COINIFY_ACCESS, value)
    if row is None or row.revoked_at is not None:
        return oauth_error("invalid_token", "The access token is invalid.", status=401)
    if row.expired(clock.now()):
        return oauth_error("invalid_token", "The access token has expired.", status=401)
    user = _user(row.subject)
    if user is None:
        return oauth_error("invalid_token", "The access token is invalid.", status=401)
    if user.deactivated_at is not None:
        return oauth_error("forbidden", DEACTIVATED, status=403)
    return user


@provider_endpoint()
@require_http_methods(["GET"])
def me(request: HttpRequest, ns: str) -> HttpResponse:
    user = _authenticated_user(request)
    if isinstance(user, HttpResponse):
        return user
    return json_response(
        {
            "id": user.pk,
            "email": user.email,
            "partnerId": user.partner_id,
            "accounts": [
                {"id": a.id, "name": f"{a.currency} account", "currency": a.currency, "balance": a.balance}
                for a in accounts_for(f"coinify:{user.pk}", prefix="cf_acc_")
            ],
        },
        primary="accounts",
    )


@provider_endpoint()
@require_http_methods(["PUT"])
def deactivate(request: HttpRequest, ns: str) -> HttpResponse:
    user = _authenticated_user(request)
    if isinstance(user, HttpResponse):
        return user
    CoinifyUser.objects.filter(pk=user.pk).update(deactivated_at=clock.now())
    return HttpResponse(status=204)
