"""Digests, housekeeping, deadline warnings, app tokens, and the app-credentials alert."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from connections import jobs, lifecycle
from connections.lifecycle import Outcome, connection_check
from connections.models import (
    AuthorizationRequest,
    ClientLink,
    ConnectionEvent,
    Credential,
    Membership,
    ProviderApp,
    Status,
)
from connections.notifications import DIGEST_SETTLE_SECONDS
from connections.providers.base import IssuedCredential
from connections.providers.errors import FailureReason, ProviderError
from tests.factories import (
    ClientFactory,
    ConnectionFactory,
    FirmFactory,
    HouseholdFactory,
    MembershipFactory,
    UserFactory,
)

from .conftest import FakeWorld, make_connection

K = ConnectionEvent.Kind


def _later() -> Any:
    # Digests leave the last half minute for the next run; look from a bit ahead.
    return timezone.now() + timedelta(minutes=1)


@pytest.fixture
def firm_setup(app: Any) -> dict[str, Any]:
    firm = FirmFactory()
    alice = MembershipFactory(firm=firm, user=UserFactory(username="alice"))
    bob = MembershipFactory(firm=firm, user=UserFactory(username="bob"))
    boss = MembershipFactory(firm=firm, user=UserFactory(username="boss"), role=Membership.Role.FIRM_ADMIN)
    h_alice = HouseholdFactory(firm=firm, name="Ashford", advisers=[alice.user])
    h_bob = HouseholdFactory(firm=firm, name="Brampton", advisers=[bob.user])

    def conn(household: Any, platform: str, **kwargs: Any) -> Any:
        client = ClientFactory(household=household)
        return make_connection(app, client=client, platform=platform, **kwargs)

    return {
        "firm": firm,
        "alice": alice,
        "bob": bob,
        "boss": boss,
        "revoked": conn(h_alice, "coinbase"),
        "lapsing": conn(h_alice, "kraken"),
        "recovered": conn(h_bob, "gemini", status=Status.DEGRADED),
    }


def _make_news(setup: dict[str, Any], world: FakeWorld) -> None:
    world.probe_script.append(ProviderError.reauth(FailureReason.REVOKED, "Fake: revoked."))
    connection_check(connection_id=setup["revoked"].pk, force=True)
    connection_check(connection_id=setup["recovered"].pk, force=True)
    lapsing = setup["lapsing"]
    now = timezone.now()
    Credential.objects.filter(connection=lapsing, kind="refresh").update(issued_at=now - timedelta(hours=22))
    lapsing.__class__.objects.filter(pk=lapsing.pk).update(reconnect_by=now + timedelta(hours=2))
    assert jobs.deadline_warnings_record() == 1  # what housekeeping does every few minutes


@pytest.mark.django_db
def test_each_adviser_gets_one_digest_with_their_households_news(firm_setup: dict[str, Any], world: FakeWorld) -> None:
    _make_news(firm_setup, world)
    sent = jobs.digests_send(now=_later())
    # Bob's connection was degraded for an hour before the check that brought it back: it was never
    # announced, so its recovery is no news either, and Bob gets no digest.
    assert sent == 2
    by_recipient = {message.to[0]: message for message in mail.outbox}
    assert set(by_recipient) == {"alice@example.test", "boss@example.test"}

    alice = by_recipient["alice@example.test"].body
    assert "NEED RECONNECTING" in alice
    assert "Coinbase via Coinify: access was revoked at Coinbase" in alice
    assert "WILL LAPSE SOON" in alice
    assert "Kraken via Coinify" in alice
    assert "Gemini" not in alice
    assert by_recipient["alice@example.test"].subject == "Client connections: 1 need reconnecting, 1 will lapse soon"

    boss = by_recipient["boss@example.test"].body
    for section in ("NEED RECONNECTING", "WILL LAPSE SOON"):
        assert section in boss
    for message in mail.outbox:
        assert "access-" not in message.body
        assert "refresh-" not in message.body


@pytest.mark.django_db
def test_a_recovery_is_told_once_it_has_held_to_whoever_was_told_of_the_problem(
    firm_setup: dict[str, Any], world: FakeWorld
) -> None:
    failing = firm_setup["recovered"]  # degraded for an hour: the rules call that actionable

    def settled() -> Any:
        # Digests look at what is older than their settle time; run each one just past it.
        return timezone.now() + timedelta(seconds=DIGEST_SETTLE_SECONDS)

    assert jobs.digests_send(now=settled()) == 2  # bob and the firm admin
    bob = next(m for m in mail.outbox if m.to == ["bob@example.test"]).body
    assert "PROVIDER FAILING FOR OVER AN HOUR" in bob
    assert "Gemini via Coinify" in bob
    mail.outbox.clear()

    connection_check(connection_id=failing.pk, force=True)  # back
    assert jobs.digests_send(now=settled()) == 0  # not held yet: nothing to say
    connection_check(connection_id=failing.pk, force=True)  # a second good check: it held
    assert jobs.digests_send(now=settled()) == 2
    bob = next(m for m in mail.outbox if m.to == ["bob@example.test"]).body
    assert "RECOVERED" in bob
    assert "Gemini via Coinify: connected and up to date again" in bob


@pytest.mark.django_db
def test_nothing_is_sent_twice_and_new_news_comes_alone(firm_setup: dict[str, Any], world: FakeWorld) -> None:
    _make_news(firm_setup, world)
    # The news is a few minutes old by the time the digest runs.
    ConnectionEvent.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    assert jobs.digests_send() == 2  # alice and the firm admin (bob's news solved itself)
    mail.outbox.clear()
    assert jobs.digests_send() == 0
    assert mail.outbox == []

    world.probe_script.append(ProviderError.reauth(FailureReason.EXPIRED, "Fake: expired."))
    connection_check(connection_id=firm_setup["lapsing"].pk, force=True)
    assert jobs.digests_send(now=_later()) == 2  # alice and the firm admin
    alice = next(m for m in mail.outbox if m.to == ["alice@example.test"]).body
    news, told_before = alice.split("STILL TO DO (told before)")
    assert "Kraken via Coinify: the authorization expired" in news
    assert "Coinbase" not in news
    assert "Coinbase via Coinify" in told_before  # still broken, listed beside the news


@pytest.mark.django_db
def test_no_digest_when_nothing_happened(firm_setup: dict[str, Any], world: FakeWorld) -> None:
    connection_check(connection_id=firm_setup["recovered"].pk, force=True)  # every connection is fine
    assert jobs.digests_send(now=_later()) == 0
    assert mail.outbox == []
    moved = Membership.objects.filter(digest_sent_up_to__isnull=False).count()
    assert moved == 3


@pytest.mark.django_db
def test_connection_that_broke_and_recovered_before_any_digest_is_never_mentioned(
    firm_setup: dict[str, Any], world: FakeWorld
) -> None:
    connection = firm_setup["revoked"]
    world.probe_script.append(ProviderError.reauth(FailureReason.REVOKED, "Fake: revoked."))
    connection_check(connection_id=connection.pk, force=True)
    connection_check(connection_id=connection.pk, force=True)
    jobs.digests_send(now=_later())
    assert not [m for m in mail.outbox if m.to == ["alice@example.test"]]


# --- Deadline warnings ---------------------------------------------------------------------


@pytest.mark.django_db
def test_refresh_token_about_to_lapse_is_warned_once(app: Any) -> None:
    connection = make_connection(app)
    now = timezone.now()
    Credential.objects.filter(connection=connection, kind="refresh").update(issued_at=now - timedelta(hours=22))
    connection.__class__.objects.filter(pk=connection.pk).update(reconnect_by=now + timedelta(hours=2))
    assert jobs.deadline_warnings_record(now=now) == 1
    assert jobs.deadline_warnings_record(now=now + timedelta(minutes=5)) == 0
    event = ConnectionEvent.objects.get(connection=connection, kind=K.DEADLINE_WARNING)
    assert "lapses at" in event.message
    assert "must reconnect" in event.message


@pytest.mark.django_db
def test_routinely_renewed_refresh_token_is_not_announced(app: Any) -> None:
    connection = make_connection(app)
    now = timezone.now()
    Credential.objects.filter(connection=connection, kind="refresh").update(issued_at=now - timedelta(minutes=20))
    connection.__class__.objects.filter(pk=connection.pk).update(
        reconnect_by=now + timedelta(hours=23), reconnect_by_rolls=True
    )
    assert jobs.deadline_warnings_record(now=now) == 0


@pytest.mark.django_db
def test_access_code_not_yet_exchanged_is_warned_before_it_lapses(app: Any) -> None:
    now = timezone.now()
    connection = ConnectionFactory(
        provider_app=app,
        status=Status.PENDING,
        next_check_at=None,
        connected_at=None,
        created_at=now - timedelta(minutes=20),
        reconnect_by=now + timedelta(minutes=10),
    )
    assert jobs.deadline_warnings_record(now=now) == 1
    event = ConnectionEvent.objects.get(connection=connection)
    assert "must be finished by" in event.message


# --- Housekeeping ------------------------------------------------------------------------------


def _auth_request(connection: Any, *, expires_in: timedelta, **kwargs: Any) -> AuthorizationRequest:
    return AuthorizationRequest.objects.create(
        state_hash=f"{connection.pk}-{expires_in.total_seconds()}-{kwargs}",
        provider_app=connection.provider_app,
        provider=connection.provider,
        platform=connection.platform,
        household=connection.household,
        client=connection.client,
        connection=connection,
        expires_at=timezone.now() + expires_in,
        **kwargs,
    )


@pytest.mark.django_db
def test_stale_authorization_request_expires_and_its_pending_connection_is_marked_abandoned(app: Any) -> None:
    pending = ConnectionFactory(provider_app=app, status=Status.PENDING, next_check_at=None, external_account_id="")
    stale = _auth_request(pending, expires_in=timedelta(minutes=-1))
    fresh_pending = ConnectionFactory(provider_app=app, status=Status.PENDING, external_account_id="")
    fresh = _auth_request(fresh_pending, expires_in=timedelta(minutes=9))

    run_at = timezone.now()
    summary = jobs.housekeeping_run(now=run_at)

    assert summary["authorization_requests_expired"] == 1
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.outcome == AuthorizationRequest.Outcome.EXPIRED
    assert fresh.outcome == ""
    pending.refresh_from_db()
    assert (pending.status, pending.reason) == (Status.PENDING, "authorization_abandoned")
    event = ConnectionEvent.objects.get(connection=pending)
    assert "not finished in time" in event.message
    assert event.created_at == run_at
    fresh_pending.refresh_from_db()
    assert fresh_pending.reason == ""
    assert jobs.housekeeping_run()["authorization_requests_expired"] == 0


@pytest.mark.django_db
def test_expired_reconnect_request_leaves_the_connection_alone(app: Any) -> None:
    connection = make_connection(app, status=Status.NEEDS_RECONNECT, reason="revoked")
    _auth_request(connection, expires_in=timedelta(minutes=-1), purpose=AuthorizationRequest.Purpose.RECONNECT)
    jobs.housekeeping_run()
    connection.refresh_from_db()
    assert (connection.status, connection.reason) == (Status.NEEDS_RECONNECT, "revoked")
    assert not ConnectionEvent.objects.filter(connection=connection).exists()


@pytest.mark.django_db
def test_expired_client_link_is_marked_expired_with_an_event(app: Any) -> None:
    connection = make_connection(app, status=Status.NEEDS_RECONNECT)
    now = timezone.now()

    def link(**kwargs: Any) -> ClientLink:
        return ClientLink.objects.create(
            token_hash=f"h{ClientLink.objects.count()}",
            household=connection.household,
            client=connection.client,
            connection=connection,
            provider_app=app,
            platform=connection.platform,
            sent_to="client@example.test",
            **kwargs,
        )

    old = link(expires_at=now - timedelta(hours=1))
    current = link(expires_at=now + timedelta(hours=1))
    done = link(expires_at=now - timedelta(hours=1), status=ClientLink.LinkStatus.COMPLETED)
    assert jobs.housekeeping_run()["client_links_expired"] == 1
    assert ClientLink.objects.get(pk=old.pk).status == ClientLink.LinkStatus.EXPIRED
    assert ClientLink.objects.get(pk=current.pk).status == ClientLink.LinkStatus.SENT
    assert ClientLink.objects.get(pk=done.pk).status == ClientLink.LinkStatus.COMPLETED
    assert list(ConnectionEvent.objects.filter(connection=connection).values_list("kind", flat=True)) == [
        K.LINK_EXPIRED
    ]


# --- Rejected app credentials -----------------------------------------------------------------


@pytest.mark.django_db
def test_rejected_app_credentials_flag_the_app_alert_admins_and_leave_connections_alone(
    firm_setup: dict[str, Any], world: FakeWorld, app: Any, django_capture_on_commit_callbacks: Any
) -> None:
    staff = UserFactory(username="ops", is_staff=True)
    other_firm_admin = MembershipFactory(role=Membership.Role.FIRM_ADMIN, user=UserFactory(username="elsewhere"))
    first, second = firm_setup["revoked"], firm_setup["lapsing"]
    world.probe_script.append(ProviderError.app_credentials("Fake rejected the partner credentials."))

    with django_capture_on_commit_callbacks(execute=True):
        result = connection_check(connection_id=first.pk, force=True)
        again = connection_check(connection_id=second.pk, force=True)

    assert result.outcome == Outcome.APP_CREDENTIALS_INVALID
    assert again.outcome == Outcome.DEFERRED  # no more calls while the app is flagged
    assert world.calls["probe"] == 1
    app.refresh_from_db()
    assert app.credentials_rejected_at is not None
    assert "partner credentials" in app.last_error
    for connection in (first, second):
        connection.refresh_from_db()
        assert connection.status == Status.ACTIVE
        assert connection.next_check_at > timezone.now()
    recipients = sorted(message.to[0] for message in mail.outbox)
    assert recipients == sorted(["boss@example.test", staff.email])
    assert other_firm_admin.user.email not in recipients
    assert "Client connections have not been flagged" in mail.outbox[0].body
    assert "coinify-client-secret" not in mail.outbox[0].body


@pytest.mark.django_db
def test_alert_is_sent_once_per_incident(
    firm_setup: dict[str, Any], app: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        assert lifecycle.app_credentials_rejected(app=app, message="rejected")
        assert not lifecycle.app_credentials_rejected(app=app, message="rejected again")
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_app_token_refresh_keeps_tokens_fresh_and_clears_a_rejection(app: Any, world: FakeWorld) -> None:
    ProviderApp.objects.filter(pk=app.pk).update(credentials_rejected_at=timezone.now())
    outcome = jobs.app_tokens_refresh()
    assert list(outcome.values()) == ["ok"]
    app.refresh_from_db()
    assert app.credentials_rejected_at is None
    assert Credential.objects.get(provider_app=app, kind="app").value == "app-token"


@pytest.mark.django_db
def test_app_token_rejection_flags_the_app(app: Any, world: FakeWorld, django_capture_on_commit_callbacks: Any) -> None:
    world.app_token_script.append(ProviderError.app_credentials("Fake: invalid client credentials."))
    with django_capture_on_commit_callbacks(execute=True):
        outcome = jobs.app_tokens_refresh()
    assert list(outcome.values()) == ["failed (app_credentials_invalid)"]
    app.refresh_from_db()
    assert app.credentials_rejected_at is not None


@pytest.mark.django_db
def test_app_without_app_token_is_left_alone(app: Any, world: FakeWorld) -> None:
    world.has_app_token = False
    assert list(jobs.app_tokens_refresh().values()) == ["none"]
    assert not Credential.objects.filter(provider_app=app).exists()


@pytest.mark.django_db
def test_app_token_cache_is_shared_through_the_database(app: Any) -> None:
    now = timezone.now()
    first, second = lifecycle.clients.DbAppTokenCache(app.pk), lifecycle.clients.DbAppTokenCache(app.pk)
    assert second.load() is None
    first.save(IssuedCredential(kind="app", value="t1", issued_at=now, expires_at=now + timedelta(hours=1)))
    assert second.load().value == "t1"
    # Near its renewal point, a worker's memo gives way to what another worker stored.
    aging = IssuedCredential(
        kind="app", value="t1", issued_at=now - timedelta(minutes=50), expires_at=now + timedelta(minutes=10)
    )
    first.save(aging)
    third = lifecycle.clients.DbAppTokenCache(app.pk)
    assert third.load().value == "t1"  # remembered, with less than a quarter of its life left
    first.save(IssuedCredential(kind="app", value="t2", issued_at=now, expires_at=now + timedelta(minutes=10)))
    assert third.load().value == "t2"


@pytest.mark.django_db
def test_client_is_reused_until_an_admin_changes_the_app(app: Any) -> None:
    first = lifecycle.client_for_app(app=app)
    assert lifecycle.client_for_app(app=ProviderApp.objects.get(pk=app.pk)) is first
    app.base_url = "http://elsewhere.test/api"
    app.save()
    changed = lifecycle.client_for_app(app=app)
    assert changed is not first
    assert changed.app.base_url == "http://elsewhere.test/api"
