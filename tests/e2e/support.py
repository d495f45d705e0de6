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

import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from connections import lifecycle, tasks
from connections import models as m
from connections.providers.base import ProviderClient
from tests.sandbox_client import AppIds, Portal, SandboxControl, browser_consent, pending_connection

COINIFY_PARTNER = "e2e-coinify-partner"
TURNQEY_CLIENT = "e2e-turnqey-client"
DAPI_APP_KEY = "e2e-dapi-app-key"
APP_IDS = AppIds(turnqey=TURNQEY_CLIENT, coinify=COINIFY_PARTNER, dapi=DAPI_APP_KEY)
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


# --- The user at a consent page ---------------------------------------------------------


def consent(url: str, *, username: str | None = None) -> dict[str, str]:
    """Open a consent or Connect page, approve, and return the redirect's query (not followed).

    The username the page pre-fills is kept unless given; a page with none gets a fresh one.
    """
    return browser_consent(url, username=username, blank_username=f"user-{uuid.uuid4().hex[:8]}").params


# --- Connections, made the portal's way --------------------------------------------------


def _apply(connection: m.Connection, grant: Any) -> m.Connection:
    return lifecycle.grant_apply(connection=connection, grant=grant, purpose="connect", actor_label="e2e:connect")


def connect_coinify(sandbox: SandboxControl, portal: Portal) -> m.Connection:
    """The client types their Coinify email and password (used once, never stored)."""
    email, password = f"client-{uuid.uuid4().hex[:8]}@example.test", secrets.token_urlsafe(12)
    sandbox.subject("coinify", email=email, password=password, partner_id=COINIFY_PARTNER)
    connection = pending_connection(portal, "coinify", "coinify")
    grant = lifecycle.client_for_app(app=portal.apps["coinify"]).connect_with_credentials(
        fields={"email": email, "password": password}, platform="coinify"
    )
    return _apply(connection, grant)


def connect_bloquo(sandbox: SandboxControl, portal: Portal) -> tuple[m.Connection, str]:
    """The client types a Bloquo key pair. Returns the connection and the sandbox's customer id."""
    pair = sandbox.subject("bloquo")
    connection = pending_connection(portal, "bloquo", "bloquo")
    grant = lifecycle.client_for_app(app=portal.apps["bloquo"]).connect_with_credentials(
        fields={"clientId": pair["client_id"], "clientSecret": pair["client_secret"]}, platform="bloquo"
    )
    return _apply(connection, grant), pair["customer_id"]


def _authorize(
    portal: Portal, provider: str, platform: str, *, username: str | None = None
) -> tuple[ProviderClient, str, dict[str, str]]:
    """Start ``provider``'s redirect flow for the portal's client and approve at its page.

    Returns the client, the identity the flow ran for, and the callback's query.
    """
    client = lifecycle.client_for_app(app=portal.apps[provider])
    identity = str(portal.client.identity)
    start = client.start_authorization(
        state=secrets.token_urlsafe(32),
        platform=platform,
        identity=identity,
        grouping={},
        redirect_uri=portal.apps[provider].redirect_uri,
    )
    return client, identity, consent(start.redirect_url, username=username)


def connect_turnqey(portal: Portal, *, platform: str = "coinbase") -> m.Connection:
    """The client approves at Turnqey's consent page; the callback's parameters complete it."""
    client, identity, params = _authorize(portal, "turnqey", platform)
    assert params.get("status") == "success", params
    connection = pending_connection(portal, "turnqey", platform)
    return _apply(connection, client.complete_authorization(params=params, platform=platform, identity=identity))


def reconnect_turnqey(portal: Portal, connection: m.Connection) -> m.Connection:
    """The client approves at Turnqey's consent page again; the grant must name the same source account."""
    client, identity, params = _authorize(portal, "turnqey", connection.platform)
    assert params.get("status") == "success", params
    grant = client.complete_authorization(params=params, platform=connection.platform, identity=identity)
    return lifecycle.grant_apply(connection=connection, grant=grant, purpose="reconnect", actor_label="e2e:reconnect")


def connect_dapi(portal: Portal, *, platform: str = "binance") -> m.Connection:
    """The client signs in on Dapi's Connect page; the access code is exchanged within its 30 minutes."""
    client, identity, params = _authorize(portal, "dapi", platform, username=f"user-{uuid.uuid4().hex[:8]}")
    assert "accessCode" in params, {k: v for k, v in params.items() if k in ("error", "error_description")}
    connection = pending_connection(portal, "dapi", platform)
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
