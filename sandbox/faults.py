"""The wrapper every simulated provider endpoint goes through: faults and the request log.

:func:`provider_endpoint` decorates a view served under ``/sandbox/<provider>/``.
Per request it

1. reads the cached :class:`~sandbox.state.Snapshot` (one small query) and
   puts it on ``request.sandbox`` so the view reads lifetimes from it;
2. finds the fault rules matching the provider mount, the path beneath it (a
   prefix), the method and, for Coinify's ``/auth``, the grant type; takes one
   use of each counted rule with a conditional UPDATE (so a rule for 3 requests
   is applied exactly 3 times across all processes);
3. applies them: every matching ``latency`` rule sleeps before the view; the
   first other rule decides the outcome:

   ``status``
       the request is refused before it takes effect; the reply is the
       provider's own error shape with that status (default 503) and
       ``Retry-After`` when the rule has one. A 3xx also carries a
       ``Location`` back to the same URL, so a client that followed the
       redirect would show up in the log as a second request.
   ``timeout``
       sleeps ``hang_seconds`` (meant to be longer than the client's read
       timeout), then answers 504 without processing the request, or, with
       ``process`` true, processes it and sends the real reply late (a lost
       reply: the refresh did rotate).
   ``truncated_json`` / ``html`` / ``missing_field``
       the request is processed (it took effect) and its real reply is
       corrupted: cut in half, replaced by an HTML error page, or stripped of
       one field (the rule's ``field``, a dotted path such as
       ``result.accounts.0.balance``, or else the reply's main field: the token,
       the accounts list). The status stays, unless the rule sets one.
   ``trickle``
       the request is processed and its real reply (status, headers and a
       true ``Content-Length``) is sent one byte of body at a time, ``interval``
       seconds apart: each byte arrives well within any read timeout, while
       the whole reply takes as long as its length times the interval. With
       ``process`` false, the provider's own error (the rule's status, default
       503) is trickled instead, and the request has no effect.

4. writes one :class:`~sandbox.models.RequestLog` row: method, path beneath the
   mount, final status, Coinify grant type, the fault applied. Never a body,
   header or query string, so never a secret.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import wraps
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from . import clock, state
from .models import Fault, RequestLog
from .services import SIMULATORS
from .state import FaultRule

View = Callable[..., HttpResponseBase]

# Indirection so tests can observe sleeps instead of waiting for them.
_sleep: Callable[[float], None] = time.sleep

HTML_ERROR_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>{status} {phrase}</title></head>\n"
    "<body><center><h1>{status} {phrase}</h1></center><hr><center>nginx</center></body></html>\n"
)


def subpath(path_info: str, provider: str) -> str:
    """The path beneath the provider's mount: ``/sandbox/coinify/auth`` → ``/auth``."""
    _, found, rest = path_info.partition(f"/{provider}/")
    return "/" + rest if found else path_info


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_body(provider: str, status: int) -> dict[str, Any]:
    """An injected error in the provider's own error shape, as the mount's simulator declares it."""
    return SIMULATORS[provider].error_body(status=status, message=_phrase(status))


def _error_response(rule: FaultRule, provider: str, status: int, *, page: bool) -> HttpResponse:
    if page:
        response: HttpResponse = HttpResponse(
            HTML_ERROR_PAGE.format(status=status, phrase=_phrase(status)),
            status=status,
            content_type="text/html; charset=utf-8",
        )
    else:
        response = JsonResponse(error_body(provider, status), status=status)
    if rule.retry_after is not None:
        response["Retry-After"] = str(rule.retry_after)
    return response


def _remove_field(data: object, dotted: str) -> bool:
    """Delete the value at a dotted path (list indices as numbers); False if absent."""
    parts = dotted.split(".")
    try:
        for part in parts[:-1]:
            data = data[int(part)] if isinstance(data, list) else data[part]  # type: ignore[index]
        last = parts[-1]
        if isinstance(data, list):
            del data[int(last)]
        elif isinstance(data, dict) and last in data:
            del data[last]
        else:
            return False
    except (KeyError, IndexError, ValueError, TypeError):
        return False
    return True


def _body(response: HttpResponseBase) -> bytes:
    """The whole body of a reply, streamed or not."""
    if isinstance(response, StreamingHttpResponse):
        return b"".join(bytes(chunk) for chunk in response.streaming_content)  # type: ignore[union-attr]
    return bytes(response.content) if isinstance(response, HttpResponse) else b""


