"""The shared request helper: one pooled session, retries, timeouts, no redirects, status mapping.

Every request a provider client makes goes through :class:`ProviderHttp`
(``client.http``): connect and read timeouts from settings, a total deadline
on the whole call (:func:`total_timeout`), no redirects followed, and status
mapping: connection errors, timeouts, 3xx, 429 and 5xx become ``transient``
:class:`ProviderError` s; every other reply comes back as an
:class:`HttpReply` for the provider module to interpret. How the request
travels (one pooled ``requests.Session`` per process, urllib3 retries for
idempotent methods only, reads bounded by the call's deadline) is
:mod:`.transport`'s.

Secrets never appear in a message or a log line written here.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions

from .errors import FailureReason, ProviderError
from .replies import JsonObject, json_type, parse_retry_after
from .transport import call_deadline, shared_session

logger = logging.getLogger("connections.providers")

DEFAULT_CONNECT_TIMEOUT = 3.05
DEFAULT_READ_TIMEOUT = 10.0
# The whole call, retries included: longer than one slow but honest reply,
# short enough that a trickling provider cannot hold a worker thread for long.
DEFAULT_TOTAL_TIMEOUT = 30.0


def _setting(name: str, default: float) -> float:
    """A timeout from Django settings, read at call time so tests and overrides apply."""
    try:
        from django.conf import settings

        value = getattr(settings, name, default)
    except Exception:  # settings not configured (a script outside Django)
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if number > 0 and math.isfinite(number) else default


def total_timeout() -> float:
    """The total deadline of one provider call, in seconds (``settings.PROVIDER_TOTAL_TIMEOUT``, read now).

    It bounds the whole call (connect, sending, status line, headers, body and
    urllib3's own retries), however the reply is paced.
    """
    return _setting("PROVIDER_TOTAL_TIMEOUT", DEFAULT_TOTAL_TIMEOUT)


def _failed_before_sending(exc: requests.exceptions.ConnectionError) -> bool:
    """True when the request certainly never reached the provider (refused, DNS, connect timeout)."""
    cause: object = exc.args[0] if exc.args else None
    if isinstance(cause, urllib3.exceptions.MaxRetryError):
        cause = cause.reason
    return isinstance(cause, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


@dataclass(frozen=True)
class HttpReply:
    """A reply that got past status mapping: a 2xx, or a 4xx for the provider module to interpret."""

    provider: str
    endpoint: str
    status: int
    headers: Mapping[str, str] = field(repr=False)
    content: bytes = field(repr=False)

    @property
    def where(self) -> str:
        """How messages name this call: ``"Turnqey (accounts by collection)"``."""
        return f"{self.provider} ({self.endpoint})"

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The parsed body; a ``transient`` error for anything that is not JSON."""
        if not self.content.strip():
            raise ProviderError.transient(
                f"{self.where}: the reply (HTTP {self.status}) had an empty body.", status_code=self.status
            )
        try:
            return json.loads(self.content.decode("utf-8"), parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            looks_html = self.content.lstrip()[:1] == b"<" or "html" in self.headers.get("Content-Type", "").lower()
            what = "an HTML page" if looks_html else "malformed or truncated JSON"
            raise ProviderError.transient(
                f"{self.where}: the reply (HTTP {self.status}) was {what} instead of JSON.", status_code=self.status
            ) from None

    def json_object(self) -> JsonObject:
        """The body as a :class:`JsonObject`; a ``transient`` error unless it is a JSON object."""
        data = self.json()
        if not isinstance(data, dict):
            raise ProviderError.transient(
                f"{self.where}: the reply (HTTP {self.status}) was a JSON {json_type(data)}, not an object.",
                status_code=self.status,
            )
        return JsonObject(data, where=self.where)

    def json_object_unless_revoked(self, revoked: str) -> JsonObject:
        """The JSON object of a 200 from a provider whose 403 means the client's access is gone.

        403 → ``reauth_required`` (revoked), saying ``revoked``; any other
        status → unexpected.
        """
        if self.status == 403:
            raise ProviderError.reauth(FailureReason.REVOKED, revoked, status_code=403)
        if self.status != 200:
            raise self.unexpected()
        return self.json_object()

    def unexpected(self, detail: str = "") -> ProviderError:
        """The error for a status the provider module does not expect (to ``raise``)."""
        suffix = f": {detail}" if detail else ""
        return ProviderError.transient(
            f"{self.where}: unexpected reply HTTP {self.status}{suffix}.", status_code=self.status
        )


class ProviderHttp:
    """The shared request helper: timeouts, retries, no redirects, status mapping.

    ``request`` raises a ``transient`` :class:`ProviderError` for connection
    errors and timeouts (``outcome_unknown`` when the request may have been
    received), any 3xx (redirects are never followed), 429 and 5xx (with
    ``retry_after`` from ``Retry-After``). Everything else comes back as an
    :class:`HttpReply` for the provider module to interpret.

    Timeouts come from ``settings.PROVIDER_CONNECT_TIMEOUT``,
    ``PROVIDER_READ_TIMEOUT`` and ``PROVIDER_TOTAL_TIMEOUT`` at call time
    unless given here. The total one bounds the whole call, however slowly the
    reply arrives (see the module docstring).
    """

    def __init__(
        self,
        provider: str,
        *,
        session: requests.Session | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        total_timeout: float | None = None,
    ) -> None:
        self.provider = provider
        self._session = session
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.total_timeout = total_timeout

    def __repr__(self) -> str:
        return f"ProviderHttp(provider={self.provider!r})"

    @property
    def session(self) -> requests.Session:
        return self._session if self._session is not None else shared_session()

    def timeouts(self) -> tuple[float, float]:
        connect = self.connect_timeout or _setting("PROVIDER_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT)
        read = self.read_timeout or _setting("PROVIDER_READ_TIMEOUT", DEFAULT_READ_TIMEOUT)
        return connect, read

    def request(
        self,
        method: str,
        url: str,
        *,
        endpoint: str,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> HttpReply:
        """Send one request. ``endpoint`` is a short, secret-free label used in messages and logs."""
        where = f"{self.provider} ({endpoint})"
        connect_timeout, read_timeout = self.timeouts()
        total = self.total_timeout or total_timeout()
        deadline = time.monotonic() + total
        bounded = call_deadline.set(deadline)
        try:
            # Not streamed: requests reads the whole body before returning, so
            # every byte of the reply is read while the deadline is set.
            response = self.session.request(
                method,
                url,
                headers=dict(headers or {}),
                json=json,
                params=params,
                timeout=(connect_timeout, read_timeout),
                allow_redirects=False,
            )
        except requests.exceptions.ConnectTimeout:
            limit = f"{connect_timeout:g} s" if time.monotonic() < deadline else f"the call's {total:g} s limit"
            raise ProviderError.transient(
                f"{where}: could not connect within {limit}.", outcome_unknown=False
            ) from None
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
            if time.monotonic() >= deadline:
                raise ProviderError.transient(
                    f"{where}: the reply did not finish within the call's {total:g} s limit; "
                    "the request may have been received.",
                    outcome_unknown=True,
                ) from None
            if isinstance(exc, requests.exceptions.ReadTimeout):
                raise ProviderError.transient(
                    f"{where}: no reply within {read_timeout:g} s; the request may have been received.",
                    outcome_unknown=True,
                ) from None
            if isinstance(exc, requests.exceptions.ConnectionError):
                before = _failed_before_sending(exc)
                detail = "could not be reached" if before else "the connection failed before a reply arrived"
                raise ProviderError.transient(f"{where}: {detail}.", outcome_unknown=not before) from None
            raise ProviderError.transient(
                f"{where}: the request failed ({type(exc).__name__}).", outcome_unknown=True
            ) from None
        finally:
            call_deadline.reset(bounded)

        status = response.status_code
        logger.debug("%s %s -> HTTP %s", where, method, status)
        if 300 <= status < 400:
            raise ProviderError.transient(
                f"{where}: answered with a redirect (HTTP {status}), which is not followed.", status_code=status
            )
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            hint = f"; retry after {retry_after:g} s" if retry_after is not None else ""
            what = "rate limited the portal" if status == 429 else "had a server error"
            raise ProviderError.transient(
                f"{where}: {what} (HTTP {status}){hint}.", status_code=status, retry_after=retry_after
            )
        return HttpReply(
            provider=self.provider,
            endpoint=endpoint,
            status=status,
            headers=response.headers,
            content=response.content or b"",
        )
