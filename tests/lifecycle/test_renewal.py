"""Renewal: ahead of expiry, committed first, single-flight, outcome-unknown retry, bad rows pushed back."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection as db_connection
from django.utils import timezone

from connections import lifecycle
from connections.lifecycle import Outcome, connection_check
from connections.models import Connection, ConnectionEvent, Credential, Status
from connections.providers.errors import FailureReason, ProviderError

from .conftest import FakeWorld, grant_for, make_connection


def _values(connection: Connection) -> dict[str, str]:
    return dict(Credential.objects.filter(connection=connection).values_list("kind", "value"))


@pytest.mark.django_db
def test_token_close_to_expiry_is_renewed_before_the_probe(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app, access_expires_in=timedelta(minutes=1))
    result = connection_check(connection_id=connection.pk, force=True)
    assert result.outcome == Outcome.OK
    assert result.renewed
    assert world.calls["renew"] == 1
    assert world.access_tokens_probed == [_values(connection)["access"]]
    assert _values(connection)["access"].startswith("access-renewed-")
    event = ConnectionEvent.objects.get(connection=connection)
    assert event.kind == ConnectionEvent.Kind.RENEWED
    assert "renewed-" not in event.message
    assert "renewed-" not in str(event.details)
    assert sorted(event.details["kinds"]) == ["access", "refresh"]


@pytest.mark.django_db
def test_token_far_from_expiry_is_not_renewed(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app, access_expires_in=timedelta(minutes=15))
    connection_check(connection_id=connection.pk, force=True)
    assert world.calls["renew"] == 0


@pytest.mark.django_db
def test_next_check_lands_before_the_renewal_point(app: Any) -> None:
    connection = make_connection(app, access_expires_in=timedelta(minutes=10))
    connection_check(connection_id=connection.pk, force=True)
    connection.refresh_from_db()
    access = Credential.objects.get(connection=connection, kind="access")
    renewal_point = access.expires_at - timedelta(minutes=2)  # max(2 min, 10 % of 20 min)
    assert connection.next_check_at <= renewal_point
    assert connection.next_check_at >= renewal_point - timedelta(seconds=120)


def test_renewal_schedule_never_spins_on_a_token_shorter_than_its_margin() -> None:
    now = timezone.now()
    nxt = lifecycle.rules.next_check_after_success(
        renewal_due_at=now - timedelta(minutes=5), now=now, tunables=lifecycle.tunables()
    )
    assert nxt >= now + timedelta(seconds=30)


@pytest.mark.django_db
def test_renewal_is_committed_even_when_the_probe_then_breaks(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app, access_expires_in=timedelta(seconds=20))
    world.probe_script.append(RuntimeError("boom"))
    result = connection_check(connection_id=connection.pk, force=True)
    assert result.outcome == Outcome.ERROR
    assert _values(connection)["refresh"].startswith("refresh-renewed-")
    assert ConnectionEvent.objects.filter(connection=connection, kind=ConnectionEvent.Kind.RENEWED).exists()


@pytest.mark.django_db
def test_reconnect_by_follows_the_renewed_refresh_token(app: Any) -> None:
    connection = make_connection(app, access_expires_in=timedelta(seconds=20))
    connection_check(connection_id=connection.pk, force=True)
    connection.refresh_from_db()
    refresh = Credential.objects.get(connection=connection, kind="refresh")
    assert connection.reconnect_by == refresh.expires_at


@pytest.mark.django_db
def test_renewal_with_unknown_outcome_is_retried_once_with_the_same_token(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app, access_expires_in=timedelta(seconds=20))
    world.renew_script.append(ProviderError.transient("Fake: no reply within 10 s.", outcome_unknown=True))
    result = connection_check(connection_id=connection.pk, force=True)
    assert result.outcome == Outcome.OK
    assert world.refresh_tokens_used == ["refresh-0", "refresh-0"]
    assert ConnectionEvent.objects.filter(connection=connection).count() == 1  # RENEWED only


@pytest.mark.django_db
def test_renewal_unknown_twice_counts_as_one_transient_failure(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app, access_expires_in=timedelta(seconds=20))
    for _ in range(2):
        world.renew_script.append(ProviderError.transient("Fake: no reply.", outcome_unknown=True))
    result = connection_check(connection_id=connection.pk, force=True)
    connection.refresh_from_db()
    assert result.outcome == Outcome.TRANSIENT
    assert world.calls["renew"] == 2
    assert connection.consecutive_failures == 1
    assert _values(connection)["refresh"] == "refresh-0"


@pytest.mark.django_db
def test_retry_after_unknown_outcome_that_finds_the_token_used_is_permanent(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app, access_expires_in=timedelta(seconds=20))
    world.renew_script.append(ProviderError.transient("Fake: no reply.", outcome_unknown=True))
    world.renew_script.append(ProviderError.reauth(FailureReason.REVOKED, "Fake: refresh token already used."))
    connection_check(connection_id=connection.pk, force=True)
    connection.refresh_from_db()
    assert (connection.status, connection.reason) == (Status.NEEDS_RECONNECT, "revoked")


@pytest.mark.django_db
def test_transient_renewal_failure_without_unknown_outcome_is_not_retried(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app, access_expires_in=timedelta(seconds=20))
    world.renew_script.append(ProviderError.transient("Fake: refused the connection."))
    connection_check(connection_id=connection.pk, force=True)
    assert world.calls["renew"] == 1
    assert world.calls["probe"] == 0


@pytest.mark.django_db
def test_reconnect_during_a_renewal_wins_and_the_stale_tokens_are_dropped(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app, access_expires_in=timedelta(seconds=20))

    def reconnect_meanwhile() -> None:
        world.on_renew = None
        lifecycle.grant_apply(connection=connection, grant=grant_for(connection, "fresh"), purpose="reconnect")

    world.on_renew = reconnect_meanwhile
    result = connection_check(connection_id=connection.pk, force=True)
    assert result.outcome == Outcome.SKIPPED
    assert _values(connection) == {"access": "access-fresh", "refresh": "refresh-fresh"}
    assert not ConnectionEvent.objects.filter(connection=connection, kind=ConnectionEvent.Kind.RENEWED).exists()


@pytest.mark.django_db
def test_disconnect_during_a_renewal_leaves_no_secret_behind(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app, access_expires_in=timedelta(seconds=20))

    def disconnect_meanwhile() -> None:
        world.on_renew = None
        lifecycle.connection_disconnect(connection=connection)

    world.on_renew = disconnect_meanwhile
    connection_check(connection_id=connection.pk, force=True)
    connection.refresh_from_db()
    assert connection.status == Status.DISCONNECTED
    assert not Credential.objects.filter(connection=connection).exists()


@pytest.mark.django_db
def test_unexpected_error_pushes_the_row_forward_and_releases_it(
    app: Any, world: FakeWorld, caplog: pytest.LogCaptureFixture
) -> None:
    connection = make_connection(app, next_check_at=timezone.now() - timedelta(minutes=1))
    world.probe_script.append(KeyError("Authorization: Bearer access-0"))
    before = timezone.now()
    with caplog.at_level(logging.ERROR, logger="connections.lifecycle"):
        result = connection_check(connection_id=connection.pk)
    connection.refresh_from_db()
    assert result.outcome == Outcome.ERROR
    assert connection.status == Status.ACTIVE
    assert connection.next_check_at >= before + timedelta(minutes=29)
    assert connection.lease_owner == ""
    assert connection.lease_until is None
    assert all("access-0" not in record.getMessage() for record in caplog.records)
    event = ConnectionEvent.objects.get(connection=connection)
    assert event.kind == ConnectionEvent.Kind.CHECK_FAILED
    assert "access-0" not in event.message
    assert "access-0" not in str(event.details)
    # Not due any more: a routine check leaves it alone instead of crash-looping.
    assert connection_check(connection_id=connection.pk).outcome == Outcome.SKIPPED


@pytest.mark.django_db
def test_a_second_delivery_of_the_same_check_does_nothing_while_the_first_holds_it(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app, access_expires_in=timedelta(seconds=20))
    seen: list[str] = []

    def second_delivery() -> None:
        world.on_renew = None
        seen.append(connection_check(connection_id=connection.pk, force=True).outcome)

    world.on_renew = second_delivery
    connection_check(connection_id=connection.pk, force=True)
    assert seen == [Outcome.SKIPPED]
    assert world.calls["renew"] == 1


# --- PostgreSQL: real concurrency -----------------------------------------------------------------


def _in_thread(target: Any, *args: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(target(*args))
        except BaseException as exc:  # surfaced by the test
            out.append(exc)
        finally:
            db_connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_checking_one_connection_renew_exactly_once(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app, access_expires_in=timedelta(seconds=20))
    in_renewal = threading.Event()
    other_done = threading.Event()

    def hold_renewal() -> None:
        in_renewal.set()
        other_done.wait(timeout=30)

    world.on_renew = hold_renewal
    first, first_out = _in_thread(lambda: connection_check(connection_id=connection.pk, force=True))
    assert in_renewal.wait(timeout=30)
    second, second_out = _in_thread(lambda: connection_check(connection_id=connection.pk, force=True))
    second.join(timeout=30)
    other_done.set()
    first.join(timeout=30)

    assert second_out[0].outcome == Outcome.SKIPPED
    assert first_out[0].outcome == Outcome.OK
    assert world.calls["renew"] == 1
    assert world.refresh_tokens_used == ["refresh-0"]
    connection.refresh_from_db()
    assert connection.status == Status.ACTIVE
    assert _values(connection)["refresh"].startswith("refresh-renewed-")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_many_workers_started_together_renew_a_rotating_token_once(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app, access_expires_in=timedelta(seconds=20))
    workers = 6
    barrier = threading.Barrier(workers)
    lock = threading.Lock()
    finished = {"count": 0}
    others_finished = threading.Event()
    # The one that claims holds its renewal until every other worker has given
    # up, so all of them really overlap with it.
    world.on_renew = lambda: others_finished.wait(timeout=30)

    def check() -> Any:
        barrier.wait(timeout=30)
        result = connection_check(connection_id=connection.pk, force=True)
        with lock:
            finished["count"] += 1
            if finished["count"] == workers - 1:
                others_finished.set()
        return result

    threads = [_in_thread(check) for _ in range(workers)]
    for thread, _ in threads:
        thread.join(timeout=60)
    outcomes = sorted(out[0].outcome for _, out in threads)
    assert outcomes.count(Outcome.OK) == 1
    assert outcomes.count(Outcome.SKIPPED) == workers - 1
    assert world.refresh_tokens_used == ["refresh-0"]
    assert ConnectionEvent.objects.filter(connection=connection, kind=ConnectionEvent.Kind.RENEWED).count() == 1
