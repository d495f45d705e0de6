"""What the contract tests use to reach the sandbox: over HTTP only, never by import.

:class:`Sandbox` drives the control API (``/sandbox/_control/``) of a live
server; :func:`browser_consent` plays the user on a consent or Connect page;
:func:`check` runs a client the way the lifecycle does (base.py, "The
access_rejected mechanism"), so a scenario ends in the outcome the portal
would act on. :func:`refusing_port` and :func:`unanswered_port` stand in for a
provider that cannot be reached.
"""

from __future__ import annotations

import dataclasses
import select
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from connections.providers.base import AccountData, ConnectionState, Grant, IssuedCredential, ProviderClient
from connections.providers.errors import ProviderError
from tests import sandbox_client
from tests.sandbox_client import ConsentAnswer, SandboxControl

# Generous for a local server; a test that hits it has hung, not been slow.
HTTP_TIMEOUT = 10.0
# How long to wait for a request the sandbox is still sleeping through (a
# latency or hang fault) to finish and reach the request log.
LOG_WAIT_SECONDS = 8.0


@dataclass(frozen=True)
class LoggedCall:
    """One row of the sandbox's request log."""

    method: str
    path: str
    status: int
    grant_type: str = ""
    fault: str = ""


class Sandbox(SandboxControl):
    """The sandbox behind a live server, driven through its control API; its log read as :class:`LoggedCall`."""

    timeout = HTTP_TIMEOUT
    log_wait_seconds = LOG_WAIT_SECONDS

    def calls(self, provider: str) -> list[LoggedCall]:
        """The request log of one mount, oldest first."""
        return [_logged(row) for row in self.requests(provider)]

    def wait_for_calls(self, provider: str, count: int) -> list[LoggedCall]:
        """The log once it holds ``count`` calls: a request the sandbox slept through is logged late.

        Waiting also keeps a test from ending while the sandbox still works on
        its request. Returns what is there after the wait even if it is short.
        """
        return [_logged(row) for row in self.wait_for_requests(provider, count)]


def _logged(row: Mapping[str, Any]) -> LoggedCall:
    return LoggedCall(
        method=row["method"],
        path=row["path"],
        status=row["status"],
        grant_type=row["grant_type"],
        fault=row["fault"],
    )


class MovableClock:
    """Real time plus an offset a test moves forward, for a client's ``clock``."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


# --- The user at a consent page ---------------------------------------------------


def consent_page(url: str) -> requests.Response:
    """GET an authorize / Connect URL as a browser would (no redirects followed)."""
    return requests.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT)


def browser_consent(url: str, *, decision: str = "approve", username: str | None = None) -> ConsentAnswer:
    """Open the page at ``url``, submit ``decision``, and capture the redirect without following it.

    The form is posted with the page's CSRF token and cookie, and the username
    the page pre-fills (else none) unless ``username`` is given, as a browser would.
    """
    return sandbox_client.browser_consent(url, decision=decision, username=username, timeout=HTTP_TIMEOUT)


# --- A provider that cannot be reached ------------------------------------------------


@contextmanager
def refusing_port() -> Iterator[int]:
    """A local port that refuses connections: bound but not listening, so nothing else can take it meanwhile."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound.getsockname()[1]


@contextmanager
def unanswered_port() -> Iterator[int]:
    """A local port where connecting times out: it listens, but its accept queue is full and nobody accepts.

    With a backlog of 0 the kernel queues a single connection; once one is
    queued it drops every further SYN, so a client waits out its connect timeout.
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(2)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
            # The first filler's handshake completes (it is the one queued).
            select.select([], fillers[:1], [], 1.0)
            yield port
        finally:
            for filler in fillers:
                filler.close()


# --- Running a client as the lifecycle does ------------------------------------------


def connection_from(grant: Grant, *, platform: str) -> ConnectionState:
    """The ConnectionState the portal would hold after storing ``grant``."""
    return ConnectionState(
        platform=platform,
        external_account_id=grant.external_account_id,
        credentials={credential.kind: credential for credential in grant.credentials},
        grouping=dict(grant.grouping),
    )


def with_credentials(connection: ConnectionState, issued: Sequence[IssuedCredential]) -> ConnectionState:
    """``connection`` after storing renewed credentials (one per kind, the new one wins)."""
    return dataclasses.replace(
        connection, credentials={**connection.credentials, **{credential.kind: credential for credential in issued}}
    )


def check(client: ProviderClient, connection: ConnectionState) -> tuple[ConnectionState, Sequence[AccountData]]:
    """Renew when due, probe; after one ``access_rejected``, renew, store and probe once more.

    Returns the connection with whatever was renewed, and the accounts; raises
    the error the lifecycle would act on (a second rejection, or a permanent
    error from the renewal itself, stands).
    """
    renewed = False
    due = client.renewal_due_at(connection)
    if due is not None and due <= client.now():
        connection = with_credentials(connection, client.renew(connection=connection))
        renewed = True
    try:
        return connection, client.probe(connection=connection)
    except ProviderError as rejected:
        if not rejected.access_rejected or renewed:
            raise
        issued = client.renew(connection=connection)
        if not issued:
            raise
    connection = with_credentials(connection, issued)
    return connection, client.probe(connection=connection)


def secret_values(connection: ConnectionState, *extra: str) -> list[str]:
    """Every secret a message about ``connection`` must not contain."""
    return [c.value for c in connection.credentials.values() if c.value] + [value for value in extra if value]


def assert_no_secret_in(error: BaseException, secrets: Sequence[str]) -> None:
    texts = [str(error), repr(error), getattr(error, "message", "")]
    for secret in secrets:
        assert all(secret not in text for text in texts), "a secret surfaced in an error"
