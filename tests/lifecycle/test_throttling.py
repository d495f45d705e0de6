"""The per-app circuit breaker and the shared outbound rate limit."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection as db_connection
from django.utils import timezone

from connections import jobs, lifecycle, throttling
from connections.lifecycle import Outcome, connection_check
from connections.models import ConnectionEvent, Credential, ProviderApp, Status
from connections.providers.errors import ProviderError
from connections.throttling import Deferral, Permit, breaker_permit, rate_limit_try_acquire
from tests.conftest import REDIS_URL
from tests.factories import ProviderAppFactory

from .conftest import FakeWorld, make_connection

Breaker = ProviderApp.BreakerState


@pytest.fixture
def small_breaker(settings: Any) -> None:
    settings.BREAKER_FAILURE_THRESHOLD = 3
    settings.BREAKER_WINDOW_SECONDS = 60
    settings.BREAKER_COOLDOWN_SECONDS = 120


def _fail_checks(app: Any, world: FakeWorld, count: int) -> list[Any]:
    connections = [make_connection(app) for _ in range(count)]
    for connection in connections:
        world.probe_script.append(ProviderError.transient("Fake: HTTP 503."))
        connection_check(connection_id=connection.pk, force=True)
    return connections


@pytest.mark.django_db
@pytest.mark.usefixtures("small_breaker")
def test_breaker_opens_after_n_transient_failures_across_connections(app: Any, world: FakeWorld) -> None:
    connections = _fail_checks(app, world, 2)
    app.refresh_from_db()
    assert app.breaker_state == Breaker.CLOSED
    connections += _fail_checks(app, world, 1)
    app.refresh_from_db()
    assert app.breaker_state == Breaker.OPEN
    assert app.breaker_opened_at is not None
    # The breaker opened; it did not touch any connection's status.
    for connection in connections:
        connection.refresh_from_db()
        assert connection.status == Status.ACTIVE
        assert connection.consecutive_failures == 1


@pytest.mark.django_db
@pytest.mark.usefixtures("small_breaker")
def test_failures_outside_the_window_do_not_add_up(app: Any, world: FakeWorld) -> None:
    _fail_checks(app, world, 2)
    ProviderApp.objects.filter(pk=app.pk).update(breaker_window_started_at=timezone.now() - timedelta(minutes=5))
    _fail_checks(app, world, 1)
    app.refresh_from_db()
    assert app.breaker_state == Breaker.CLOSED
    assert app.breaker_failures == 1


@pytest.mark.django_db
@pytest.mark.usefixtures("small_breaker")
def test_open_breaker_defers_checks_without_calling_or_changing_status(app: Any, world: FakeWorld) -> None:
    ProviderApp.objects.filter(pk=app.pk).update(breaker_state=Breaker.OPEN, breaker_opened_at=timezone.now())
    for status in (Status.ACTIVE, Status.DEGRADED):
        connection = make_connection(app, status=status)
        result = connection_check(connection_id=connection.pk, force=True)
        connection.refresh_from_db()
        assert result.outcome == Outcome.DEFERRED
        assert connection.status == status
        assert connection.next_check_at > timezone.now() + timedelta(seconds=100)
        assert connection.lease_owner == ""
        assert not ConnectionEvent.objects.filter(connection=connection).exists()
    assert world.calls["probe"] == world.calls["renew"] == 0


@pytest.mark.django_db
@pytest.mark.usefixtures("small_breaker")
def test_half_open_breaker_lets_exactly_one_trial_through(app: Any) -> None:
    ProviderApp.objects.filter(pk=app.pk).update(
        breaker_state=Breaker.OPEN, breaker_opened_at=timezone.now() - timedelta(minutes=3)
    )
    first = breaker_permit(app=ProviderApp.objects.get(pk=app.pk))
    second = breaker_permit(app=ProviderApp.objects.get(pk=app.pk))
    assert isinstance(first, Permit)
    assert first.probe
    assert isinstance(second, Deferral)
    assert ProviderApp.objects.get(pk=app.pk).breaker_state == Breaker.HALF_OPEN


@pytest.mark.django_db
@pytest.mark.usefixtures("small_breaker")
def test_successful_trial_closes_the_breaker(app: Any, world: FakeWorld) -> None:
    ProviderApp.objects.filter(pk=app.pk).update(
        breaker_state=Breaker.OPEN, breaker_opened_at=timezone.now() - timedelta(minutes=3), breaker_failures=3
    )
    connection = make_connection(app)
    assert connection_check(connection_id=connection.pk, force=True).outcome == Outcome.OK
    app.refresh_from_db()
    assert app.breaker_state == Breaker.CLOSED
    assert app.breaker_failures == 0
    assert world.calls["probe"] == 1


@pytest.mark.django_db
@pytest.mark.usefixtures("small_breaker")
def test_failed_trial_reopens_the_breaker_for_another_cooldown(app: Any, world: FakeWorld) -> None:
    long_ago = timezone.now() - timedelta(minutes=3)
    ProviderApp.objects.filter(pk=app.pk).update(breaker_state=Breaker.OPEN, breaker_opened_at=long_ago)
    connection = make_connection(app)
    world.probe_script.append(ProviderError.transient("Fake: still down."))
    connection_check(connection_id=connection.pk, force=True)
    app.refresh_from_db()
    assert app.breaker_state == Breaker.OPEN
    assert app.breaker_opened_at > long_ago
    connection.refresh_from_db()
    assert connection.status == Status.ACTIVE
    # And the next check waits again, with no call.
    other = make_connection(app)
    assert connection_check(connection_id=other.pk, force=True).outcome == Outcome.DEFERRED
    assert world.calls["probe"] == 1


@pytest.mark.django_db
@pytest.mark.usefixtures("small_breaker")
def test_permanent_answer_on_a_trial_closes_the_breaker_because_the_provider_is_up(app: Any, world: FakeWorld) -> None:
    ProviderApp.objects.filter(pk=app.pk).update(
        breaker_state=Breaker.OPEN, breaker_opened_at=timezone.now() - timedelta(minutes=3)
    )
    connection = make_connection(app)
    world.probe_script.append(ProviderError.reauth("revoked", "Fake: revoked."))
    connection_check(connection_id=connection.pk, force=True)
    app.refresh_from_db()
    assert app.breaker_state == Breaker.CLOSED


@pytest.mark.django_db
@pytest.mark.usefixtures("small_breaker")
def test_trial_claim_abandoned_by_a_dead_worker_can_be_claimed_again(app: Any) -> None:
    ProviderApp.objects.filter(pk=app.pk).update(
        breaker_state=Breaker.HALF_OPEN, breaker_opened_at=timezone.now() - timedelta(minutes=3)
    )
    permit = breaker_permit(app=ProviderApp.objects.get(pk=app.pk))
    assert isinstance(permit, Permit)
    assert permit.probe


# --- Rate limit ------------------------------------------------------------------------------


@pytest.fixture
def limited_app(db: None) -> Any:
    return ProviderAppFactory(name=f"limited-{uuid.uuid4().hex[:6]}", rate_limit_per_second=5, rate_tokens=5)


def _simulate(app: Any, *, attempts: int, step: timedelta, offset_us: int = 0) -> list[timedelta]:
    """Try to take a token every ``step``; return the offsets at which one was granted."""
    start = timezone.now() + timedelta(microseconds=offset_us)
    granted = []
    for i in range(attempts):
        at = start + step * i
        if rate_limit_try_acquire(app=app, now=at) == 0:
            granted.append(at - start)
    return granted


def _never_exceeds(granted: list[timedelta], *, limit: float) -> None:
    refill, capacity = throttling.bucket_shape(limit)
    for i, first in enumerate(granted):
        for j in range(i, len(granted)):
            window = (granted[j] - first).total_seconds()
            # In any window of length w, at most the burst plus w seconds of refill ...
            assert j - i + 1 <= capacity + refill * window + 1e-6
            # ... so a window of a second (plus the jitter allowance) never holds more than the limit.
            if window <= 1 + throttling.RATE_LIMIT_JITTER_SECONDS:
                assert j - i + 1 <= max(limit, 1)


def _used_for(granted: list[timedelta], *, limit: float, seconds: float, step: float) -> None:
    # The limit is used, not merely respected: the burst plus the refill over the run
    # (each token is taken at the first attempt after it is there, up to a step late).
    refill, capacity = throttling.bucket_shape(limit)
    assert capacity + seconds // (1 / refill + step) - 1 <= len(granted) <= capacity + refill * seconds + 1e-6


@pytest.mark.parametrize(
    ("limit", "capacity", "refill"), [(100, 5, 95 / 1.1), (5, 1, 4 / 1.1), (1, 1, 1), (0.5, 1, 0.5)]
)
def test_bucket_keeps_a_small_burst_and_refills_the_rest_of_the_limit(
    limit: float, capacity: float, refill: float
) -> None:
    assert throttling.bucket_shape(limit) == pytest.approx((refill, capacity))


@pytest.mark.django_db
def test_database_rate_limit_never_exceeds_the_configured_rate(limited_app: Any) -> None:
    granted = _simulate(limited_app, attempts=400, step=timedelta(milliseconds=10))
    _never_exceeds(granted, limit=5)
    _used_for(granted, limit=5, seconds=4, step=0.01)


@pytest.mark.django_db
def test_no_second_carries_more_calls_than_the_limit(limited_app: Any) -> None:
    # The bucket's first burst and the next second's refill together stay within the limit.
    ProviderApp.objects.filter(pk=limited_app.pk).update(rate_limit_per_second=100)
    app = ProviderApp.objects.get(pk=limited_app.pk)
    granted = _simulate(app, attempts=3000, step=timedelta(milliseconds=1))
    _never_exceeds(granted, limit=100)
    _used_for(granted, limit=100, seconds=3, step=0.001)


@pytest.mark.django_db
def test_database_rate_limit_says_how_long_to_wait(limited_app: Any) -> None:
    now = timezone.now()
    refill, capacity = throttling.bucket_shape(5)
    for _ in range(int(capacity)):
        assert rate_limit_try_acquire(app=limited_app, now=now) == 0
    wait = rate_limit_try_acquire(app=limited_app, now=now)
    assert wait == pytest.approx(1 / refill)


@pytest.mark.django_db
def test_rate_limited_check_defers_itself_instead_of_calling(limited_app: Any, world: FakeWorld, settings: Any) -> None:
    settings.RATE_LIMIT_MAX_WAIT_SECONDS = 0
    ProviderApp.objects.filter(pk=limited_app.pk).update(rate_tokens=0, rate_updated_at=timezone.now())
    connection = make_connection(ProviderApp.objects.get(pk=limited_app.pk))
    result = connection_check(connection_id=connection.pk, force=True)
    connection.refresh_from_db()
    assert result.outcome == Outcome.DEFERRED
    assert world.calls["probe"] == 0
    assert connection.status == Status.ACTIVE
    assert connection.next_check_at > timezone.now()


def _spent(app: Any) -> Any:
    """The app's bucket is empty and stays so for the test (its clock an hour ahead)."""
    ProviderApp.objects.filter(pk=app.pk).update(
        rate_limit_per_second=5, rate_tokens=0, rate_updated_at=timezone.now() + timedelta(hours=1)
    )
    return ProviderApp.objects.get(pk=app.pk)