def _corrupt(rule: FaultRule, response: HttpResponseBase | None) -> HttpResponse:
    status = rule.status or (response.status_code if response is not None else 200)
    content = _body(response) if response is not None else b'{"status":true,"data":{}}'
    if rule.kind == Fault.Kind.HTML:
        corrupted: HttpResponse = HttpResponse(
            HTML_ERROR_PAGE.format(status=status, phrase=_phrase(status)),
            status=status,
            content_type="text/html; charset=utf-8",
        )
    elif rule.kind == Fault.Kind.TRUNCATED_JSON:
        corrupted = HttpResponse(
            content[: max(1, len(content) // 2)] or b"{", status=status, content_type="application/json"
        )
    else:  # missing_field
        try:
            data = json.loads(content or b"null")
        except ValueError:
            data = None
        if isinstance(data, dict | list):
            primary = getattr(response, "sandbox_primary_field", "") if response is not None else ""
            candidates = [rule.field] if rule.field else [primary] if primary else []
            if isinstance(data, dict) and data and not rule.field:
                candidates.append(next(iter(data)))
            for candidate in candidates:
                if candidate and _remove_field(data, candidate):
                    break
            corrupted = JsonResponse(data, status=status, safe=False)
        else:
            corrupted = HttpResponse(content, status=status, content_type="application/json")
    if rule.retry_after is not None:
        corrupted["Retry-After"] = str(rule.retry_after)
    return corrupted


def _trickled(rule: FaultRule, response: HttpResponseBase) -> StreamingHttpResponse:
    """``response`` again, its body sent a byte at a time with ``interval_seconds`` between bytes."""
    content = _body(response)
    interval = rule.interval_seconds or 0

    def drip() -> Iterator[bytes]:
        for index in range(len(content)):
            if index:
                _sleep(interval)
            yield content[index : index + 1]

    trickled = StreamingHttpResponse(drip(), status=response.status_code)
    for name, value in response.items():
        trickled[name] = value
    # The true length, so a client reads the reply as it would the real one.
    trickled["Content-Length"] = str(len(content))
    return trickled


def _take(rule: FaultRule) -> bool:
    """Take one use of a rule; False once a counted rule is used up."""
    if not rule.counted:
        return True
    if Fault.objects.filter(pk=rule.id, remaining__gt=0).update(remaining=F("remaining") - 1):
        return True
    # Used up: have every process drop it from its cached snapshot.
    state.bump()
    return False


def _outcome(
    rule: FaultRule | None, request: HttpRequest, view: View, provider: str, page: bool, args: tuple, kwargs: dict
) -> HttpResponseBase:
    if rule is not None and rule.kind == Fault.Kind.TIMEOUT:
        _sleep(rule.hang_seconds or 0)
    response = view(request, *args, **kwargs) if rule is None or rule.process else None
    if rule is None:
        assert response is not None
        return response
    if rule.kind == Fault.Kind.STATUS:
        refused = _error_response(rule, provider, rule.status or 503, page=page)
        if 300 <= refused.status_code < 400:
            refused["Location"] = request.get_full_path()
        return refused
    if rule.kind == Fault.Kind.TIMEOUT:
        return response if response is not None else _error_response(rule, provider, 504, page=page)
    if rule.kind == Fault.Kind.TRICKLE:
        real = response if response is not None else _error_response(rule, provider, rule.status or 503, page=page)
        return _trickled(rule, real)
    return _corrupt(rule, response)


def provider_endpoint(
    *, page: bool = False, grant_type: Callable[[HttpRequest], str] | None = None
) -> Callable[[View], View]:
    """Wrap a simulator view: faults, lifetimes on ``request.sandbox``, request log.

    The view receives the provider mount as keyword ``ns`` (``bloquo`` or
    ``bloquo-production`` share views). ``page`` marks a browser page: injected
    errors are HTML and CSRF stays on; every other endpoint is a CSRF-exempt
    API. ``grant_type`` extracts the grant type to log and to match faults on.
    """

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponseBase:
            provider = str(kwargs["ns"])
            # Logged as the moment the call arrived, as a provider counting calls
            # per second would count it (not when this simulator finished it).
            arrived = clock.now()
            snap = state.snapshot()
            request.sandbox = snap  # type: ignore[attr-defined]
            path = subpath(request.path_info, provider)
            grant = grant_type(request) if grant_type is not None else ""
            chosen: FaultRule | None = None
            delayed = False
            if snap.faults_for(provider):
                at = clock.now()
                for rule in snap.faults:
                    if not rule.matches(
                        provider=provider, path=path, method=request.method or "", grant_type=grant, at=at
                    ):
                        continue
                    if rule.kind == Fault.Kind.LATENCY:
                        if _take(rule):
                            _sleep((rule.latency_ms or 0) / 1000)
                            delayed = True
                    elif chosen is None and _take(rule):
                        chosen = rule
            label = chosen.kind if chosen is not None else ("latency" if delayed else "")
            try:
                response = _outcome(chosen, request, view, provider, page, args, kwargs)
            except Exception:
                _log(request, provider, path, 500, grant, label, arrived)
                raise
            _log(request, provider, path, response.status_code, grant, label, arrived)
            return response

        return wrapped if page else csrf_exempt(wrapped)

    return decorator


def _log(
    request: HttpRequest, provider: str, path: str, status: int, grant: str, fault: str, arrived: datetime
) -> None:
    entry = RequestLog(
        provider=provider,
        method=(request.method or "")[:10],
        path=path[:300],
        status=status,
        grant_type=grant[:30],
        fault=fault,
        at=arrived,
    )
    if connection.vendor != "postgresql" or getattr(settings, "SANDBOX_SESSION_ASYNC_COMMIT", False):
        # Not PostgreSQL, or a server whose database sessions already commit
        # without the WAL flush (sandbox.server_settings): one plain INSERT.
        entry.save()
        return
    with transaction.atomic():
        # The log is a test aid, not a record worth an fsync: without this the
        # commit's WAL flush costs more than everything else a probe does.
        # Visibility to other connections is unchanged; only crash durability
        # of the last few entries is given up.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        entry.save()
