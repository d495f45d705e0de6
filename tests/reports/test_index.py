"""The reports index at /reports/: what each reader may open and export, scoped, in queries that do not grow."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection as db_connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import HouseholdFactory, UserFactory

from .conftest import World

pytestmark = pytest.mark.django_db

EVERYONE = ("freshness", "freshness_csv", "connections_csv", "events_csv", "client_links_csv", "reconnect_requests_csv")
FIRM_ADMINS = ("provider_health", "audit", "audit_csv", "access", "access_csv", "settings")


def test_a_firm_admin_sees_every_report_and_export_of_the_firm(client: Client, world: World) -> None:
    client.force_login(world.firm_admin)

    page = client.get("/reports/")

    assert page.status_code == 200
    body = page.content.decode()
    for name in EVERYONE + FIRM_ADMINS:
        assert reverse(f"reports:{name}") in body, name
    assert "every household in the firm (2)" in body


def test_an_adviser_sees_only_the_reports_and_exports_of_their_households(client: Client, world: World) -> None:
    client.force_login(world.adviser)

    body = client.get(reverse("reports:index")).content.decode()

    for name in EVERYONE:
        assert reverse(f"reports:{name}") in body, name
    for name in FIRM_ADMINS:
        assert reverse(f"reports:{name}") not in body, name
    assert "the 1 household assigned to you" in body
    assert "Elsewhere Capital" not in body


def test_the_index_needs_a_firm(client: Client, world: World) -> None:
    assert client.get(reverse("reports:index"))["Location"].startswith(reverse("login"))
    client.force_login(UserFactory(username="drifter"))
    assert client.get(reverse("reports:index")).status_code == 403


def test_every_reports_page_links_back_to_the_index(client: Client, world: World) -> None:
    client.force_login(world.firm_admin)
    for name in ("freshness", "audit", "access", "provider_health"):
        assert f'href="{reverse("reports:index")}"' in client.get(reverse(f"reports:{name}")).content.decode(), name


@pytest.mark.parametrize("role", ["firm_admin", "adviser"])
def test_the_index_queries_do_not_grow_with_households(client: Client, world: World, role: str) -> None:
    user = getattr(world, role)
    client.force_login(user)

    def queries() -> int:
        with CaptureQueriesContext(db_connection) as captured:
            assert client.get(reverse("reports:index")).status_code == 200
        return len(captured.captured_queries)

    few = queries()
    for i in range(20):
        household = HouseholdFactory(firm=world.firm, name=f"More {i}")
        household.advisers.add(world.adviser)
    assert queries() == few


def test_the_dashboard_reaches_the_index_through_the_freshness_page(client: Any, world: World) -> None:
    client.force_login(world.adviser)
    dashboard = client.get(reverse("dashboard")).content.decode()
    assert reverse("reports:freshness") in dashboard
    assert reverse("reports:index") in client.get(reverse("reports:freshness")).content.decode()