@pytest.mark.django_db
def test_app_token_refresh_with_no_token_free_waits_for_the_next_run_without_calling(
    limited_app: Any, world: FakeWorld, settings: Any
) -> None:
    settings.RATE_LIMIT_MAX_WAIT_SECONDS = 0
    _spent(limited_app)

    outcome = jobs.app_tokens_refresh()

    assert outcome == {f"{limited_app.provider}/{limited_app.environment}/{limited_app.name}": "deferred (rate limit)"}
    assert world.calls["app_token"] == 0
    assert not Credential.objects.filter(provider_app=limited_app).exists()
    # Once the bucket has room again, the next run fetches it.
    ProviderApp.objects.filter(pk=limited_app.pk).update(rate_tokens=1, rate_updated_at=None)
    assert list(jobs.app_tokens_refresh().values()) == ["ok"]
    assert world.calls["app_token"] == 1


@pytest.mark.django_db
def test_disconnect_with_no_token_free_deletes_the_secrets_without_calling_and_says_so(
    limited_app: Any, world: FakeWorld, settings: Any
) -> None:
    settings.RATE_LIMIT_MAX_WAIT_SECONDS = 0
    connection = make_connection(_spent(limited_app))

    result = lifecycle.connection_disconnect(connection=connection, actor_label="web")

    assert world.calls["revoke"] == 0
    assert result.status == Status.DISCONNECTED
    assert not Credential.objects.filter(connection=connection).exists()
    event = ConnectionEvent.objects.get(connection=connection)
    assert event.details["revoke"] == "not revoked: the provider's call budget was spent"
    assert event.details["revoke_error"] == "the portal's call limit was reached"


