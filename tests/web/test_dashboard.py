"""Dashboard: counts, "needs attention", the households table, and a fixed number of queries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from connections import models as m
from connections import selectors
from tests.factories import ClientFactory, ConnectionFactory, CredentialFactory, HouseholdFactory

from .conftest import World


def _connection(world: World, household: m.Household | None = None, **kwargs: Any) -> m.Connection:
    household = household or world.household
    client = household.clients.first() or ClientFactory(household=household)
    return ConnectionFactory(client=client, provider_app=world.turnqey, **kwargs)


def test_counts_every_status(adviser_client: Any, world: World) -> None:
    _connection(world, status=m.Status.NEEDS_RECONNECT, reason=m.Reason.REVOKED)
    _connection(world, status=m.Status.DEGRADED, degraded_since=timezone.now())
    counts = selectors.connection_status_counts(user=world.adviser)
    assert counts == {"pending": 0, "active": 1, "degraded": 1, "needs_reconnect": 1, "disconnected": 0}
    body = adviser_client.get(reverse("dashboard")).content.decode()
    assert "Need reconnect" in body


def test_needs_attention_lists_the_most_urgent_first(world: World) -> None:
    now = timezone.now()
    degraded_long = _connection(world, status=m.Status.DEGRADED, degraded_since=now - timedelta(hours=5))
    _connection(world, status=m.Status.DEGRADED, degraded_since=now - timedelta(minutes=10))  # not yet
    deadline_far = _connection(world, reconnect_by=now + timedelta(hours=40), connected_at=now - timedelta(days=3))
    deadline_near = _connection(
        world,
        status=m.Status.PENDING,
        reconnect_by=now + timedelta(minutes=30),
        connected_at=None,
        created_at=now - timedelta(minutes=40),
    )
    _connection(world, reconnect_by=now + timedelta(days=10), connected_at=now - timedelta(days=30))  # not yet
    broken_old = _connection(
        world, status=m.Status.NEEDS_RECONNECT, reason=m.Reason.EXPIRED, last_success_at=now - timedelta(days=3)
    )
    broken_new = _connection(
        world, status=m.Status.NEEDS_RECONNECT, reason=m.Reason.REVOKED, last_success_at=now - timedelta(hours=1)
    )
    _connection(world, status=m.Status.DISCONNECTED, reconnect_by=now + timedelta(minutes=5))  # deliberate
    attention = selectors.needs_attention_list(user=world.adviser, now=now)
    assert attention == [broken_old, broken_new, deadline_near, deadline_far, degraded_long]


def test_a_routinely_rotated_refresh_token_is_not_a_looming_deadline(world: World) -> None:
    now = timezone.now()
    rotated = _connection(
        world, reconnect_by=now + timedelta(hours=23), reconnect_by_rolls=True, connected_at=now - timedelta(days=20)
    )
    CredentialFactory(
        connection=rotated, kind="refresh", issued_at=now - timedelta(hours=1), expires_at=now + timedelta(hours=23)
    )
    assert selectors.needs_attention_list(user=world.adviser, now=now) == []
    # When renewals have stalled for 20 hours (Coinify down), four hours are left: that is near.
    m.Credential.objects.filter(connection=rotated).update(issued_at=now - timedelta(hours=20))
    m.Connection.objects.filter(pk=rotated.pk).update(reconnect_by=now + timedelta(hours=4))
    assert selectors.needs_attention_list(user=world.adviser, now=now) == [rotated]


def test_a_hard_deadline_is_near_within_48_hours_and_a_rolling_one_only_once_it_stopped_rolling() -> None:
    now = timezone.now()
    near = selectors.deadline_is_near
    assert near(deadline=now + timedelta(hours=47), basis=now - timedelta(days=5), now=now)
    assert not near(deadline=now + timedelta(hours=49), basis=now - timedelta(days=5), now=now)
    assert near(deadline=now + timedelta(minutes=10), basis=now - timedelta(minutes=20), now=now)  # a 30-minute code
    assert near(deadline=now + timedelta(hours=10), basis=now - timedelta(hours=9), now=now)  # hard: renewing or not
    assert not near(deadline=now + timedelta(hours=10), basis=now - timedelta(hours=9), now=now, rolls=True)
    assert near(deadline=now + timedelta(hours=10), basis=now - timedelta(hours=11), now=now, rolls=True)


def test_needs_attention_rows_offer_reconnect_and_send_link(adviser_client: Any, world: World) -> None:
    broken = _connection(world, status=m.Status.NEEDS_RECONNECT, reason=m.Reason.REVOKED, platform="gemini")
    body = adviser_client.get(reverse("dashboard")).content.decode()
    assert reverse("connection_reconnect", args=[broken.pk]) in body
    assert reverse("connection_link_send", args=[broken.pk]) in body
    assert "Gemini via Turnqey: access was revoked at Gemini. Ask the client to reconnect." in body


def test_households_table_rolls_up_worst_status_and_oldest_data(world: World) -> None:
    now = timezone.now()
    household = HouseholdFactory(firm=world.firm, name="Roll-up", advisers=[world.adviser])
    _connection(world, household, last_success_at=now - timedelta(hours=1))
    _connection(
        world, household, status=m.Status.DEGRADED, degraded_since=now, last_success_at=now - timedelta(hours=6)
    )
    _connection(world, household, status=m.Status.DISCONNECTED, last_success_at=now - timedelta(days=30))
    _connection(world, household, status=m.Status.PENDING, last_success_at=None)
    row = selectors.household_table(user=world.adviser).get(pk=household.pk)
    assert selectors.SEVERITY_STATUS[row.worst_severity] == m.Status.DEGRADED
    assert row.data_as_of == now - timedelta(hours=6)  # the disconnected one's old data does not count
    assert row.connection_count == 3


def test_household_without_connections_has_no_rollup(adviser_client: Any, world: World) -> None:
    empty = HouseholdFactory(firm=world.firm, name="Empty House", advisers=[world.adviser])
    row = selectors.household_table(user=world.adviser).get(pk=empty.pk)
    assert row.worst_severity is None
    body = adviser_client.get(reverse("dashboard") + "?status=none").content.decode()
    assert "Empty House" in body
    assert "Nguyen Household" not in body


@pytest.mark.parametrize(
    ("query", "expected"),
    [("nguyen", "Nguyen Household"), ("HW-001", "Nguyen Household"), ("Linh", "Nguyen Household")],
)
def test_search_matches_name_reference_or_client(world: World, query: str, expected: str) -> None:
    HouseholdFactory(firm=world.firm, name="Unrelated", advisers=[world.adviser])
    names = [h.name for h in selectors.household_table(user=world.adviser, search=query)]
    assert names == [expected]


def test_status_filter_keeps_households_with_that_rollup(adviser_client: Any, world: World) -> None:
    broken = HouseholdFactory(firm=world.firm, name="Broken House", advisers=[world.adviser])
    _connection(world, broken, status=m.Status.NEEDS_RECONNECT, reason=m.Reason.REVOKED)
    body = adviser_client.get(reverse("dashboard") + "?status=needs_reconnect").content.decode()
    assert "Broken House" in body
    assert "Nguyen Household</a>" not in body


def test_households_table_pages_by_25(adviser_client: Any, world: World) -> None:
    for i in range(30):
        HouseholdFactory(firm=world.firm, name=f"Paged {i:02d}", advisers=[world.adviser])
    first = adviser_client.get(reverse("dashboard")).context["page"]
    assert len(first.object_list) == 25
    assert first.paginator.num_pages == 2
    second = adviser_client.get(reverse("dashboard") + "?page=2").context["page"]
    assert len(second.object_list) == 6
    assert adviser_client.get(reverse("dashboard") + "?page=nonsense").status_code == 200


def test_invalid_filter_shows_everything_rather_than_failing(adviser_client: Any, world: World) -> None:
    response = adviser_client.get(reverse("dashboard") + "?status=bogus&q=" + "x" * 500)
    assert response.status_code == 200
    assert "Nguyen Household" in response.content.decode()


def _populate(world: World, households: int) -> None:
    now = timezone.now()
    statuses = [m.Status.ACTIVE, m.Status.DEGRADED, m.Status.NEEDS_RECONNECT, m.Status.PENDING]
    for i in range(households):
        household = HouseholdFactory(firm=world.firm, name=f"Load {i:03d}", advisers=[world.adviser])
        client = ClientFactory(household=household)
        status = statuses[i % len(statuses)]
        ConnectionFactory(
            client=client,
            provider_app=world.turnqey,
            status=status,
            reason=m.Reason.REVOKED if status == m.Status.NEEDS_RECONNECT else "",
            degraded_since=now - timedelta(hours=3) if status == m.Status.DEGRADED else None,
            reconnect_by=now + timedelta(hours=2) if i % 5 == 0 else None,
        )


def _page_queries(client: Any, url_name: str = "dashboard") -> int:
    selectors.provider_form_action_origins_forget()  # each request reads them, as the first would
    with CaptureQueriesContext(db_connection) as queries:
        response = client.get(reverse(url_name))
    assert response.status_code == 200
    return len(queries)


def test_dashboard_query_count_does_not_grow_with_households(client: Any, world: World) -> None:
    client.force_login(world.adviser)
    _populate(world, 10)
    small = _page_queries(client)
    _populate(world, 190)
    large = _page_queries(client)
    assert len(selectors.needs_attention_list(user=world.adviser)) == 50  # rows really are on the page
    assert large == small


def test_dashboard_shows_the_ten_most_urgent_and_links_to_all(adviser_client: Any, world: World) -> None:
    _populate(world, 100)  # 25 broken, 25 degraded for hours, a few deadlines among the rest
    total = len(selectors.needs_attention_list(user=world.adviser, limit=1000))
    assert total > 10
    response = adviser_client.get(reverse("dashboard"))
    attention = response.context["attention"]
    assert attention == selectors.needs_attention_list(user=world.adviser, limit=10)
    assert attention[0].attention_total == total
    body = response.content.decode()
    assert f'<span class="count">{total}</span>' in body
    assert f"See all {total} that need attention" in body
    assert reverse("attention_list") in body


def test_dashboard_without_overflow_has_no_see_all_link(adviser_client: Any, world: World) -> None:
    _connection(world, status=m.Status.NEEDS_RECONNECT, reason=m.Reason.REVOKED)
    body = adviser_client.get(reverse("dashboard")).content.decode()
    assert "See all" not in body
    assert '<span class="count">1</span>' in body


def test_attention_page_lists_everything_most_urgent_first_fifty_a_page(adviser_client: Any, world: World) -> None:
    _populate(world, 150)
    expected = selectors.needs_attention_list(user=world.adviser, limit=1000)
    assert len(expected) > 50
    first = adviser_client.get(reverse("attention_list")).context["page"]
    second = adviser_client.get(reverse("attention_list") + "?page=2").context["page"]
    assert list(first.object_list) + list(second.object_list) == expected[:100]
    assert first.paginator.count == len(expected)
    assert adviser_client.get(reverse("attention_list") + "?page=x").status_code == 200


def test_attention_page_shows_only_the_advisers_connections(adviser_client: Any, world: World) -> None:
    mine = _connection(world, status=m.Status.NEEDS_RECONNECT, reason=m.Reason.REVOKED)
    for other in (world.other_connection, world.foreign_connection):
        m.Connection.objects.filter(pk=other.pk).update(status=m.Status.NEEDS_RECONNECT, reason=m.Reason.REVOKED)
    page = adviser_client.get(reverse("attention_list")).context["page"]
    assert list(page.object_list) == [mine]


def test_attention_page_query_count_does_not_grow_with_rows(adviser_client: Any, world: World) -> None:
    _populate(world, 10)
    small = _page_queries(adviser_client, "attention_list")
    _populate(world, 190)
    assert len(selectors.needs_attention_list(user=world.adviser, limit=1000)) > 50
    assert _page_queries(adviser_client, "attention_list") == small


def test_attention_page_needs_sign_in_and_a_firm(client: Any, world: World) -> None:
    response = client.get(reverse("attention_list"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
