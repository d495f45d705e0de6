"""Turnqey simulator: app token, browser authorize with consent, accounts.

Paths beneath ``/sandbox/turnqey/`` follow the doc and
docs/provider-assumptions.md:

* ``POST|GET /v1/api/token`` (headers ``clientId``, ``clientSecret``, ``accept``);
* ``GET /authorize?client&platform&checksum&identity&collection&state``: the
  consent page at the source platform; ``POST`` to the same URL (with
  ``decision`` = ``approve`` | ``deny`` | ``error`` and ``username``) redirects
  to the client's registered redirect URI;
* ``GET /v1/api/collections/<collection>/accounts`` and
  ``GET /v1/api/identities/<identity>/accounts`` with ``Authorization: Bearer``.
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from .. import clock, tokens
from ..data import accounts_for
from ..faults import provider_endpoint
from ..hints import hints_enabled, turnqey_usernames
from ..models import App, Provider, Token, TurnqeyAuthorization, TurnqeyCollection
from ..services.common import SandboxError
from ..services.turnqey import error_body, turnqey_authorization_grant, turnqey_checksum, turnqey_default_username
from .common import json_response, lifetime, origin, platform_name, with_query

# The doc's example reply carries a +05:30 offset and seven fractional digits
# (.NET's round-trip format); the sandbox answers the same way so clients
# cannot get away with assuming UTC or microseconds.
EXPIRES_ON_OFFSET = timezone(timedelta(hours=5, minutes=30))


def format_expires_on(moment: datetime) -> str:
    """``2024-06-14T13:29:36.8287785+05:30``: seven fractional digits and an offset."""
    local = moment.astimezone(EXPIRES_ON_OFFSET)
    offset = local.isoformat()[-6:]
    return f"{local:%Y-%m-%dT%H:%M:%S}.{local.microsecond:06d}{secrets.randbelow(10)}{offset}"


def _envelope_error(status: int, message: Any) -> HttpResponse:
    return json_response(error_body(status=status, message=message), status=status)


def _trace_id() -> str:
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-00"


@provider_endpoint()
@require_http_methods(["GET", "POST"])
def token(request: HttpRequest, ns: str) -> HttpResponse:
    """Issue an app token for ``clientId``/``clientSecret`` headers (POST, or GET as the doc's curl)."""
    client_id = request.headers.get("clientId", "").strip()
    client_secret = request.headers.get("clientSecret", "").strip()
    errors: dict[str, list[str]] = {}
    if not client_id:
        errors["ClientId"] = ["The ClientId field is required."]
    if not client_secret:
        errors["ClientSecret"] = ["The ClientSecret field is required."]
    if errors:
        return _envelope_error(
            400,
            {
                "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
                "title": "One or more validation errors occurred.",
                "status": 400,
                "errors": errors,
                "traceId": _trace_id(),
            },
        )
    secret = (
        App.objects.filter(provider=Provider.TURNQEY, client_id=client_id)
        .values_list("client_secret", flat=True)
        .first()
    )
    if not secret or not hmac.compare_digest(secret.encode(), client_secret.encode()):
        return _envelope_error(401, "Invalid client credentials.")
    seconds = lifetime(request, ns, "app_token")
    issued = clock.now()
    value = tokens.jwt_like({"sub": client_id, "iss": "turnqey-sandbox"})
    tokens.issue(Token.Kind.TURNQEY_APP, client_id, value=value, lifetime=seconds, at=issued)
    return json_response(
        {
            "statusCode": 200,
            "message": f"{request.method} Request successful.",
            "isError": False,
            "result": {
                "expiresOn": format_expires_on(issued + timedelta(seconds=seconds)),
                # The doc shows 3599 for a one-hour token: whole seconds left.
                "expiresIn": max(seconds - 1, 0),
                "token": value,
            },
        },
        primary="result.token",
    )


def _app_client(request: HttpRequest) -> str | None:
    """The client id of a valid app token in the Authorization header, or None."""
    row = tokens.find(Token.Kind.TURNQEY_APP, tokens.bearer(request.headers.get("Authorization", "")))
    if row is None or row.revoked_at is not None or row.expired(clock.now()):
        return None
    return row.subject


def _account_dicts(authorizations: list[TurnqeyAuthorization]) -> list[dict[str, Any]]:
    return [
        {
            "id": account.id,
            "collection": str(a.collection_id),
            "identity": a.identity,
            "platform": a.platform,
            "sourceAccountId": a.source_account_id,
            "name": f"{account.currency} Wallet",
            "currency": account.currency,
            "balance": account.balance,
            "status": a.status,
        }
        for a in authorizations
        for account in accounts_for(f"turnqey:{a.source_account_id}", prefix="tq_acc_")
    ]


def _accounts_reply(authorizations: list[TurnqeyAuthorization]) -> HttpResponse:
    return json_response(
        {
            "statusCode": 200,
            "message": "GET Request successful.",
            "isError": False,
            "result": {"accounts": _account_dicts(authorizations)},
        },
        primary="result.accounts",
    )


_REJECTED_BEARER = "The access token is invalid or has expired."


@provider_endpoint()
@require_http_methods(["GET"])
def collection_accounts(request: HttpRequest, ns: str, collection: str) -> HttpResponse:
    client_id = _app_client(request)
    if client_id is None:
        return _envelope_error(401, _REJECTED_BEARER)
    try:
        collection_id = uuid.UUID(collection)
    except ValueError:
        return _envelope_error(404, "Collection not found.")
    if not TurnqeyCollection.objects.filter(id=collection_id, client_id=client_id).exists():
        return _envelope_error(404, "Collection not found.")
    return _accounts_reply(list(TurnqeyAuthorization.objects.filter(collection_id=collection_id).order_by("id")))


@provider_endpoint()
@require_http_methods(["GET"])
def identity_accounts(request: HttpRequest, ns: str, identity: str) -> HttpResponse:
    client_id = _app_client(request)
    if client_id is None:
        return _envelope_error(401, _REJECTED_BEARER)
    return _accounts_reply(
        list(TurnqeyAuthorization.objects.filter(client_id=client_id, identity=identity).order_by("id"))
    )


# --- Browser authorization ----------------------------------------------------


def _error_page(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "sandbox/error.html", {"provider": "Turnqey", "message": message}, status=400)


@provider_endpoint(page=True)
@require_http_methods(["GET", "POST"])
def authorize(request: HttpRequest, ns: str) -> HttpResponse:
    """The consent page at the source platform, and its answer.

    The authorization parameters stay in the query string: the form posts
    back to the very URL it was served from, and the checksum is checked
    again on POST, so nothing the partner signed can be changed on the way.
    """
    params = {key: request.GET.get(key, "") for key in request.GET}
    missing = [name for name in ("client", "platform", "checksum", "identity") if not params.get(name)]
    if missing:
        return _error_page(request, f"The authorization request is missing: {', '.join(missing)}.")
    app = App.objects.filter(provider=Provider.TURNQEY, client_id=params["client"]).first()
    if app is None or not app.client_secret:
        return _error_page(request, "Unknown client.")
    expected = turnqey_checksum(secret=app.client_secret, params=params)
    if not hmac.compare_digest(expected, params["checksum"].lower()):
        return _error_page(request, "The checksum does not match the authorization request.")
    if not app.redirect_uri:
        return _error_page(request, "No redirect URI is registered for this client.")
    platform = params["platform"]
    default_username = turnqey_default_username(identity=params["identity"])

    if request.method == "GET":
        response = render(
            request,
            "sandbox/consent.html",
            {
                "platform_name": platform_name(platform),
                "provider_name": "Turnqey",
                "username": default_username,
                "action": request.get_full_path(),
                "hints": turnqey_usernames(client_id=app.client_id, identity=params["identity"], platform=platform)
                if hints_enabled()
                else None,
            },
        )
        # The answer is a redirect to the partner: allow it as a form target.
        response._csp_update = {"form-action": [origin(app.redirect_uri)]}  # type: ignore[attr-defined]  # noqa: SLF001
        return response

    decision = request.POST.get("decision", "")
    reply: dict[str, str] = {}
    if params.get("state"):
        reply["state"] = params["state"]
    reply["identity"] = params["identity"]
    if decision == "approve":
        username = request.POST.get("username", "").strip() or default_username
        try:
            authorization = turnqey_authorization_grant(
                client_id=app.client_id,
                identity=params["identity"],
                platform=platform,
                username=username,
                collection=params.get("collection", ""),
            )
        except SandboxError as error:
            if params.get("collection"):
                reply["collection"] = params["collection"]
            reply.update({"platform": platform, "status": "error", "error_description": error.message})
        else:
            reply.update({"collection": str(authorization.collection_id), "platform": platform, "status": "success"})
    else:
        if params.get("collection"):
            reply["collection"] = params["collection"]
        reply["platform"] = platform
        if decision == "error":
            reply["status"] = "error"
            reply["error_description"] = f"{platform_name(platform)} could not complete the authorization."
        else:
            reply["status"] = "denied"
            reply["error_description"] = f"The user denied access at {platform_name(platform)}."
    return HttpResponseRedirect(with_query(app.redirect_uri, reply))
