"""The end-to-end world: the sandbox behind a live server, a clock the test moves, and the beat's schedule.

Connections are made the way the portal makes them: the real provider client
talks to the sandbox over HTTP (typed credentials for Coinify and Bloquo; for
Turnqey and Dapi the user's consent page is driven with ``requests``, as a
browser would), and :func:`connections.lifecycle.grant_apply` stores the
grant. Nothing here imports the sandbox app or writes a credential row.

Time. :class:`Clock` replaces ``django.utils.timezone.now`` (read by the
lifecycle, the jobs, the throttles and, through ``sandbox.clock``, by every
expiry the sandbox decides, in the live server's thread too) and the provider
clients' ``utcnow``. The clock only moves when the test says so, so an hour of
token lifetimes passes in a second and every "before it expired" is exact.
"""

from __future__ import annotations

import html
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import requests

from connections import lifecycle, tasks
from connections import models as m
from tests.factories import ConnectionFactory

HTTP_TIMEOUT = 15.0

COINIFY_PARTNER = "e2e-coinify-partner"
TURNQEY_CLIENT = "e2e-turnqey-client"
DAPI_APP_KEY = "e2e-dapi-app-key"
# Where the providers send the browser back; the tests read the redirect, never follow it.
REDIRECT_BASE = "http://testserver"

# The beat's default schedule (connections/management/commands/setup_periodic_tasks.py).
SWEEP_EVERY = timedelta(seconds=60)
APP_TOKENS_EVERY = timedelta(seconds=300)


class Clock:
    """A clock that moves only when told to. ``now`` is timezone-aware UTC."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now

    def move_to(self, moment: datetime) -> datetime:
        """Jump forward to ``moment`` (never backwards)."""
        assert moment >= self._now, "the clock never runs backwards"
        self._now = moment
        return self._now


class SandboxControl:
    """The sandbox's control API under ``/sandbox/_control/`` of the live server."""

    def __init__(self, server_url: str) -> None:
        self.url = server_url.rstrip("/") + "/sandbox"
        self.http = requests.Session()

    def base_url(self, mount: str) -> str:
        return f"{self.url}/{mount}"

    def call(self, method: str, endpoint: str, body: Mapping[str, Any] | None = None, **params: Any) -> Any:
        reply = self.http.request(
            method,
            f"{self.url}/_control/{endpoint}",
            json=dict(body) if body is not None else None,
            params={k: v for k, v in params.items() if v is not None} or None,
            timeout=HTTP_TIMEOUT,
        )
        assert reply.status_code in (200, 201), f"control {method} {endpoint}: HTTP {reply.status_code} {reply.text}"
        return reply.json()

    def reset(self) -> None:
        self.call("POST", "reset", {})

    def close(self) -> None:
        self.http.close()

    def register_app(self, provider: str, **fields: str) -> None:
        self.call("POST", "apps", {"provider": provider, **fields})

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

    def requests(self, provider: str, **filters: Any) -> list[dict[str, Any]]:
        """The request log of one mount, oldest first (``after=<id>`` for what came later)."""
        return self.call("GET", "requests", provider=provider, **filters)["requests"]

    def last_request_id(self) -> int:
        """The id of the newest logged request (0 when none): a bookmark for ``requests(after=...)``."""
        rows = self.call("GET", "requests")["requests"]
        return max((row["id"] for row in rows), default=0)


@dataclass
class Portal:
    """One household with one client, and one ProviderApp per provider pointed at the sandbox."""

    household: m.Household
    client: m.Client
    apps: dict[str, m.ProviderApp]


# --- The user at a consent page ---------------------------------------------------------

_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_ACTION = re.compile(r'<form method="post" action="([^"]+)"')
_USERNAME = re.compile(r'id="id_username"[^>]*\svalue="([^"]*)"')


def consent(url: str, *, username: str | None = None) -> dict[str, str]:
    """Open a consent or Connect page, approve, and return the redirect's query (not followed).

    A fresh browser session each time: the page's CSRF cookie and token go back
    with the form, and the username the page pre-fills is kept unless given.
    """
    with requests.Session() as browser:
        page = browser.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT)
        assert page.status_code == 200, f"consent page: HTTP {page.status_code}"
        token, action = _CSRF.search(page.text), _ACTION.search(page.text)
        assert token, "the consent page has no CSRF token"
        assert action, "the consent page has no form"
        prefilled = _USERNAME.search(page.text)
        if username is None:
            username = html.unescape(prefilled.group(1)) if prefilled else f"user-{uuid.uuid4().hex[:8]}"
        answer = browser.post(
            urljoin(url, html.unescape(action.group(1))),
            data={"csrfmiddlewaretoken": token.group(1), "decision": "approve", "username": username},
            headers={"Referer": url},
            allow_redirects=False,
            timeout=HTTP_TIMEOUT,
        )
    assert answer.status_code == 302, f"consent answer: HTTP {answer.status_code}"
    return dict(parse_qsl(urlsplit(answer.headers["Location"]).query))


