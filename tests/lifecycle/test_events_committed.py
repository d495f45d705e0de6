"""``connections.signals.events_committed``: history announces itself once committed, and only then.

What reacts to connection events (webhooks) is not called by the lifecycle; it
hears that new rows exist after their transaction commits, reads them, and
can never break or undo the write that announced them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction

from connections import lifecycle
from connections import models as m
from connections.signals import events_committed
from tests.factories import ConnectionFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def heard() -> Iterator[list[list[int]]]:
    calls: list[list[int]] = []

    def receiver(sender: Any, events: list[m.ConnectionEvent], **kwargs: Any) -> None:
        calls.append([event.pk for event in events])

    events_committed.connect(receiver, dispatch_uid="test-heard")
    yield calls
    events_committed.disconnect(dispatch_uid="test-heard")


def test_a_saved_event_is_announced_after_its_transaction_commits(heard: list[list[int]]) -> None:
    connection = ConnectionFactory()
    with transaction.atomic():
        event = lifecycle.event_record(connection=connection, kind="renewed")
        assert heard == []  # not yet: the transaction could still roll back
    assert heard == [[event.pk]]


def test_a_bulk_write_is_announced_once_with_every_row(heard: list[list[int]]) -> None:
    connection = ConnectionFactory()
    rows = [m.ConnectionEvent(connection=connection, kind="renewed") for _ in range(3)]
    with transaction.atomic():
        created = m.ConnectionEvent.objects.bulk_create(rows)
    assert heard == [[row.pk for row in created]]


def test_a_rolled_back_event_is_never_announced(heard: list[list[int]]) -> None:
    connection = ConnectionFactory()

    def failing_transaction() -> None:
        with transaction.atomic():
            lifecycle.event_record(connection=connection, kind="renewed")
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        failing_transaction()
    assert heard == []


def test_an_event_updated_later_is_not_announced_again(heard: list[list[int]]) -> None:
    event = lifecycle.event_record(connection=ConnectionFactory(), kind="renewed")
    event.message = "Renewed."
    event.save()
    assert heard == [[event.pk]]


def test_a_failing_receiver_neither_breaks_nor_undoes_the_write() -> None:
    def broken(sender: Any, events: list[m.ConnectionEvent], **kwargs: Any) -> None:
        raise RuntimeError("a reaction failed")

    events_committed.connect(broken, dispatch_uid="test-broken")
    try:
        connection = ConnectionFactory()
        with transaction.atomic():
            event = lifecycle.event_record(connection=connection, kind="renewed")
    finally:
        events_committed.disconnect(dispatch_uid="test-broken")
    assert m.ConnectionEvent.objects.filter(pk=event.pk).exists()
