"""What the read operations return, over real HTTP: connections, households, filters, paging, ETags."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection as db_connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from api.keys import api_key_create
from connections import lifecycle
from connections import models as m
from tests.factories import (
    ClientFactory,
    ConnectionEventFactory,
    ConnectionFactory,
    CredentialFactory,
    FirmFactory,
    HouseholdFactory,
    ProviderAppFactory,
)

from .conftest import ApiWorld

pytestmark = pytest.mark.django_db(transaction=True)


def _all(caller: Any, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a list, following next_cursor."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        response = caller.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def test_a_connection_says_its_status_reason_message_deadlines_and_source_and_no_secret(api_world: ApiWorld) -> None:
    ours = api_world.ours
    broken = next(c for c in ours.connections if c.status == m.Status.NEEDS_RECONNECT)
    healthy = next(c for c in ours.connections if c.status == m.Status.ACTIVE)
    caller = api_world.client(ours.read_key)

    body = caller.get(f"/connections/{broken.pk}").json()
    assert body["status"] == "needs_reconnect"
    assert body["reason"] == "revoked"
    assert body["message"] == broken.status_message
    assert body["source"] == broken.source_display
    assert body["provider"] == broken.provider
    assert body["environment"] == "sandbox"
    assert body["household"] == {
        "id": broken.household_id,
        "name": broken.household.name,
        "reference": broken.household.reference,
    }
    assert body["data_as_of"] is not None

    deadlines = caller.get(f"/connections/{healthy.pk}").json()["deadlines"]
    assert {d["kind"] for d in deadlines} >= {"reconnect_by", "next_check"}

    everything = caller.get("/connections", params={"limit": 500}).text
    for connection in ours.connections:
        assert f"SECRET-access-{connection.pk}" not in everything
        assert connection.external_account_id not in everything


def test_households_roll_up_the_worst_status_and_the_oldest_data(api_world: ApiWorld) -> None:
    household = api_world.ours.households[0]
    oldest = timezone.now() - timedelta(days=3)
    m.Connection.objects.filter(household=household, status=m.Status.DEGRADED).update(last_success_at=oldest)
    body = api_world.client(api_world.ours.read_key).get(f"/households/{household.pk}").json()
    assert body["health"] == "needs_reconnect"
    assert body["connection_count"] == 4
    assert body["data_as_of"].startswith(oldest.strftime("%Y-%m-%dT%H:%M"))


def test_filters_by_status_household_provider_and_change(api_world: ApiWorld) -> None:
    ours = api_world.ours
    caller = api_world.client(ours.read_key)

    broken = _all(caller, "/connections", status="needs_reconnect")
    assert {c["id"] for c in broken} == {c.pk for c in ours.connections if c.status == m.Status.NEEDS_RECONNECT}
    household = ours.households[1]
    assert {c["id"] for c in _all(caller, "/connections", household=household.pk)} == {
        c.pk for c in ours.connections if c.household_id == household.pk
    }
    assert {c["id"] for c in _all(caller, "/connections", provider="dapi")} == {
        c.pk for c in ours.connections if c.provider == "dapi"
    }
    # Another firm's household filters to nothing, never to that firm's rows.
    assert _all(caller, "/connections", household=api_world.theirs.households[0].pk) == []

    since = timezone.now()
    assert _all(caller, "/connections", changed_since=since.isoformat()) == []
    # A check moving a status writes an event, not updated_at: changed_since still finds it.
    moved = next(c for c in ours.connections if c.status == m.Status.ACTIVE)
    lifecycle.event_record(
        connection=moved, kind="check_failed", from_status="active", to_status="active", message="Timed out."
    )
    changed = _all(caller, "/connections", changed_since=since.isoformat())
    assert [c["id"] for c in changed] == [moved.pk]
    assert changed[0]["changed_at"] >= since.isoformat()[:19]


def test_bad_filters_are_problems_naming_the_field(api_world: ApiWorld) -> None:
    caller = api_world.client(api_world.ours.read_key)
    for params, field in (
        ({"status": "broken"}, "query.status"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 501}, "query.limit"),
        ({"changed_since": "yesterday"}, "query.changed_since"),
        ({"household": "abc"}, "query.household"),
    ):
        response = caller.get("/connections", params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.headers["Content-Type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == 422
        assert problem["title"] == "Unprocessable Entity"
        assert [e["field"] for e in problem["errors"]] == [field]
        assert field in problem["detail"]
    from api.v1.pagination import cursor_encode

    for cursor in ("not-a-cursor", cursor_encode(id="7"), cursor_encode(id=7, since="last tuesday")):
        tampered = caller.get("/connections", params={"cursor": cursor})
        assert tampered.status_code == 400, cursor
        assert tampered.json()["errors"][0]["field"] == "query.cursor"
    unknown = caller.get("/nothing/here")
    assert unknown.status_code == 404
    assert unknown.headers["Content-Type"] == "application/problem+json"


def test_paging_shows_every_row_once_while_rows_are_added(api_world: ApiWorld) -> None:
    ours = api_world.ours
    caller = api_world.client(ours.read_key)
    # The documented order: by household, then id.
    before = [c.pk for c in sorted(ours.connections, key=lambda c: (c.household_id, c.pk))]
    order = {pk: index for index, pk in enumerate(before)}

    seen: list[int] = []
    cursor = None
    pages = 0
    added: list[int] = []
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = caller.get("/connections", params=params).json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        if pages in (1, 2):
            # New rows while paging: ours (they may appear, at the end) and another firm's (never).
            household = ours.households[pages - 1]
            added.append(ConnectionFactory(client=household.clients.first(), household=household).pk)
            ConnectionFactory(client=api_world.theirs.clients[0])
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert len(seen) == len(set(seen))
    assert [pk for pk in seen if pk in order] == before
    assert set(seen) - set(before) <= set(added)
    assert pages > 3


def test_an_unchanged_object_answers_304_to_its_etag_and_a_changed_one_does_not(api_world: ApiWorld) -> None:
    connection = next(c for c in api_world.ours.connections if c.status == m.Status.ACTIVE)
    caller = api_world.client(api_world.ours.read_key)
    first = caller.get(f"/connections/{connection.pk}")
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "private, no-cache"

    again = caller.get(f"/connections/{connection.pk}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""

    m.Connection.objects.filter(pk=connection.pk).update(label="Main wallet", updated_at=timezone.now())
    changed = caller.get(f"/connections/{connection.pk}", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.json()["label"] == "Main wallet"
    assert changed.headers["ETag"] != etag


def test_a_connections_events_come_newest_first_and_its_accounts_with_balances(api_world: ApiWorld) -> None:
    connection = api_world.ours.connections[0]
    for index in range(4):
        ConnectionEventFactory(connection=connection, kind="renewed", message=f"Renewed {index}.")
    caller = api_world.client(api_world.ours.read_key)
    events = _all(caller, f"/connections/{connection.pk}/events", limit=2)
    assert [e["message"] for e in events[:4]] == ["Renewed 3.", "Renewed 2.", "Renewed 1.", "Renewed 0."]
    assert events[-1]["kind"] == "connected"
    assert events[0]["actor"] == "scheduled check"

    accounts = caller.get(f"/connections/{connection.pk}/accounts").json()["items"]
    stored = connection.accounts.get()
    assert accounts == [
        {
            "id": stored.pk,
            "name": stored.name,
            "currency": stored.currency,
            "balance": format(stored.balance, "f"),
            "status": "active",
            "as_of": accounts[0]["as_of"],
        }
    ]


# --- Query counts: a page costs the same whatever the number of rows ------------------------------


def _firm_with(connections: int) -> tuple[str, m.Firm]:
    firm = FirmFactory()
    app = ProviderAppFactory(provider="coinify", name=f"qc-{firm.pk}")
    for index in range(connections):
        household = HouseholdFactory(firm=firm)
        client = ClientFactory(household=household)
        connection = ConnectionFactory(client=client, provider_app=app, platform="coinify")
        CredentialFactory(connection=connection, kind="refresh", expires_at=timezone.now() + timedelta(days=1))
        ConnectionEventFactory(connection=connection, kind="recovered", from_status="degraded", to_status="active")
        if index % 2:
            ConnectionEventFactory(connection=connection, kind="disconnected", to_status="disconnected")
    return api_key_create(firm=firm, name="qc").key, firm


def _queries(key: str, path: str) -> int:
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    with CaptureQueriesContext(db_connection) as captured:
        response = client.get(f"/api/v1{path}")
    assert response.status_code == 200, response.content
    return len(captured.captured_queries)


def test_a_pages_query_count_does_not_grow_with_its_rows(settings: Any) -> None:
    settings.API_RATE_LIMIT_PER_MINUTE = 0
    from api.webhooks.dispatch import events_dispatch

    few, _ = _firm_with(2)
    many, _ = _firm_with(12)
    events_dispatch()
    for path in ("/connections?limit=50", "/households?limit=50", "/clients?limit=50", "/events?limit=50"):
        assert _queries(few, path) == _queries(many, path), path


def test_the_feed_holds_the_same_envelopes_the_webhooks_carry(api_world: ApiWorld) -> None:
    from api.webhooks.dispatch import events_dispatch

    connection = next(c for c in api_world.ours.connections if c.status == m.Status.ACTIVE)
    lifecycle.event_record(
        connection=connection,
        kind="check_failed",
        from_status="active",
        to_status="degraded",
        reason="transient",
        message="Temporary problems.",
    )
    events_dispatch()
    caller = api_world.client(api_world.ours.read_key)
    feed = caller.get("/events").json()
    envelope = feed["items"][-1]
    assert envelope["type"] == "connection.degraded"
    assert envelope["id"].startswith("evt_")
    assert envelope["data"]["connection"]["id"] == connection.pk
    assert envelope["data"]["event"]["to_status"] == "degraded"
    assert json.dumps(envelope)  # plain JSON all the way down
    after_last = caller.get("/events", params={"after": feed["next_after"]}).json()
    assert after_last["items"] == []
    assert after_last["next_after"] == feed["next_after"]
    unknown = caller.get("/events", params={"after": "evt_unknown"})
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["field"] == "query.after"