# --- Connections, made the portal's way --------------------------------------------------


def _pending(portal: Portal, provider: str, platform: str) -> m.Connection:
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


def _apply(connection: m.Connection, grant: Any) -> m.Connection:
    return lifecycle.grant_apply(connection=connection, grant=grant, purpose="connect", actor_label="e2e:connect")


def connect_coinify(sandbox: SandboxControl, portal: Portal) -> m.Connection:
    """The client types their Coinify email and password (used once, never stored)."""
    email, password = f"client-{uuid.uuid4().hex[:8]}@example.test", secrets.token_urlsafe(12)
    sandbox.subject("coinify", email=email, password=password, partner_id=COINIFY_PARTNER)
    connection = _pending(portal, "coinify", "coinify")
    grant = lifecycle.client_for_app(app=portal.apps["coinify"]).connect_with_credentials(
        fields={"email": email, "password": password}, platform="coinify"
    )
    return _apply(connection, grant)


def connect_bloquo(sandbox: SandboxControl, portal: Portal) -> tuple[m.Connection, str]:
    """The client types a Bloquo key pair. Returns the connection and the sandbox's customer id."""
    pair = sandbox.subject("bloquo")
    connection = _pending(portal, "bloquo", "bloquo")
    grant = lifecycle.client_for_app(app=portal.apps["bloquo"]).connect_with_credentials(
        fields={"clientId": pair["client_id"], "clientSecret": pair["client_secret"]}, platform="bloquo"
    )
    return _apply(connection, grant), pair["customer_id"]


def connect_turnqey(portal: Portal, *, platform: str = "coinbase") -> m.Connection:
    """The client approves at Turnqey's consent page; the callback's parameters complete it."""
    client = lifecycle.client_for_app(app=portal.apps["turnqey"])
    identity = str(portal.client.identity)
    start = client.start_authorization(
        state=secrets.token_urlsafe(32),
        platform=platform,
        identity=identity,
        grouping={},
        redirect_uri=portal.apps["turnqey"].redirect_uri,
    )
    params = consent(start.redirect_url)
    assert params.get("status") == "success", params
    connection = _pending(portal, "turnqey", platform)
    return _apply(connection, client.complete_authorization(params=params, platform=platform, identity=identity))


def connect_dapi(portal: Portal, *, platform: str = "binance") -> m.Connection:
    """The client signs in on Dapi's Connect page; the access code is exchanged within its 30 minutes."""
    client = lifecycle.client_for_app(app=portal.apps["dapi"])
    identity = str(portal.client.identity)
    start = client.start_authorization(
        state=secrets.token_urlsafe(32),
        platform=platform,
        identity=identity,
        grouping={},
        redirect_uri=portal.apps["dapi"].redirect_uri,
    )
    params = consent(start.redirect_url, username=f"user-{uuid.uuid4().hex[:8]}")
    assert "accessCode" in params, {k: v for k, v in params.items() if k in ("error", "error_description")}
    connection = _pending(portal, "dapi", platform)
    return _apply(connection, client.complete_authorization(params=params, platform=platform, identity=identity))


# --- The beat, minute by minute -------------------------------------------------------------


class Beat:
    """Fires the periodic tasks on the default schedule as the clock moves (eager Celery).

    The sweep every minute and the app-token refresh every five, through the
    Celery tasks themselves (slot lock, sweep, enqueue on commit, checks), so
    nothing is called that the real beat would not call.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._next_sweep = clock.now()
        self._next_app_tokens = clock.now()

    def tick(self) -> set[str]:
        """Run whatever is due now; returns the names of the tasks that ran."""
        now = self.clock.now()
        ran: set[str] = set()
        if now >= self._next_app_tokens:
            tasks.refresh_app_tokens.delay()
            self._next_app_tokens = now + APP_TOKENS_EVERY
            ran.add(tasks.refresh_app_tokens.name)
        if now >= self._next_sweep:
            tasks.sweep.delay()
            self._next_sweep = now + SWEEP_EVERY
            ran.add(tasks.sweep.name)
        return ran


def fresh(connection: m.Connection) -> m.Connection:
    return m.Connection.objects.get(pk=connection.pk)


def credential(connection: m.Connection, kind: str) -> m.Credential | None:
    return m.Credential.objects.filter(connection_id=connection.pk, kind=kind).first()


def events(connection: m.Connection, *kinds: str) -> list[m.ConnectionEvent]:
    queryset = m.ConnectionEvent.objects.filter(connection_id=connection.pk)
    if kinds:
        queryset = queryset.filter(kind__in=kinds)
    return list(queryset.order_by("created_at", "id"))
