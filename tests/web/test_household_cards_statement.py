"""The household page's cards come from SQL built once per process: the same rows as the queryset."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from connections import models as m
from connections import selectors
from connections.selectors.pages import _household_cards_queryset
from tests.factories import AccountFactory, ConnectionFactory, CredentialFactory

from .conftest import World


def _shown(rows: list[m.Connection]) -> list[tuple[Any, ...]]:
    return [
        (
            c.pk,
            c.status,
            c.client.name,
            c.household.name,
            c.provider_app.provider,
            c.authorization_open,  # type: ignore[attr-defined]
            c.has_open_problem,  # type: ignore[attr-defined]
            c.snoozed_ahead,  # type: ignore[attr-defined]
            sorted((cred.kind, cred.expires_at) for cred in c.credentials.all()),
            sorted(a.pk for a in c.accounts.all()),
        )
        for c in rows
    ]


@pytest.mark.parametrize("who", ["adviser", "firm_admin"])
def test_the_cards_statement_reads_what_the_queryset_reads(world: World, who: str) -> None:
    now = timezone.now()
    for i in range(4):
        connection = ConnectionFactory(client=world.client, provider_app=world.coinify, platform=f"p{i}")
        CredentialFactory(connection=connection, kind="access")
        AccountFactory(connection=connection)
        if i % 2:
            m.ConnectionProblem.objects.create(
                connection=connection, cause="broken", snoozed_until=now + timedelta(days=i - 2)
            )
    user = getattr(world, who)
    for moment in (now, now + timedelta(days=2), now - timedelta(days=3)):
        page = selectors.household_page(user=user, household=world.household, now=moment)
        expected = list(_household_cards_queryset(user=user, household=world.household, now=moment))
        cards = page.connections + page.disconnected
        assert sorted(_shown(cards)) == sorted(_shown(expected))
        assert any(c.snoozed_ahead for c in cards) == (moment < now + timedelta(days=1))  # type: ignore[attr-defined]


def test_another_users_household_shows_no_cards(world: World) -> None:
    page = selectors.household_page(user=world.other_adviser, household=world.household)
    assert page.connections == []
    assert page.disconnected == []


def test_the_cards_relations_are_read_with_the_cards_and_point_back_to_them(
    world: World, django_assert_num_queries: Any
) -> None:
    connection = ConnectionFactory(client=world.client, provider_app=world.coinify, platform="kraken")
    CredentialFactory(connection=connection, kind="access")
    AccountFactory(connection=connection)
    page = selectors.household_page(user=world.adviser, household=world.household)
    card = next(c for c in page.connections if c.pk == connection.pk)
    client_names = sorted(c.name for c in world.household.clients.all())
    with django_assert_num_queries(0):
        credentials = list(card.credentials.all())
        accounts = list(card.accounts.all())
        assert [c.connection for c in credentials] == [card]
        assert [a.connection for a in accounts] == [card]
        assert [c.name for c in page.clients] == client_names


def test_a_household_is_read_only_by_those_who_may_see_it(world: World) -> None:
    assert selectors.household_read(user=world.adviser, pk=world.household.pk) == world.household
    assert selectors.household_read(user=world.adviser, pk=world.household.pk).firm.name == world.firm.name  # type: ignore[union-attr]
    assert selectors.household_read(user=world.firm_admin, pk=world.other_household.pk) == world.other_household
    assert selectors.household_read(user=world.adviser, pk=world.other_household.pk) is None
    assert selectors.household_read(user=world.firm_admin, pk=world.foreign_household.pk) is None
    assert selectors.household_read(user=world.adviser, pk=2**64) is None


def test_a_household_id_no_row_can_have_is_a_404(adviser_client: Any, world: World) -> None:
    assert adviser_client.get(f"/households/{2**70}/").status_code == 404
