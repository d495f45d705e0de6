"""A worker killed with SIGKILL in the middle of a renewal, and the task delivered again.

The first run happens in a real subprocess against the same PostgreSQL
database and the same sandbox; it kills itself right after the provider
answered (``tests/faults/crash_check.py``). Celery's late acknowledgement
redelivers the task at once: that delivery finds the dead worker's claim and
does nothing; once the claim runs out the sweep hands the connection out
again and the check completes. The end state is the one an uninterrupted run
leaves, with no duplicate events.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from connections import jobs, lifecycle, tasks
from connections import models as m

from .support import (
    Portal,
    SandboxControl,
    connect_bloquo,
    connect_coinify,
    credential_values,
    database_url,
    events,
    make_due,
)

pytestmark = pytest.mark.postgres

PROJECT_DIR = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("crash_check.py")


def subprocess_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "PYTHONPATH": str(PROJECT_DIR),
            "DEBUG": "true",
            "VAR_DIR": str(tmp_path / "var"),
            "DATABASE_URL": database_url(),
            "TOKEN_ENCRYPTION_KEYS": ",".join(settings.TOKEN_ENCRYPTION_KEYS),
            "RATE_LIMIT_REDIS_URL": "",
            "REDIS_URL": "",
            "CELERY_TASK_ALWAYS_EAGER": "true",
            # The live server's sandbox, which its provider apps may call.
            "SANDBOX_BASE_URL": settings.SANDBOX_BASE_URL,
            **extra,
        }
    )
    return env


def crash_mid_renewal(tmp_path: Path, connection_id: int, crash_at: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(connection_id)],
        cwd=PROJECT_DIR,
        env=subprocess_env(tmp_path, CRASH_AT=crash_at),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def redeliver_and_resume(connection_row: m.Connection) -> tuple[str, lifecycle.CheckResult]:
    """The redelivered task (at once), then the sweep after the dead worker's claim ran out."""
    immediately = tasks.check_connection(connection_row.pk)
    later = timezone.now() + timedelta(
        seconds=max(
            lifecycle.tunables().check_lease_seconds,
            lifecycle.tunables().sweep_lease_seconds,
        )
        + 1
    )
    claimed: list[int] = []
    jobs.sweep_run(publish=claimed.extend, now=later)
    assert connection_row.pk in claimed
    return immediately, lifecycle.connection_check(connection_id=connection_row.pk, now=later)


CASES = {
    "coinify-offline": (lambda sandbox, portal: connect_coinify(sandbox, portal, offline=True), "coinify", "/auth"),
    "bloquo": (connect_bloquo, "bloquo", "/api/v1/auth/token"),
}


@pytest.mark.parametrize("crash_at", ["after_renew", "before_commit"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_worker_killed_mid_renewal_leaves_the_same_end_state_and_no_duplicate_events(
    sandbox: SandboxControl, portal: Portal, tmp_path: Path, case: str, crash_at: str
) -> None:
    connect, provider, token_path = CASES[case]
    sandbox.lifetimes(provider, access=150)  # renewal due at once
    connection_row = connect(sandbox, portal)
    before = credential_values([connection_row])
    sandbox.clear_log()
    make_due(connection_row)

    crashed = crash_mid_renewal(tmp_path, connection_row.pk, crash_at)

    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    # The provider did answer the dead worker; nothing it learned was committed.
    assert [r["status"] for r in sandbox.requests(provider, path=token_path)] == [200]
    assert credential_values([connection_row]) == before
    assert not events(connection_row, m.ConnectionEvent.Kind.RENEWED)

    immediately, resumed = redeliver_and_resume(connection_row)

    assert immediately == lifecycle.Outcome.SKIPPED  # the dead worker's claim still stands
    assert resumed.outcome == lifecycle.Outcome.OK
    assert resumed.renewed
    connection_row.refresh_from_db()
    assert connection_row.status == m.Status.ACTIVE
    assert connection_row.lease_owner == ""
    assert connection_row.accounts.exists()
    assert credential_values([connection_row]) != before
    kinds = [e.kind for e in events(connection_row)]
    assert kinds.count(m.ConnectionEvent.Kind.RENEWED) == 1
    assert m.ConnectionEvent.Kind.CHECK_FAILED not in kinds
    # One lost answer and one that counted: the provider was asked twice, no more.
    assert len(sandbox.requests(provider, path=token_path)) == 2


def test_a_rotated_refresh_token_lost_with_the_worker_is_reported_once_and_never_retried(
    sandbox: SandboxControl, portal: Portal, tmp_path: Path
) -> None:
    """Refresh-only Coinify: the new token died with the worker, the old one is spent.

    No code can bring the new token back. What the portal owes the adviser is
    an honest status: needs_reconnect with a plain reason, the spent token
    tried exactly once more (the provider's answer is what proves it is
    spent), one event, and no retry loop.
    """
    sandbox.lifetimes("coinify", access=150)
    connection_row = connect_coinify(sandbox, portal)
    sandbox.clear_log()
    make_due(connection_row)

    crashed = crash_mid_renewal(tmp_path, connection_row.pk, "before_commit")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    _immediately, resumed = redeliver_and_resume(connection_row)
    again = lifecycle.connection_check(connection_id=connection_row.pk, now=timezone.now() + timedelta(hours=1))

    connection_row.refresh_from_db()
    assert resumed.outcome == lifecycle.Outcome.PERMANENT
    assert connection_row.status == m.Status.NEEDS_RECONNECT
    assert connection_row.reason == m.Reason.REVOKED
    assert connection_row.next_check_at is None
    assert again.outcome == lifecycle.Outcome.SKIPPED
    assert len(events(connection_row, m.ConnectionEvent.Kind.CHECK_FAILED)) == 1
    assert len(sandbox.requests("coinify", path="/auth", grant_type="refresh_token")) == 2


def test_the_killed_worker_really_ran_against_this_database(sandbox: SandboxControl, tmp_path: Path) -> None:
    """Guards the harness: the subprocess sees the rows this test process wrote."""
    firm = m.Firm.objects.create(name="Visible", slug="visible-from-subprocess")
    script = (
        "import django; django.setup(); from connections.models import Firm; "
        f"print(Firm.objects.filter(pk={firm.pk}).exists())"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_DIR,
        env=subprocess_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "True"
