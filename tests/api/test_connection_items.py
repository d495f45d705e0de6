"""A connection in a list is the connection as ``GET /connections/{id}`` shows it, byte for byte.

The list builds its items from plain rows (``api.schemas.connection_items``),
the single read from model instances (``connection_out``): these hold the
two to one representation over the cases a representation varies with
(deadlines of each kind, times with and without microseconds, every status).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection as db_connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from api.keys import api_key_create
from api.schemas import json_time
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

pytestmark = pytest.mark.django_db


@pytest.fixture
def firm_caller(settings: Any) -> tuple[m.Firm, Client]:
    settings.API_RATE_LIMIT_PER_MINUTE = 0
    firm = FirmFactory()
    return firm, Client(HTTP_AUTHORIZATION=f"Bearer {api_key_create(firm=firm, name='items').key}")


def _varied_connections(firm: m.Firm) -> list[m.Connection]:
    now = timezone.now()
    household = HouseholdFactory(firm=firm, name="Ng & Ortiz", reference="H-7")
    client = ClientFactory(household=household, name="Ada Ng")
    dapi = ProviderAppFactory(provider="dapi", environment="production", name="items-dapi")
    coinify = ProviderAppFactory(provider="coinify", name="items-coinify")
    made = [
        # An access token that renews, a rolling reconnect_by far off, a newer event than the row.
        ConnectionFactory(client=client, reconnect_by=now + timedelta(days=80), reconnect_by_rolls=True),
        # A hard reconnect_by close by (urgent), an access token nothing renews.
        ConnectionFactory(
            client=client, provider_app=dapi, platform="binance", reconnect_by=now + timedelta(hours=2), label="Main"
        ),
        ConnectionFactory(
            client=client,
            provider_app=coinify,
            platform="coinify",
            status=m.Status.NEEDS_RECONNECT,
            reason=m.Reason.REVOKED,
            next_check_at=None,
            last_success_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        ),
        ConnectionFactory(client=client, status=m.Status.DEGRADED, reason=m.Reason.TRANSIENT),
        ConnectionFactory(
            client=client,
            status=m.Status.DISCONNECTED,
            next_check_at=None,
            disconnected_at=now,
            reconnect_by=now + timedelta(days=1),
        ),
        ConnectionFactory(client=client, status=m.Status.PENDING, connected_at=None, last_success_at=None),
    ]
    CredentialFactory(connection=made[0], kind="access")
    CredentialFactory(connection=made[0], kind="refresh", expires_at=None)
    CredentialFactory(connection=made[1], kind="access", expires_at=now - timedelta(minutes=5))
    CredentialFactory(connection=made[4], kind="access")
    ConnectionEventFactory(connection=made[0], kind="renewed", from_status="active", to_status="active")
    return made


def test_each_listed_connection_is_the_connection_as_read_alone(firm_caller: tuple[m.Firm, Client]) -> None:
    firm, caller = firm_caller
    made = _varied_connections(firm)
    listed = caller.get("/api/v1/connections")
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert [item["id"] for item in items] == sorted(c.pk for c in made)
    kinds = set()
    for item in items:
        alone = caller.get(f"/api/v1/connections/{item['id']}").json()
        # Both bodies go through the same renderer, so equal text is equal JSON, key order and all.
        assert json.dumps(item) == json.dumps(alone)
        kinds |= {d["kind"] for d in item["deadlines"]}
    assert {"renews", "token_expires", "reconnect_by", "next_check"} <= kinds


def test_the_list_is_still_served_like_any_read_with_its_etag(firm_caller: tuple[m.Firm, Client]) -> None:
    firm, caller = firm_caller
    _varied_connections(firm)
    first = caller.get("/api/v1/connections")
    assert first["Content-Type"] == "application/json; charset=utf-8"
    assert first["Cache-Control"] == "private, no-cache"
    # Its body names the moment it was made (next_changed_since), so the ETag is the body's own hash.
    assert first["ETag"] == f'"{hashlib.sha256(first.content).hexdigest()[:32]}"'


def test_a_page_reads_no_more_for_deadlines_or_another_firm(firm_caller: tuple[m.Firm, Client]) -> None:
    firm, caller = firm_caller
    _varied_connections(firm)
    other = ConnectionFactory(client=ClientFactory(household=HouseholdFactory(firm=FirmFactory())))
    with CaptureQueriesContext(db_connection) as captured:
        body = caller.get("/api/v1/connections").json()
    assert other.pk not in {item["id"] for item in body["items"]}
    connection_reads = [q["sql"] for q in captured.captured_queries if '"connections_' in q["sql"]]
    # The page and its credentials: a rolling reconnect_by reads nothing more per row.
    assert len(connection_reads) == 2, connection_reads
    assert "value" not in connection_reads[1].split("FROM")[0]


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 12, 3, 18, 40, 52, 417808, tzinfo=UTC),
        datetime(2026, 12, 3, 18, 40, 52, tzinfo=UTC),
        datetime(2026, 12, 3, 18, 40, 52, 1000, tzinfo=UTC),
        timezone.localtime(datetime(2026, 6, 1, 12, 0, 0, 5, tzinfo=UTC), timezone.get_fixed_timezone(120)),
    ],
)
def test_a_time_is_written_as_the_renderer_writes_it(value: datetime) -> None:
    assert json_time(value) == DjangoJSONEncoder().default(value)
    assert json_time(None) is None
