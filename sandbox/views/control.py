"""The sandbox's control API, under ``/sandbox/_control/``: JSON in, JSON out, CSRF-exempt.

Tests, the benchmark and developers drive the simulated world through it,
from scripts, never from a page. So, in the portal and in the separate server
alike:

* a request a browser marks as made by another origin's page (``Origin`` not
  this origin, or ``Sec-Fetch-Site`` other than ``same-origin`` / ``none``)
  is refused with 403, whatever it carries;
* if the setting ``SANDBOX_CONTROL_TOKEN`` (environment variable of the same
  name) is non-empty, every call must carry it in the
  ``X-Sandbox-Control-Token`` header (otherwise 403);
* a ``POST`` must be sent with ``Content-Type: application/json`` even with
  no body, and so must any request that has a body (otherwise 415).

Errors are ``{"error": "<plain message>"}`` with 400 (bad input), 403, 404
(no such subject or rule), 405 (with ``Allow``) or 415. Field names are
snake_case throughout.

``GET /sandbox/_control/``
    ``{"endpoints": [...]}``: this list.

``POST /sandbox/_control/reset``  body ``{}`` or ``{"keep_apps": true}``
    Everything back to empty: subjects, tokens, faults, lifetimes (defaults),
    request log, and registered apps unless ``keep_apps``. → ``{"reset": true}``.

``GET /sandbox/_control/apps``
    ``{"apps": [{"provider", "client_id", "redirect_uri", "has_secret"}]}``.
``POST /sandbox/_control/apps``
    ``{"provider": "turnqey"|"coinify"|"dapi", "client_id": "…",
    "client_secret": "…", "redirect_uri": "…"}``; idempotent (updates what is
    given). Turnqey and Dapi need a secret and a redirect URI when new. →
    201 (created) or 200 ``{"provider", "client_id", "redirect_uri",
    "has_secret", "created"}``.

``GET /sandbox/_control/subjects?provider=…``
    ``{"subjects": [...]}`` of that provider, without secrets.
``POST /sandbox/_control/subjects``  → 201 (200 when it updated an existing one)
    * ``{"provider": "coinify", "email", "password", "partner_id"}``
      (``partner_id`` optional when exactly one partner is registered; an
      unknown partner is registered) → ``{"provider", "user_id", "email",
      "partner_id", "offline_token"}``. Again with the same email: new
      password, another offline token.
    * ``{"provider": "bloquo"|"bloquo-production", "client_id"?,
      "client_secret"?, "name"?, "email"?}`` → ``{"provider", "customer_id",
      "client_id", "client_secret", "name", "email"}`` (generated when not given).
    * ``{"provider": "turnqey", "client", "identity", "platform", "username"?,
      "collection"?}`` → an active authorization as if consent was given:
      ``{"provider", "client", "collection", "identity", "platform",
      "username", "source_account_id", "status"}``.
    * ``{"provider": "dapi", "app_key", "username", "exchange"?}`` → a Connect
      login: ``{"provider", "access_code", "connection_id", "user_secret",
      "user_id", "token_id"}``; with ``"exchange": true`` the access code is
      also spent, as ``ExchangeToken`` would, and the reply adds
      ``access_token`` (the permanent token).

``POST /sandbox/_control/actions``  → ``{"provider", "action", "affected": n}`` or 404
    * turnqey: ``{"action": "revoke"|"expire"|"restore", "source_account_id"}``
      or ``{…, "identity", "platform"}`` (optional ``client``): sets the
      status of that authorization's accounts.
    * coinify: ``{"action": "revoke"|"expire"|"deactivate"|"restore", "user_id"}``:
      revoke kills its refresh, offline and access tokens; expire makes its
      refresh and access tokens lapse now; deactivate / restore the account.
    * bloquo, bloquo-production: ``{"action": "revoke"|"expire"|"restore",
      "customer_id"}``: revoke the key pair (and its tokens), expire its
      tokens, restore the key pair.
    * dapi: ``{"action": "delink"|"revoke"|"expire", "user_id"|"connection_id"|"access_token"}``:
      delink (revoke is an alias) the user's connections; expire unexchanged
      access codes.

``GET /sandbox/_control/lifetimes``
    ``{"lifetimes": {"turnqey": {"app_token": 3600}, "coinify": {"access":
    1200, "refresh": 86400}, "bloquo": {"access": 3600}, "bloquo-production":
    {"access": 3600}, "dapi": {"access_code": 1800}}}``.
``POST /sandbox/_control/lifetimes``  ``{"provider": "coinify", "access": 5, "refresh": 60}``
    → ``{"provider", "lifetimes": {...that provider's...}}``.

``GET /sandbox/_control/faults`` → ``{"faults": [rule, ...]}``
``POST /sandbox/_control/faults`` → 201 ``rule``
    ``{"provider", "kind", "path"?, "method"?, "grant_type"?, "status"?,
    "retry_after"?, "latency_ms"?, "hang_seconds"?, "interval"?, "field"?,
    "process"?, "count"?, "seconds"?}``. ``kind`` is ``status`` | ``latency`` |
    ``timeout`` | ``truncated_json`` | ``html`` | ``missing_field`` |
    ``trickle`` (which needs ``interval``, the seconds between bytes)
    (:mod:`sandbox.faults` says what each does). ``path`` is a prefix of the
    path beneath the provider (``/auth``, ``/v1/api/token``); ``count``
    limits it to that many requests, ``seconds`` to that long from now;
    neither means until deleted. A rule reads back as ``{"id", "provider",
    "path", "method", "grant_type", "kind", "status", "retry_after",
    "latency_ms", "hang_seconds", "interval", "field", "process", "remaining",
    "expires_at", "active"}``.
``DELETE /sandbox/_control/faults`` (all) or ``/sandbox/_control/faults/<id>``
    → ``{"deleted": n}``.

``GET /sandbox/_control/requests?provider=&path=&since=&after=&method=&grant_type=``
    ``{"count": n, "requests": [{"id", "provider", "method", "path", "status",
    "grant_type", "fault", "at"}]}``, oldest first. ``path`` is a prefix,
    ``since`` an ISO 8601 time (inclusive), ``after`` a request id
    (exclusive). ``grant_type`` is Coinify's, for ``/auth``. No secret is
    ever recorded.
``DELETE /sandbox/_control/requests`` → ``{"deleted": n}``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from datetime import UTC
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt

from .. import services
from ..services import world
from ..services.common import SandboxError

ControlView = Callable[..., HttpResponse]

CONTROL_HEADER = "X-Sandbox-Control-Token"
# A page on another site can POST text/plain, a form or nothing at all without
# asking first, but not JSON: that needs a CORS preflight, which the sandbox
# never grants. So a POST must say its body is JSON, even an empty one, and so
# must any request that has a body. A DELETE without one may say nothing: no
# page can send a DELETE to another origin without that preflight either.
JSON_ONLY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Sec-Fetch-Site values of requests no other site's page made ("none": the
# user typed the URL or opened a bookmark).
OWN_SITE = frozenset({"same-origin", "none"})


def _error(message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _refuse_constant(name: str) -> Any:
    raise ValueError(name)


def _body(request: HttpRequest) -> dict[str, Any]:
    if not request.body:
        return {}
    try:
        # NaN and Infinity are not JSON, and a NaN passes every "at least"
        # check, so they are refused with the rest of what is not JSON.
        data = json.loads(request.body, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise SandboxError("The body must be a JSON object.") from None
    if not isinstance(data, dict):
        raise SandboxError("The body must be a JSON object.")
    return data


def _from_another_site(request: HttpRequest) -> bool:
    """Whether a browser says another origin's page made this request.

    Browsers send ``Sec-Fetch-Site`` and (on anything but a plain GET)
    ``Origin``; scripts and test clients usually send neither, and are judged
    by the token alone.
    """
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site.strip().lower() not in OWN_SITE:
        return True
    origin = request.headers.get("Origin")
    own_origin = f"{request.scheme}://{request.get_host()}"
    return origin is not None and origin.strip().lower() != own_origin.lower()


def _token_valid(request: HttpRequest) -> bool:
    # Read without a default: a settings module that forgot the name must not
    # leave the control API open unnoticed.
    expected: str = settings.SANDBOX_CONTROL_TOKEN
    if not expected:
        return True
    given = request.headers.get(CONTROL_HEADER, "")
    return hmac.compare_digest(expected.encode(), given.encode())


def control_endpoint(*methods: str) -> Callable[[ControlView], ControlView]:
    """CSRF-exempt JSON endpoint: the checks below in order, then the view; SandboxError → JSON error.

    Another site's page → 403; a configured token missing or wrong → 403; a
    method not in ``methods`` → 405 with ``Allow``; a POST, or any request
    with a body, without ``Content-Type: application/json`` → 415. CSRF tokens
    are not used: the JSON rule and the origin check keep other sites' pages
    out, and callers are scripts.
    """

    def decorator(view: ControlView) -> ControlView:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if _from_another_site(request):
                return _error("The control API does not answer requests made by another site's pages.", 403)
            if not _token_valid(request):
                return _error(f"A valid {CONTROL_HEADER} header is required.", 403)
            if request.method not in methods:
                response = _error(f"Use {' or '.join(methods)}.", 405)
                response["Allow"] = ", ".join(methods)
                return response
            needs_json = request.method in JSON_ONLY_METHODS or bool(request.body)
            if needs_json and request.content_type != "application/json":
                return _error("Send Content-Type: application/json (with a JSON object body, or none).", 415)
            try:
                return view(request, *args, **kwargs)
            except SandboxError as error:
                return _error(error.message, error.status)

        return csrf_exempt(wrapped)

    return decorator


ENDPOINTS = [
    "POST /sandbox/_control/reset",
    "GET|POST /sandbox/_control/apps",
    "GET|POST /sandbox/_control/subjects",
    "POST /sandbox/_control/actions",
    "GET|POST /sandbox/_control/lifetimes",
    "GET|POST|DELETE /sandbox/_control/faults",
    "DELETE /sandbox/_control/faults/<id>",
    "GET|DELETE /sandbox/_control/requests",
]


@control_endpoint("GET")
def index(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"endpoints": ENDPOINTS})


@control_endpoint("POST")
def reset(request: HttpRequest) -> HttpResponse:
    keep_apps = _body(request).get("keep_apps", False)
    if not isinstance(keep_apps, bool):
        raise SandboxError("keep_apps must be true or false.")
    world.sandbox_reset(keep_apps=keep_apps)
    return JsonResponse({"reset": True})


@control_endpoint("GET", "POST")
def apps(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return JsonResponse({"apps": services.app_list()})
    data = _body(request)
    fields = {}
    for name in ("provider", "client_id", "client_secret", "redirect_uri"):
        value = data.get(name, "")
        if not isinstance(value, str):
            raise SandboxError(f"{name} must be a string.")
        fields[name] = value.strip()
    result = services.app_register(**fields)
    return JsonResponse(result.as_dict(), status=201 if result.created else 200)


@control_endpoint("GET", "POST")
def subjects(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return JsonResponse({"subjects": services.subject_list(provider=request.GET.get("provider", ""))})
    reply, created = services.subject_create(_body(request))
    return JsonResponse(reply, status=201 if created else 200)


@control_endpoint("POST")
def actions(request: HttpRequest) -> HttpResponse:
    return JsonResponse(services.subject_act(_body(request)))


@control_endpoint("GET", "POST")
def lifetimes(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return JsonResponse({"lifetimes": world.lifetimes_get()})
    data = _body(request)
    return JsonResponse({"provider": data.get("provider"), "lifetimes": world.lifetimes_set(data)})


@control_endpoint("GET", "POST", "DELETE")
def faults(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return JsonResponse({"faults": world.fault_list()})
    if request.method == "DELETE":
        return JsonResponse({"deleted": world.fault_delete()})
    return JsonResponse(world.fault_create(_body(request)), status=201)


@control_endpoint("DELETE")
def fault_detail(request: HttpRequest, fault_id: int) -> HttpResponse:
    deleted = world.fault_delete(fault_id=fault_id)
    if not deleted:
        raise SandboxError("No such fault rule.", status=404)
    return JsonResponse({"deleted": deleted})


@control_endpoint("GET", "DELETE")
def requests_log(request: HttpRequest) -> HttpResponse:
    if request.method == "DELETE":
        return JsonResponse({"deleted": world.request_log_clear()})
    query = request.GET
    for name, value in query.items():
        # PostgreSQL text cannot hold NUL; the driver refuses even to send it.
        if "\x00" in value:
            raise SandboxError(f"{name} must not contain NUL characters.")
    since = None
    if query.get("since"):
        try:
            # A "+" of an offset arrives as a space when the caller did not encode it.
            since = parse_datetime(query["since"].replace(" ", "+"))
        except ValueError:
            since = None  # well formed but no such time (February 30th)
        if since is None:
            raise SandboxError("since must be an ISO 8601 time.")
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
    after = query.get("after", "")
    if after and not (after.isascii() and after.isdigit()):
        raise SandboxError("after must be a request id.")
    rows = world.request_log_list(
        provider=query.get("provider", ""),
        path=query.get("path", ""),
        since=since,
        after=int(after) if after else None,
        method=query.get("method", ""),
        grant_type=query.get("grant_type", ""),
    )
    return JsonResponse({"count": len(rows), "requests": rows})
