"""The sweep: claims due connections once, by condition, through the due index; the periodic job lock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from connections import jobs, lifecycle, tasks
from connections.lifecycle import Outcome
from connections.models import Connection, PeriodicJobRun, Status

from .conftest import FakeWorld, make_connection


def _due(app: Any, count: int, *, minutes_ago: int = 1, **fields: Any) -> list[int]:
    at = timezone.now() - timedelta(minutes=minutes_ago)
    return [make_connection(app, next_check_at=at, **fields).pk for _ in range(count)]


@pytest.mark.django_db
def test_sweep_claims_only_due_unclaimed_connections_and_publishes_them_on_commit(
    app: Any, django_capture_on_commit_callbacks: Any
) -> None:
    due = _due(app, 5)
    make_connection(app, next_check_at=timezone.now() + timedelta(minutes=5))  # not yet
    make_connection(app, status=Status.NEEDS_RECONNECT)  # never scheduled
    busy = make_connection(app, next_check_at=timezone.now() - timedelta(minutes=1))
    Connection.objects.filter(pk=busy.pk).update(lease_owner="check:1:x", lease_until=timezone.now() + timedelta(1))
    published: list[list[int]] = []

    with django_capture_on_commit_callbacks(execute=True):
        claimed = jobs.sweep_run(publish=published.append)

    assert claimed == 5
    assert sorted(i for batch in published for i in batch) == sorted(due)
    for row in Connection.objects.filter(pk__in=due):
        assert row.lease_owner.startswith("sweep:")
        # Out of the due set until the claim runs out, so the next sweep skips it.
        assert row.next_check_at == row.lease_until
        assert row.next_check_at > timezone.now()


@pytest.mark.django_db
def test_nothing_is_published_when_the_claim_rolls_back(app: Any, django_capture_on_commit_callbacks: Any) -> None:
    _due(app, 2)
    published: list[list[int]] = []

    def sweep_then_fail() -> None:
        with transaction.atomic():
            jobs.sweep_run(publish=published.append)
            raise RuntimeError("rolled back")

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        sweep_then_fail()
    assert published == []
    assert not Connection.objects.filter(lease_owner__startswith="sweep:").exists()


@pytest.mark.django_db
def test_a_second_sweep_finds_nothing_left_to_claim(app: Any, django_capture_on_commit_callbacks: Any) -> None:
    _due(app, 3)
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs.sweep_run(publish=lambda ids: None) == 3
        assert jobs.sweep_run(publish=lambda ids: None) == 0


@pytest.mark.django_db
def test_sweep_claims_in_batches_oldest_first(app: Any, settings: Any, django_capture_on_commit_callbacks: Any) -> None:
    settings.LIFECYCLE_SWEEP_BATCH_SIZE = 2
    settings.LIFECYCLE_SWEEP_MAX_PER_RUN = 4
    newest = _due(app, 2, minutes_ago=1)
    oldest = _due(app, 4, minutes_ago=10)
    published: list[list[int]] = []
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs.sweep_run(publish=published.append) == 4
    assert [len(batch) for batch in published] == [2, 2]
    assert sorted(i for batch in published for i in batch) == sorted(oldest)
    assert not Connection.objects.filter(pk__in=newest, lease_owner__startswith="sweep:").exists()


@pytest.mark.django_db
def test_claimed_connection_is_checked_by_the_task_and_released(
    app: Any, world: FakeWorld, django_capture_on_commit_callbacks: Any
) -> None:
    (connection_id,) = _due(app, 1)
    with django_capture_on_commit_callbacks(execute=True):
        jobs.sweep_run(publish=tasks.checks_publish)  # eager in tests: the check runs inline
    row = Connection.objects.get(pk=connection_id)
    assert world.calls["probe"] == 1
    assert row.lease_owner == ""
    assert row.last_checked_at is not None
    # A duplicate delivery of the same task afterwards does nothing.
    assert tasks.check_connection(connection_id) == Outcome.SKIPPED
    assert world.calls["probe"] == 1


@pytest.mark.django_db
def test_lost_check_task_is_claimed_again_after_the_sweep_claim_runs_out(
    app: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _due(app, 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs.sweep_run(publish=lambda ids: None) == 1  # the message never arrives
        later = timezone.now() + timedelta(seconds=lifecycle.tunables().sweep_lease_seconds + 1)
        assert jobs.sweep_run(publish=lambda ids: None, now=later) == 1


@pytest.mark.django_db
def test_sweep_query_uses_the_due_index(app: Any) -> None:
    _due(app, 3)
    queryset = lifecycle.due_queryset(now=timezone.now()).values_list("pk", flat=True)[:1000]
    sql, params = queryset.query.sql_with_params()
    with db_connection.cursor() as cursor:
        if db_connection.vendor == "postgresql":
            # A three-row table is cheaper to scan; forbid that to see whether
            # the index *can* serve this query, which is what matters at scale.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN {sql}", params)
        else:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        plan = "\n".join(str(row) for row in cursor.fetchall())
    assert "connection_due_idx" in plan


# --- PostgreSQL: overlapping sweeps ----------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_overlapping_sweeps_claim_each_due_connection_once(app: Any, settings: Any) -> None:
    settings.LIFECYCLE_SWEEP_BATCH_SIZE = 7
    due = _due(app, 60)
    barrier = threading.Barrier(2)
    published: list[int] = []
    lock = threading.Lock()

    def publish(ids: list[int]) -> None:
        with lock:
            published.extend(ids)

    def sweep() -> None:
        try:
            barrier.wait(timeout=30)
            jobs.sweep_run(publish=publish)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(published) == sorted(due)
    assert len(published) == len(set(published))


@pytest.mark.postgres
@pytest.mark.django_db
def test_sweep_claim_takes_rows_with_skip_locked(app: Any) -> None:
    _due(app, 1)
    with transaction.atomic():
        queryset = lifecycle.due_queryset(now=timezone.now()).select_for_update(skip_locked=True)
        sql, _ = queryset.values_list("pk", flat=True)[:10].query.sql_with_params()
    assert "FOR UPDATE SKIP LOCKED" in sql


# --- The periodic job lock -------------------------------------------------------------------


@pytest.mark.django_db
def test_same_job_in_the_same_slot_runs_once() -> None:
    at = datetime(2030, 1, 1, 12, 0, 10, tzinfo=UTC)
    with (
        jobs.periodic_job("sweep", now=at) as first,
        jobs.periodic_job("sweep", now=at + timedelta(seconds=40)) as second,
    ):
        assert (first, second) == (True, False)
    with jobs.periodic_job("sweep", now=at + timedelta(seconds=60)) as next_slot:
        assert next_slot
    assert PeriodicJobRun.objects.filter(job="sweep").count() == 2
    assert PeriodicJobRun.objects.filter(finished_at__isnull=True).count() == 0


@pytest.mark.django_db
def test_running_the_sweep_task_twice_in_one_slot_does_the_work_once(
    app: Any, settings: Any, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.PERIODIC_JOB_SLOTS = {"sweep": 10 * 365 * 24 * 3600}  # one slot for the whole test
    published: list[int] = []
    monkeypatch.setattr(tasks, "checks_publish", published.extend)
    _due(app, 2)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sweep() == 2
        _due(app, 2)
        assert tasks.sweep() == 0
    assert len(published) == 2


@pytest.mark.django_db
def test_different_jobs_do_not_block_each_other() -> None:
    at = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    with jobs.periodic_job("housekeeping", now=at) as a, jobs.periodic_job("refresh_app_tokens", now=at) as b:
        assert a
        assert b


def test_checks_travel_in_small_chunks_spread_over_many_messages() -> None:
    assert tasks.check_chunks(list(range(10_000)))[0] == list(range(25))
    assert len(tasks.check_chunks(list(range(10_000)))) == 400
    assert [len(c) for c in tasks.check_chunks(list(range(30)))] == [2] * 15
    assert tasks.check_chunks([7]) == [[7]]
    assert sorted(i for c in tasks.check_chunks(list(range(1001))) for i in c) == list(range(1001))


@pytest.mark.django_db
def test_one_bad_connection_in_a_chunk_does_not_stop_the_others(app: Any, world: FakeWorld) -> None:
    ids = _due(app, 3)
    world.probe_script[:] = [lambda: None, RuntimeError("bug"), lambda: None]
    counts = tasks.check_connections(ids)
    assert counts == {Outcome.OK: 2, Outcome.ERROR: 1}


def test_a_large_batch_goes_out_in_few_messages_that_workers_fan_out() -> None:
    assert [len(m) for m in tasks.sweep_messages(list(range(1000)))] == [400, 400, 200]
    assert tasks.sweep_messages(list(range(400))) == tasks.check_chunks(list(range(400)))
    assert tasks.sweep_messages(list(range(30))) == tasks.check_chunks(list(range(30)))
    assert sorted(i for m in tasks.sweep_messages(list(range(10_001))) for i in m) == list(range(10_001))


def test_a_fanned_out_message_checks_every_connection_once_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[int] = []
    published: list[list[int]] = []

    def check(*, connection_ids: list[int]) -> Any:
        checked.extend(connection_ids)
        return [type("Result", (), {"outcome": "ok"})() for _ in connection_ids]

    real_publish = tasks.messages_publish

    def publish(messages: list[list[int]]) -> None:
        published.extend(messages)
        real_publish(messages)  # eager in tests: each chunk is checked inline

    monkeypatch.setattr(tasks.lifecycle, "connections_check", check)
    monkeypatch.setattr(tasks, "messages_publish", publish)

    counts = tasks.check_connections(list(range(400)))

    assert counts == {"ok": 25}  # this message's own chunk; the other 15 went to the queue
    assert [len(m) for m in published] == [25] * 15
    assert sorted(checked) == list(range(400))
    assert len(checked) == len(set(checked))


def test_a_chunk_the_sweep_made_small_is_not_split_again(monkeypatch: pytest.MonkeyPatch) -> None:
    published: list[list[int]] = []
    monkeypatch.setattr(tasks, "messages_publish", published.extend)
    monkeypatch.setattr(
        tasks.lifecycle,
        "connections_check",
        lambda *, connection_ids: [type("Result", (), {"outcome": "ok"})() for _ in connection_ids],
    )

    assert tasks.check_connections(list(range(25))) == {"ok": 25}
    assert tasks.check_connections([1, 2]) == {"ok": 2}
    assert published == []


def test_a_fan_out_the_broker_refuses_still_checks_its_own_chunk_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(messages: list[list[int]]) -> None:
        raise ConnectionError("broker down")

    checked: list[int] = []
    monkeypatch.setattr(tasks, "messages_publish", refuse)
    monkeypatch.setattr(
        tasks.lifecycle,
        "connections_check",
        lambda *, connection_ids: checked.extend(connection_ids)
        or [type("Result", (), {"outcome": "ok"})() for _ in connection_ids],
    )

    with caplog.at_level("ERROR", logger="connections.tasks"):
        assert tasks.check_connections(list(range(100))) == {"ok": 25}

    assert checked == list(range(25))
    assert "Could not fan out 75 check(s)" in caplog.text


def test_a_check_message_names_its_ids_in_a_short_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """The message really published (to an in-memory broker) carries every id in its body and a
    short summary in its headers, not a rendering of 400 ids that costs as much as the publish."""
    from contextlib import contextmanager

    from kombu import Connection as Broker

    app = tasks.check_connections.app
    app.conf.task_always_eager = False
    try:
        with Broker("memory://") as broker:

            @contextmanager
            def producer_or_acquire(producer: Any = None) -> Any:
                yield app.amqp.Producer(broker.default_channel, auto_declare=True)

            monkeypatch.setattr(app, "producer_or_acquire", producer_or_acquire)
            tasks.messages_publish([list(range(1000, 1400))])

            message = broker.SimpleQueue("celery").get(timeout=1)
    finally:
        app.conf.task_always_eager = True
    assert message.headers["argsrepr"] == "([400 ids: 1000..1399],)"
    assert message.decode()[0] == [list(range(1000, 1400))]
