"""Scoping: every view answers only for the households the user may see; anything else is a 404."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from connections import models as m
from connections import selectors
from tests.factories import HouseholdFactory, UserFactory

from .conftest import World

# (url name, method, kind of object the id names)
SCOPED_VIEWS: list[tuple[str, str, str]] = [
    ("household_detail", "get", "household"),
    ("household_connect", "get", "household"),
    ("household_connect", "post", "household"),
    ("household_connect_credentials", "get", "household"),
    ("household_connect_credentials", "post", "household"),
    ("household_link_new", "get", "household"),
    ("household_link_new", "post", "household"),
    ("connection_detail", "get", "connection"),
    ("connection_check", "post", "connection"),
    ("connection_reconnect", "get", "connection"),
    ("connection_reconnect", "post", "connection"),
    ("connection_disconnect", "get", "connection"),
    ("connection_disconnect", "post", "connection"),
    ("connection_link_send", "get", "connection"),
    ("connection_link_send", "post", "connection"),
]


def _target(world: World, kind: str, whose: str) -> int:
    objects = {
        ("household", "own"): world.household,
        ("household", "other_adviser"): world.other_household,
        ("household", "other_firm"): world.foreign_household,
        ("connection", "own"): world.connection,
        ("connection", "other_adviser"): world.other_connection,
        ("connection", "other_firm"): world.foreign_connection,
    }
    return objects[(kind, whose)].pk


def _state(world: World) -> tuple[int, int, int, int]:
    return (
        m.Connection.objects.exclude(status=m.Status.ACTIVE).count(),
        m.ClientLink.objects.count(),
        m.AuthorizationRequest.objects.count(),
        m.ConnectionEvent.objects.count(),
    )


@pytest.mark.parametrize(("name", "method", "kind"), SCOPED_VIEWS)
@pytest.mark.parametrize("whose", ["other_adviser", "other_firm"])
def test_object_outside_the_advisers_households_is_not_found(
    adviser_client: Any, world: World, fake_provider: Any, name: str, method: str, kind: str, whose: str
) -> None:
    before = _state(world)
    url = reverse(name, args=[_target(world, kind, whose)])
    response = getattr(adviser_client, method)(url)
    assert response.status_code == 404
    assert _state(world) == before


@pytest.mark.parametrize(("name", "method", "kind"), [v for v in SCOPED_VIEWS if v[1] == "get"])
def test_object_in_the_advisers_households_is_served(
    adviser_client: Any, world: World, fake_provider: Any, name: str, method: str, kind: str
) -> None:
    # The same URLs answer for the adviser's own objects, so the 404s above are scoping, not routing.
    response = adviser_client.get(reverse(name, args=[_target(world, kind, "own")]))
    assert response.status_code in {200, 400}  # the credentials page without its query is a 400 form page


@pytest.mark.parametrize(("name", "method", "kind"), [v for v in SCOPED_VIEWS if v[1] == "get"])
def test_firm_admin_reaches_every_household_of_the_firm_but_no_other(
    client: Any, world: World, fake_provider: Any, name: str, method: str, kind: str
) -> None:
    client.force_login(world.firm_admin)
    assert client.get(reverse(name, args=[_target(world, kind, "other_adviser")])).status_code in {200, 400}
    assert client.get(reverse(name, args=[_target(world, kind, "other_firm")])).status_code == 404


def test_anonymous_visitor_is_sent_to_sign_in(client: Any, world: World) -> None:
    for url in (reverse("dashboard"), reverse("household_detail", args=[world.household.pk])):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_user_without_membership_sees_a_clear_page_and_nothing_else(client: Any, world: World) -> None:
    loner = UserFactory(username="loner")
    client.force_login(loner)
    response = client.get(reverse("dashboard"))
    assert response.status_code == 403
    assert b"not attached to a firm" in response.content
    assert client.get(reverse("household_detail", args=[world.household.pk])).status_code == 403
    assert not selectors.household_queryset_for(user=loner).exists()


def test_adviser_sees_only_assigned_households(world: World) -> None:
    assert set(selectors.household_queryset_for(user=world.adviser)) == {world.household}
    assert set(selectors.connection_queryset_for(user=world.adviser)) == {world.connection}
    assert set(selectors.client_queryset_for(user=world.adviser)) == {world.client}


def test_firm_admin_sees_the_whole_firm_only(world: World) -> None:
    assert set(selectors.household_queryset_for(user=world.firm_admin)) == {world.household, world.other_household}
    assert world.foreign_connection not in selectors.connection_queryset_for(user=world.firm_admin)


def test_household_shared_by_two_advisers_is_listed_once(world: World) -> None:
    shared = HouseholdFactory(firm=world.firm, name="Shared", advisers=[world.adviser, world.other_adviser])
    households = list(selectors.household_queryset_for(user=world.adviser))
    assert households.count(shared) == 1
    admin_rows = list(selectors.household_table(user=world.firm_admin))
    assert [h.pk for h in admin_rows].count(shared.pk) == 1


def test_dashboard_lists_only_visible_households(adviser_client: Any, world: World) -> None:
    body = adviser_client.get(reverse("dashboard")).content.decode()
    assert world.household.name in body
    assert world.other_household.name not in body
    assert world.foreign_household.name not in body


def test_client_links_of_other_households_are_not_visible(world: World) -> None:
    from connections import services

    other_client = world.other_connection.client
    services.client_link_create(
        household=world.other_household,
        client=other_client,
        connection=world.other_connection,
        user=world.other_adviser,
    )
    assert selectors.client_link_queryset_for(user=world.other_adviser).count() == 1
    assert selectors.client_link_queryset_for(user=world.adviser).count() == 0


def test_a_users_membership_and_firm_are_read_once_per_request(world: World, django_assert_num_queries: Any) -> None:
    user = User.objects.get(pk=world.adviser.pk)  # fresh: nothing cached on it
    with django_assert_num_queries(1):
        membership = selectors.membership_for(user=user)
        assert membership is not None
        assert membership.firm.name == world.firm.name
        assert selectors.membership_for(user=user) is membership  # cached on the user for the request
    nobody = UserFactory()
    with django_assert_num_queries(1):
        assert selectors.membership_for(user=nobody) is None


def test_connections_scoped_by_joins_are_exactly_those_of_the_visible_households(world: World) -> None:
    """``connection_queryset_for`` joins the household and the adviser's assignment; it must list what
    ``household IN household_queryset_for(user)`` lists, once each, for every kind of user."""
    from tests.factories import ConnectionFactory

    shared = HouseholdFactory(firm=world.firm, name="Shared", advisers=[world.adviser, world.other_adviser])
    ConnectionFactory(household=shared, provider_app=world.turnqey, platform="kraken")
    ConnectionFactory(household=shared, provider_app=world.turnqey, platform="gemini")
    HouseholdFactory(firm=world.firm, name="Nobody's")
    loner = UserFactory()
    for user in (world.adviser, world.other_adviser, world.firm_admin, loner):
        joined = list(selectors.connection_queryset_for(user=user).values_list("pk", flat=True))
        by_households = m.Connection.objects.filter(household__in=selectors.household_queryset_for(user=user))
        assert sorted(joined) == sorted(by_households.values_list("pk", flat=True))
        assert len(joined) == len(set(joined))
    assert selectors.connection_queryset_for(user=world.adviser).filter(household=shared).count() == 2
