"""A provider down for ten simulated minutes: the breaker opens, calls stay bounded, nothing flaps.

Time is a clock the test moves: the sandbox reads it (``sandbox.clock.now``,
so the fault expires when the clock says so) and the sweep and every check
are given it (``now=``), so ten minutes pass in a few seconds. Every step the
sweep claims what is due and each claimed connection is checked, exactly as
the beat and the workers would.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

import sandbox.clock
from connections import jobs, lifecycle
from connections import models as m

from .support import Portal, SandboxControl, connect_coinify, events, statuses_entered

OUTAGE_SECONDS = 600
STEP_SECONDS = 10
THRESHOLD = 3
COOLDOWN_SECONDS = 60
# urllib3 sends an idempotent request up to three times inside one check.
ATTEMPTS_PER_CHECK = 3


@dataclass
class Clock:
    now: datetime
    history: list[str] = field(default_factory=list)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    controlled = Clock(now=timezone.now())
    monkeypatch.setattr(sandbox.clock, "now", lambda: controlled.now)
    return controlled


@pytest.fixture
def outage_settings(settings: Any) -> None:
    settings.BREAKER_FAILURE_THRESHOLD = THRESHOLD
    settings.BREAKER_WINDOW_SECONDS = 60
    settings.BREAKER_COOLDOWN_SECONDS = COOLDOWN_SECONDS
    # Short backoff and probe interval: without a breaker these connections
    # would be retried every few seconds all through the outage.
    settings.LIFECYCLE_BACKOFF_BASE_SECONDS = 5
    settings.LIFECYCLE_BACKOFF_CAP_SECONDS = 60
    settings.LIFECYCLE_PROBE_INTERVAL_SECONDS = 60
    settings.LIFECYCLE_MIN_RECHECK_SECONDS = 5


def _run_beat(clock: Clock, app: m.ProviderApp, seconds: int) -> list[str]:
    """Advance the clock step by step; each step, sweep and check what is due. Returns breaker states seen."""
    breaker_states = []
    for _ in range(seconds // STEP_SECONDS):
        clock.advance(STEP_SECONDS)
        claimed: list[int] = []
        jobs.sweep_run(publish=claimed.extend, now=clock.now)
        for connection_id in claimed:
            lifecycle.connection_check(connection_id=connection_id, actor_label="job:check", now=clock.now)
        app.refresh_from_db()
        breaker_states.append(app.breaker_state)
    return breaker_states


def test_a_ten_minute_outage_opens_the_breaker_bounds_calls_and_recovers_without_flapping(
    sandbox: SandboxControl, portal: Portal, clock: Clock, outage_settings: None
) -> None:
    random.seed(20240614)  # jitter decides who goes first; the bounds hold for any seed
    connections = [connect_coinify(sandbox, portal) for _ in range(3)]
    app = portal.apps["coinify"]
    sandbox.clear_log()
    sandbox.fault("coinify", kind="status", status=503, path="/me", seconds=OUTAGE_SECONDS)

    during = _run_beat(clock, app, OUTAGE_SECONDS)
    refused = [r for r in sandbox.requests("coinify", path="/me") if r["status"] == 503]
    after = _run_beat(clock, app, 300)

    # The breaker opened, and after the outage it closed again.
    assert m.ProviderApp.BreakerState.OPEN in during
    assert after[-1] == m.ProviderApp.BreakerState.CLOSED
    # Bounded: the checks that opened the breaker, then at most one trial
    # check per cool-down, each at most ATTEMPTS_PER_CHECK requests.
    trials = OUTAGE_SECONDS // COOLDOWN_SECONDS + 1
    assert len(refused) <= ATTEMPTS_PER_CHECK * (THRESHOLD + trials)
    for connection in connections:
        connection.refresh_from_db()
        entered = statuses_entered(connection)
        # Never flagged for a transient outage, degraded at most once, and back.
        assert m.Status.NEEDS_RECONNECT not in entered
        assert entered.count(m.Status.DEGRADED) <= 1
        assert connection.status == m.Status.ACTIVE
        assert connection.consecutive_failures == 0
        recovered = events(connection, m.ConnectionEvent.Kind.RECOVERED)
        assert len(recovered) == entered.count(m.Status.DEGRADED)
    assert any(events(c, m.ConnectionEvent.Kind.RECOVERED) for c in connections), "nobody was degraded at all"
    # Once the provider is back every connection is read again.
    ok_after = [r for r in sandbox.requests("coinify", path="/me") if r["status"] == 200]
    assert len(ok_after) >= len(connections)


def test_the_breaker_never_changes_a_status_by_itself(
    sandbox: SandboxControl, portal: Portal, clock: Clock, outage_settings: None
) -> None:
    """Deferred checks make no call and write no event: the history shows failures, not deferrals."""
    connections = [connect_coinify(sandbox, portal) for _ in range(6)]
    app = portal.apps["coinify"]
    sandbox.clear_log()
    sandbox.fault("coinify", kind="status", status=503, path="/me", seconds=OUTAGE_SECONDS)

    _run_beat(clock, app, 120)

    failed = m.ConnectionEvent.objects.filter(
        connection__in=connections, kind=m.ConnectionEvent.Kind.CHECK_FAILED
    ).count()
    calls = len(sandbox.requests("coinify", path="/me"))
    assert failed * ATTEMPTS_PER_CHECK >= calls  # every call made belongs to a recorded failed check
    assert failed <= THRESHOLD + 120 // COOLDOWN_SECONDS + 1
    assert not m.Connection.objects.filter(pk__in=[c.pk for c in connections], status=m.Status.NEEDS_RECONNECT)
