"""The sandbox as the live-server suites reach it: over HTTP only, never by import.

:class:`SandboxControl` drives the control API under ``/sandbox/_control/`` of
a live server; :func:`browser_consent` plays the user on a consent or Connect
page; :func:`sandbox_apps` points a ProviderApp per provider at it. Shared
by the end-to-end, fault-tolerance, security and contract suites; what only
one suite needs stays in that suite's ``support`` module.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import requests
from django.conf import settings

from connections import models as m
from tests.factories import ConnectionFactory, ProviderAppFactory

HTTP_TIMEOUT = 15.0
# A request the sandbox is still sleeping through (latency or hang fault)
# reaches the log late; wait this long for it before looking.
LOG_WAIT_SECONDS = 10.0
CONTROL_TOKEN_HEADER = "X-Sandbox-Control-Token"


def control_headers() -> dict[str, str]:
    """The headers a control call needs: the control token, when this run has one.

    The token is the setting, which the portal reads from the environment: a
    live server in this process, and a ``run_sandbox`` child that inherits
    the environment, expect the same one.
    """
    token: str = settings.SANDBOX_CONTROL_TOKEN
    return {CONTROL_TOKEN_HEADER: token} if token else {}


class SandboxControl:
    """The control API of the sandbox mounted in a live server.

    ``timeout`` bounds every control call; ``log_wait_seconds`` bounds
    :meth:`wait_for_requests`. A suite may override either as a class attribute.
    """

    timeout: float = HTTP_TIMEOUT
    log_wait_seconds: float = LOG_WAIT_SECONDS

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url.rstrip("/")
        self.url = f"{self.server_url}/sandbox"
        self.http = requests.Session()

    def base_url(self, mount: str) -> str:
        """What a ProviderApp's ``base_url`` is for this mount (``coinify``, ``bloquo-production``...)."""
        return f"{self.url}/{mount}"

    def call(self, method: str, endpoint: str, body: Mapping[str, Any] | None = None, **params: Any) -> Any:
        """One control call; asserts a 200 or 201 and returns the JSON reply. ``None`` params are dropped."""
        reply = self.http.request(
            method,
            f"{self.url}/_control/{endpoint}",
            json=dict(body) if body is not None else None,
            params={k: v for k, v in params.items() if v is not None} or None,
            headers=control_headers(),
            timeout=self.timeout,
        )
        assert reply.status_code in (200, 201), f"control {method} {endpoint}: HTTP {reply.status_code} {reply.text}"
        return reply.json()

    def reset(self) -> None:
        self.call("POST", "reset", {})

    def close(self) -> None:
        self.http.close()

    def register_app(self, provider: str, *, client_id: str, client_secret: str = "", redirect_uri: str = "") -> None:
        # The control API reads a field it is not sent as empty, so empty ones are left out.
        body = {"provider": provider, "client_id": client_id}
        if client_secret:
            body["client_secret"] = client_secret
        if redirect_uri:
            body["redirect_uri"] = redirect_uri
        self.call("POST", "apps", body)

    def subject(self, provider: str, **fields: Any) -> dict[str, Any]:
        return self.call("POST", "subjects", {"provider": provider, **fields})

    def act(self, provider: str, action: str, **subject: Any) -> int:
        """Revoke, expire, deactivate, delink or restore a subject; how many rows it changed."""
        return int(self.call("POST", "actions", {"provider": provider, "action": action, **subject})["affected"])

    def lifetimes(self, provider: str, **seconds: int) -> dict[str, int]:
        return self.call("POST", "lifetimes", {"provider": provider, **seconds})["lifetimes"]

    def fault(self, provider: str, **rule: Any) -> dict[str, Any]:
        return self.call("POST", "faults", {"provider": provider, **rule})

    def clear_faults(self) -> None:
        self.call("DELETE", "faults")

    def requests(self, provider: str | None = None, **filters: Any) -> list[dict[str, Any]]:
        """The request log (of one mount when ``provider`` is given), oldest first (``after=<id>`` for later)."""
        return self.call("GET", "requests", provider=provider, **filters)["requests"]

    def last_request_id(self) -> int:
        """The id of the newest logged request (0 when none): a bookmark for ``requests(after=...)``."""
        return max((row["id"] for row in self.requests()), default=0)

    def clear_log(self) -> None:
        self.call("DELETE", "requests")

    def wait_for_requests(self, provider: str, count: int, **filters: Any) -> list[dict[str, Any]]:
        """The log once it holds ``count`` rows (a request the sandbox slept through is logged late).

        Waiting also keeps a test from ending while the sandbox still works on
        its request. Returns what is there after the wait even if it is short.
        """
        deadline = time.monotonic() + self.log_wait_seconds
        rows = self.requests(provider, **filters)
        while len(rows) < count and time.monotonic() < deadline:
            time.sleep(0.05)
            rows = self.requests(provider, **filters)
        return rows


# --- The user at a consent page ---------------------------------------------------

_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_ACTION = re.compile(r'<form method="post" action="([^"]+)"')
_USERNAME_VALUE = re.compile(r'id="id_username"[^>]*\svalue="([^"]*)"')


