"""One webhook POST: to the checked address only, bounded in time and in what is read, redirects not followed.

Built on urllib3 directly rather than ``requests`` because the request has
to go to the address :func:`.addresses.delivery_target` checked, while TLS
still verifies the certificate for the host name (``server_hostname`` and
``assert_hostname``); a library that resolves the name again could be handed
a different, private, address by then. Never raises: every outcome is a
:class:`Reply`.

Bounds: the whole attempt (connect, send, the reply's headers, reading the
body) has ``WEBHOOK_TIMEOUT_SECONDS``; at most ``WEBHOOK_RESPONSE_MAX_BYTES``
of the reply are read, then the connection is dropped; a 3xx is a failed
attempt, its ``Location`` never followed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError, SSLError
from urllib3.exceptions import TimeoutError as TimedOut

from connections.logging import redact

from .addresses import Target

USER_AGENT = "ConnectionsPortal-Webhooks/1"
EXCERPT_CHARS = 500
CHUNK_BYTES = 8192


@dataclass(frozen=True)
class Reply:
    """What one POST came to: the status (None when no reply came), how long it took, what went wrong."""

    status_code: int | None
    latency_ms: int
    error: str = ""
    excerpt: str = ""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _pool(target: Target, address: str, timeout: float) -> urllib3.HTTPConnectionPool:
    limits = urllib3.Timeout(connect=min(timeout, 5.0), read=timeout)
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            address,
            target.port,
            timeout=limits,
            retries=False,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    return urllib3.HTTPConnectionPool(address, target.port, timeout=limits, retries=False, maxsize=1)


def post(target: Target, *, body: bytes, headers: Mapping[str, str], timeout: float, max_bytes: int) -> Reply:
    """POST ``body`` to ``target`` (trying its checked addresses in order until one connects)."""
    started = time.monotonic()
    deadline = started + timeout
    request_headers = {
        **headers,
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
    last_error = "no address to connect to"
    for address in target.addresses:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        pool = _pool(target, address, left)
        try:
            response = pool.urlopen(
                "POST",
                target.path,
                body=body,
                headers=request_headers,
                redirect=False,
                retries=False,
                preload_content=False,
                assert_same_host=False,
            )
        except NewConnectionError:
            last_error = f"could not connect to {target.host_header}"
            pool.close()
            continue
        except TimedOut:
            pool.close()
            return Reply(None, _ms(started), error=f"no reply within {timeout:g} s")
        except SSLError:
            pool.close()
            return Reply(None, _ms(started), error="the TLS handshake or certificate check failed")
        except HTTPError as exc:
            pool.close()
            return Reply(None, _ms(started), error=f"the connection failed ({type(exc).__name__})")
        try:
            excerpt, cut = _read_capped(response, deadline=deadline, max_bytes=max_bytes)
        finally:
            response.release_conn()
            pool.close()
        status = response.status
        error = ""
        if 300 <= status < 400:
            error = "redirects are not followed"
        elif cut:
            error = "stopped reading the reply at the size or time limit"
        if error and 200 <= status < 300:
            error = ""  # the status decides; a long body after a 2xx is the receiver's business
        return Reply(status, _ms(started), error=error, excerpt=excerpt)
    return Reply(None, _ms(started), error=last_error)


def _read_capped(response: urllib3.BaseHTTPResponse, *, deadline: float, max_bytes: int) -> tuple[str, bool]:
    """Read at most ``max_bytes`` of the body before ``deadline``. Returns (masked excerpt, whether it was cut)."""
    received = bytearray()
    cut = False
    try:
        while True:
            if time.monotonic() >= deadline or len(received) >= max_bytes:
                cut = True
                break
            # Each read waits at most for what is left of the budget, and read1
            # returns what one socket read brings: a receiver that drips its
            # reply cannot hold the attempt past the deadline.
            sock = getattr(response.connection, "sock", None)
            if sock is not None:
                sock.settimeout(max(0.05, deadline - time.monotonic()))
            chunk = response.read1(min(CHUNK_BYTES, max_bytes - len(received)))
            if not chunk:
                break
            received += chunk
    except (HTTPError, OSError):  # a read timed out, or the receiver hung up mid-reply
        cut = True
    text = bytes(received[: EXCERPT_CHARS * 4]).decode("utf-8", errors="replace")
    return redact(" ".join(text.split()))[:EXCERPT_CHARS], cut


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
