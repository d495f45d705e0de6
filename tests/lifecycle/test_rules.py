"""The status table of ``connections.lifecycle.rules`` as a table, without a database.

Each row: the status a connection is in, what happened, and what the rules
must answer (status, reason, failure count, scheduled or not, event kinds).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connections.lifecycle import rules
from connections.lifecycle.config import tunables_from
from connections.lifecycle.rules import (
    ACTIVE,
    DEGRADED,
    DISCONNECTED,
    NEEDS_RECONNECT,
    PENDING,
    State,
    Tunables,
    decide,
)
from connections.models import ConnectionEvent, Reason, Status

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
T = Tunables()
RENEWAL = NOW + timedelta(minutes=18)

STATES = {
    PENDING: State(PENDING),
    ACTIVE: State(ACTIVE),
    "active, 2 failures": State(ACTIVE, consecutive_failures=2),
    DEGRADED: State(DEGRADED, "transient", 4, NOW - timedelta(hours=2)),
    NEEDS_RECONNECT: State(NEEDS_RECONNECT, "revoked"),
    DISCONNECTED: State(DISCONNECTED),
}
HAPPENINGS = {
    "success": rules.Succeeded(renewal_due_at=RENEWAL),
    "transient": rules.FailedTransiently(retry_after=None, error="HTTP 503"),
    "expired": rules.FailedPermanently("expired"),
    "revoked": rules.FailedPermanently("revoked"),
    "credentials_invalid": rules.FailedPermanently("credentials_invalid"),
    "app_rejected": rules.AppRejected(error="invalid_client"),
    "deferred": rules.Deferred(until=NOW + timedelta(minutes=7)),
    "interrupted": rules.Interrupted(),
    "connect": rules.Granted(reconnect=False, renewal_due_at=RENEWAL),
    "reconnect by client": rules.Granted(reconnect=True, renewal_due_at=RENEWAL, by_client=True),
    "disconnect": rules.Disconnected(),
    "abandoned": rules.Abandoned(),
    "deadline passed": rules.DeadlinePassed(deadline=NOW - timedelta(minutes=1)),
    "unreadable": rules.CredentialsUnreadable(),
}
K = ConnectionEvent.Kind
same = "same"  # status and reason unchanged
# (state, happening) -> (status, reason, failures, scheduled, event kinds); "refused" for a refusal.
TABLE: dict[tuple[str, str], object] = {}
for state_name in STATES:
    for happening in HAPPENINGS:
        TABLE[(state_name, happening)] = None
TABLE.update(
    {
        # A check succeeded: active; a recovery from degraded or needs_reconnect is announced.
        (ACTIVE, "success"): (ACTIVE, "", 0, True, []),
        ("active, 2 failures", "success"): (ACTIVE, "", 0, True, []),
        (DEGRADED, "success"): (ACTIVE, "", 0, True, [K.RECOVERED]),
        (NEEDS_RECONNECT, "success"): (ACTIVE, "", 0, True, [K.RECOVERED]),
        # Transient: counted and retried; degraded from the third in a row; never flagged.
        (ACTIVE, "transient"): (ACTIVE, "", 1, True, [K.CHECK_FAILED]),
        ("active, 2 failures", "transient"): (DEGRADED, "transient", 3, True, [K.CHECK_FAILED]),
        (DEGRADED, "transient"): (DEGRADED, "transient", 5, True, [K.CHECK_FAILED]),
        (NEEDS_RECONNECT, "transient"): (NEEDS_RECONNECT, "revoked", 1, False, [K.CHECK_FAILED]),
        # App credentials rejected: the connection keeps its status (the app is flagged instead).
        (ACTIVE, "app_rejected"): (same, same, 0, True, [K.CHECK_FAILED]),
        ("active, 2 failures", "app_rejected"): (same, same, 2, True, [K.CHECK_FAILED]),
        (DEGRADED, "app_rejected"): (same, same, 4, True, [K.CHECK_FAILED]),
        (NEEDS_RECONNECT, "app_rejected"): (same, same, 0, False, [K.CHECK_FAILED]),
        # Deferred (no call made): rescheduled if scheduled, nothing recorded.
        (ACTIVE, "deferred"): (same, same, 0, True, []),
        ("active, 2 failures", "deferred"): (same, same, 2, True, []),
        (DEGRADED, "deferred"): (same, same, 4, True, []),
        (NEEDS_RECONNECT, "deferred"): (same, same, 0, False, []),
        # The portal's own error: pushed back, with an event saying so.
        (ACTIVE, "interrupted"): (same, same, 0, True, [K.CHECK_FAILED]),
        ("active, 2 failures", "interrupted"): (same, same, 2, True, [K.CHECK_FAILED]),
        (DEGRADED, "interrupted"): (same, same, 4, True, [K.CHECK_FAILED]),
        (NEEDS_RECONNECT, "interrupted"): (same, same, 0, False, [K.CHECK_FAILED]),
        # Grants: active; disconnected is final.
        (PENDING, "connect"): (ACTIVE, "", 0, True, [K.CONNECTED]),
        (ACTIVE, "connect"): (ACTIVE, "", 0, True, [K.CONNECTED]),
        ("active, 2 failures", "connect"): (ACTIVE, "", 0, True, [K.CONNECTED]),
        (DEGRADED, "connect"): (ACTIVE, "", 0, True, [K.CONNECTED, K.RECOVERED]),
        (NEEDS_RECONNECT, "connect"): (ACTIVE, "", 0, True, [K.CONNECTED, K.RECOVERED]),
        (DISCONNECTED, "connect"): "refused",
        (PENDING, "reconnect by client"): (ACTIVE, "", 0, True, [K.RECONNECTED]),
        (ACTIVE, "reconnect by client"): (ACTIVE, "", 0, True, [K.RECONNECTED]),
        ("active, 2 failures", "reconnect by client"): (ACTIVE, "", 0, True, [K.RECONNECTED]),
        (DEGRADED, "reconnect by client"): (ACTIVE, "", 0, True, [K.RECONNECTED, K.RECOVERED]),
        (NEEDS_RECONNECT, "reconnect by client"): (ACTIVE, "", 0, True, [K.RECONNECTED, K.RECOVERED]),
        (DISCONNECTED, "reconnect by client"): "refused",
        # Abandoned: only a pending connection, once.
        (PENDING, "abandoned"): (PENDING, "authorization_abandoned", 0, False, [K.STATUS_CHANGED]),
        # A hard deadline that passed: only a scheduled connection is flagged.
        (ACTIVE, "deadline passed"): (NEEDS_RECONNECT, "expired", 0, False, [K.STATUS_CHANGED]),
        ("active, 2 failures", "deadline passed"): (NEEDS_RECONNECT, "expired", 0, False, [K.STATUS_CHANGED]),
        (DEGRADED, "deadline passed"): (NEEDS_RECONNECT, "expired", 0, False, [K.STATUS_CHANGED]),
    }
)
for state_name in STATES:
    for reason in ("expired", "revoked", "credentials_invalid"):
        if state_name not in (PENDING, DISCONNECTED):
            TABLE[(state_name, reason)] = (NEEDS_RECONNECT, reason, 0, False, [K.CHECK_FAILED])
    if state_name not in (PENDING, DISCONNECTED):
        TABLE[(state_name, "unreadable")] = (NEEDS_RECONNECT, "credentials_unreadable", 0, False, [K.STATUS_CHANGED])
    TABLE[(state_name, "disconnect")] = (DISCONNECTED, "", 0, False, [K.DISCONNECTED])
# What is not listed changes nothing and records nothing (pending and disconnected connections are
# never checked: the claim refuses them, and the rules would not move them either).
for key, value in TABLE.items():
    if value is None:
        TABLE[key] = (same, same, STATES[key[0]].consecutive_failures, False, [])
TABLE[(DISCONNECTED, "disconnect")] = (DISCONNECTED, "", 0, False, [K.DISCONNECTED])


@pytest.mark.parametrize(("state_name", "happening"), sorted(TABLE))
def test_the_status_table(state_name: str, happening: str) -> None:
    state, happened, expected = STATES[state_name], HAPPENINGS[happening], TABLE[(state_name, happening)]
    if expected == "refused":
        with pytest.raises(rules.GrantRefused):
            decide(state, happened, now=NOW, tunables=T, rng=random.Random(1))
        return
    status, reason, failures, scheduled, kinds = expected  # type: ignore[misc]
    transition = decide(state, happened, now=NOW, tunables=T, rng=random.Random(1))
    assert transition.status == (state.status if status == same else status)
    assert transition.reason == (state.reason if reason == same else reason)
    assert transition.consecutive_failures == failures
    assert (transition.next_check_at is not None) == scheduled
    assert [event.kind for event in transition.events] == kinds
    assert transition.status in Status.values
    assert transition.reason in Reason.values
    assert all(event.kind in ConnectionEvent.Kind.values for event in transition.events)
    if transition.status == NEEDS_RECONNECT:
        assert transition.reason, "needs_reconnect always says why"
    if transition.status == DEGRADED:
        assert transition.degraded_since is not None


def test_a_recovery_after_the_clients_own_reconnect_says_so_and_an_advisers_does_not() -> None:
    broken = State(NEEDS_RECONNECT, "revoked")
    by_client = decide(broken, rules.Granted(reconnect=True, by_client=True), now=NOW, tunables=T)
    by_adviser = decide(broken, rules.Granted(reconnect=True, by_client=False), now=NOW, tunables=T)
    assert by_client.events[-1].facts["by_client"] is True
    assert by_adviser.events[-1].facts["by_client"] is False


def test_a_forced_check_that_found_nothing_to_send_keeps_why_the_connection_broke() -> None:
    revoked = State(NEEDS_RECONNECT, "revoked")
    local = decide(revoked, rules.FailedPermanently("expired", from_provider=False), now=NOW, tunables=T)
    said = decide(revoked, rules.FailedPermanently("expired", from_provider=True), now=NOW, tunables=T)
    assert (local.status, local.reason) == (NEEDS_RECONNECT, "revoked")
    assert (said.status, said.reason) == (NEEDS_RECONNECT, "expired")


def test_degraded_since_is_kept_through_an_outage() -> None:
    since = NOW - timedelta(hours=3)
    transition = decide(State(DEGRADED, "transient", 7, since), rules.FailedTransiently(), now=NOW, tunables=T)
    assert transition.degraded_since == since


def test_a_permanent_failure_needs_a_reason_from_the_list() -> None:
    with pytest.raises(ValueError, match="not a permanent reason"):
        decide(State(ACTIVE), rules.FailedPermanently("transient"), now=NOW, tunables=T)


def test_a_grant_that_read_no_accounts_looks_again_soon() -> None:
    transition = decide(State(PENDING), rules.Granted(reconnect=False, accounts_read=False), now=NOW, tunables=T)
    assert transition.next_check_at == NOW + timedelta(seconds=T.min_recheck_seconds)


# --- Timing rules ------------------------------------------------------------------------------


@given(failures=st.integers(min_value=1, max_value=10_000), seed=st.integers(0, 2**32))
def test_backoff_stays_within_its_bounds(failures: int, seed: int) -> None:
    delay = rules.backoff_delay(failures, None, T, random.Random(seed))
    assert 0 <= delay <= min(T.backoff_cap_seconds, T.backoff_base_seconds * 2 ** min(failures - 1, 62))


@given(retry_after=st.floats(min_value=0.1, max_value=86_400), seed=st.integers(0, 2**32))
def test_a_providers_retry_after_is_never_undercut(retry_after: float, seed: int) -> None:
    assert rules.backoff_delay(1, retry_after, T, random.Random(seed)) >= retry_after


@given(minutes=st.integers(min_value=-60, max_value=600), seed=st.integers(0, 2**32))
def test_the_next_check_after_a_success_is_before_the_renewal_point_and_never_a_busy_loop(
    minutes: int, seed: int
) -> None:
    renewal = NOW + timedelta(minutes=minutes)
    nxt = rules.next_check_after_success(renewal_due_at=renewal, now=NOW, tunables=T, rng=random.Random(seed))
    assert nxt >= NOW + timedelta(seconds=T.min_recheck_seconds)
    assert nxt <= NOW + timedelta(seconds=T.probe_interval_seconds * (1 + T.probe_jitter_fraction))
    if renewal - NOW > timedelta(seconds=2 * T.min_recheck_seconds):
        assert nxt <= renewal


def test_renewal_is_due_within_the_jitter_of_the_clients_point() -> None:
    assert rules.renewal_is_due(renewal_due_at=NOW + timedelta(seconds=119), now=NOW, tunables=T)
    assert not rules.renewal_is_due(renewal_due_at=NOW + timedelta(seconds=121), now=NOW, tunables=T)
    assert not rules.renewal_is_due(renewal_due_at=None, now=NOW, tunables=T)


def test_a_rolling_deadline_is_near_only_once_it_stopped_rolling() -> None:
    daily = NOW - timedelta(hours=1)  # a sign-in renewed an hour ago that lives 24 hours
    assert not rules.deadline_is_near(deadline=NOW + timedelta(hours=23), basis=daily, now=NOW, tunables=T, rolls=True)
    stale = NOW - timedelta(hours=20)  # renewals stopped 20 hours ago
    assert rules.deadline_is_near(deadline=NOW + timedelta(hours=4), basis=stale, now=NOW, tunables=T, rolls=True)


def test_a_hard_deadline_is_near_within_the_warning_window() -> None:
    code = NOW - timedelta(minutes=20)  # a 30-minute access code
    assert rules.deadline_is_near(deadline=NOW + timedelta(minutes=10), basis=code, now=NOW, tunables=T)
    recent = NOW - timedelta(hours=1)  # a sign-in that will not renew: near even though it is young
    assert rules.deadline_is_near(deadline=NOW + timedelta(hours=23), basis=recent, now=NOW, tunables=T)
    far = NOW - timedelta(days=30)
    assert not rules.deadline_is_near(deadline=NOW + timedelta(days=3), basis=far, now=NOW, tunables=T)


def test_degraded_needs_attention_after_an_hour() -> None:
    assert rules.degraded_needs_attention(degraded_since=NOW - timedelta(minutes=61), now=NOW, tunables=T)
    assert not rules.degraded_needs_attention(degraded_since=NOW - timedelta(minutes=59), now=NOW, tunables=T)


def test_tunables_come_from_lifecycle_settings() -> None:
    class Settings:
        LIFECYCLE_DEGRADED_AFTER = "5"
        LIFECYCLE_PROBE_INTERVAL_SECONDS = 60

    tunables = tunables_from(Settings())
    assert tunables.degraded_after == 5
    assert tunables.probe_interval_seconds == 60.0
    assert tunables.backoff_cap_seconds == T.backoff_cap_seconds
