"""A chunk of scheduled checks (``lifecycle.connections_check``): shared statements, the same guarantees.

A chunk claims its connections in one statement, reads their apps and
credentials in one query each and writes the routine releases together. Each
connection still gets exactly the check it would get alone: checked once,
only while the claim is this chunk's, renewed tokens stored at once, one
unreadable row failing alone.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections import lifecycle
from connections.lifecycle import Outcome
from connections.models import Connection, ConnectionEvent, Credential, Status

from .conftest import ACCOUNTS, FakeWorld, make_connection

pytestmark = pytest.mark.django_db


def _due(app: Any, count: int, **fields: Any) -> list[int]:
    """Due connections whose accounts the portal already holds: a good check of one is routine."""
    at = timezone.now() - timedelta(minutes=1)
    fields.setdefault("accounts_digest", lifecycle.accounts_digest(ACCOUNTS))
    return [make_connection(app, next_check_at=at, **fields).pk for _ in range(count)]


def _statements(ids: list[int]) -> tuple[list[Any], int]:
    with CaptureQueriesContext(db_connection) as captured:
        results = lifecycle.connections_check(connection_ids=ids)
    return results, len(captured.captured_queries)


def test_a_chunk_of_routine_checks_runs_the_same_statements_for_three_connections_as_for_twelve(
    app: Any, world: FakeWorld
) -> None:
    few, many = _due(app, 3), _due(app, 12)

    few_results, few_statements = _statements(few)
    many_results, many_statements = _statements(many)

    assert [r.outcome for r in few_results + many_results] == [Outcome.OK] * 15
    assert few_statements == many_statements
    assert world.calls["probe"] == 15
    for connection in Connection.objects.filter(pk__in=few + many):
        assert (connection.lease_owner, connection.lease_until) == ("", None)
        assert connection.last_checked_at is not None
        assert connection.next_check_at > timezone.now()


def test_each_connection_of_a_chunk_is_checked_once_and_in_the_order_given(app: Any, world: FakeWorld) -> None:
    ids = _due(app, 4)
    seen: list[str] = []
    world.probe_script[:] = [lambda i=i: seen.append(str(i)) for i in range(4)]

    results = lifecycle.connections_check(connection_ids=[*ids, ids[0]])

    assert [r.connection_id for r in results] == ids
    assert seen == ["0", "1", "2", "3"]
    assert world.calls["probe"] == 4


def test_a_connection_another_check_holds_is_skipped_and_its_claim_left_alone(app: Any, world: FakeWorld) -> None:
    free, busy = _due(app, 2)
    held_until = timezone.now() + timedelta(minutes=1)
    Connection.objects.filter(pk=busy).update(lease_owner="check:1:other", lease_until=held_until)

    results = lifecycle.connections_check(connection_ids=[free, busy])

    assert [(r.connection_id, r.outcome) for r in results] == [(free, Outcome.OK), (busy, Outcome.SKIPPED)]
    assert world.calls["probe"] == 1
    busy_row = Connection.objects.get(pk=busy)
    assert (busy_row.lease_owner, busy_row.lease_until) == ("check:1:other", held_until)


def test_a_claim_that_changed_hands_before_the_chunk_released_it_is_not_overwritten(
    app: Any, world: FakeWorld
) -> None:
    first, second = _due(app, 2)
    taken_until = timezone.now() + timedelta(minutes=5)

    def someone_takes_the_first_over() -> None:
        # While the second is probed, a person's reconnect (say) takes the first connection over.
        Connection.objects.filter(pk=first).update(lease_owner="check:9:person", lease_until=taken_until)

    world.probe_script[:] = [None, someone_takes_the_first_over]

    results = lifecycle.connections_check(connection_ids=[first, second])

    assert [(r.connection_id, r.outcome) for r in results] == [(first, Outcome.SKIPPED), (second, Outcome.OK)]
    taken = Connection.objects.get(pk=first)
    assert (taken.lease_owner, taken.lease_until, taken.last_checked_at) == ("check:9:person", taken_until, None)
    assert Connection.objects.get(pk=second).lease_owner == ""


def test_a_claim_that_could_run_out_during_a_check_is_extended_first(
    app: Any, world: FakeWorld, settings: Any
) -> None:
    settings.LIFECYCLE_CHECK_LEASE_SECONDS = 5  # shorter than a check may take: every check extends it
    ids = _due(app, 2)
    claims_seen: list[Any] = []
    world.probe_script[:] = [
        lambda: claims_seen.append(Connection.objects.get(pk=ids[0]).lease_until),
        lambda: claims_seen.append(Connection.objects.get(pk=ids[1]).lease_until),
    ]

    results = lifecycle.connections_check(connection_ids=ids)

    assert [r.outcome for r in results] == [Outcome.OK, Outcome.OK]
    assert all(until - timezone.now() > timedelta(seconds=30) for until in claims_seen)


def test_a_claim_lost_before_its_turn_is_skipped_without_calling_the_provider(
    app: Any, world: FakeWorld, settings: Any
) -> None:
    settings.LIFECYCLE_CHECK_LEASE_SECONDS = 5
    first, second = _due(app, 2)

    def the_second_changes_hands() -> None:
        Connection.objects.filter(pk=second).update(lease_owner="check:9:person")

    world.probe_script[:] = [the_second_changes_hands]

    results = lifecycle.connections_check(connection_ids=[first, second])

    assert [r.outcome for r in results] == [Outcome.OK, Outcome.SKIPPED]
    assert world.calls["probe"] == 1
    assert Connection.objects.get(pk=second).lease_owner == "check:9:person"


def test_tokens_renewed_in_a_chunk_are_stored_before_the_next_connection_is_checked(
    app: Any, world: FakeWorld
) -> None:
    renewing = make_connection(app, next_check_at=timezone.now(), access_expires_in=timedelta(seconds=30))
    (routine,) = _due(app, 1)
    stored_while_second_probed: list[str] = []
    world.probe_script[:] = [
        None,
        lambda: stored_while_second_probed.extend(
            Credential.objects.get(connection=renewing, kind="access").value for _ in [0]
        ),
    ]

    results = lifecycle.connections_check(connection_ids=[renewing.pk, routine])

    assert [(r.outcome, r.renewed) for r in results] == [(Outcome.OK, True), (Outcome.OK, False)]
    assert stored_while_second_probed[0].startswith("access-renewed-")
    assert ConnectionEvent.objects.filter(connection=renewing, kind=ConnectionEvent.Kind.RENEWED).count() == 1


def test_one_connection_whose_tokens_no_key_decrypts_fails_alone(app: Any, world: FakeWorld) -> None:
    good, unreadable, other = _due(app, 3)
    token = Fernet(Fernet.generate_key()).encrypt(b"from another key").decode()
    column = Credential._meta.get_field("value").column
    with db_connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Credential._meta.db_table} SET {column} = %s WHERE connection_id = %s",  # noqa: S608
            [token, unreadable],
        )

    results = lifecycle.connections_check(connection_ids=[good, unreadable, other])

    assert [r.outcome for r in results] == [Outcome.OK, Outcome.PERMANENT, Outcome.OK]
    flagged = Connection.objects.get(pk=unreadable)
    assert (flagged.status, flagged.reason) == (Status.NEEDS_RECONNECT, "credentials_unreadable")
    assert world.calls["probe"] == 2


def test_a_breaker_opened_by_the_chunk_defers_the_rest_of_it(app: Any, world: FakeWorld, settings: Any) -> None:
    from connections.providers.errors import ErrorKind, ProviderError

    settings.BREAKER_FAILURE_THRESHOLD = 2
    ids = _due(app, 5)
    world.probe_script[:] = [ProviderError(ErrorKind.TRANSIENT, "down")] * 2

    results = lifecycle.connections_check(connection_ids=ids)

    assert [r.outcome for r in results] == [Outcome.TRANSIENT] * 2 + [Outcome.DEFERRED] * 3
    assert world.calls["probe"] == 2
