"""A provider outage: degraded after three failed checks in a row, never a reconnect prompt, back when it ends.

The sandbox answers 503 to everything for twelve minutes of the test's clock;
the beat keeps sweeping every minute. The connection may not be flagged for
reconnecting, its retries back off, its last data stays, and the first check
after the outage brings it back with a RECOVERED event.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from connections import models as m

from .support import (
    Beat,
    Clock,
    Portal,
    SandboxControl,
    connect_bloquo,
    connect_coinify,
    connect_dapi,
    connect_turnqey,
    events,
    fresh,
)

OUTAGE = timedelta(minutes=12)
# Retries back off exponentially: a twelve-minute outage is a handful of
# checks, where retrying every sweep would be twelve.
MOST_CHECKS_DURING_OUTAGE = 7

CONNECT: dict[str, Callable[[SandboxControl, Portal], m.Connection]] = {
    "turnqey": lambda sandbox, portal: connect_turnqey(portal),
    "coinify": connect_coinify,
    "bloquo": lambda sandbox, portal: connect_bloquo(sandbox, portal)[0],
    "dapi": lambda sandbox, portal: connect_dapi(portal),
}


@pytest.mark.parametrize("provider", list(CONNECT))
def test_an_outage_degrades_after_three_failures_and_recovers_when_it_ends(
    provider: str, sandbox: SandboxControl, portal: Portal, clock: Clock, beat: Beat
) -> None:
    connection = CONNECT[provider](sandbox, portal)
    healthy = fresh(connection)
    accounts_before = set(m.Account.objects.filter(connection=connection).values_list("external_id", "balance"))
    assert healthy.status == m.Status.ACTIVE
    assert accounts_before
    assert healthy.next_check_at is not None
    clock.move_to(healthy.next_check_at - timedelta(seconds=1))
    sandbox.fault(provider, kind="status", status=503, seconds=int(OUTAGE.total_seconds()))
    outage_ends = clock.now() + OUTAGE

    # (consecutive failures, status) after each failed check, in order.
    seen: list[tuple[int, str]] = []
    beat.tick()
    while clock.now() < outage_ends:
        clock.advance(timedelta(minutes=1))
        beat.tick()
        row = fresh(connection)
        assert row.status != m.Status.NEEDS_RECONNECT, row.last_error
        if clock.now() < outage_ends and (not seen or seen[-1][0] != row.consecutive_failures):
            seen.append((row.consecutive_failures, row.status))
    assert seen[:3] == [(1, m.Status.ACTIVE), (2, m.Status.ACTIVE), (3, m.Status.DEGRADED)]
    assert all(status == m.Status.DEGRADED for _, status in seen[2:])
    assert len(seen) <= MOST_CHECKS_DURING_OUTAGE
    degraded = fresh(connection)
    assert degraded.reason == m.Reason.TRANSIENT
    assert degraded.degraded_since is not None
    assert degraded.last_success_at == healthy.last_success_at
    # The last good data is still shown ("data as of").
    assert set(m.Account.objects.filter(connection=connection).values_list("external_id", "balance")) == (
        accounts_before
    )
    into_degraded = [e for e in events(connection) if e.to_status == m.Status.DEGRADED and e.from_status == "active"]
    assert len(into_degraded) == 1
    assert into_degraded[0].reason == m.Reason.TRANSIENT

    # The outage is over: the next scheduled check (backed off, so maybe a while) succeeds.
    for _ in range(3 * 60):
        if fresh(connection).status == m.Status.ACTIVE:
            break
        clock.advance(timedelta(minutes=1))
        beat.tick()
    recovered = fresh(connection)
    assert recovered.status == m.Status.ACTIVE, recovered.last_error
    assert recovered.reason == m.Reason.NONE
    assert (recovered.consecutive_failures, recovered.degraded_since) == (0, None)
    assert recovered.last_success_at is not None
    assert recovered.last_success_at > outage_ends
    assert recovered.next_check_at is not None
    recoveries = events(connection, m.ConnectionEvent.Kind.RECOVERED)
    assert len(recoveries) == 1
    assert (recoveries[0].from_status, recoveries[0].to_status) == (m.Status.DEGRADED, m.Status.ACTIVE)
    assert recoveries[0].created_at == recovered.last_success_at
    assert not [e for e in events(connection) if e.to_status == m.Status.NEEDS_RECONNECT]