@contextmanager
def sandbox_session(live_server_url: str, settings: Any) -> Iterator[SandboxControl]:
    """The live server's sandbox, emptied, for one test; left without faults and connections after it.

    The rate bucket is the database's (``RATE_LIMIT_REDIS_URL`` empty): its
    state goes with the test database. Provider clients are cached per thread
    by app row, so a new world starts with new ones. Kept-alive HTTP
    connections would pin a live-server thread, and with it a database
    session, past the test database: both sides close theirs at the end.
    """
    from connections import lifecycle
    from connections.providers.transport import shared_session

    settings.RATE_LIMIT_REDIS_URL = ""
    control = SandboxControl(live_server_url)
    control.reset()
    lifecycle.clients_forget()
    try:
        yield control
    finally:
        # Let requests the sandbox is still sleeping through finish before
        # the database is flushed under them.
        control.clear_faults()
        lifecycle.clients_forget()
        control.close()
        shared_session().close()


@dataclass(frozen=True)
class ConsentAnswer:
    """Where the provider sent the browser after the user's decision."""

    location: str
    params: dict[str, str]


def browser_consent(
    url: str,
    *,
    decision: str = "approve",
    username: str | None = None,
    blank_username: str = "",
    timeout: float = HTTP_TIMEOUT,
) -> ConsentAnswer:
    """Open the page at ``url``, submit ``decision``, and capture the redirect without following it.

    A fresh browser session each time: the form is posted with the page's CSRF
    token and cookie, and with ``username`` if given, else the username the
    page pre-fills, else ``blank_username``.
    """
    # Closed on the way out: a kept-alive socket left to the garbage collector
    # keeps a server thread, and its database connection, alive.
    with requests.Session() as browser:
        page = browser.get(url, allow_redirects=False, timeout=timeout)
        assert page.status_code == 200, f"consent page: HTTP {page.status_code}"
        token = _CSRF.search(page.text)
        action = _ACTION.search(page.text)
        assert token, "the consent page has no CSRF token"
        assert action, "the consent page has no form"
        if username is None:
            prefilled = _USERNAME_VALUE.search(page.text)
            username = html.unescape(prefilled.group(1)) if prefilled else blank_username
        answer = browser.post(
            urljoin(url, html.unescape(action.group(1))),
            data={"csrfmiddlewaretoken": token.group(1), "decision": decision, "username": username},
            headers={"Referer": url},
            allow_redirects=False,
            timeout=timeout,
        )
    assert answer.status_code == 302, f"consent answer: HTTP {answer.status_code}"
    location = answer.headers["Location"]
    return ConsentAnswer(location=location, params=dict(parse_qsl(urlsplit(location).query)))


# --- The portal's side: ProviderApps pointed at the sandbox --------------------------------


@dataclass(frozen=True)
class AppIds:
    """The public ids a suite's ProviderApps use: Turnqey client id, Coinify partner id, Dapi app key."""

    turnqey: str
    coinify: str
    dapi: str


@dataclass
class Portal:
    """A household with one client, and one ProviderApp per provider pointed at the sandbox."""

    household: m.Household
    client: m.Client
    apps: dict[str, m.ProviderApp]


def sandbox_apps(
    sandbox: SandboxControl,
    *,
    ids: AppIds,
    turnqey_secret: str,
    dapi_secret: str,
    name: str,
    redirect_base: str,
    **app_fields: Any,
) -> dict[str, m.ProviderApp]:
    """One ProviderApp per provider on ``sandbox``, keyed by provider, each registered there with the same ids.

    Bloquo needs no app (each client brings a key pair); Coinify has no secret.
    ``app_fields`` go to every ProviderApp as they are (``rate_limit_per_second=0``
    for no throttling).
    """
    apps = {
        "turnqey": ProviderAppFactory(
            provider=m.Provider.TURNQEY,
            name=name,
            base_url=sandbox.base_url("turnqey"),
            client_id=ids.turnqey,
            client_secret=turnqey_secret,
            redirect_uri=f"{redirect_base}/connect/turnqey/callback/",
            **app_fields,
        ),
        "coinify": ProviderAppFactory(
            provider=m.Provider.COINIFY,
            name=name,
            base_url=sandbox.base_url("coinify"),
            client_id=ids.coinify,
            client_secret=None,
            **app_fields,
        ),
        "bloquo": ProviderAppFactory(
            provider=m.Provider.BLOQUO,
            name=name,
            base_url=sandbox.base_url("bloquo"),
            client_id="",
            client_secret=None,
            **app_fields,
        ),
        "dapi": ProviderAppFactory(
            provider=m.Provider.DAPI,
            name=name,
            base_url=sandbox.base_url("dapi"),
            client_id=ids.dapi,
            client_secret=dapi_secret,
            redirect_uri=f"{redirect_base}/connect/dapi/callback/",
            **app_fields,
        ),
    }
    sandbox.register_app(
        "turnqey", client_id=ids.turnqey, client_secret=turnqey_secret, redirect_uri=apps["turnqey"].redirect_uri
    )
    sandbox.register_app("coinify", client_id=ids.coinify)
    sandbox.register_app("dapi", client_id=ids.dapi, client_secret=dapi_secret, redirect_uri=apps["dapi"].redirect_uri)
    return apps


def pending_connection(portal: Portal, provider: str, platform: str) -> m.Connection:
    """The row a connect starts from (what authorization_start creates): pending, unscheduled."""
    return ConnectionFactory(
        client=portal.client,
        household=portal.household,
        provider_app=portal.apps[provider],
        platform=platform,
        status=m.Status.PENDING,
        external_account_id="",
        next_check_at=None,
        last_success_at=None,
        connected_at=None,
    )
