"""What the contract tests use to reach the sandbox: over HTTP only, never by import.

:class:`Sandbox` drives the control API (``/sandbox/_control/``) of a live
server; :func:`browser_consent` plays the user on a consent or Connect page;
:func:`check` runs a client the way the lifecycle does (base.py, "The
access_rejected mechanism"), so a scenario ends in the outcome the portal
would act on.
"""

from __future__ import annotations

import dataclasses
import html
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import requests

from connections.providers.base import (
    AccountData,
    ConnectionState,
    Grant,
    IssuedCredential,
    ProviderClient,
    ProviderError,
)

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


class Sandbox:
    """The sandbox behind a live server, driven through its control API."""

    def __init__(self, server_url: str) -> None:
        self.url = server_url.rstrip("/") + "/sandbox"
        self.http = requests.Session()

    def base_url(self, mount: str) -> str:
        """What a ProviderApp's ``base_url`` is for this mount (``coinify``, ``bloquo-production``...)."""
        return f"{self.url}/{mount}"

    def _call(self, method: str, path: str, *, body: Mapping[str, Any] | None = None, **params: Any) -> Any:
        reply = self.http.request(
            method,
            f"{self.url}/_control/{path}",
            json=dict(body) if body is not None else None,
            params={k: v for k, v in params.items() if v is not None} or None,
            timeout=HTTP_TIMEOUT,
        )
        assert reply.status_code in (200, 201), f"control {method} {path}: HTTP {reply.status_code} {reply.text}"
        return reply.json()

    def reset(self) -> None:
        self._call("POST", "reset", body={})

    def register_app(self, provider: str, *, client_id: str, client_secret: str = "", redirect_uri: str = "") -> None:
        self._call(
            "POST",
            "apps",
            body={
                "provider": provider,
                "client_id": client_id,
                "client_secret": client_secret,
                "redirect_uri": redirect_uri,
            },
        )

    def subject(self, provider: str, **fields: Any) -> dict[str, Any]:
        return self._call("POST", "subjects", body={"provider": provider, **fields})

    def act(self, provider: str, action: str, **subject: Any) -> int:
        """Revoke, expire, deactivate, delink or restore a subject; how many rows changed."""
        reply = self._call("POST", "actions", body={"provider": provider, "action": action, **subject})
        return int(reply["affected"])

    def lifetimes(self, provider: str, **seconds: int) -> dict[str, int]:
        return self._call("POST", "lifetimes", body={"provider": provider, **seconds})["lifetimes"]

    def fault(self, provider: str, **rule: Any) -> dict[str, Any]:
        return self._call("POST", "faults", body={"provider": provider, **rule})

    def calls(self, provider: str) -> list[LoggedCall]:
        """The request log of one mount, oldest first."""
        rows = self._call("GET", "requests", provider=provider)["requests"]
        return [
            LoggedCall(
                method=row["method"],
                path=row["path"],
                status=row["status"],
                grant_type=row["grant_type"],
                fault=row["fault"],
            )
            for row in rows
        ]

    def clear_log(self) -> None:
        self._call("DELETE", "requests")

    def wait_for_calls(self, provider: str, count: int) -> list[LoggedCall]:
        """The log once it holds ``count`` calls: a request the sandbox slept through is logged late.

        Waiting also keeps a test from ending while the sandbox still works on
        its request. Returns what is there after the wait even if it is short.
        """
        deadline = time.monotonic() + LOG_WAIT_SECONDS
        calls = self.calls(provider)
        while len(calls) < count and time.monotonic() < deadline:
            time.sleep(0.05)
            calls = self.calls(provider)
        return calls


class MovableClock:
    """Real time plus an offset a test moves forward, for a client's ``clock``."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


# --- The user at a consent page ---------------------------------------------------

_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_ACTION = re.compile(r'<form method="post" action="([^"]+)"')
_USERNAME_VALUE = re.compile(r'id="id_username"[^>]*\svalue="([^"]*)"')


@dataclass(frozen=True)
class ConsentAnswer:
    """Where the provider sent the browser after the user's decision."""

    location: str
    params: dict[str, str]


def consent_page(url: str) -> requests.Response:
    """GET an authorize / Connect URL as a browser would (no redirects followed)."""
    return requests.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT)


def browser_consent(url: str, *, decision: str = "approve", username: str | None = None) -> ConsentAnswer:
    """Open the page at ``url``, submit ``decision``, and capture the redirect without following it.

    The form is posted with the page's CSRF token and cookie, and the username
    the page pre-fills unless ``username`` is given, as a browser would.
    """
    # Closed on the way out: a kept-alive socket left to the garbage collector
    # keeps a server thread, and its database connection, alive.
    with requests.Session() as browser:
        page = browser.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT)
        assert page.status_code == 200, f"consent page: HTTP {page.status_code}"
        token = _CSRF.search(page.text)
        action = _ACTION.search(page.text)
        assert token, "the consent page has no CSRF token"
        assert action, "the consent page has no form"
        prefilled = _USERNAME_VALUE.search(page.text)
        form = {
            "csrfmiddlewaretoken": token.group(1),
            "decision": decision,
            "username": username if username is not None else html.unescape(prefilled.group(1)) if prefilled else "",
        }
        answer = browser.post(
            urljoin(url, html.unescape(action.group(1))),
            data=form,
            headers={"Referer": url},
            allow_redirects=False,
            timeout=HTTP_TIMEOUT,
        )
    assert answer.status_code == 302, f"consent answer: HTTP {answer.status_code}"
    location = answer.headers["Location"]
    return ConsentAnswer(location=location, params=dict(parse_qsl(urlsplit(location).query)))


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
    if client.needs_renewal(connection):
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
