"""The status state machine: every (status, outcome) pair, backoff, degraded, and a stateful model."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from connections import lifecycle
from connections.lifecycle import Outcome, connection_check
from connections.lifecycle.rules import Tunables, backoff_delay
from connections.models import Account, Connection, Credential, ProviderApp, Status
from connections.models import ConnectionEvent as Ev
from connections.providers.errors import FailureReason, ProviderError
from tests.factories import ClientFactory, ConnectionFactory, ProviderAppFactory

from .conftest import ACCOUNTS, FakeWorld, grant_for, make_connection

K = Ev.Kind


def _script(world: FakeWorld, outcome: str) -> None:
    if outcome == "success":
        return
    if outcome == "transient":
        world.probe_script.append(ProviderError.transient("Fake: server error (HTTP 503).", status_code=503))
    elif outcome.startswith("permanent:"):
        reason = FailureReason(outcome.split(":", 1)[1])
        world.probe_script.append(ProviderError.reauth(reason, "Fake: refused."))
    elif outcome == "app_credentials_invalid":
        world.probe_script.append(ProviderError.app_credentials("Fake rejected the partner credentials."))
    elif outcome == "access_rejected_then_ok":
        world.probe_script.append(ProviderError.access_token_rejected("Fake did not accept the access token."))
    elif outcome == "access_rejected_twice":
        world.probe_script.append(ProviderError.access_token_rejected("Fake did not accept the access token."))
        world.probe_script.append(ProviderError.access_token_rejected("Fake did not accept the fresh token."))
    else:  # pragma: no cover - a typo in the table below
        raise AssertionError(outcome)


OUTCOMES = [
    "success",
    "transient",
    "permanent:expired",
    "permanent:revoked",
    "permanent:credentials_invalid",
    "app_credentials_invalid",
    "access_rejected_then_ok",
    "access_rejected_twice",
]
STATUSES = [Status.PENDING, Status.ACTIVE, Status.DEGRADED, Status.NEEDS_RECONNECT]


def _expected(status: str, outcome: str) -> tuple[str, str, list[str], bool]:
    """(status after, reason after, event kinds written in order, scheduled?) for a forced check."""
    recovering = status in (Status.DEGRADED, Status.NEEDS_RECONNECT)
    scheduled_before = status in (Status.ACTIVE, Status.DEGRADED)
    if status == Status.PENDING:
        return Status.PENDING, "", [], False
    if outcome == "success":
        return Status.ACTIVE, "", [K.RECOVERED] if recovering else [], True
    if outcome == "transient":
        if status == Status.DEGRADED:
            return Status.DEGRADED, "transient", [K.CHECK_FAILED], True
        if status == Status.NEEDS_RECONNECT:
            return Status.NEEDS_RECONNECT, "revoked", [K.CHECK_FAILED], False
        return Status.ACTIVE, "", [K.CHECK_FAILED], True
    if outcome.startswith("permanent:"):
        return Status.NEEDS_RECONNECT, outcome.split(":", 1)[1], [K.CHECK_FAILED], False
    if outcome == "app_credentials_invalid":
        reason = {"degraded": "transient", "needs_reconnect": "revoked"}.get(status, "")
        return status, reason, [K.CHECK_FAILED], scheduled_before
    if outcome == "access_rejected_then_ok":
        return Status.ACTIVE, "", [K.RENEWED, *([K.RECOVERED] if recovering else [])], True
    if outcome == "access_rejected_twice":
        return Status.NEEDS_RECONNECT, "expired", [K.RENEWED, K.CHECK_FAILED], False
    raise AssertionError(outcome)


@pytest.mark.django_db
@pytest.mark.parametrize("outcome", OUTCOMES)
@pytest.mark.parametrize("status", STATUSES)
def test_every_status_and_outcome_pair_follows_the_status_table(
    status: str, outcome: str, app: Any, world: FakeWorld
) -> None:
    connection = make_connection(app, status=status)
    before_failures = connection.consecutive_failures
    _script(world, outcome)

    result = connection_check(connection_id=connection.pk, force=True)

    connection.refresh_from_db()
    want_status, want_reason, want_events, scheduled = _expected(status, outcome)
    assert connection.status == want_status
    assert connection.reason == want_reason
    kinds = list(Ev.objects.filter(connection=connection).order_by("created_at", "id").values_list("kind", flat=True))
    assert kinds == want_events
    assert (connection.next_check_at is not None) == scheduled
    assert connection.lease_owner == "" or status == Status.PENDING
    if status == Status.PENDING:
        assert result.outcome == Outcome.SKIPPED
        assert world.calls["probe"] == world.calls["renew"] == 0
        return
    if outcome in ("success", "access_rejected_then_ok"):
        assert result.outcome == Outcome.OK
        assert connection.consecutive_failures == 0
        assert connection.last_success_at is not None
        assert connection.last_success_at >= connection.last_checked_at
        assert set(Account.objects.filter(connection=connection).values_list("external_id", flat=True)) == {
            a.external_id for a in ACCOUNTS
        }
    if outcome == "transient":
        assert connection.consecutive_failures == before_failures + 1
    if outcome.startswith("access_rejected"):
        assert world.calls["renew"] == 1
        assert world.calls["probe"] == 2
        assert world.access_tokens_probed[1].startswith("access-renewed-")
    app.refresh_from_db()
    assert (app.credentials_rejected_at is not None) == (outcome == "app_credentials_invalid")


@pytest.mark.django_db
def test_needs_reconnect_is_not_checked_unless_someone_asks(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app, status=Status.NEEDS_RECONNECT, next_check_at=timezone.now() - timedelta(days=1))
    result = connection_check(connection_id=connection.pk)
    assert result.outcome == Outcome.SKIPPED
    assert world.calls["probe"] == 0


@pytest.mark.django_db
def test_connection_not_yet_due_is_skipped_by_a_routine_check(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app, next_check_at=timezone.now() + timedelta(minutes=5))
    assert connection_check(connection_id=connection.pk).outcome == Outcome.SKIPPED
    assert world.calls["probe"] == 0


@pytest.mark.django_db
def test_routine_success_writes_no_event_but_records_the_success(app: Any) -> None:
    connection = make_connection(app, next_check_at=timezone.now() - timedelta(seconds=1))
    result = connection_check(connection_id=connection.pk)
    connection.refresh_from_db()
    assert result.outcome == Outcome.OK
    assert not Ev.objects.filter(connection=connection).exists()
    assert connection.last_success_at == connection.last_checked_at
    # Next look: the probe interval (15 min ± 10 %), the renewal point being later.
    assert timedelta(minutes=13) < connection.next_check_at - connection.last_checked_at < timedelta(minutes=17)


@pytest.mark.django_db
def test_vanished_accounts_are_deleted_and_listed_ones_updated(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app)
    Account.objects.create(connection=connection, external_id="gone", name="Old", currency="BTC", balance=1)
    Account.objects.create(connection=connection, external_id="btc-1", name="Stale", currency="BTC", balance=9)
    connection_check(connection_id=connection.pk, force=True)
    accounts = {a.external_id: a for a in Account.objects.filter(connection=connection)}
    assert set(accounts) == {"btc-1", "eth-1"}
    assert accounts["btc-1"].balance == ACCOUNTS[0].balance
    assert accounts["btc-1"].name == "BTC wallet"


@pytest.mark.django_db
def test_routine_check_of_unchanged_accounts_writes_no_account_row(
    app: Any, world: FakeWorld, django_assert_num_queries: Any
) -> None:
    connection = make_connection(app)
    connection_check(connection_id=connection.pk, force=True)  # first sight: both accounts stored
    first = {a.external_id: a.as_of for a in Account.objects.filter(connection=connection)}
    assert set(first) == {"btc-1", "eth-1"}

    later = timezone.now() + timedelta(seconds=30)  # no renewal due yet
    with django_assert_num_queries(4):  # claim and read, its app, its credentials, release
        result = connection_check(connection_id=connection.pk, force=True, now=later)

    assert result.outcome == Outcome.OK
    connection.refresh_from_db()
    assert connection.last_success_at == later  # the list was confirmed ...
    assert {a.external_id: a.as_of for a in Account.objects.filter(connection=connection)} == first  # ... not rewritten


@pytest.mark.django_db
def test_a_changed_balance_rewrites_that_account_only(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app)
    connection_check(connection_id=connection.pk, force=True)
    before = {a.external_id: a.as_of for a in Account.objects.filter(connection=connection)}
    changed = [replace(ACCOUNTS[0], balance=Decimal("0.75")), ACCOUNTS[1]]
    world.probe_script.extend([changed, changed])

    later = timezone.now() + timedelta(seconds=30)
    connection_check(connection_id=connection.pk, force=True, now=later)

    after = {a.external_id: a for a in Account.objects.filter(connection=connection)}
    assert after["btc-1"].balance == Decimal("0.75")
    assert after["btc-1"].as_of == later
    assert after["eth-1"].as_of == before["eth-1"]
    # The next check reads the same list again: nothing is written.
    connection_check(connection_id=connection.pk, force=True, now=later + timedelta(seconds=1))
    assert Account.objects.get(connection=connection, external_id="btc-1").as_of == later


# --- Transient failures --------------------------------------------------------------------------


def test_backoff_is_capped_and_fully_jittered(settings: Any) -> None:
    settings.LIFECYCLE_BACKOFF_BASE_SECONDS = 30
    settings.LIFECYCLE_BACKOFF_CAP_SECONDS = 6 * 3600
    rng = random.Random(7)
    for failures in (1, 2, 3, 5, 10, 40, 1000):
        ceiling = min(6 * 3600, 30 * 2 ** (failures - 1)) if failures < 64 else 6 * 3600
        samples = [backoff_delay(failures, None, lifecycle.tunables(), rng) for _ in range(200)]
        assert all(0 <= s <= ceiling for s in samples)
        # Full jitter: spread over the whole range, not clustered at the ceiling.
        assert min(samples) < ceiling * 0.2
        assert max(samples) > ceiling * 0.8


def test_retry_after_is_a_floor_for_the_delay() -> None:
    rng = random.Random(1)
    assert all(backoff_delay(1, 3600, Tunables(), rng) >= 3600 for _ in range(50))


@pytest.mark.django_db
def test_retry_after_from_the_provider_is_honoured(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app)
    world.probe_script.append(ProviderError.transient("Fake: rate limited (HTTP 429).", retry_after=7200))
    before = timezone.now()
    connection_check(connection_id=connection.pk, force=True)
    connection.refresh_from_db()
    assert connection.next_check_at >= before + timedelta(seconds=7200)


@pytest.mark.django_db
def test_degraded_after_exactly_three_transient_failures_in_a_row(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app)
    seen = []
    for _ in range(3):
        world.probe_script.append(ProviderError.transient("Fake: timeout."))
        connection_check(connection_id=connection.pk, force=True)
        connection.refresh_from_db()
        seen.append((connection.status, connection.consecutive_failures))
    assert seen == [(Status.ACTIVE, 1), (Status.ACTIVE, 2), (Status.DEGRADED, 3)]
    assert connection.degraded_since is not None
    assert connection.reason == "transient"
    event = Ev.objects.filter(connection=connection, to_status=Status.DEGRADED).get()
    assert "temporary problems" in event.message
    assert "Fake" not in event.message.split(":")[0]


@pytest.mark.django_db
def test_transient_failures_alone_never_ask_for_a_reconnect(app: Any, world: FakeWorld, settings: Any) -> None:
    connection = make_connection(app)
    Account.objects.create(connection=connection, external_id="btc-1", name="BTC", currency="BTC", balance=1)
    for _ in range(12):
        world.probe_script.append(ProviderError.transient("Fake: HTTP 502."))
        world.renew_script.append(ProviderError.transient("Fake: HTTP 502."))
        connection_check(connection_id=connection.pk, force=True)
        connection.refresh_from_db()
        assert connection.status in (Status.ACTIVE, Status.DEGRADED)
        assert connection.next_check_at is not None
        assert connection.next_check_at - timezone.now() <= timedelta(hours=6, minutes=1)
    assert connection.status == Status.DEGRADED
    # The last good data stays on show.
    assert Account.objects.filter(connection=connection).count() == 1


@pytest.mark.django_db
def test_degraded_since_is_kept_while_degraded(app: Any, world: FakeWorld) -> None:
    since = timezone.now() - timedelta(hours=5)
    connection = make_connection(app, status=Status.DEGRADED, degraded_since=since)
    world.probe_script.append(ProviderError.transient("Fake: HTTP 500."))
    connection_check(connection_id=connection.pk, force=True)
    connection.refresh_from_db()
    assert connection.degraded_since == since


@pytest.mark.django_db
def test_recovery_event_names_the_source_in_plain_words(app: Any) -> None:
    connection = make_connection(app, status=Status.DEGRADED)
    connection_check(connection_id=connection.pk, force=True)
    event = Ev.objects.get(connection=connection, kind=K.RECOVERED)
    assert event.from_status == Status.DEGRADED
    assert event.to_status == Status.ACTIVE
    assert event.message.startswith("Coinbase via Coinify: connected and up to date.")
    assert event.actor_label == "job:check"


@pytest.mark.django_db
def test_permanent_failure_event_says_what_to_do(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app)
    world.probe_script.append(ProviderError.reauth(FailureReason.REVOKED, "Fake: access revoked."))
    connection_check(connection_id=connection.pk, force=True)
    event = Ev.objects.get(connection=connection)
    assert event.message == "Coinbase via Coinify: access was revoked at Coinbase. Ask the client to reconnect."
    assert event.reason == "revoked"
    assert event.to_status == Status.NEEDS_RECONNECT


@pytest.mark.django_db
def test_access_rejected_with_nothing_renewable_is_permanent_at_once(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app)
    world.renewable = False
    world.probe_script.append(ProviderError.access_token_rejected("Fake did not accept the token."))
    connection_check(connection_id=connection.pk, force=True)
    connection.refresh_from_db()
    assert connection.status == Status.NEEDS_RECONNECT
    assert connection.reason == "expired"
    assert world.calls["probe"] == 1


@pytest.mark.django_db
def test_access_rejected_and_renewal_refused_takes_the_renewals_reason(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app)
    world.probe_script.append(ProviderError.access_token_rejected("Fake did not accept the token."))
    world.renew_script.append(ProviderError.reauth(FailureReason.REVOKED, "Fake: refresh token revoked."))
    connection_check(connection_id=connection.pk, force=True)
    connection.refresh_from_db()
    assert (connection.status, connection.reason) == (Status.NEEDS_RECONNECT, "revoked")


@pytest.mark.django_db
def test_access_rejected_then_transient_on_renewal_is_only_transient(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app)
    world.probe_script.append(ProviderError.access_token_rejected("Fake did not accept the token."))
    world.renew_script.append(ProviderError.transient("Fake: HTTP 503."))
    connection_check(connection_id=connection.pk, force=True)
    connection.refresh_from_db()
    assert connection.status == Status.ACTIVE
    assert connection.consecutive_failures == 1


@pytest.mark.django_db
def test_token_renewed_in_the_same_check_and_then_rejected_is_permanent(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app, access_expires_in=timedelta(seconds=30))
    world.probe_script.append(ProviderError.access_token_rejected("Fake did not accept the fresh token."))
    connection_check(connection_id=connection.pk, force=True)
    connection.refresh_from_db()
    assert connection.status == Status.NEEDS_RECONNECT
    assert world.calls["renew"] == 1


# --- A stateful model --------------------------------------------------------------------------------


class ConnectionLifecycleMachine(RuleBasedStateMachine):
    """Connect, renew (ok / transient / permanent), reconnect, disconnect, against a model.

    The model knows which events each step must write; the invariants compare
    it with the database after every step.
    """

    def __init__(self) -> None:
        super().__init__()
        self.world: FakeWorld = FakeClientWorld.current
        self.app = ProviderApp.objects.get(pk=FakeClientWorld.app_id)
        client = ClientFactory()
        self.connection = ConnectionFactory(
            client=client,
            provider_app=self.app,
            status=Status.PENDING,
            next_check_at=None,
            last_success_at=None,
            connected_at=None,
            external_account_id="",
        )
        self.account_id = f"user-{self.connection.pk}"
        self.status = Status.PENDING
        self.permanent_since_success = False
        self.failures = 0
        self.events = 0

    def _make_renewal_due(self) -> None:
        now = timezone.now()
        Credential.objects.filter(connection=self.connection, kind="access").update(
            issued_at=now - timedelta(minutes=19), expires_at=now + timedelta(minutes=1)
        )

    def _succeeded(self, *, event_kinds: int) -> None:
        self.events += event_kinds + (1 if self.status in (Status.DEGRADED, Status.NEEDS_RECONNECT) else 0)
        self.status = Status.ACTIVE
        self.permanent_since_success = False
        self.failures = 0

    @precondition(lambda self: self.status == Status.DISCONNECTED)
    @rule()
    def connect_after_disconnect_is_refused(self) -> None:
        grant = grant_for(self.connection, f"c{self.world.next_serial()}", external_account_id=self.account_id)
        with pytest.raises(lifecycle.GrantRefused):
            lifecycle.grant_apply(connection=self.connection, grant=grant, purpose="connect", actor_label="test")

    @precondition(lambda self: self.status == Status.PENDING)
    @rule()
    def connect(self) -> None:
        grant = grant_for(self.connection, f"c{self.world.next_serial()}", external_account_id=self.account_id)
        lifecycle.grant_apply(connection=self.connection, grant=grant, purpose="connect", actor_label="test")
        self.events += 1
        self.status = Status.ACTIVE
        self.permanent_since_success = False
        self.failures = 0

    @precondition(lambda self: self.status in lifecycle.rules.CHECKABLE)
    @rule()
    def renew_ok(self) -> None:
        self._make_renewal_due()
        result = connection_check(connection_id=self.connection.pk, force=True)
        assert result.renewed
        self._succeeded(event_kinds=1)  # RENEWED (+ RECOVERED)

    @precondition(lambda self: self.status in lifecycle.rules.CHECKABLE)
    @rule()
    def renew_transient(self) -> None:
        self._make_renewal_due()
        self.world.renew_script.append(ProviderError.transient("Fake: HTTP 503."))
        connection_check(connection_id=self.connection.pk, force=True)
        self.events += 1
        self.failures += 1
        if self.status in (Status.ACTIVE, Status.DEGRADED) and self.failures >= 3:
            self.status = Status.DEGRADED

    @precondition(lambda self: self.status in lifecycle.rules.CHECKABLE)
    @rule(reason=st.sampled_from(list(FailureReason)))
    def renew_permanent(self, reason: FailureReason) -> None:
        self._make_renewal_due()
        self.world.renew_script.append(ProviderError.reauth(reason, "Fake: invalid_grant."))
        connection_check(connection_id=self.connection.pk, force=True)
        self.events += 1
        self.status = Status.NEEDS_RECONNECT
        self.permanent_since_success = True
        self.failures = 0

    @precondition(lambda self: self.status in lifecycle.rules.CHECKABLE)
    @rule()
    def reconnect(self) -> None:
        grant = grant_for(self.connection, f"r{self.world.next_serial()}", external_account_id=self.account_id)
        lifecycle.grant_apply(connection=self.connection, grant=grant, purpose="reconnect", actor_label="test")
        self._succeeded(event_kinds=1)  # RECONNECTED (+ RECOVERED)

    @precondition(lambda self: self.status in lifecycle.rules.CHECKABLE)
    @rule()
    def reconnect_as_someone_else(self) -> None:
        grant = grant_for(self.connection, "other", external_account_id=f"{self.account_id}-other")
        try:
            lifecycle.grant_apply(connection=self.connection, grant=grant, purpose="reconnect")
        except lifecycle.ReconnectMismatch:
            self.events += 1
        else:  # pragma: no cover - the invariant below reports it
            raise AssertionError("a different source account was accepted")

    @precondition(lambda self: self.status != Status.DISCONNECTED)
    @rule()
    def disconnect(self) -> None:
        lifecycle.connection_disconnect(connection=self.connection, actor_label="test")
        self.events += 1
        self.status = Status.DISCONNECTED
        self.permanent_since_success = False
        self.failures = 0

    @invariant()
    def status_matches_the_model(self) -> None:
        self.connection.refresh_from_db()
        assert self.connection.status == self.status
        assert self.connection.consecutive_failures == self.failures or self.status == Status.DISCONNECTED

    @invariant()
    def needs_reconnect_exactly_after_a_permanent_failure_since_the_last_success(self) -> None:
        self.connection.refresh_from_db()
        assert (self.connection.status == Status.NEEDS_RECONNECT) == self.permanent_since_success
        if self.connection.status == Status.NEEDS_RECONNECT:
            assert self.connection.next_check_at is None

    @invariant()
    def a_disconnected_connection_holds_no_secrets(self) -> None:
        if self.status == Status.DISCONNECTED:
            assert not Credential.objects.filter(connection=self.connection).exists()

    @invariant()
    def events_are_never_lost(self) -> None:
        assert Ev.objects.filter(connection=self.connection).count() == self.events

    @invariant()
    def no_claim_is_left_behind(self) -> None:
        assert Connection.objects.values_list("lease_owner", flat=True).get(pk=self.connection.pk) == ""


class FakeClientWorld:
    """Hands the per-test fake world and app to machine instances (hypothesis builds them itself)."""

    current: FakeWorld
    app_id: int


@pytest.mark.django_db
def test_lifecycle_state_machine_keeps_its_invariants(world: FakeWorld, settings: Any) -> None:
    # Every example shares one app; its breaker is tested elsewhere.
    settings.BREAKER_FAILURE_THRESHOLD = 10**9
    FakeClientWorld.current = world
    FakeClientWorld.app_id = ProviderAppFactory(provider="coinify", name="machine", rate_limit_per_second=0).pk
    run_state_machine_as_test(
        ConnectionLifecycleMachine,
        settings=hsettings(
            max_examples=25,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
            database=None,
        ),
    )


@pytest.mark.django_db
def test_routine_check_makes_few_queries(app: Any) -> None:
    from django.db import connection as db_connection
    from django.test.utils import CaptureQueriesContext

    connection = make_connection(app, next_check_at=timezone.now() - timedelta(seconds=1))
    lifecycle.client_for_app(app=app)  # a worker thread reuses its client between checks
    with CaptureQueriesContext(db_connection) as queries:
        assert connection_check(connection_id=connection.pk).outcome == Outcome.OK
    statements = [
        q["sql"] for q in queries.captured_queries if not q["sql"].upper().startswith(("SAVEPOINT", "RELEASE"))
    ]
    # claim, load row + credentials, one update, account upsert, vanished-account delete
    assert len(statements) <= 6, statements
