"""Connect, reconnect (same source account only) and disconnect."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from connections import lifecycle
from connections.lifecycle.store import credentials_upsert
from connections.models import Account, Connection, ConnectionEvent, Credential, Provider, Status
from connections.providers.base import Grant, IssuedCredential
from connections.providers.errors import ProviderError
from tests.factories import ConnectionFactory, ProviderAppFactory, UserFactory

from .conftest import ACCOUNTS, FakeWorld, fresh_credentials, grant_for, make_connection

K = ConnectionEvent.Kind


def _kinds(connection: Connection) -> list[str]:
    return list(
        ConnectionEvent.objects.filter(connection=connection)
        .order_by("created_at", "id")
        .values_list("kind", flat=True)
    )


@pytest.mark.django_db
def test_connect_stores_credentials_accounts_and_schedules_the_next_check(app: Any) -> None:
    connection = ConnectionFactory(provider_app=app, status=Status.PENDING, external_account_id="", next_check_at=None)
    user = UserFactory()
    result = lifecycle.grant_apply(
        connection=connection,
        grant=grant_for(connection, "one", external_account_id="user-42"),
        purpose="connect",
        actor=user,
        actor_label="web",
    )
    assert result.status == Status.ACTIVE
    assert result.reason == ""
    assert result.external_account_id == "user-42"
    assert result.connected_at is not None
    assert result.next_check_at is not None
    assert result.next_check_at > timezone.now()
    refresh = Credential.objects.get(connection=connection, kind="refresh")
    assert result.reconnect_by == refresh.expires_at  # no offline token: the refresh token's end is a hard limit
    assert Account.objects.filter(connection=connection).count() == len(ACCOUNTS)
    event = ConnectionEvent.objects.get(connection=connection)
    assert event.kind == K.CONNECTED
    assert event.actor == user
    assert "access-one" not in event.message
    assert "reconnect by" in event.message


@pytest.mark.django_db
def test_offline_token_means_no_hard_deadline(app: Any) -> None:
    connection = ConnectionFactory(provider_app=app, status=Status.PENDING, external_account_id="")
    now = timezone.now()
    grant = Grant(
        credentials=[*fresh_credentials("o"), IssuedCredential(kind="offline", value="offline-1", issued_at=now)],
        external_account_id="user-1",
    )
    result = lifecycle.grant_apply(connection=connection, grant=grant, purpose="connect")
    assert result.reconnect_by is None


@pytest.mark.django_db
def test_grant_without_accounts_asks_for_a_check_soon(app: Any) -> None:
    connection = ConnectionFactory(provider_app=app, status=Status.PENDING, external_account_id="")
    grant = Grant(credentials=fresh_credentials("x"), external_account_id="user-1", accounts=None)
    result = lifecycle.grant_apply(connection=connection, grant=grant, purpose="connect")
    assert result.next_check_at <= timezone.now() + timedelta(seconds=31)
    assert result.last_success_at is None or result.last_success_at < result.connected_at


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (Status.ACTIVE, [K.RECONNECTED]),
        (Status.DEGRADED, [K.RECONNECTED, K.RECOVERED]),
        (Status.NEEDS_RECONNECT, [K.RECONNECTED, K.RECOVERED]),
    ],
)
def test_reconnect_of_the_same_account_restores_the_connection(app: Any, status: str, expected: list[str]) -> None:
    connection = make_connection(app, status=status)
    result = lifecycle.grant_apply(connection=connection, grant=grant_for(connection, "two"), purpose="reconnect")
    assert result.status == Status.ACTIVE
    assert result.reason == ""
    assert result.consecutive_failures == 0
    assert result.degraded_since is None
    assert dict(Credential.objects.filter(connection=connection).values_list("kind", "value")) == {
        "access": "access-two",
        "refresh": "refresh-two",
    }
    assert _kinds(connection) == expected


@pytest.mark.django_db
def test_reconnect_as_a_different_account_is_refused_and_changes_nothing(app: Any) -> None:
    connection = make_connection(app, status=Status.NEEDS_RECONNECT, reason="revoked")
    before = Connection.objects.get(pk=connection.pk)
    grant = grant_for(connection, "intruder", external_account_id="someone-else")
    with pytest.raises(lifecycle.ReconnectMismatch) as refused:
        lifecycle.grant_apply(connection=connection, grant=grant, purpose="reconnect", actor_label="client-link")
    assert "Coinbase via Coinify" in refused.value.message
    assert "different Coinbase account" in refused.value.message
    after = Connection.objects.get(pk=connection.pk)
    assert (after.status, after.reason, after.external_account_id) == (
        before.status,
        "revoked",
        before.external_account_id,
    )
    assert dict(Credential.objects.filter(connection=connection).values_list("kind", "value")) == {
        "access": "access-0",
        "refresh": "refresh-0",
    }
    event = ConnectionEvent.objects.get(connection=connection)
    assert event.kind == K.RECONNECT_REFUSED
    assert event.actor_label == "client-link"
    assert "access-intruder" not in str(event.details)


@pytest.mark.django_db
def test_replacing_grant_drops_credential_kinds_it_no_longer_has(app: Any) -> None:
    connection = make_connection(app)

    @dataclass(frozen=True)
    class ReplacingGrant(Grant):
        replace_credentials: bool = True

    now = timezone.now()
    grant = ReplacingGrant(
        credentials=[IssuedCredential(kind="permanent", value="perm-1", issued_at=now)],
        external_account_id=connection.external_account_id,
    )
    lifecycle.grant_apply(connection=connection, grant=grant, purpose="reconnect")
    assert list(Credential.objects.filter(connection=connection).values_list("kind", flat=True)) == ["permanent"]


@pytest.mark.django_db
def test_plain_grant_keeps_credential_kinds_it_does_not_mention(app: Any) -> None:
    connection = make_connection(app)
    now = timezone.now()
    Credential.objects.create(connection=connection, kind="offline", value="offline-0", issued_at=now)
    lifecycle.grant_apply(connection=connection, grant=grant_for(connection, "3"), purpose="reconnect")
    assert set(Credential.objects.filter(connection=connection).values_list("kind", flat=True)) == {
        "access",
        "refresh",
        "offline",
    }


@pytest.mark.django_db
def test_turnqey_connection_joins_and_remembers_the_household_collection(world: FakeWorld) -> None:
    app = ProviderAppFactory(provider=Provider.TURNQEY, rate_limit_per_second=0)
    connection = ConnectionFactory(provider_app=app, status=Status.PENDING, external_account_id="")
    collection = str(uuid.uuid4())
    grant = Grant(
        credentials=(),
        external_account_id="cb-user-1",
        grouping={"collection": collection, "identity": str(connection.client.identity)},
        accounts=ACCOUNTS,
    )
    lifecycle.grant_apply(connection=connection, grant=grant, purpose="connect")
    connection.household.refresh_from_db()
    assert str(connection.household.turnqey_collection) == collection
    state = lifecycle.connection_state(connection=Connection.objects.get(pk=connection.pk))
    assert state.grouping == {"collection": collection, "identity": str(connection.client.identity)}

    # A second connection whose grant names another collection keeps its own,
    # and the household keeps the first.
    other = ConnectionFactory(
        provider_app=app, client=connection.client, platform="gemini", status=Status.PENDING, external_account_id=""
    )
    second = str(uuid.uuid4())
    lifecycle.grant_apply(
        connection=other,
        grant=Grant(credentials=(), external_account_id="gm-1", grouping={"collection": second}, accounts=[]),
        purpose="connect",
    )
    connection.household.refresh_from_db()
    assert str(connection.household.turnqey_collection) == collection
    assert lifecycle.connection_state(connection=Connection.objects.get(pk=other.pk)).grouping["collection"] == second


@pytest.mark.django_db
def test_disconnect_revokes_deletes_secrets_and_stops_checks(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app)
    result = lifecycle.connection_disconnect(connection=connection, actor_label="web")
    assert world.calls["revoke"] == 1
    assert result.status == Status.DISCONNECTED
    assert result.next_check_at is None
    assert result.disconnected_at is not None
    assert not Credential.objects.filter(connection=connection).exists()
    event = ConnectionEvent.objects.get(connection=connection)
    assert event.kind == K.DISCONNECTED
    assert event.details["revoke_error"] == ""


@pytest.mark.django_db
def test_provider_outage_while_revoking_does_not_block_the_disconnect(app: Any, world: FakeWorld) -> None:
    connection = make_connection(app)
    world.revoke_script.append(ProviderError.transient("Fake: server error (HTTP 503).", retry_after=30))
    result = lifecycle.connection_disconnect(connection=connection)
    assert result.status == Status.DISCONNECTED
    assert not Credential.objects.filter(connection=connection).exists()
    event = ConnectionEvent.objects.get(connection=connection)
    assert "HTTP 503" in event.details["revoke_error"]
    assert "failed" in event.message


@pytest.mark.django_db
def test_credentials_upsert_keeps_one_row_per_kind(app: Any) -> None:
    connection = make_connection(app)
    issued = fresh_credentials("stored")
    credentials_upsert([*issued, *fresh_credentials("newest")], connection_id=connection.pk)
    rows = dict(Credential.objects.filter(connection=connection).values_list("kind", "value"))
    assert rows == {"access": "access-newest", "refresh": "refresh-newest"}


@pytest.mark.django_db
def test_event_record_masks_secret_shaped_text(app: Any) -> None:
    connection = make_connection(app)
    event = lifecycle.event_record(
        connection=connection,
        kind=K.CHECK_FAILED,
        message="Provider said: Authorization: Bearer abc.def.ghi",
        details={"note": "refresh_token=xyz123"},
    )
    assert "abc.def.ghi" not in event.message
    assert "xyz123" not in event.details["note"]


@pytest.mark.django_db
def test_start_connect_and_disconnect_happen_at_the_moment_they_are_given(app: Any, world: FakeWorld) -> None:
    started = timezone.now() - timedelta(days=9)
    connected, disconnected = started + timedelta(minutes=3), started + timedelta(days=4)
    pending = ConnectionFactory(provider_app=app)
    connection = lifecycle.connection_start(
        household=pending.household,
        client=pending.client,
        provider_app=app,
        platform="coinify",
        actor=None,
        actor_label="web",
        now=started,
    )
    lifecycle.grant_apply(connection=connection, grant=grant_for(connection, "past"), purpose="connect", now=connected)
    result = lifecycle.connection_disconnect(connection=connection, now=disconnected)

    assert result.created_at == started
    assert result.connected_at == connected
    assert result.last_success_at == connected
    assert result.disconnected_at == disconnected
    events = ConnectionEvent.objects.filter(connection=connection).order_by("created_at")
    assert [(e.kind, e.created_at) for e in events] == [
        (K.CREATED, started),
        (K.CONNECTED, connected),
        (K.DISCONNECTED, disconnected),
    ]
