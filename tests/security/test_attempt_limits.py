"""The store behind every limit on what people try: a rolling window, all-or-nothing, shared by every process.

The database store runs everywhere; the Redis store where a Redis server
answers (keys under a prefix of their own per test). Concurrency is tested on
PostgreSQL, where ``select_for_update`` really locks.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from django.db import connection as db_connection

from connections import attempts
from connections import models as m
from tests.conftest import REDIS_URL

T0 = 1_800_000_000.0  # a fixed "now", seconds since the epoch
FIVE_PER_MINUTE = attempts.Limit(name="test-five-a-minute", attempts=5, window_seconds=60)
TWO_PER_HOUR = attempts.Limit(name="test-two-an-hour", attempts=2, window_seconds=3600)


@pytest.fixture(params=["database", pytest.param("redis", marks=pytest.mark.redis)])
def store(request: pytest.FixtureRequest, settings: Any, db: None) -> str:
    if request.param == "redis":
        settings.ATTEMPT_LIMIT_REDIS_URL = REDIS_URL
        settings.ATTEMPT_LIMIT_REDIS_PREFIX = f"test:{uuid.uuid4().hex}:"
    return str(request.param)


def take(limit: attempts.Limit, subject: str, now: float) -> float:
    """0.0 when taken, else the seconds until an attempt is free."""
    try:
        attempts.attempts_take(subjects=[(limit, subject)], now=now)
    except attempts.LimitReached as exc:
        return exc.retry_after
    return 0.0


def test_the_limit_holds_and_frees_up_exactly_when_the_oldest_attempt_leaves_the_window(store: str) -> None:
    for second in range(5):
        assert take(FIVE_PER_MINUTE, "user:1", T0 + second) == 0.0

    # The sixth, ten seconds after the first: free again when the first is 60 s old.
    assert take(FIVE_PER_MINUTE, "user:1", T0 + 10) == pytest.approx(50.0)
    assert take(FIVE_PER_MINUTE, "user:1", T0 + 59.9) == pytest.approx(0.1, abs=0.01)
    assert take(FIVE_PER_MINUTE, "user:1", T0 + 60.01) == 0.0
    # Only the first has left: the window still holds the other four and the new one.
    assert take(FIVE_PER_MINUTE, "user:1", T0 + 60.5) > 0


def test_refused_attempts_do_not_count(store: str) -> None:
    for second in range(5):
        take(FIVE_PER_MINUTE, "user:1", T0 + second)
    for second in range(10, 50):
        assert take(FIVE_PER_MINUTE, "user:1", T0 + second) > 0  # hammering does not extend the lockout
    assert take(FIVE_PER_MINUTE, "user:1", T0 + 60.5) == 0.0


def test_subjects_and_limits_are_counted_apart(store: str) -> None:
    for second in range(5):
        take(FIVE_PER_MINUTE, "user:1", T0 + second)
    assert take(FIVE_PER_MINUTE, "user:1", T0 + 6) > 0
    assert take(FIVE_PER_MINUTE, "user:2", T0 + 6) == 0.0
    assert take(TWO_PER_HOUR, "user:1", T0 + 6) == 0.0


def test_several_limits_are_taken_all_or_nothing(store: str) -> None:
    both = [(FIVE_PER_MINUTE, "address:10.0.0.1"), (TWO_PER_HOUR, "user:1")]
    attempts.attempts_take(subjects=both, now=T0)
    attempts.attempts_take(subjects=both, now=T0 + 1)

    with pytest.raises(attempts.LimitReached) as refused:
        attempts.attempts_take(subjects=both, now=T0 + 2)

    assert refused.value.limit == TWO_PER_HOUR
    assert refused.value.retry_after == pytest.approx(3598.0)
    # The refusal took nothing from the address's limit: three more fit there.
    for second in range(3, 6):
        assert take(FIVE_PER_MINUTE, "address:10.0.0.1", T0 + second) == 0.0
    assert take(FIVE_PER_MINUTE, "address:10.0.0.1", T0 + 6) > 0


def test_an_attempt_handed_back_no_longer_counts(store: str) -> None:
    taken = [attempts.attempts_take(subjects=[(TWO_PER_HOUR, "user:1")], now=T0 + i) for i in range(2)]
    assert take(TWO_PER_HOUR, "user:1", T0 + 2) > 0

    attempts.attempts_give_back(taken=taken[0])

    assert take(TWO_PER_HOUR, "user:1", T0 + 3) == 0.0
    assert take(TWO_PER_HOUR, "user:1", T0 + 4) > 0


def test_a_limit_of_zero_means_no_limit(store: str) -> None:
    off = attempts.Limit(name="test-off", attempts=0, window_seconds=60)
    assert all(take(off, "user:1", T0) == 0.0 for _ in range(50))


def test_limits_come_from_the_settings(settings: Any) -> None:
    settings.PASSWORD_RESETS_PER_EMAIL = 2
    settings.CREDENTIAL_FAILURES_PER_ADDRESS = 7
    settings.CREDENTIAL_FAILURE_WINDOW_SECONDS = 120

    assert attempts.limit(attempts.LimitName.PASSWORD_RESETS_PER_EMAIL) == attempts.Limit(
        "password-resets-email", 2, 3600
    )
    assert attempts.limit(attempts.LimitName.CREDENTIAL_FAILURES_PER_ADDRESS) == attempts.Limit(
        "credential-failures-address", 7, 120
    )


@pytest.mark.django_db
def test_the_database_keeps_no_subject_in_clear() -> None:
    attempts.attempts_take(subjects=[(TWO_PER_HOUR, "victim@example.test"), (FIVE_PER_MINUTE, "203.0.113.7")], now=T0)

    rows = list(m.AttemptWindow.objects.values())
    assert len(rows) == 2
    assert "victim@example.test" not in str(rows)
    assert "203.0.113.7" not in str(rows)


@pytest.mark.django_db
def test_pruning_deletes_only_windows_that_have_passed() -> None:
    take(FIVE_PER_MINUTE, "old", T0)
    take(TWO_PER_HOUR, "recent", T0)

    assert attempts.attempt_windows_prune(now=T0 + 61) == 1

    assert take(TWO_PER_HOUR, "recent", T0 + 62) == 0.0
    assert take(TWO_PER_HOUR, "recent", T0 + 63) > 0  # its attempts survived the prune


@pytest.mark.django_db
def test_an_unreachable_redis_falls_back_to_the_database_limit(settings: Any) -> None:
    settings.ATTEMPT_LIMIT_REDIS_URL = "redis://127.0.0.1:1/0"
    results = [take(TWO_PER_HOUR, "user:1", T0 + i) for i in range(3)]
    assert results[:2] == [0.0, 0.0]
    assert results[2] > 0
    assert m.AttemptWindow.objects.count() == 1


@pytest.mark.redis
@pytest.mark.django_db
def test_the_redis_store_keeps_its_attempts_in_redis(settings: Any) -> None:
    settings.ATTEMPT_LIMIT_REDIS_URL = REDIS_URL
    settings.ATTEMPT_LIMIT_REDIS_PREFIX = f"test:{uuid.uuid4().hex}:"
    for i in range(2):
        take(TWO_PER_HOUR, "user:1", T0 + i)
    assert take(TWO_PER_HOUR, "user:1", T0 + 2) > 0
    assert m.AttemptWindow.objects.count() == 0


def _race(threads: int, each: int, limit: attempts.Limit) -> int:
    """``threads`` workers, released together, each trying ``each`` times at the same instant; how many got one."""
    barrier = threading.Barrier(threads)
    granted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            barrier.wait(timeout=30)
            mine = sum(1 for _ in range(each) if take(limit, "user:shared", T0) == 0.0)
            with lock:
                granted.append(mine)
        finally:
            db_connection.close()

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=60)
    return sum(granted)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_takes_in_the_database_never_pass_the_limit() -> None:
    assert _race(threads=8, each=5, limit=FIVE_PER_MINUTE) == 5


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_concurrent_takes_in_redis_never_pass_the_limit(settings: Any) -> None:
    settings.ATTEMPT_LIMIT_REDIS_URL = REDIS_URL
    settings.ATTEMPT_LIMIT_REDIS_PREFIX = f"test:{uuid.uuid4().hex}:"
    assert _race(threads=8, each=5, limit=FIVE_PER_MINUTE) == 5
