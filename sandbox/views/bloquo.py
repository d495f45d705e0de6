"""Bloquo simulator: client credentials per customer, staging and production apart.

The same views serve two mounts, ``/sandbox/bloquo/`` (staging) and
``/sandbox/bloquo-production/`` (production), each with its own key pairs and
tokens: a key or token of one is unknown to the other, as the doc says of the
real environments. Paths beneath each mount:

* ``POST /api/v1/auth/token`` ``{"clientId": "…", "clientSecret": "…"}``;
* ``GET /api/v1/accounting/customer`` and ``GET /api/v1/accounting/accounts``
  with ``Authorization: Bearer``.
"""

from __future__ import annotations

import hmac

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_http_methods

from .. import clock, tokens
from ..data import accounts_for
from ..faults import provider_endpoint
from ..models import BloquoKey, Token
from ..services.bloquo import error_body
from .common import json_response, lifetime, one, read_json, text_field


def _failure(status: int, message: str) -> HttpResponse:
    return json_response(error_body(status=status, message=message), status=status)


@provider_endpoint()
@require_http_methods(["POST"])
def token(request: HttpRequest, ns: str) -> HttpResponse:
    data = read_json(request) or {}
    client_id, client_secret = text_field(data, "clientId"), text_field(data, "clientSecret")
    if not (client_id and client_secret):
        return _failure(400, "clientId and clientSecret are required.")
    key = one(BloquoKey.objects.filter(provider=ns, client_id=client_id))
    if key is None or not hmac.compare_digest(key.secret_digest, tokens.digest(client_secret)):
        return _failure(401, "Invalid client credentials.")
    if key.revoked_at is not None:
        return _failure(403, "API key has been revoked.")
    seconds = lifetime(request, ns, "access")
    value = tokens.jwt_like({"sub": key.customer_id, "env": ns})
    tokens.issue(Token.Kind.BLOQUO_ACCESS, str(key.pk), value=value, lifetime=seconds)
    return json_response(
        {"accessToken": value, "expiresIn": seconds, "tokenType": "Bearer", "status": True}, primary="accessToken"
    )


def _customer(request: HttpRequest, ns: str) -> BloquoKey | None:
    """The key pair behind a live Bearer token of this environment, or None."""
    row = tokens.find(Token.Kind.BLOQUO_ACCESS, tokens.bearer(request.headers.get("Authorization", "")))
    if row is None or row.revoked_at is not None or row.expired(clock.now()):
        return None
    key = one(BloquoKey.objects.filter(pk=int(row.subject), provider=ns))
    return key if key is not None and key.revoked_at is None else None


_REJECTED_BEARER = "Token expired or invalid."


@provider_endpoint()
@require_http_methods(["GET"])
def customer(request: HttpRequest, ns: str) -> HttpResponse:
    key = _customer(request, ns)
    if key is None:
        return _failure(401, _REJECTED_BEARER)
    return json_response(
        {"status": True, "data": {"id": key.customer_id, "name": key.name, "email": key.email}}, primary="data.id"
    )


@provider_endpoint()
@require_http_methods(["GET"])
def accounts(request: HttpRequest, ns: str) -> HttpResponse:
    key = _customer(request, ns)
    if key is None:
        return _failure(401, _REJECTED_BEARER)
    return json_response(
        {
            "status": True,
            "data": [
                {
                    "id": a.id,
                    "name": a.currency,
                    "type": a.type,
                    "currency": a.currency,
                    "balance": a.balance,
                }
                for a in accounts_for(f"bloquo:{key.customer_id}", prefix="bq_acc_", include_fiat=True)
            ],
        },
        primary="data",
    )
