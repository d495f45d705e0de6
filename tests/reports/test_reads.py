"""Reads that reveal client data are on the audit trail: once per reader, object and window, never for a 404."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection as db_connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from api.keys import api_key_create
from reports import reads
from reports.models import AuditEntry

from .conftest import World

pytestmark = pytest.mark.django_db

ADDRESS = "203.0.113.9"
VIEWED = AuditEntry.Action.VIEWED


def _adviser(world: World) -> Client:
    browser = Client(REMOTE_ADDR=ADDRESS)
    browser.force_login(world.adviser)
    return browser


def test_a_household_page_seen_again_and_again_in_a_window_is_one_row(world: World) -> None:
    browser = _adviser(world)
    page = reverse("household_detail", args=[world.household.pk])

    for _ in range(3):
        assert browser.get(page).status_code == 200

    (entry,) = AuditEntry.objects.filter(action=VIEWED)
    assert (entry.actor, entry.firm, entry.household, entry.ip_address) == (
        world.adviser,
        world.firm,
        world.household,
        ADDRESS,
    )
    assert (entry.object_type, entry.object_id) == ("household", str(world.household.pk))
    assert "viewed the household" in entry.message


def test_the_next_window_is_a_row_of_its_own(world: World, monkeypatch: Any) -> None:
    browser = _adviser(world)
    page = reverse("household_detail", args=[world.household.pk])
    assert browser.get(page).status_code == 200
    later = timezone.now() + reads.read_window() + dt.timedelta(seconds=1)
    monkeypatch.setattr(reads.timezone, "now", lambda: later)

    assert browser.get(page).status_code == 200
    assert browser.get(page).status_code == 200

    assert AuditEntry.objects.filter(action=VIEWED).count() == 2


def test_each_reader_and_each_object_is_its_own_row(world: World) -> None:
    _adviser(world).get(reverse("household_detail", args=[world.household.pk]))
    _adviser(world).get(reverse("connection_detail", args=[world.connection.pk]))
    admin = Client(REMOTE_ADDR=ADDRESS)
    admin.force_login(world.firm_admin)
    admin.get(reverse("household_detail", args=[world.household.pk]))

    rows = AuditEntry.objects.filter(action=VIEWED)
    assert sorted((e.actor_id, e.object_type) for e in rows) == sorted(
        [(world.adviser.pk, "household"), (world.adviser.pk, "connection"), (world.firm_admin.pk, "household")]
    )


def test_a_page_answered_with_a_404_records_nothing(world: World) -> None:
    browser = _adviser(world)

    assert browser.get(reverse("household_detail", args=[world.foreign_household.pk])).status_code == 404
    assert browser.get(reverse("household_detail", args=[world.other_household.pk])).status_code == 404
    assert browser.get(reverse("connection_detail", args=[world.foreign_connection.pk])).status_code == 404

    assert not AuditEntry.objects.filter(action=VIEWED).exists()


def test_a_page_read_costs_one_insert_and_the_dashboard_none(world: World) -> None:
    browser = _adviser(world)
    page = reverse("household_detail", args=[world.household.pk])
    browser.get(page)
    with CaptureQueriesContext(db_connection) as seen_again:
        assert browser.get(page).status_code == 200
    inserts = [q["sql"] for q in seen_again.captured_queries if "reports_auditentry" in q["sql"]]
    (insert,) = inserts
    assert insert.startswith("INSERT")
    # The insert skips a row already there (the same read within its window), in either database's words.
    assert "ON CONFLICT DO NOTHING" in insert or insert.startswith("INSERT OR IGNORE")

    with CaptureQueriesContext(db_connection) as dashboard:
        assert browser.get(reverse("dashboard")).status_code == 200
    assert not [q for q in dashboard.captured_queries if "reports_auditentry" in q["sql"]]


def test_an_api_key_reading_a_connection_and_the_list_is_a_row_each_and_another_firms_none(world: World) -> None:
    key = api_key_create(firm=world.firm, name="CRM sync").key
    api = Client(REMOTE_ADDR=ADDRESS, HTTP_AUTHORIZATION=f"Bearer {key}")

    for _ in range(2):
        assert api.get(f"/api/v1/connections/{world.connection.pk}").status_code == 200
        assert api.get("/api/v1/connections").status_code == 200
    assert api.get(f"/api/v1/connections/{world.foreign_connection.pk}").status_code == 404
    assert api.get(f"/api/v1/households/{world.foreign_household.pk}").status_code == 404

    rows = AuditEntry.objects.filter(action=VIEWED).order_by("object_type")
    assert [(e.object_type, e.object_id) for e in rows] == [
        ("connection", str(world.connection.pk)),
        ("connection list", ""),
    ]
    for entry in rows:
        assert (entry.firm, entry.actor, entry.ip_address) == (world.firm, None, ADDRESS)
        assert entry.actor_name.startswith("api:")
        assert "through the API" in entry.message
        assert key not in f"{entry.message} {entry.details}"
