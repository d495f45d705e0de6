"""How a provider request travels: the total deadline on a call, retries, and the shared session.

:class:`~.http.ProviderHttp` sends every request through a session made here
(:func:`shared_session`, or :func:`make_session` for one of its own):
retries for idempotent methods only (GET, PUT, DELETE, HEAD on 502/503/504,
honouring a short ``Retry-After``), no cookies, the proxies and CA bundle of
the environment, and connections whose reads keep to the call's deadline.

The total deadline. A read timeout bounds each read from the socket, not the
call: a provider that sends one byte every few seconds would hold a worker
for as long as it likes. So while :meth:`~.http.ProviderHttp.request` runs
(it sets :data:`call_deadline`), every read of the reply (status line,
headers and body alike, across urllib3's own retries) waits at most for what
is left of the call's deadline, and a connect at most that long too; when it
is spent, the read fails, urllib3 closes the connection, and the call is a
``transient`` error with ``outcome_unknown``.
"""

from __future__ import annotations

import contextvars
import http.client
import http.cookiejar
import io
import os
import socket
import threading
import time
import urllib.request
from typing import Any

import requests
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

# Only these are retried automatically: repeating them cannot do anything twice.
IDEMPOTENT_METHODS = frozenset({"GET", "PUT", "DELETE", "HEAD"})
# Gateway and availability errors are worth one or two quick retries.
RETRY_STATUSES = frozenset({502, 503, 504})
# A Retry-After longer than this is not waited out inside a request (a worker
# thread would sit idle): the reply goes back as a transient error carrying
# the hint, and the lifecycle schedules the retry.
RETRY_AFTER_CAP_SECONDS = 3.0
# Enough connections for a threaded worker talking to one provider host.
POOL_SIZE = 32
USER_AGENT = "adviser-connections-portal/1.0"


# --- The total deadline ---------------------------------------------------------------

# The monotonic moment the call in progress on this thread must be over by;
# None outside ProviderHttp.request (a session used directly is not bounded).
call_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("providercall_deadline", default=None)


class CallDeadlinePassed(socket.timeout):
    """The call's total deadline passed before this read (or connect) could start.

    A ``socket.timeout``, so urllib3 and requests report it as the read or
    connect timeout it is and close the connection.
    """


def _time_left() -> float | None:
    """Seconds left of the current call's deadline; None when no call is bounded."""
    deadline = call_deadline.get()
    return None if deadline is None else deadline - time.monotonic()


