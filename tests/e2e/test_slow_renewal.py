"""Exactly one renewal per connection, even when the provider's reply trickles in for longer than a claim lasts.

Two real Celery workers (the threads pool, as the Procfile runs them) are
handed checks of the same due Coinify connection, alternately, twice a
second. The sandbox processes the first refresh (the refresh token rotates)
and then sends its reply one byte at a time, so the call takes many times a
check's claim (shortened here to two seconds). A worker whose claim simply
ran out would let the other claim the row and spend the same refresh token
again, which Coinify answers by cancelling the grant. The check instead
stretches its claim over the renewal's worst case before it sends anything,
so the other worker finds the row taken, every time, until the renewal is
stored.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from celery import Celery
from django.utils import timezone

from connections import models as m

from .celery_processes import celery_env, celery_processes, filesystem_broker_options, log_tail, worker_args
from .support import Portal, SandboxControl, connect_coinify, events, fresh

LEASE_SECONDS = 2
# One byte every 40 ms: each read is quick, the whole refresh reply takes several claims' worth.
TRICKLE_INTERVAL_SECONDS = 0.04
WAIT_SECONDS = 90.0


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_never_spend_one_refresh_token_twice_while_its_reply_trickles_in(
    sandbox: SandboxControl, portal: Portal, tmp_path: Path
) -> None:
    # A 30-second access token: inside the renewal margin, so a check renews first.
    sandbox.lifetimes("coinify", access=30)
    connection = connect_coinify(sandbox, portal)
    refresh_before = m.Credential.objects.get(connection=connection, kind=m.Credential.Kind.REFRESH)
    bookmark = sandbox.last_request_id()
    sandbox.fault("coinify", path="/auth", kind="trickle", interval=TRICKLE_INTERVAL_SECONDS, count=1)
    m.Connection.objects.filter(pk=connection.pk).update(next_check_at=timezone.now())

    # The workers' own broker: the embedded filesystem one, in this test's folder.
    var_dir = tmp_path / "var"
    broker_options = filesystem_broker_options(var_dir)
    env = celery_env(
        broker_url="filesystem://",
        VAR_DIR=str(var_dir),
        LIFECYCLE_CHECK_LEASE_SECONDS=str(LEASE_SECONDS),
        # The whole call may take a minute; each byte comes well within the read timeout.
        PROVIDER_TOTAL_TIMEOUT="60",
        PROVIDER_READ_TIMEOUT="5",
        RATE_LIMIT_REDIS_URL="",
        REDIS_URL="",
    )
    queues = ("first", "second")
    commands = {name: [*worker_args(name, threads=2), "-Q", name] for name in queues}
    # Not the current app: the portal's own tasks in this process (and in later
    # tests) must keep going to the portal's app, not to this sender's broker.
    sender = Celery(broker="filesystem://", broker_transport_options=broker_options, set_as_current=False)
    sent = {name: 0 for name in queues}
    started = time.monotonic()
    with celery_processes(commands, env, tmp_path) as processes:
        deadline = started + WAIT_SECONDS
        while time.monotonic() < deadline:
            row = fresh(connection)
            renewed = (
                row.last_checked_at is not None
                and not row.lease_owner
                and events(connection, m.ConnectionEvent.Kind.RENEWED)
            )
            if renewed or row.status == m.Status.NEEDS_RECONNECT:  # done, or the grant was lost
                break
            for name, process in processes.items():
                assert process.poll() is None, f"{name} exited:\n{log_tail(tmp_path, name)}"
            name = queues[sum(sent.values()) % 2]
            sender.send_task("connections.check_connection", args=[connection.pk], queue=name)
            sent[name] += 1
            time.sleep(0.5)
        else:
            pytest.fail(
                f"the renewal did not finish within the wait.\n--- first ---\n{log_tail(tmp_path, 'first')}"
                f"\n--- second ---\n{log_tail(tmp_path, 'second')}"
            )
        took = time.monotonic() - started
    sender.close()

    # The reply took many claims' worth, and both workers kept asking all along.
    assert took > 4 * LEASE_SECONDS
    assert min(sent.values()) >= 4
    logged = sandbox.requests("coinify", after=bookmark)
    refreshes = [c for c in logged if c["grant_type"] == "refresh_token"]
    # One refresh, the trickled one: the old refresh token was never sent again.
    assert [(c["status"], c["fault"]) for c in refreshes] == [(200, "trickle")]
    checked = fresh(connection)
    assert checked.status == m.Status.ACTIVE, checked.last_error
    assert len(events(connection, m.ConnectionEvent.Kind.RENEWED)) == 1
    refresh_after = m.Credential.objects.get(connection=connection, kind=m.Credential.Kind.REFRESH)
    assert refresh_after.issued_at > refresh_before.issued_at
    # The new tokens work: the probe after the renewal was answered.
    assert [(c["method"], c["path"], c["status"]) for c in logged if c["grant_type"] != "refresh_token"] == [
        ("GET", "/me", 200)
    ]