@pytest.mark.django_db
def test_zero_rate_means_no_limit(app: Any) -> None:
    now = timezone.now()
    assert all(rate_limit_try_acquire(app=app, now=now) == 0 for _ in range(100))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_database_rate_limit_holds_under_concurrent_workers(limited_app: Any) -> None:
    ProviderApp.objects.filter(pk=limited_app.pk).update(rate_limit_per_second=100)  # a burst of 5
    limited_app.refresh_from_db()
    now = timezone.now()
    barrier = threading.Barrier(8)
    granted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            barrier.wait(timeout=30)
            mine = sum(1 for _ in range(10) if rate_limit_try_acquire(app=limited_app, now=now) == 0)
            with lock:
                granted.append(mine)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(granted) == 5  # the burst, and not one more, at a single instant


@pytest.mark.redis
@pytest.mark.django_db
def test_redis_rate_limit_never_exceeds_the_configured_rate(limited_app: Any, settings: Any) -> None:
    settings.RATE_LIMIT_REDIS_URL = REDIS_URL
    # Several start offsets: a rounding slip in the bucket's stored timestamp
    # shows up only for some of them.
    for offset in range(0, 1000, 97):
        settings.RATE_LIMIT_REDIS_PREFIX = f"test:{uuid.uuid4().hex}:"
        granted = _simulate(limited_app, attempts=400, step=timedelta(milliseconds=10), offset_us=offset)
        _never_exceeds(granted, limit=5)
        _used_for(granted, limit=5, seconds=4, step=0.01)
    # The database bucket was not used.
    assert ProviderApp.objects.get(pk=limited_app.pk).rate_updated_at is None


@pytest.mark.django_db
def test_unreachable_redis_falls_back_to_the_database_limit(limited_app: Any, settings: Any) -> None:
    settings.RATE_LIMIT_REDIS_URL = "redis://127.0.0.1:1/0"  # a fresh URL gets a fresh client
    ProviderApp.objects.filter(pk=limited_app.pk).update(rate_limit_per_second=100)  # a burst of 5
    limited_app.refresh_from_db()
    now = timezone.now()
    results = [rate_limit_try_acquire(app=limited_app, now=now) for _ in range(6)]
    assert results[:5] == [0, 0, 0, 0, 0]
    assert results[5] > 0
    assert ProviderApp.objects.get(pk=limited_app.pk).rate_updated_at is not None
