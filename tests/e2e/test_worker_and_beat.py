"""A real Celery beat and worker, started as processes: the sweep fires on its own and checks run out of process.

The processes share the test's PostgreSQL database (the live server's) and a
Redis broker database of this suite's own. The connection is due and its
access token short-lived, so the check the worker runs renews it at the
sandbox and probes with the new token, all without anyone calling a task.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from connections import models as m

from .celery_processes import broker_purge, celery_env, celery_processes, log_tail, redis_broker_url, worker_args
from .support import Portal, SandboxControl, connect_coinify, events, fresh

SWEEP_EVERY_SECONDS = 2
# Generous: a worker and a beat start in a few seconds, the sweep then fires every two.
WAIT_SECONDS = 45.0


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_a_real_beat_and_worker_renew_and_check_a_due_connection_with_no_manual_step(
    sandbox: SandboxControl, portal: Portal, tmp_path: Path
) -> None:
    # A 30-second access token: inside the two-minute renewal margin, so the
    # check must renew it (a rotating refresh) before it probes.
    sandbox.lifetimes("coinify", access=30)
    connection = connect_coinify(sandbox, portal)
    access_before = m.Credential.objects.get(connection=connection, kind=m.Credential.Kind.ACCESS)
    bookmark = sandbox.last_request_id()
    m.Connection.objects.filter(pk=connection.pk).update(next_check_at=timezone.now())
    started = timezone.now()

    call_command("setup_periodic_tasks", stdout=io.StringIO())
    quick, _ = IntervalSchedule.objects.get_or_create(every=SWEEP_EVERY_SECONDS, period=IntervalSchedule.SECONDS)
    sweep = PeriodicTask.objects.get(task="connections.sweep")
    sweep.interval = quick
    sweep.save()
    # Only the sweep matters here; the other jobs would only add noise to the logs.
    for task in PeriodicTask.objects.exclude(pk=sweep.pk):
        task.enabled = False
        task.save()
    broker_url = redis_broker_url()
    broker_purge(broker_url)

    env = celery_env(broker_url=broker_url)
    commands = {
        "worker": worker_args("e2e", threads=4),
        "beat": ["beat", "--pidfile=", "-s", str(tmp_path / "beat-schedule")],
    }
    with celery_processes(commands, env, tmp_path) as processes:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            row = fresh(connection)
            if row.last_checked_at is not None and row.last_checked_at >= started:
                break
            for name, process in processes.items():
                assert process.poll() is None, f"{name} exited:\n{log_tail(tmp_path, name)}"
            time.sleep(0.25)
        else:
            pytest.fail(
                f"no check ran within the wait.\n--- worker ---\n{log_tail(tmp_path, 'worker')}"
                f"\n--- beat ---\n{log_tail(tmp_path, 'beat')}"
            )
        worker_pid = processes["worker"].pid

    checked = fresh(connection)
    assert checked.status == m.Status.ACTIVE, checked.last_error
    assert checked.last_success_at is not None
    assert checked.last_success_at >= started
    assert checked.lease_owner == ""
    # The sweep ran in the worker process, started by the beat: not here.
    runs = list(m.PeriodicJobRun.objects.filter(job="sweep", started_at__gte=started))
    assert runs
    assert {run.owner.rsplit(":", 1)[1] for run in runs} == {str(worker_pid)}
    assert str(os.getpid()) != str(worker_pid)
    # The worker renewed once (one refresh at the sandbox), stored it, and probed with it.
    renewed = events(connection, m.ConnectionEvent.Kind.RENEWED)
    assert len(renewed) == 1
    assert renewed[0].actor_label == "job:check"
    access_after = m.Credential.objects.get(connection=connection, kind=m.Credential.Kind.ACCESS)
    assert access_after.issued_at > access_before.issued_at
    logged = sandbox.requests("coinify", after=bookmark)
    calls = [(c["method"], c["path"], c["grant_type"], c["status"]) for c in logged]
    assert calls == [("POST", "/auth", "refresh_token", 200), ("GET", "/me", "", 200)]
