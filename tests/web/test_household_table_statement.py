"""The dashboard's first page of households comes from SQL built once per process: the same rows as the queryset."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from connections import models as m
from connections import selectors
from tests.factories import ClientFactory, ConnectionFactory, HouseholdFactory

from .conftest import World


def _shown(rows: list[m.Household]) -> list[tuple[Any, ...]]:
    return [
        (h.pk, h.name, h.worst_severity, h.data_as_of, h.connection_count, [c.name for c in h.client_list])  # type: ignore[attr-defined]
        for h in rows
    ]


def _populate(world: World) -> None:
    for i in range(7):
        household = HouseholdFactory(firm=world.firm, name=f"Table {i % 3} {i}", advisers=[world.adviser])
        for j in range(i % 3):
            ConnectionFactory(
                client=ClientFactory(household=household, name=f"Client {i}-{j}"),
                provider_app=world.turnqey,
                platform=f"p{j}",
                status=m.Status.NEEDS_RECONNECT if j else m.Status.ACTIVE,
                reason=m.Reason.REVOKED if j else "",
            )


@pytest.mark.parametrize("who", ["adviser", "other_adviser", "firm_admin"])
@pytest.mark.parametrize("per_page", [3, 25])
def test_the_first_page_reads_what_the_queryset_reads(world: World, who: str, per_page: int) -> None:
    _populate(world)
    user = getattr(world, who)
    expected = list(selectors.household_table(user=user).order_by(*selectors.HOUSEHOLD_TABLE_ORDER)[:per_page])
    assert _shown(selectors.household_table_first_page(user=user, per_page=per_page)) == _shown(expected)


def test_the_dashboard_opens_on_the_same_page_as_page_one(adviser_client: Any, world: World) -> None:
    _populate(world)
    opened = adviser_client.get(reverse("dashboard"))
    # Past the last page: the paginator's own path, which answers with the last page, here the only one.
    paged = adviser_client.get(reverse("dashboard"), {"page": "2"})
    assert opened.context["page"].number == paged.context["page"].number == 1
    assert _shown(list(opened.context["page"].object_list)) == _shown(list(paged.context["page"].object_list))
    assert opened.context["page"].paginator.count == paged.context["page"].paginator.count == 8
    body = opened.content.decode()
    for household in opened.context["page"].object_list:
        assert household.name in body


def test_a_household_renamed_between_the_two_reads_still_shows_its_clients(world: World) -> None:
    """The page's clients are read by a second statement, for the households the first one picked;
    a rename in between that moves a household out of the page leaves each shown household its own clients."""
    _populate(world)
    first_page = 3
    expected_before = _shown(
        list(selectors.household_table(user=world.adviser).order_by(*selectors.HOUSEHOLD_TABLE_ORDER)[:first_page])
    )
    renamed: list[str] = []

    def renaming(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if '"connections_client"' in sql and not renamed:
            # Another adviser renames the first household shown out of the page meanwhile.
            renamed.append(sql)
            m.Household.objects.filter(pk=expected_before[0][0]).update(name="Zz renamed")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(renaming):
        shown = _shown(selectors.household_table_first_page(user=world.adviser, per_page=first_page))
    assert renamed, "the clients were not read by a statement of their own"
    assert [row[0] for row in shown] == [row[0] for row in expected_before]
    assert [row[5] for row in shown] == [row[5] for row in expected_before]
    assert any(row[5] for row in shown)
    assert selectors.household_table_first_page(user=world.adviser, per_page=first_page)[0].pk != shown[0][0]


def test_the_first_pages_clients_are_read_by_the_pages_own_households_not_by_sorting_them_again(world: World) -> None:
    _populate(world)
    with CaptureQueriesContext(connection) as captured:
        selectors.household_table_first_page(user=world.adviser, per_page=3)
    clients_reads = [q["sql"] for q in captured.captured_queries if '"connections_client"' in q["sql"]]
    assert len(clients_reads) == 1
    assert "ORDER BY" in clients_reads[0]
    assert '"connections_household"' not in clients_reads[0]


@pytest.mark.parametrize("who", ["adviser", "firm_admin"])
def test_the_first_page_counts_every_household_of_the_user_without_a_count_query(world: World, who: str) -> None:
    _populate(world)
    user = getattr(world, who)
    page = selectors.household_table_page(user=user, per_page=3)
    assert len(page.object_list) == 3
    assert page.paginator.count == selectors.household_queryset_for(user=user).count()
    assert page.paginator.num_pages == -(-page.paginator.count // 3)


def test_an_adviser_without_households_opens_an_empty_first_page(world: World) -> None:
    from tests.factories import MembershipFactory

    newcomer = MembershipFactory(firm=world.firm, role=m.Membership.Role.ADVISER).user
    page = selectors.household_table_page(user=newcomer, per_page=25)
    assert list(page.object_list) == []
    assert page.paginator.count == 0
    assert page.number == page.paginator.num_pages == 1
