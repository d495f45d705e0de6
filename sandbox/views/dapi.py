"""Dapi simulator: Connect page, access code exchange, permanent token, delink.

Paths beneath ``/sandbox/dapi/`` (doc and docs/provider-assumptions.md):

* ``GET /connect?appKey&state&redirectUri``: sign in at the institution, then
  ``POST`` to the same URL (``decision`` = ``approve`` | ``deny``,
  ``username``) redirects to ``redirectUri`` with ``state``, ``accessCode``,
  ``connectionID``, ``userSecret``, ``userID``, ``tokenID`` (or ``error`` =
  ``access_denied`` and ``error_description``);
* ``POST /v2/auth/ExchangeToken`` ``{"appSecret","accessCode","connectionID"}``;
* ``POST /v2/data/identity/get``, ``POST /v2/data/accounts/get`` and
  ``POST /v2/users/DelinkUser`` with ``Authorization: Bearer`` and
  ``{"appSecret","userSecret"}``; identity answers
  ``{"success": true, "identity": {"id": <userID>, "name"}}``.
"""

from __future__ import annotations

import hmac
from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from .. import clock, tokens
from ..data import accounts_for
from ..faults import provider_endpoint
from ..hints import dapi_usernames, hints_enabled
from ..models import App, DapiConnection, Provider, Token
from ..services.common import SandboxError
from ..services.dapi import dapi_connection_create, dapi_identity, error_body
from ..state import Snapshot
from .common import json_response, one, origin, read_json, text_field, with_query


def _failure(status: int, kind: str, message: str) -> HttpResponse:
    return json_response(error_body(status=status, message=message, kind=kind), status=status)


def _error_page(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "sandbox/error.html", {"provider": "Dapi", "message": message}, status=400)


@provider_endpoint(page=True)
@require_http_methods(["GET", "POST"])
def connect(request: HttpRequest, ns: str) -> HttpResponse:
    """The Connect layer: the user signs in at the institution and approves or denies."""
    app_key = request.GET.get("appKey", "")
    redirect_uri = request.GET.get("redirectUri", "")
    state = request.GET.get("state", "")
    if not (app_key and redirect_uri):
        return _error_page(request, "appKey and redirectUri are required.")
    app = one(App.objects.filter(provider=Provider.DAPI, client_id=app_key))
    if app is None:
        return _error_page(request, "Unknown app key.")
    if not app.redirect_uri or redirect_uri != app.redirect_uri:
        return _error_page(request, "redirectUri does not match the redirect URI registered for this app.")

    if request.method == "GET":
        response = render(request, "sandbox/dapi_connect.html", {"action": request.get_full_path(), **_hints(app)})
        response._csp_update = {"form-action": [origin(app.redirect_uri)]}  # type: ignore[attr-defined]  # noqa: SLF001
        return response

    reply = {"state": state} if state else {}
    if request.POST.get("decision") != "approve":
        reply.update({"error": "access_denied", "error_description": "The user denied access."})
        return HttpResponseRedirect(with_query(app.redirect_uri, reply))
    username = request.POST.get("username", "").strip()
    snap: Snapshot = request.sandbox  # type: ignore[attr-defined]
    try:
        if not username:
            raise SandboxError("Enter your username.")
        reply.update(dapi_connection_create(app_key=app.client_id, username=username, snapshot=snap))
    except SandboxError as error:
        # The institution's sign-in page shows what is wrong and asks again.
        response = render(
            request,
            "sandbox/dapi_connect.html",
            {"action": request.get_full_path(), "error": error.message, **_hints(app)},
            status=400,
        )
        response._csp_update = {"form-action": [origin(app.redirect_uri)]}  # type: ignore[attr-defined]  # noqa: SLF001
        return response
    return HttpResponseRedirect(with_query(app.redirect_uri, reply))


def _hints(app: App) -> dict[str, Any]:
    """The usernames that signed in to this app before, in development (:mod:`sandbox.hints`)."""
    return {"hints": dapi_usernames(app_key=app.client_id)} if hints_enabled() else {}


def _app_by_secret(secret: str) -> App | None:
    for app in App.objects.filter(provider=Provider.DAPI):
        if app.client_secret and hmac.compare_digest(app.client_secret.encode(), secret.encode()):
            return app
    return None


_INVALID_CODE = "INVALID_ACCESS_CODE"


