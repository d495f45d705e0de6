"""The demo world `seed_demo` builds with the sandbox, read as a newcomer would read it.

Seeding lives a month of every connection's life, so the world is seeded once
for this module (and rolled back after it); each test runs in its own
savepoint on top. Runs from an empty database are in
``test_seed_demo_runs.py``, checks against a live sandbox in
``test_seed_demo_live.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import transaction
from django.db.models import Count
from django.test import override_settings
from django.utils import timezone

from connections import lifecycle, wording
from connections import models as m
from connections.demo.world import DEMO_LOGINS, DEMO_PASSWORD
from connections.lifecycle import rules
from connections.providers.bloquo import decode_api_key
from sandbox.models import BloquoKey, CoinifyUser, DapiConnection, Token, TurnqeyAuthorization
from tests.seed_demo_support import sandbox_subjects, seed, snapshot

pytestmark = pytest.mark.django_db

User = get_user_model()
S = m.Status
K = m.ConnectionEvent.Kind
WORKING = (S.ACTIVE, S.DEGRADED)


# When the module's demo was seeded: its schedule is relative to that moment, and
# on a busy machine the module's later tests run minutes after it.
SEEDED: dict[str, datetime] = {}


@pytest.fixture(scope="module", autouse=True)
def demo(django_db_setup: None, django_db_blocker: Any) -> Iterator[str]:
    """The demo world, seeded once for the module; rolled back when its tests are done."""
    # The settings every test gets (tests/conftest.py), for a fixture that outlives one test.
    quick = {
        "DEBUG": True,
        "PASSWORD_HASHERS": ["django.contrib.auth.hashers.MD5PasswordHasher"],
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
    }
    with django_db_blocker.unblock(), override_settings(**quick):
        outer = transaction.atomic()
        outer.__enter__()
        try:
            SEEDED["at"] = timezone.now()
            yield seed()
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def _development(settings: Any) -> None:
    # pytest-django runs with DEBUG off; seed_demo is development-only.
    settings.DEBUG = True


# --- the firm and its people --------------------------------------------------------------


def test_running_again_changes_no_row() -> None:
    first = snapshot()

    output = seed()

    assert snapshot() == first
    assert "nothing changed" in output


def test_the_demo_firm_has_its_people_and_households() -> None:
    firm = m.Firm.objects.get(name="Demo Advisory")
    roles = dict(m.Membership.objects.filter(firm=firm).values_list("user__username", "role"))
    assert roles == {"adviser1": "adviser", "adviser2": "adviser", "firmadmin": "firm_admin"}
    admin = User.objects.get(username="admin")
    assert admin.is_superuser
    assert admin.is_staff
    households = m.Household.objects.filter(firm=firm).annotate(
        n_clients=Count("clients", distinct=True), n_advisers=Count("advisers", distinct=True)
    )
    assert 7 <= households.count() <= 10
    assert all(1 <= h.n_clients <= 3 for h in households)
    shared = [h for h in households if h.n_advisers == 2]
    assert len(shared) == 1
    assert set(shared[0].advisers.values_list("username", flat=True)) == {"adviser1", "adviser2"}
    assert all(h.n_advisers >= 1 for h in households)


def test_every_demo_login_uses_the_development_password() -> None:
    for login in DEMO_LOGINS:
        assert User.objects.get(username=login.username).check_password(DEMO_PASSWORD)


def test_demo_logins_prints_the_portal_url_and_the_logins(settings: Any) -> None:
    settings.PORTAL_BASE_URL = "http://127.0.0.1:8000"
    out = StringIO()

    call_command("demo_logins", stdout=out)

    text = out.getvalue()
    assert "http://127.0.0.1:8000/" in text
    assert DEMO_PASSWORD in text
    for login in DEMO_LOGINS:
        assert login.username in text


def test_demo_logins_says_where_the_emails_and_the_sandbox_sign_ins_are(settings: Any) -> None:
    from portal.outbox import BACKEND

    settings.PORTAL_BASE_URL = "http://127.0.0.1:8001"
    settings.SANDBOX_BASE_URL = "http://127.0.0.1:8001/sandbox"
    settings.EMAIL_BACKEND = BACKEND
    settings.SANDBOX_ENABLED = settings.SANDBOX_SIGN_IN_HINTS = True
    out = StringIO()

    call_command("demo_logins", stdout=out)

    assert "http://127.0.0.1:8001/dev/outbox/" in out.getvalue()
    assert "http://127.0.0.1:8001/sandbox/_hints/" in out.getvalue()


def test_demo_logins_prints_no_password_in_production(settings: Any) -> None:
    settings.DEBUG = False
    out = StringIO()

    call_command("demo_logins", stdout=out)

    assert DEMO_PASSWORD not in out.getvalue()


# --- connections: statuses, accounts, deadlines ---------------------------------------------


def test_every_provider_has_a_connection_in_every_status_and_every_reason_appears() -> None:
    seen = set(m.Connection.objects.values_list("provider", "status"))
    for provider in m.Provider.values:
        for status in m.Status.values:
            assert (provider, status) in seen, (provider, status)
    reasons = set(m.Connection.objects.filter(status=S.NEEDS_RECONNECT).values_list("reason", flat=True))
    assert reasons == {m.Reason.EXPIRED, m.Reason.REVOKED, m.Reason.CREDENTIALS_INVALID}
    pending = m.Connection.objects.filter(status=S.PENDING)
    assert set(pending.values_list("reason", flat=True)) == {"", m.Reason.AUTHORIZATION_ABANDONED}


def flagging_event(connection: m.Connection) -> m.ConnectionEvent:
    return connection.events.filter(kind=K.CHECK_FAILED, to_status=S.NEEDS_RECONNECT).latest("created_at")


def test_credentials_follow_the_status() -> None:
    with_credentials = set(m.Credential.objects.filter(connection__isnull=False).values_list("connection", flat=True))
    for connection in m.Connection.objects.all():
        has = connection.pk in with_credentials
        if connection.status in (S.PENDING, S.DISCONNECTED) or connection.provider == "turnqey":
            assert not has, connection  # nothing granted yet / deleted on purpose / Turnqey keeps none
        elif connection.status == S.NEEDS_RECONNECT and "credentials_deleted" in flagging_event(connection).details:
            assert not has, connection  # a renewal refused for good: the check deleted them
        else:
            assert has, connection


def test_connections_carry_accounts_deadlines_and_a_month_of_history() -> None:
    now = timezone.now()

    for connection in m.Connection.objects.exclude(status=S.PENDING):
        assert connection.accounts.exists(), connection
        assert all(a.balance > 0 for a in connection.accounts.all())
    assert not m.Account.objects.filter(connection__status=S.PENDING).exists()
    for connection in m.Connection.objects.filter(status__in=WORKING):
        assert connection.next_check_at
        assert connection.next_check_at > SEEDED["at"] - timedelta(minutes=1)
    assert not m.Connection.objects.filter(
        status__in=[S.NEEDS_RECONNECT, S.DISCONNECTED], next_check_at__isnull=False
    ).exists()
    assert m.Connection.objects.filter(status__in=WORKING, reconnect_by__gt=now).exists()
    events = m.ConnectionEvent.objects.filter(created_at__gte=now - timedelta(days=30))
    days_with_events = {e.date() for e in events.values_list("created_at", flat=True)}
    assert len(days_with_events) >= 25
    kinds = set(events.values_list("kind", flat=True))
    assert {K.RENEWED, K.CHECK_FAILED, K.STATUS_CHANGED, K.RECOVERED, K.DISCONNECTED} <= kinds
    assert not m.ConnectionEvent.objects.filter(created_at__gt=now).exists()


def test_revoked_connections_have_a_reconnect_link_sent_and_one_opened() -> None:
    revoked = m.Connection.objects.filter(status=S.NEEDS_RECONNECT, reason=m.Reason.REVOKED)
    links = m.ClientLink.objects.filter(connection__in=revoked)

    assert set(links.values_list("connection", flat=True)) == set(revoked.values_list("pk", flat=True))
    assert links.filter(status=m.ClientLink.LinkStatus.OPENED).exists()
    assert links.filter(status=m.ClientLink.LinkStatus.SENT).exists()
    for link in links:
        assert link.connection.events.filter(kind=K.LINK_SENT, created_at=link.sent_at).exists()
        if link.opened_at:
            assert link.connection.events.filter(kind=K.LINK_OPENED, created_at=link.opened_at).exists()


def test_pending_connections_wait_on_an_authorization_and_the_abandoned_one_ran_out() -> None:
    for connection in m.Connection.objects.filter(status=S.PENDING):
        request = connection.authorization_requests.get()
        if connection.reason == m.Reason.AUTHORIZATION_ABANDONED:
            assert request.outcome == m.AuthorizationRequest.Outcome.EXPIRED
            abandoned = connection.events.get(kind=K.STATUS_CHANGED)
            assert abandoned.actor_label == wording.HOUSEKEEPING
            assert abandoned.created_at > request.expires_at
        else:
            assert request.outcome == ""
            assert request.expires_at > timezone.now()


# --- the history speaks the engine's language ------------------------------------------------


def lifecycle_vocabulary() -> set[tuple[str, str, str]]:
    """Every (kind, from_status, to_status) the lifecycle writes.

    The rules' events, for every status a connection can be in and everything
    that can happen to it; a check's renewal (statuses unchanged); the client
    link services' events (no status).
    """
    now = timezone.now()
    states = [rules.State(status) for status in m.Status.values] + [
        rules.State(S.ACTIVE, consecutive_failures=2),
        rules.State(S.DEGRADED, m.Reason.TRANSIENT, 4, now - timedelta(hours=1)),
        rules.State(S.NEEDS_RECONNECT, m.Reason.REVOKED),
    ]
    happenings: list[rules.Happened] = [
        rules.Succeeded(),
        rules.FailedTransiently(),
        *(rules.FailedPermanently(reason) for reason in sorted(rules.PERMANENT_REASONS)),
        rules.AppRejected(),
        rules.Interrupted(),
        rules.Granted(reconnect=False),
        rules.Granted(reconnect=True),
        rules.Disconnected(),
        rules.Abandoned(),
        rules.DeadlinePassed(deadline=now),
        rules.CredentialsUnreadable(),
    ]
    written = {(spec.kind, spec.from_status, spec.to_status) for spec in rules.started().events}
    for state, happened in itertools.product(states, happenings):
        try:
            transition = rules.decide(state, happened, now=now, tunables=rules.Tunables())
        except rules.GrantRefused:
            continue
        written |= {(spec.kind, spec.from_status, spec.to_status) for spec in transition.events}
    written |= {(K.RENEWED, status, status) for status in rules.CHECKABLE}
    written |= {(kind, "", "") for kind in (K.LINK_SENT, K.LINK_OPENED, K.LINK_COMPLETED, K.LINK_EXPIRED)}
    return written


def test_the_history_uses_only_what_the_lifecycle_writes() -> None:
    vocabulary = lifecycle_vocabulary()
    written = set(m.ConnectionEvent.objects.values_list("kind", "from_status", "to_status"))

    assert written <= vocabulary, written - vocabulary
    assert "check_succeeded" not in m.ConnectionEvent.Kind.values


def test_every_event_was_done_by_a_person_or_by_one_of_the_lifecycles_own_actors() -> None:
    actors = {wording.SCHEDULED_CHECK, wording.HOUSEKEEPING, wording.CLIENT_LINK}
    for kind, label, actor in m.ConnectionEvent.objects.values_list("kind", "actor_label", "actor").distinct():
        assert label in actors or (label == "" and actor is not None), (kind, label, actor)
    checks = m.ConnectionEvent.objects.filter(kind__in=[K.CHECK_FAILED, K.RENEWED, K.RECOVERED])
    assert set(checks.values_list("actor_label", flat=True)) == {wording.SCHEDULED_CHECK}


def test_every_event_is_worded_by_the_lifecycles_wording() -> None:
    for event in m.ConnectionEvent.objects.select_related("connection").filter(kind=K.RENEWED)[:200]:
        source = event.connection.source_display
        assert event.message.startswith(f"{source}: credentials renewed ahead of expiry")
    for event in m.ConnectionEvent.objects.select_related("connection").filter(
        kind=K.CHECK_FAILED, to_status=S.NEEDS_RECONNECT
    ):
        connection = event.connection
        expected = wording.status_message(
            provider=connection.provider, platform=connection.platform, status=S.NEEDS_RECONNECT, reason=event.reason
        )
        assert event.message == expected


def test_each_row_holds_what_the_rules_decided_for_its_history() -> None:
    tunables = lifecycle.tunables()
    for connection in m.Connection.objects.filter(status=S.NEEDS_RECONNECT):
        assert connection.consecutive_failures == 0
        assert connection.degraded_since is None
        flagged = flagging_event(connection)
        assert (flagged.reason, flagged.created_at) == (connection.reason, connection.last_checked_at)
        assert connection.last_error
    for connection in m.Connection.objects.filter(status=S.DEGRADED):
        assert connection.reason == m.Reason.TRANSIENT
        assert connection.consecutive_failures >= tunables.degraded_after
        moved = connection.events.filter(kind=K.CHECK_FAILED, to_status=S.DEGRADED, from_status=S.ACTIVE).latest(
            "created_at"
        )
        assert connection.degraded_since == moved.created_at
        assert connection.last_error == moved.details["error"]
    for connection in m.Connection.objects.filter(status=S.ACTIVE):
        assert (connection.reason, connection.consecutive_failures, connection.degraded_since) == ("", 0, None)


def test_each_rows_moments_are_those_of_its_history() -> None:
    for connection in m.Connection.objects.all():
        events = connection.events.order_by("created_at", "id")
        created = events.first()
        assert created is not None
        assert (created.kind, created.created_at) == (K.CREATED, connection.created_at)
        if connection.connected_at:
            assert events.filter(kind=K.CONNECTED, created_at=connection.connected_at).exists()
            assert connection.accounts.filter(as_of=connection.connected_at).exists()
        if connection.disconnected_at:
            assert events.last().kind == K.DISCONNECTED
            assert events.last().created_at == connection.disconnected_at
        if connection.last_checked_at:
            assert not events.filter(kind__in=[K.CHECK_FAILED, K.RENEWED], created_at__gt=connection.last_checked_at)


# --- real sandbox subjects ----------------------------------------------------------------------


def test_connections_with_a_source_account_get_the_ids_and_secrets_of_real_sandbox_subjects() -> None:
    backed = m.Connection.objects.filter(status__in=[*WORKING, S.NEEDS_RECONNECT])
    for connection in backed.filter(provider="coinify"):
        assert CoinifyUser.objects.filter(
            pk=int(connection.external_account_id), email=connection.client.email
        ).exists()
    for connection in backed.filter(provider="bloquo"):
        key = BloquoKey.objects.get(customer_id=connection.external_account_id)
        assert key.email == connection.client.email
        stored = connection.credentials.filter(kind="api_key").first()
        if stored is not None:
            pair = decode_api_key(stored.value)
            assert pair is not None
            assert key.client_id == pair[0]
    for connection in backed.filter(provider="dapi"):
        link = DapiConnection.objects.get(connection_id=connection.grouping["connectionID"])
        assert link.user_id == connection.external_account_id
        assert link.username == connection.client.email
    for connection in backed.filter(provider="turnqey"):
        authorization = TurnqeyAuthorization.objects.get(
            identity=str(connection.client.identity), platform=connection.platform
        )
        assert authorization.source_account_id == connection.external_account_id
        assert connection.grouping == {
            "collection": str(connection.household.turnqey_collection),
            "identity": str(connection.client.identity),
        }
        expected = "active" if connection.status in WORKING else connection.reason
        assert authorization.status == expected


def test_working_coinify_connections_hold_the_rolling_sign_in_they_were_granted() -> None:
    for connection in m.Connection.objects.filter(provider="coinify", status__in=WORKING):
        held = {c.kind: c for c in connection.credentials.all()}
        assert set(held) == {"access", "refresh"}
        # The refresh token's end of life is the deadline that renewals keep moving on.
        assert connection.reconnect_by == held["refresh"].expires_at
        assert held["refresh"].expires_at > timezone.now()


def test_a_second_run_creates_no_sandbox_subjects_and_keeps_every_credential() -> None:
    subjects = sandbox_subjects()
    tokens = Token.objects.count()
    credentials = list(m.Credential.objects.order_by("pk").values_list("pk", "kind", "value", "expires_at"))

    seed()

    assert sandbox_subjects() == subjects
    assert Token.objects.count() == tokens
    assert list(m.Credential.objects.order_by("pk").values_list("pk", "kind", "value", "expires_at")) == credentials
