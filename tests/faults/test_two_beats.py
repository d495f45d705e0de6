"""Two beats started by mistake: each periodic job still does its work once per interval.

Every periodic task claims its time slot with an INSERT under a unique
constraint (``connections.jobs.periodic_job``, the ``PeriodicJobRun`` row).
Here two runs of the same task start in the same slot, concurrently on
PostgreSQL (two threads, two database sessions, released together by a
barrier) and one after the other on any database; the work is done once,
and the next slot runs again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core import mail
from django.db import connection as db_connection
from django.utils import timezone

from connections import jobs, services, tasks
from connections import models as m
from connections.management.commands.setup_periodic_tasks import DEFAULT_SCHEDULES
from connections.providers.base import IssuedCredential, ProviderClient
from tests.factories import (
    ClientFactory,
    ConnectionEventFactory,
    ConnectionFactory,
    FirmFactory,
    HouseholdFactory,
    MembershipFactory,
    ProviderAppFactory,
    UserFactory,
)
from tests.provider_seam import provider_clients_replace

# task name → (the task, the jobs function that does its work)
JOBS: dict[str, tuple[Any, str]] = {
    "connections.sweep": (tasks.sweep, "sweep_run"),
    "connections.housekeeping": (tasks.housekeeping, "housekeeping_run"),
    "connections.send_digests": (tasks.send_digests, "digests_send"),
    "connections.refresh_app_tokens": (tasks.refresh_app_tokens, "app_tokens_refresh"),
    "connections.send_reminders": (tasks.send_reminders, "reminders_run"),
}
SLOT_NAMES = {
    "connections.sweep": "sweep",
    "connections.housekeeping": "housekeeping",
    "connections.send_digests": "send_digests",
    "connections.refresh_app_tokens": "refresh_app_tokens",
    "connections.send_reminders": "send_reminders",
}


@dataclass
class World:
    """Work waiting for each job, and counters of the work done."""

    now: datetime
    work_calls: dict[str, int] = field(default_factory=dict)
    published: list[int] = field(default_factory=list)
    app_token_calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def side_effect(self, task: str) -> int:
        """How much real work ``task`` has done so far (what a duplicate run would double)."""
        if task == "connections.sweep":
            return len(self.published)
        if task == "connections.housekeeping":
            return m.ConnectionEvent.objects.filter(kind=m.ConnectionEvent.Kind.LINK_EXPIRED).count()
        if task == "connections.send_digests":
            return len(mail.outbox)
        if task == "connections.send_reminders":
            return m.ReconnectRequestEmail.objects.filter(kind=m.ReconnectRequestEmail.Kind.REMINDER).count()
        return self.app_token_calls


def _counting_app_tokens(world: World) -> Callable[[type[ProviderClient]], type[ProviderClient]]:
    """Real client classes whose app token is counted and handed out without a network call."""

    def replacement(cls: type[ProviderClient]) -> type[ProviderClient]:
        class CountingAppTokens(cls):  # type: ignore[valid-type, misc]
            def app_token(self) -> IssuedCredential:
                with world.lock:
                    world.app_token_calls += 1
                now = timezone.now()
                return IssuedCredential(
                    kind="app", value="app-token", issued_at=now, expires_at=now + timedelta(hours=1)
                )

        return CountingAppTokens

    return replacement


@pytest.fixture
def world(transactional_db: None, monkeypatch: pytest.MonkeyPatch) -> World:
    # One frozen moment, well inside every job's slot: both runs see the same slot.
    frozen = World(now=timezone.now().replace(minute=30, second=0, microsecond=0))
    monkeypatch.setattr(timezone, "now", lambda: frozen.now)

    for name in {function for _task, function in JOBS.values()}:
        original = getattr(jobs, name)

        def counted(*args: Any, _original: Callable[..., Any] = original, _name: str = name, **kwargs: Any) -> Any:
            with frozen.lock:
                frozen.work_calls[_name] = frozen.work_calls.get(_name, 0) + 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(jobs, name, counted)

    def publish(ids: list[int]) -> None:
        with frozen.lock:
            frozen.published.extend(ids)

    monkeypatch.setattr(tasks, "checks_publish", publish)
    provider_clients_replace(monkeypatch, _counting_app_tokens(frozen))

    # Work for each job.
    app = ProviderAppFactory(provider=m.Provider.COINIFY, rate_limit_per_second=0)
    firm = FirmFactory()
    adviser = MembershipFactory(firm=firm, user=UserFactory(username="beat-adviser")).user
    household = HouseholdFactory(firm=firm, advisers=[adviser])
    for _ in range(5):  # due for the sweep
        ConnectionFactory(
            client=ClientFactory(household=household), provider_app=app, next_check_at=frozen.now - timedelta(minutes=1)
        )
    broken = ConnectionFactory(
        client=ClientFactory(household=household),
        provider_app=app,
        status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.REVOKED,
        next_check_at=None,
    )
    ConnectionEventFactory(  # news for the digest
        connection=broken,
        kind=m.ConnectionEvent.Kind.CHECK_FAILED,
        from_status=m.Status.ACTIVE,
        to_status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.REVOKED,
        created_at=frozen.now - timedelta(minutes=10),
    )
    m.ClientLink.objects.create(  # expired, for housekeeping
        token_hash="0" * 64,
        household=household,
        client=broken.client,
        connection=broken,
        provider_app=app,
        platform=broken.platform,
        sent_to="client@example.test",
        created_at=frozen.now - timedelta(days=8),
        expires_at=frozen.now - timedelta(days=1),
    )
    # A reconnect request three days old, unfinished: due for its first reminder.
    services.reconnect_requests_create(households=[household], user=adviser, now=frozen.now - timedelta(days=3))
    mail.outbox.clear()
    return frozen


def test_every_scheduled_task_is_covered_and_its_slot_fits_its_interval() -> None:
    # The connections app's jobs; the reports app's are covered in tests/reports.
    scheduled = {schedule.task: schedule for schedule in DEFAULT_SCHEDULES if schedule.task.startswith("connections.")}
    assert set(scheduled) == set(JOBS)
    for task, schedule in scheduled.items():
        slot = jobs.job_slot_seconds(SLOT_NAMES[task])
        interval = schedule.every_seconds or 3600  # the digest runs hourly (crontab minute 0)
        assert slot <= interval, f"{task}: a slot longer than its interval would skip runs"


def _run_twice_together(task: Any) -> list[Any]:
    """Two runs of ``task`` released at the same instant, each on its own database session."""
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]
    errors: list[BaseException] = []

    def beat(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = task()
        except BaseException as exc:  # re-raised in the test thread
            errors.append(exc)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=beat, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def _assert_done_once(world: World, task_name: str, results: list[Any]) -> None:
    work = JOBS[task_name][1]
    assert world.work_calls.get(work, 0) == 1
    assert world.side_effect(task_name) >= 1
    assert sum(1 for r in results if r) == 1  # the other run stood down with an empty result
    assert m.PeriodicJobRun.objects.filter(job=SLOT_NAMES[task_name]).count() == 1


@pytest.mark.postgres
@pytest.mark.parametrize("task_name", sorted(JOBS))
def test_two_beats_firing_together_do_each_jobs_work_once(world: World, task_name: str) -> None:
    task, _work = JOBS[task_name]

    results = _run_twice_together(task)

    _assert_done_once(world, task_name, results)


@pytest.mark.parametrize("task_name", sorted(JOBS))
def test_a_second_run_in_the_same_slot_does_nothing_and_the_next_slot_runs_again(world: World, task_name: str) -> None:
    task, work = JOBS[task_name]

    results = [task(), task()]
    done = world.side_effect(task_name)
    _assert_done_once(world, task_name, results)

    world.now += timedelta(seconds=jobs.job_slot_seconds(SLOT_NAMES[task_name]))
    task()

    assert world.work_calls[work] == 2
    assert m.PeriodicJobRun.objects.filter(job=SLOT_NAMES[task_name]).count() == 2
    assert world.side_effect(task_name) >= done