@provider_endpoint()
@require_http_methods(["POST"])
def exchange_token(request: HttpRequest, ns: str) -> HttpResponse:
    data = read_json(request) or {}
    app_secret, code, connection_id = (text_field(data, n) for n in ("appSecret", "accessCode", "connectionID"))
    if not (app_secret and code and connection_id):
        return _failure(400, "INVALID_REQUEST", "appSecret, accessCode and connectionID are required.")
    app = _app_by_secret(app_secret)
    if app is None:
        return _failure(401, "INVALID_APP_SECRET", "The app secret is invalid.")
    connection = one(DapiConnection.objects.filter(connection_id=connection_id, app_key=app.client_id))
    row = tokens.find(Token.Kind.DAPI_CODE, code)
    if connection is None or row is None or row.subject != str(connection.pk) or connection.delinked_at is not None:
        return _failure(400, _INVALID_CODE, "The access code is invalid.")
    at = clock.now()
    with transaction.atomic():
        # Single use: only one exchange can spend the code (conditional UPDATE).
        if not tokens.consume(row.id, at):
            latest = tokens.find(Token.Kind.DAPI_CODE, code)
            used = latest is not None and latest.used_at is not None
            return _failure(
                400, _INVALID_CODE, "The access code has already been used." if used else "The access code has expired."
            )
        access_token = tokens.jwt_like({"sub": connection.user_id, "tokenID": connection.token_id})
        tokens.issue(Token.Kind.DAPI_ACCESS, str(connection.pk), value=access_token, lifetime=None, at=at)
    return json_response({"success": True, "accessToken": access_token}, primary="accessToken")


def _linked_connection(request: HttpRequest) -> DapiConnection | HttpResponse:
    """The connection behind the Bearer token, checked against the body's secrets."""
    row = tokens.find(Token.Kind.DAPI_ACCESS, tokens.bearer(request.headers.get("Authorization", "")))
    connection = one(DapiConnection.objects.filter(pk=int(row.subject))) if row is not None else None
    if row is None or connection is None:
        return _failure(401, "INVALID_TOKEN", "The access token is invalid.")
    if connection.delinked_at is not None or row.revoked_at is not None:
        return _failure(401, "TOKEN_DELINKED", "The user has been delinked; reconnect through Connect.")
    data = read_json(request) or {}
    app_secret, user_secret = text_field(data, "appSecret"), text_field(data, "userSecret")
    if not (app_secret and user_secret):
        return _failure(400, "INVALID_REQUEST", "appSecret and userSecret are required.")
    app = one(App.objects.filter(provider=Provider.DAPI, client_id=connection.app_key))
    if app is None or not hmac.compare_digest(app.client_secret.encode(), app_secret.encode()):
        return _failure(401, "INVALID_APP_SECRET", "The app secret is invalid.")
    if not hmac.compare_digest(connection.user_secret_digest, tokens.digest(user_secret)):
        return _failure(401, "INVALID_USER_SECRET", "The user secret is invalid.")
    return connection


@provider_endpoint()
@require_http_methods(["POST"])
def identity_get(request: HttpRequest, ns: str) -> HttpResponse:
    """Who the token belongs to, from the link itself: what the browser's callback cannot rewrite."""
    connection = _linked_connection(request)
    if isinstance(connection, HttpResponse):
        return connection
    return json_response({"success": True, "identity": dapi_identity(connection)}, primary="identity.id")


@provider_endpoint()
@require_http_methods(["POST"])
def accounts_get(request: HttpRequest, ns: str) -> HttpResponse:
    connection = _linked_connection(request)
    if isinstance(connection, HttpResponse):
        return connection
    return json_response(
        {
            "success": True,
            "accounts": [
                {"id": a.id, "name": f"{a.currency_name} account", "currency": a.currency, "balance": a.balance}
                for a in accounts_for(f"dapi:{connection.user_id}", prefix="dp_acc_")
            ],
        },
        primary="accounts",
    )


@provider_endpoint()
@require_http_methods(["POST"])
def delink_user(request: HttpRequest, ns: str) -> HttpResponse:
    connection = _linked_connection(request)
    if isinstance(connection, HttpResponse):
        return connection
    DapiConnection.objects.filter(pk=connection.pk).update(delinked_at=clock.now())
    return json_response({"success": True}, primary="success")
