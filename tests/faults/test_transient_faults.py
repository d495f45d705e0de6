"""Transient provider faults on the sandbox: errors, rate limits, timeouts, malformed replies.

Each test injects a fault with the sandbox's control API, runs the lifecycle's
check as a worker would, and asserts the outcome (status never flagged by a
transient problem, the provider's hints honoured) and the number of calls the
provider saw (from the sandbox's request log: retries are bounded).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from connections import lifecycle
from connections import models as m

from .conftest import HANG_SECONDS
from .support import (
    Portal,
    SandboxControl,
    connect_bloquo,
    connect_coinify,
    connect_dapi,
    connect_turnqey,
    events,
    make_due,
)

# provider → (how to connect, the probe's path beneath the mount, the probe's method)
PROBES: dict[str, tuple[Callable[[SandboxControl, Portal], m.Connection], str, str]] = {
    "coinify": (connect_coinify, "/me", "GET"),
    "bloquo": (connect_bloquo, "/api/v1/accounting/accounts", "GET"),
    "turnqey": (connect_turnqey, "/v1/api/collections/", "GET"),
    "dapi": (connect_dapi, "/v2/data/accounts/get", "POST"),
}
# urllib3 retries an idempotent request twice on 502/503/504 inside one call.
ATTEMPTS_PER_IDEMPOTENT_CALL = 3


def _check(connection: m.Connection, **kwargs: Any) -> lifecycle.CheckResult:
    make_due(connection)
    return lifecycle.connection_check(connection_id=connection.pk, **kwargs)


def _probe_calls(sandbox: SandboxControl, provider: str, path: str) -> list[dict[str, Any]]:
    return sandbox.requests(provider, path=path)


@pytest.mark.parametrize("provider", sorted(PROBES))
def test_three_503s_then_200_ends_active_with_a_bounded_number_of_calls(
    sandbox: SandboxControl, portal: Portal, provider: str
) -> None:
    connect, path, method = PROBES[provider]
    connection = connect(sandbox, portal)
    sandbox.clear_log()
    sandbox.fault(provider, kind="status", status=503, path=path, count=3)

    outcomes = []
    for _ in range(4):
        result = _check(connection)
        outcomes.append(result.outcome)
        connection.refresh_from_db()
        assert connection.status != m.Status.NEEDS_RECONNECT
        if result.outcome == lifecycle.Outcome.OK:
            break

    assert outcomes[-1] == lifecycle.Outcome.OK
    assert connection.status == m.Status.ACTIVE
    assert connection.reason == ""
    assert connection.consecutive_failures == 0
    calls = _probe_calls(sandbox, provider, path)
    # Exactly the three refused requests and the one that succeeded: no
    # retry storm, and an idempotent call is retried inside one check.
    assert [c["status"] for c in calls] == [503, 503, 503, 200]
    checks_needed = 2 if method == "GET" else 4
    assert len(outcomes) == checks_needed
    assert len(calls) <= ATTEMPTS_PER_IDEMPOTENT_CALL * len(outcomes)
    if checks_needed == 4:
        # Three transient failures in a row: degraded once, then one recovery.
        assert [e.to_status for e in events(connection, m.ConnectionEvent.Kind.RECOVERED)] == [m.Status.ACTIVE]


def test_a_renewal_refused_with_503_is_not_retried_inside_the_call(sandbox: SandboxControl, portal: Portal) -> None:
    """POST /auth spends a rotating refresh token: never repeated blindly, retried by the next check."""
    sandbox.lifetimes("coinify", access=150)  # renewal due at once
    connection = connect_coinify(sandbox, portal)
    sandbox.clear_log()
    sandbox.fault("coinify", kind="status", status=503, path="/auth", grant_type="refresh_token", count=1)

    first = _check(connection)
    assert first.outcome == lifecycle.Outcome.TRANSIENT
    assert [c["status"] for c in sandbox.requests("coinify", path="/auth")] == [503]
    second = _check(connection)

    assert second.outcome == lifecycle.Outcome.OK
    assert second.renewed
    assert [c["status"] for c in sandbox.requests("coinify", path="/auth")] == [503, 200]
    connection.refresh_from_db()
    assert connection.status == m.Status.ACTIVE


@pytest.mark.parametrize(("status", "retry_after"), [(429, 600), (503, 900)])
def test_retry_after_is_a_floor_for_the_next_check(
    sandbox: SandboxControl, portal: Portal, status: int, retry_after: int
) -> None:
    connection = connect_bloquo(sandbox, portal)
    sandbox.clear_log()
    sandbox.fault("bloquo", kind="status", status=status, retry_after=retry_after, path="/api/v1/accounting", count=5)
    before = timezone.now()

    result = _check(connection)

    connection.refresh_from_db()
    assert result.outcome == lifecycle.Outcome.TRANSIENT
    assert connection.status == m.Status.ACTIVE
    assert connection.next_check_at >= before + timedelta(seconds=retry_after)
    # A hint longer than a worker should sleep is not waited out in the request:
    # one call, and the schedule carries the wait.
    assert len(sandbox.requests("bloquo", path="/api/v1/accounting")) == 1
    failed = events(connection, m.ConnectionEvent.Kind.CHECK_FAILED)
    assert failed[-1].details["retry_after"] == retry_after


def test_a_probe_that_times_out_is_transient(sandbox: SandboxControl, portal: Portal) -> None:
    connection = connect_coinify(sandbox, portal)
    sandbox.clear_log()
    sandbox.fault("coinify", kind="timeout", hang_seconds=HANG_SECONDS, path="/me", count=1)

    result = _check(connection)
    sandbox.wait_for_requests("coinify", 1, path="/me")

    connection.refresh_from_db()
    assert result.outcome == lifecycle.Outcome.TRANSIENT
    assert connection.status == m.Status.ACTIVE
    assert connection.consecutive_failures == 1
    assert "no reply" in connection.last_error
    assert _check(connection).outcome == lifecycle.Outcome.OK


def test_a_renewal_whose_reply_never_came_is_retried_once_with_the_same_token(
    sandbox: SandboxControl, portal: Portal
) -> None:
    """The provider never processed it (hang, then 504): the same refresh token works on the retry."""
    sandbox.lifetimes("coinify", access=150)
    connection = connect_coinify(sandbox, portal)
    refresh_before = m.Credential.objects.get(connection=connection, kind="refresh").value
    sandbox.clear_log()
    sandbox.fault(
        "coinify", kind="timeout", hang_seconds=HANG_SECONDS, path="/auth", grant_type="refresh_token", count=1
    )

    result = _check(connection)
    grants = sandbox.wait_for_requests("coinify", 2, path="/auth")

    assert result.outcome == lifecycle.Outcome.OK
    assert result.renewed
    # The timed-out attempt and the retry with the same token, nothing more.
    assert [g["status"] for g in grants] == [200, 504] or [g["status"] for g in grants] == [504, 200]
    assert all(g["grant_type"] == "refresh_token" for g in grants)
    assert m.Credential.objects.get(connection=connection, kind="refresh").value != refresh_before
    assert len(events(connection, m.ConnectionEvent.Kind.RENEWED)) == 1


def test_a_renewal_processed_late_is_retried_once_and_exactly_one_attempt_wins(
    sandbox: SandboxControl, portal: Portal
) -> None:
    """The first attempt hangs and is processed after the client gave up: the retry got there first."""
    sandbox.lifetimes("coinify", access=150)
    connection = connect_coinify(sandbox, portal)
    sandbox.clear_log()
    sandbox.fault(
        "coinify",
        kind="timeout",
        hang_seconds=HANG_SECONDS,
        path="/auth",
        grant_type="refresh_token",
        process=True,
        count=1,
    )

    result = _check(connection)
    grants = sandbox.wait_for_requests("coinify", 2, path="/auth")

    connection.refresh_from_db()
    assert result.outcome == lifecycle.Outcome.OK
    assert connection.status == m.Status.ACTIVE
    assert sorted(g["status"] for g in grants) == [200, 400]  # one rotation; the stale attempt refused
    assert len(events(connection, m.ConnectionEvent.Kind.RENEWED)) == 1


def test_a_renewal_reply_lost_after_rotation_ends_in_a_clear_reconnect_request_not_a_loop(
    sandbox: SandboxControl, portal: Portal
) -> None:
    """The provider rotated the token but its reply was unreadable: the next renewal proves the chain is gone.

    Without an offline token nothing can restore a rotated-away refresh token,
    so the honest outcome is needs_reconnect (the token was used twice), with
    the old token used exactly twice and no attempt after that.
    """
    sandbox.lifetimes("coinify", access=150)
    connection = connect_coinify(sandbox, portal)
    sandbox.clear_log()
    sandbox.fault("coinify", kind="truncated_json", path="/auth", grant_type="refresh_token", count=1)

    first = _check(connection)
    connection.refresh_from_db()
    assert first.outcome == lifecycle.Outcome.TRANSIENT
    assert connection.status == m.Status.ACTIVE
    second = _check(connection)
    third = lifecycle.connection_check(connection_id=connection.pk)

    connection.refresh_from_db()
    assert second.outcome == lifecycle.Outcome.PERMANENT
    assert connection.status == m.Status.NEEDS_RECONNECT
    assert connection.reason == m.Reason.REVOKED
    assert connection.next_check_at is None
    assert "reconnect" in connection.status_message.lower()
    assert third.outcome == lifecycle.Outcome.SKIPPED
    assert len(sandbox.requests("coinify", path="/auth", grant_type="refresh_token")) == 2


def test_a_lost_renewal_reply_is_harmless_with_an_offline_token(sandbox: SandboxControl, portal: Portal) -> None:
    sandbox.lifetimes("coinify", access=150)
    connection = connect_coinify(sandbox, portal, offline=True)
    sandbox.clear_log()
    sandbox.fault(
        "coinify",
        kind="timeout",
        hang_seconds=HANG_SECONDS,
        path="/auth",
        grant_type="offline_token",
        process=True,
        count=1,
    )

    result = _check(connection)
    sandbox.wait_for_requests("coinify", 2, path="/auth")

    connection.refresh_from_db()
    assert result.outcome == lifecycle.Outcome.OK
    assert connection.status == m.Status.ACTIVE
    assert len(events(connection, m.ConnectionEvent.Kind.RENEWED)) == 1


@pytest.mark.parametrize("kind", ["truncated_json", "html", "missing_field"])
@pytest.mark.parametrize("provider", sorted(PROBES))
def test_a_malformed_probe_reply_is_transient_and_names_no_secret(
    sandbox: SandboxControl, portal: Portal, provider: str, kind: str
) -> None:
    connect, path, _method = PROBES[provider]
    connection = connect(sandbox, portal)
    secrets = [c.value for c in m.Credential.objects.filter(connection=connection)]
    sandbox.fault(provider, kind=kind, path=path, count=1)

    result = _check(connection)

    connection.refresh_from_db()
    assert result.outcome == lifecycle.Outcome.TRANSIENT
    assert connection.status == m.Status.ACTIVE
    assert connection.accounts.exists()  # the last good data stays
    assert connection.last_error
    for secret in secrets:
        assert secret not in connection.last_error
        assert secret not in result.message
    assert _check(connection).outcome == lifecycle.Outcome.OK


@pytest.mark.parametrize("kind", ["truncated_json", "html", "missing_field"])
def test_a_malformed_renewal_reply_is_transient_and_recovers_with_an_offline_token(
    sandbox: SandboxControl, portal: Portal, kind: str
) -> None:
    sandbox.lifetimes("coinify", access=150)
    connection = connect_coinify(sandbox, portal, offline=True)
    sandbox.fault("coinify", kind=kind, path="/auth", grant_type="offline_token", count=1)

    first = _check(connection)
    second = _check(connection)

    connection.refresh_from_db()
    assert first.outcome == lifecycle.Outcome.TRANSIENT
    assert second.outcome == lifecycle.Outcome.OK
    assert second.renewed
    assert connection.status == m.Status.ACTIVE
