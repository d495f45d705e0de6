"""manage.py setup_periodic_tasks and check_connections."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from connections.models import Provider, Status
from connections.providers.errors import FailureReason, ProviderError
from tests.factories import ProviderAppFactory

from .conftest import FakeWorld, make_connection

TASKS = {
    "connections.sweep",
    "connections.housekeeping",
    "connections.refresh_app_tokens",
    "connections.send_digests",
    "connections.send_reminders",
    "reports.freshness_snapshot",
    "reports.oversight_tally",
    # Added by the api app's AppConfig.default_schedules.
    "api.webhooks_tick",
    "api.housekeeping",
}


def _run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.django_db
def test_setup_periodic_tasks_is_idempotent() -> None:
    _run("setup_periodic_tasks")
    first = {t.task: (t.pk, t.interval_id, t.crontab_id) for t in PeriodicTask.objects.all()}
    output, _ = _run("setup_periodic_tasks")
    second = {t.task: (t.pk, t.interval_id, t.crontab_id) for t in PeriodicTask.objects.all()}
    assert set(first) == TASKS
    assert first == second
    assert PeriodicTask.objects.count() == len(TASKS)
    assert "kept" in output
    sweep = PeriodicTask.objects.get(task="connections.sweep")
    assert (sweep.interval.every, sweep.interval.period) == (60, IntervalSchedule.SECONDS)
    assert sweep.enabled


@pytest.mark.django_db
def test_setup_periodic_tasks_keeps_an_admins_changes_unless_reset() -> None:
    _run("setup_periodic_tasks")
    every_two_minutes, _ = IntervalSchedule.objects.get_or_create(every=120, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.filter(task="connections.sweep").update(interval=every_two_minutes, enabled=False)

    _run("setup_periodic_tasks")
    sweep = PeriodicTask.objects.get(task="connections.sweep")
    assert (sweep.interval.every, sweep.enabled) == (120, False)

    _run("setup_periodic_tasks", "--reset")
    sweep = PeriodicTask.objects.get(task="connections.sweep")
    assert (sweep.interval.every, sweep.enabled) == (60, True)


@pytest.mark.django_db
def test_check_connections_checks_due_ones_and_prints_a_summary(app: Any, world: FakeWorld) -> None:
    due = timezone.now() - timedelta(minutes=1)
    make_connection(app, next_check_at=due)
    broken = make_connection(app, next_check_at=due)
    make_connection(app, next_check_at=timezone.now() + timedelta(hours=1))  # not due: not checked
    world.probe_script[:] = [
        lambda: None,  # first connection: fine
        ProviderError.reauth(FailureReason.REVOKED, "Fake: revoked."),
    ]

    output, progress = _run("check_connections")

    rows = [line.split() for line in output.splitlines()]
    lines = {row[0]: row[1] for row in rows if len(row) == 2 and row[1].isdigit()}
    assert lines["active"] == "1"
    assert lines["needs_reconnect"] == "1"
    assert lines["checked"] == "2"
    assert lines["errors"] == "0"
    assert "2/2" in progress  # the progress bar ran to the end
    broken.refresh_from_db()
    assert broken.status == Status.NEEDS_RECONNECT
    assert world.calls["probe"] == 2
    assert "1 connection(s) need the client to reconnect." in output


@pytest.mark.django_db
def test_check_connections_all_for_one_household_and_provider(app: Any, world: FakeWorld) -> None:
    later = timezone.now() + timedelta(hours=1)
    target = make_connection(app, next_check_at=later)
    make_connection(app, next_check_at=later, household=target.household, client=target.client, platform="gemini")
    make_connection(app, next_check_at=later)  # another household
    other_app = ProviderAppFactory(provider=Provider.BLOQUO, rate_limit_per_second=0)
    make_connection(other_app, next_check_at=later, household=target.household, client=target.client, platform="x")

    output, _ = _run("check_connections", "--all", "--household", str(target.household_id), "--provider", "coinify")

    assert world.calls["probe"] == 2
    assert "checked" in output
    assert [line.split()[1] for line in output.splitlines() if line.startswith("active")] == ["2"]


@pytest.mark.django_db
def test_check_connections_counts_deferred_and_errors(app: Any, world: FakeWorld) -> None:
    due = timezone.now() - timedelta(minutes=1)
    make_connection(app, next_check_at=due)
    world.probe_script.append(RuntimeError("bug"))
    output, _ = _run("check_connections")
    assert [line.split()[1] for line in output.splitlines() if line.startswith("errors")] == ["1"]
