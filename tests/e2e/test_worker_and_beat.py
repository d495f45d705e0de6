"""A real Celery beat and worker, started as processes: the sweep fires on its own and checks run out of process.

The processes share the test's PostgreSQL database (the live server's) and a
Redis broker database of this suite's own. The connection is due and its
access token short-lived, so the check the worker runs renews it at the
sandbox and probes with the new token, all without anyone calling a task.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from connections import models as m

from .support import Portal, SandboxControl, connect_coinify, events, fresh

BROKER_URL = "redis://127.0.0.1:6379/9"
SWEEP_EVERY_SECONDS = 2
# Generous: a worker and a beat start in a few seconds, the sweep then fires every two.
WAIT_SECONDS = 45.0
CELERY = str(Path(sys.executable).with_name("celery"))
PROJECT_DIR = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    """The URL of the database this test (and the live server) runs on."""
    db = settings.DATABASES["default"]
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgres://{credentials}@{host}/{db['NAME']}"


@contextmanager
def _celery(
    commands: dict[str, list[str]], env: dict[str, str], logs: Path
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Start one ``celery -A portal <command>`` process per entry, logging to ``logs/<name>.log``.

    On the way out every process still running gets SIGTERM at once (a warm
    shutdown: the worker finishes its task), then SIGKILL if it has not
    exited within 20 seconds.
    """
    started: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, args in commands.items():
            with (logs / f"{name}.log").open("wb") as out:
                started[name] = subprocess.Popen(
                    [CELERY, "-A", "portal", *args], cwd=PROJECT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT
                )
        yield started
    finally:
        running = [process for process in started.values() if process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _log(logs: Path, name: str) -> str:
    return (logs / f"{name}.log").read_text(errors="replace")[-3000:]


def _purge_broker() -> None:
    import redis

    redis.Redis.from_url(BROKER_URL, socket_timeout=2).flushdb()


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
    _purge_broker()

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": BROKER_URL,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "EMAIL_URL": "dummymail://",
        "LOG_LEVEL": "INFO",
        # The live server's sandbox, which its provider apps may call.
        "SANDBOX_BASE_URL": settings.SANDBOX_BASE_URL,
    }
    commands = {
        "worker": [
            *("worker", "--pool", "threads", "-c", "4", "-n", "e2e@%h"),
            *("--without-heartbeat", "--without-gossip", "--without-mingle"),
        ],
        "beat": ["beat", "--pidfile=", "-s", str(tmp_path / "beat-schedule")],
    }
    with _celery(commands, env, tmp_path) as processes:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            row = fresh(connection)
            if row.last_checked_at is not None and row.last_checked_at >= started:
                break
            for name, process in processes.items():
                assert process.poll() is None, f"{name} exited:\n{_log(tmp_path, name)}"
            time.sleep(0.25)
        else:
            pytest.fail(
                f"no check ran within the wait.\n--- worker ---\n{_log(tmp_path, 'worker')}"
                f"\n--- beat ---\n{_log(tmp_path, 'beat')}"
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
