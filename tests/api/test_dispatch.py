"""The outbox reader: every reported ConnectionEvent becomes exactly one webhook event, even one that commits late."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection as db_connection
from django.db import transaction

from api.models import DispatchCursor, WebhookEvent
from api.webhooks.dispatch import events_dispatch
from connections import lifecycle
from connections import models as m
from tests.e2e.support import Clock
from tests.factories import ConnectionFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _report(connection: m.Connection) -> m.ConnectionEvent:
    return lifecycle.event_record(
        connection=connection, kind="disconnected", from_status="active", to_status="disconnected"
    )


def test_each_reported_event_is_made_once_however_often_dispatch_runs(clock: Clock) -> None:
    connection = ConnectionFactory()
    first, second = _report(connection), _report(connection)
    for _ in range(3):
        events_dispatch()
        clock.advance(timedelta(minutes=3))  # past the settle time: the cursor moves on
    assert sorted(WebhookEvent.objects.values_list("source_event_id", flat=True)) == [first.pk, second.pk]
    cursor = DispatchCursor.objects.get()
    assert cursor.last_event_id >= second.pk


@pytest.mark.postgres
def test_an_event_that_commits_after_a_later_one_is_not_skipped(clock: Clock, settings: Any) -> None:
    """Ids are handed out at INSERT: a transaction still open when a later event commits must not be passed over."""
    connection = ConnectionFactory()
    inserted, release, done = threading.Event(), threading.Event(), threading.Event()
    late: list[int] = []

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                late.append(_report(connection).pk)
                inserted.set()
                release.wait(timeout=20)
        finally:
            db_connection.close()
            done.set()

    worker = threading.Thread(target=slow_writer)
    worker.start()
    assert inserted.wait(timeout=20)
    early = _report(connection)  # a higher id, committed first
    assert early.pk > late[0]

    events_dispatch()
    assert list(WebhookEvent.objects.values_list("source_event_id", flat=True)) == [early.pk]
    clock.advance(timedelta(seconds=30))  # well inside the settle time
    events_dispatch()

    release.set()
    assert done.wait(timeout=20)
    worker.join(timeout=5)
    events_dispatch()
    assert sorted(WebhookEvent.objects.values_list("source_event_id", flat=True)) == sorted([early.pk, late[0]])
    # The feed keeps the order things were made in: the late one after the early one.
    assert list(WebhookEvent.objects.order_by("pk").values_list("source_event_id", flat=True)) == [early.pk, late[0]]


def test_a_committed_reported_event_is_dispatched_at_once_without_the_beat() -> None:
    connection = ConnectionFactory()
    event = _report(connection)  # committed: the signal runs the dispatch (eager Celery)
    assert WebhookEvent.objects.get().source_event_id == event.pk


def test_an_event_rolled_back_is_never_dispatched() -> None:
    connection = ConnectionFactory()

    def failing_transaction() -> None:
        with transaction.atomic():
            _report(connection)
            raise RuntimeError("the lifecycle's transaction failed")

    with pytest.raises(RuntimeError):
        failing_transaction()
    events_dispatch()
    assert not WebhookEvent.objects.exists()
