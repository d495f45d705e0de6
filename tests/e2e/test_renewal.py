"""Tokens are renewed before they expire, with nobody doing anything but the beat.

The sandbox issues short-lived tokens; the beat fires the sweep every minute
and the app-token refresh every five minutes while the test's clock runs
through several lifetimes. At every tick the stored token must still be
valid, and the sandbox's request log must show exactly one renewal call per
renewal the portal recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from connections import models as m
from connections import tasks

from .support import Beat, Clock, Portal, SandboxControl, connect_bloquo, connect_coinify, connect_turnqey, events

# Ten minutes: long enough that the renewal margin (max(2 minutes, 10 %)) and
# its jitter decide when the renewal happens, short enough for several lifetimes.
ACCESS_LIFETIME_SECONDS = 600
SIMULATED_MINUTES = 45
# Turnqey's app token lives an hour; two hours see it replaced twice.
SIMULATED_APP_TOKEN_MINUTES = 120


@dataclass
class TokenWatch:
    """The history of one stored credential row, tick by tick."""

    label: str
    current: tuple[datetime, datetime | None] | None = None
    replacements: list[tuple[datetime, datetime]] = field(default_factory=list)  # (replaced at, old expiry)

    def before_tick(self, row: m.Credential | None, now: datetime) -> None:
        """Nothing may have lapsed while waiting for this tick."""
        assert row is not None, f"{self.label}: the credential is gone"
        assert row.expires_at is None or row.expires_at > now, (
            f"{self.label}: the stored token lapsed at {row.expires_at} before the tick at {now}"
        )

    def after_tick(self, row: m.Credential | None, now: datetime) -> bool:
        """Record a replacement (which must have come before the old one lapsed); True if there was one."""
        assert row is not None, f"{self.label}: the credential is gone"
        seen = (row.issued_at, row.expires_at)
        replaced = self.current is not None and seen != self.current
        if replaced:
            old_expiry = self.current[1]
            assert old_expiry is not None
            assert now < old_expiry, f"{self.label}: replaced only after it lapsed"
            self.replacements.append((now, old_expiry))
        self.current = seen
        return replaced


def _access(connection: m.Connection) -> m.Credential | None:
    return m.Credential.objects.filter(connection_id=connection.pk, kind=m.Credential.Kind.ACCESS).first()


def _app_token(app: m.ProviderApp) -> m.Credential | None:
    return m.Credential.objects.filter(provider_app_id=app.pk, kind=m.Credential.Kind.APP).first()


def test_coinify_and_bloquo_access_tokens_are_renewed_before_they_expire_with_no_manual_step(
    sandbox: SandboxControl, portal: Portal, clock: Clock, beat: Beat
) -> None:
    sandbox.lifetimes("coinify", access=ACCESS_LIFETIME_SECONDS)
    sandbox.lifetimes("bloquo", access=ACCESS_LIFETIME_SECONDS)
    coinify = connect_coinify(sandbox, portal)
    bloquo, _customer = connect_bloquo(sandbox, portal)
    bookmark = sandbox.last_request_id()
    watches = {coinify.pk: TokenWatch("Coinify access token"), bloquo.pk: TokenWatch("Bloquo access token")}
    for connection in (coinify, bloquo):
        watches[connection.pk].after_tick(_access(connection), clock.now())

    beat.tick()
    for _ in range(SIMULATED_MINUTES):
        now = clock.advance(timedelta(minutes=1))
        for connection in (coinify, bloquo):
            watches[connection.pk].before_tick(_access(connection), now)
        beat.tick()
        for connection in (coinify, bloquo):
            watches[connection.pk].after_tick(_access(connection), now)
            row = m.Connection.objects.get(pk=connection.pk)
            assert row.status == m.Status.ACTIVE, f"{row}: {row.last_error}"

    for connection in (coinify, bloquo):
        renewals = events(connection, m.ConnectionEvent.Kind.RENEWED)
        # Ten-minute tokens over 45 minutes: renewed every six to nine minutes.
        assert len(watches[connection.pk].replacements) >= SIMULATED_MINUTES // 9
        assert len(renewals) == len(watches[connection.pk].replacements)
        assert not events(connection, m.ConnectionEvent.Kind.CHECK_FAILED)

    # Exactly one refresh per renewal, each accepted: a rotating refresh token
    # used twice would have been refused with invalid_grant (HTTP 400).
    refreshes = sandbox.requests("coinify", path="/auth", grant_type="refresh_token", after=bookmark)
    assert len(refreshes) == len(events(coinify, m.ConnectionEvent.Kind.RENEWED))
    assert {row["status"] for row in refreshes} == {200}
    assert len(sandbox.requests("coinify", path="/auth", after=bookmark)) == len(refreshes), "another grant was used"
    probes = sandbox.requests("coinify", path="/me", after=bookmark)
    assert probes
    assert {row["status"] for row in probes} == {200}, "a probe was sent with a token the sandbox refused"

    # Bloquo has no refresh token: each renewal is one new token for the stored key pair.
    new_tokens = sandbox.requests("bloquo", path="/api/v1/auth/token", after=bookmark)
    assert len(new_tokens) == len(events(bloquo, m.ConnectionEvent.Kind.RENEWED))
    assert {row["status"] for row in new_tokens} == {200}
    accounts = sandbox.requests("bloquo", path="/api/v1/accounting/accounts", after=bookmark)
    assert accounts
    assert {row["status"] for row in accounts} == {200}


@pytest.mark.parametrize(
    ("lifetime_seconds", "minutes"),
    [
        # Turnqey's documented hour: renewed within its margin (10 % of the hour).
        pytest.param(3600, SIMULATED_APP_TOKEN_MINUTES, id="documented-hour"),
        # Shortened as in the demo: shorter than the margin plus the five
        # minutes between runs, so the job renews ahead of its next run.
        pytest.param(600, 40, id="ten-minutes"),
    ],
)
def test_turnqey_app_token_is_kept_fresh_by_the_beat_while_its_connection_stays_healthy(
    lifetime_seconds: int, minutes: int, sandbox: SandboxControl, portal: Portal, clock: Clock, beat: Beat
) -> None:
    sandbox.lifetimes("turnqey", app_token=lifetime_seconds)
    connection = connect_turnqey(portal)
    app = portal.apps["turnqey"]
    bookmark = sandbox.last_request_id()
    watch = TokenWatch("Turnqey app token")
    watch.after_tick(_app_token(app), clock.now())
    first_success = m.Connection.objects.get(pk=connection.pk).last_success_at
    checked_at = m.Connection.objects.get(pk=connection.pk).last_checked_at

    # Who renewed: the refresh job, or a probe that found the token due.
    by_job_alone = 0
    beat.tick()
    for _ in range(minutes):
        now = clock.advance(timedelta(minutes=1))
        watch.before_tick(_app_token(app), now)
        ran = beat.tick()
        row = m.Connection.objects.get(pk=connection.pk)
        probed, checked_at = row.last_checked_at != checked_at, row.last_checked_at
        if watch.after_tick(_app_token(app), now):
            assert tasks.refresh_app_tokens.name in ran or probed
            by_job_alone += not probed
        assert row.status == m.Status.ACTIVE, row.last_error

    # At least two lifetimes: two replacements or more, one fetch each.
    assert len(watch.replacements) >= 2
    assert by_job_alone >= 1, "the refresh job never renewed the app token itself"
    fetches = sandbox.requests("turnqey", path="/v1/api/token", after=bookmark)
    assert len(fetches) == len(watch.replacements)
    assert {row["status"] for row in fetches} == {200}
    # The connection was probed all along, never with a token Turnqey refused.
    probes = sandbox.requests("turnqey", path="/v1/api/collections/", after=bookmark)
    assert len(probes) >= minutes // 17
    assert {row["status"] for row in probes} == {200}
    row = m.Connection.objects.get(pk=connection.pk)
    assert row.last_success_at is not None
    assert first_success is not None
    assert row.last_success_at > first_success
    assert m.ProviderApp.objects.get(pk=app.pk).credentials_rejected_at is None
