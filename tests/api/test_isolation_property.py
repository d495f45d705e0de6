"""Tenant isolation as a property, over real HTTP: a key sees exactly its firm.

Hypothesis draws a key (of any firm, either scope), a route, and an id: one
of any firm's objects, or one that does not exist. The answer is a 200 (or
the write's success) exactly when the object is the key's firm's, and a 404
otherwise, with nothing written; lists and the feed only ever hold the key's
firm's rows.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.models import ApiKey
from connections import models as m

from .conftest import ApiClient, ApiFirm, ApiWorld, make_firm, provider_apps

pytestmark = pytest.mark.django_db(transaction=True)

READ_ROUTES = {
    "household": ("/households/{id}", "households"),
    "client": ("/clients/{id}", "clients"),
    "connection": ("/connections/{id}", "connections"),
    "events": ("/connections/{id}/events", "connections"),
    "accounts": ("/connections/{id}/accounts", "connections"),
}
# Writes are drawn on other firms' objects only: on the key's own they would change the world between examples.
WRITE_ROUTES = {
    "client link": "/connections/{id}/client-links",
    "check": "/connections/{id}/check",
    "disconnect": "/connections/{id}/disconnect",
}
LISTS = ("/households", "/clients", "/connections", "/events")


@pytest.fixture
def three_firms(api_world: ApiWorld) -> tuple[ApiWorld, list[ApiFirm], dict[str, ApiClient]]:
    third = make_firm("Third Partners", households=1, apps=provider_apps())
    firms = [api_world.ours, api_world.theirs, third]
    callers = {}
    for firm in firms:
        callers[firm.read_key] = api_world.client(firm.read_key)
        callers[firm.write_key] = api_world.client(firm.write_key)
    return api_world, firms, callers


def _snapshot() -> list[tuple[Any, ...]]:
    return sorted(m.Connection.objects.values_list("pk", "status", "reason", "updated_at"))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_key_reaches_exactly_its_own_firms_objects(
    three_firms: tuple[ApiWorld, list[ApiFirm], dict[str, ApiClient]], data: st.DataObject
) -> None:
    _world, firms, callers = three_firms
    firm = data.draw(st.sampled_from(firms), label="key's firm")
    key = data.draw(st.sampled_from([firm.read_key, firm.write_key]), label="key")
    caller = callers[key]
    is_write_key = key == firm.write_key

    kind = data.draw(st.sampled_from(["read", "write", "list"]), label="kind")
    if kind == "list":
        path = data.draw(st.sampled_from(LISTS), label="list")
        response = caller.get(path, params={"limit": 500})
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        if path == "/events":
            assert all(item["data"]["connection"]["id"] in firm.ids["connections"] for item in items)
        else:
            assert {item["id"] for item in items} == firm.ids[path.strip("/")]
        return

    if kind == "read":
        name = data.draw(st.sampled_from(sorted(READ_ROUTES)), label="route")
        template, space = READ_ROUTES[name]
        everyone = sorted(set().union(*(f.ids[space] for f in firms)))
        target = data.draw(st.one_of(st.sampled_from(everyone), st.integers(-(2**31), 2**31)), label="id")
        response = caller.get(template.format(id=target))
        if target in firm.ids[space]:
            assert response.status_code == 200, response.text
        elif target < 0 or target >= 2**63:
            assert response.status_code in (404, 422), response.text
        else:
            assert response.status_code == 404, response.text
            assert response.headers["Content-Type"] == "application/problem+json"
        return

    name = data.draw(st.sampled_from(sorted(WRITE_ROUTES)), label="route")
    others = sorted(set().union(*(f.ids["connections"] for f in firms if f is not firm)))
    target = data.draw(st.one_of(st.sampled_from(others), st.integers(1, 2**31)), label="id")
    if target in firm.ids["connections"]:
        return
    before, links = _snapshot(), m.ClientLink.objects.count()
    response = caller.post(WRITE_ROUTES[name].format(id=target), json={})
    # A read key is refused before anything is looked up: its 403 says nothing about the id.
    assert response.status_code == (404 if is_write_key else 403), response.text
    assert _snapshot() == before
    assert m.ClientLink.objects.count() == links


def test_the_keys_used_above_are_what_they_claim(three_firms: tuple[ApiWorld, list[ApiFirm], Any]) -> None:
    """The property would pass vacuously if every key were refused: each one is accepted and firm-bound."""
    _, firms, callers = three_firms
    for firm in firms:
        for key, scope in ((firm.read_key, ApiKey.Scope.READ), (firm.write_key, ApiKey.Scope.WRITE)):
            row = ApiKey.objects.get(prefix=key[4:14])
            assert (row.firm_id, row.scope) == (firm.firm.pk, scope)
            assert callers[key].get("/connections").status_code == 200
