"""What the second step costs a page: one query, whoever is signed in, and still the right answer."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection as db_connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from .conftest import World, enrolled

pytestmark = pytest.mark.django_db

SECOND_STEP_TABLES = ("otp_totp_totpdevice", "connections_membership", "connections_firm")


def _second_step_queries(client: Client, url: str) -> tuple[Any, list[str]]:
    with CaptureQueriesContext(db_connection) as queries:
        response = client.get(url)
    asked = [q["sql"] for q in queries.captured_queries if any(t in q["sql"] for t in SECOND_STEP_TABLES)]
    return response, asked


def test_an_adviser_without_a_second_factor_costs_the_dashboard_one_query_for_the_second_step(
    client: Client, world: World
) -> None:
    client.force_login(world.adviser)
    response, asked = _second_step_queries(client, reverse("dashboard"))
    assert response.status_code == 200
    # Membership, firm and "has an authenticator" in one statement; the page reuses the membership.
    assert len(asked) == 1, asked


def test_the_one_query_still_sends_an_enrolled_adviser_to_give_a_code(client: Client, world: World) -> None:
    enrolled(world.adviser)
    client.force_login(world.adviser)
    response, asked = _second_step_queries(client, reverse("dashboard"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("mfa:verify"))
    assert len(asked) == 1, asked


def test_the_one_query_still_walks_a_member_of_a_firm_that_requires_it_through_setup(
    client: Client, world: World
) -> None:
    world.firm.mfa_required = True
    world.firm.save(update_fields=["mfa_required"])
    client.force_login(world.adviser)
    response, asked = _second_step_queries(client, reverse("dashboard"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("mfa:setup"))
    assert len(asked) == 1, asked