class _DeadlineReader(io.RawIOBase):
    """A socket's raw reader whose every read waits at most for what is left of the call's deadline.

    Wrapped around the socket before the status line is read, so a reply
    trickled byte by byte (in its headers or its body) ends when the deadline
    does, not when the provider stops sending.
    """

    def __init__(self, raw: Any, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._raw = raw
        self._sock = sock
        self._deadline = deadline
        # What urllib3 set for each read (the read timeout): a read may wait
        # that long, and never past the deadline.
        self._per_read = sock.gettimeout()

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return int(self._raw.fileno())

    def readinto(self, buffer: Any) -> int | None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise CallDeadlinePassed("the call's total deadline passed")
        self._sock.settimeout(left if self._per_read is None else min(self._per_read, left))
        return self._raw.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """http.client's response, reading through a :class:`_DeadlineReader` while a call is bounded."""

    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        deadline = call_deadline.get()
        if deadline is not None:
            # Nothing has been read yet, so the buffer is empty: detaching
            # hands over the socket's reader without closing it.
            raw = self.fp.detach()
            self.fp = io.BufferedReader(_DeadlineReader(raw, sock, deadline))


class _BoundedConnect:
    """A connect (and its TLS handshake) waits at most for what is left of the call's deadline."""

    timeout: Any

    def connect(self) -> None:
        left = _time_left()
        if left is not None:
            if left <= 0:
                raise CallDeadlinePassed("the call's total deadline passed")
            if isinstance(self.timeout, int | float):
                self.timeout = min(self.timeout, left)
        super().connect()  # type: ignore[misc]


class _DeadlineHTTPConnection(_BoundedConnect, urllib3.connection.HTTPConnection):
    response_class = _DeadlineResponse


class _DeadlineHTTPSConnection(_BoundedConnect, urllib3.connection.HTTPSConnection):
    response_class = _DeadlineResponse


class _DeadlineHTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


_DEADLINE_POOLS: dict[str, type[urllib3.connectionpool.HTTPConnectionPool]] = {
    "http": _DeadlineHTTPPool,
    "https": _DeadlineHTTPSPool,
}


class ProviderAdapter(HTTPAdapter):
    """requests' adapter whose connections honour the call's total deadline (see the module docstring)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _DEADLINE_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        # A SOCKS proxy brings connection classes of its own; an HTTP(S) proxy uses ours.
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _DEADLINE_POOLS
        return manager


class ProviderRetry(Retry):
    """urllib3 retries with two changes: a capped ``Retry-After`` and tolerant header parsing."""

    # Only 503 is retried on the strength of a Retry-After; a 429 goes back to
    # the caller so the rate limiter sees it.
    RETRY_AFTER_STATUS_CODES = frozenset({503})
    retry_after_cap: float = RETRY_AFTER_CAP_SECONDS

    def new(self, **kw: Any) -> ProviderRetry:
        retry = super().new(**kw)
        retry.retry_after_cap = self.retry_after_cap
        return retry

    def get_retry_after(self, response: Any) -> float | None:
        try:
            return super().get_retry_after(response)
        except urllib3.exceptions.InvalidHeader:
            return None  # a garbage header means "no hint", not a crash

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> ProviderRetry:
        wait: float | None = None
        if response is not None and error is None and self.respect_retry_after_header:
            wait = self.get_retry_after(response)
            if wait is not None and wait > self.retry_after_cap:
                # Give up now: with raise_on_status off, the caller gets this reply.
                raise urllib3.exceptions.MaxRetryError(
                    _pool, url or "", urllib3.exceptions.ResponseError("Retry-After beyond the cap")
                )
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        left = _time_left()
        if left is not None and max(wait or 0.0, retry.get_backoff_time()) >= left:
            # The pause before the next attempt would outlast the call's
            # deadline: stop now and hand up what we have (the reply, or the error).
            raise urllib3.exceptions.MaxRetryError(
                _pool, url or "", error or urllib3.exceptions.ResponseError("the call's total deadline would pass")
            )
        return retry


def make_retry(
    *,
    status_retries: int = 2,
    backoff_factor: float = 0.25,
    backoff_max: float = 2.0,
    retry_after_cap: float = RETRY_AFTER_CAP_SECONDS,
) -> ProviderRetry:
    """The retry policy every provider shares."""
    retry = ProviderRetry(
        total=status_retries + 1,
        # A failed connect never reached the provider, so one retry is safe for
        # any method. A read error may have, so it is never retried here.
        connect=1,
        read=False,
        other=0,
        redirect=False,
        status=status_retries,
        allowed_methods=IDEMPOTENT_METHODS,
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff_factor,
        backoff_max=backoff_max,
        raise_on_status=False,
        respect_retry_after_header=True,
    )
    retry.retry_after_cap = retry_after_cap
    return retry


def make_session(*, retry: Retry | None = None, pool_size: int = POOL_SIZE) -> requests.Session:
    """A session for provider calls: pooled, retrying idempotent calls, keeping no cookies."""
    session = requests.Session()
    # The session is shared by every connection of every client: a cookie one
    # provider set for one user must never ride along with another user's call.
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
    adapter = ProviderAdapter(
        max_retries=retry if retry is not None else make_retry(),
        pool_connections=pool_size,
        pool_maxsize=pool_size,
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    _environment_apply(session)
    return session


def _environment_apply(session: requests.Session) -> None:
    """Read the environment's network settings once instead of on every call.

    By default requests looks at the proxy variables, ``~/.netrc`` and the CA
    bundle variables on every request: file system calls on the hot path, and
    a ``.netrc`` entry would even attach a stored password to a provider call.
    Without a proxy configured, the session stops trusting the environment and
    keeps only a CA bundle named there. With a proxy, it keeps the default so
    ``NO_PROXY`` still applies per host.
    """
    proxies = {scheme: url for scheme, url in urllib.request.getproxies().items() if scheme != "no"}
    if proxies:
        return
    session.trust_env = False
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle


_shared_session: requests.Session | None = None
_shared_session_pid: int | None = None
_shared_session_lock = threading.Lock()


def shared_session() -> requests.Session:
    """The process-wide pooled session, created on first use (and again after a fork).

    A forked worker must not share sockets with its parent, hence the pid check.
    """
    global _shared_session, _shared_session_pid
    pid = os.getpid()
    with _shared_session_lock:
        if _shared_session is None or _shared_session_pid != pid:
            _shared_session = make_session()
            _shared_session_pid = pid
        return _shared_session
