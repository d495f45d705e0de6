"""Who may see and do what: a property test over random firms, roles, assignments, objects and actions.

The rule (selectors.household_queryset_for, the one scoping rule): a user may
reach a household, and everything in it, exactly when they are a member of
the household's firm AND are either a firm admin or one of the household's
assigned advisers. Otherwise: a signed-in member gets 404 (nothing is
revealed, not even existence), a signed-in user without a firm gets 403, a
visitor is sent to sign in.

Each example draws a fresh world (each user's firm and role, each household's
advisers, including advisers of another firm assigned by mistake), writes it,
and checks one (user, object, action) against the rule computed from the
drawing, never from the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from connections import models as m
from tests.factories import ClientFactory, ConnectionFactory, FirmFactory, HouseholdFactory, UserFactory

from .conftest import CannedProvider

USERS = 5
HOUSEHOLDS = 3
EXAMPLES = 200


@dataclass(frozen=True)
class Action:
    route: str
    on: str  # "household" | "connection"
    method: str = "GET"


ACTIONS = {
    "view household": Action("household_detail", "household"),
    "connect page": Action("household_connect", "household"),
    "new link page": Action("household_link_new", "household"),
    "view connection": Action("connection_detail", "connection"),
    "reconnect page": Action("connection_reconnect", "connection"),
    "disconnect page": Action("connection_disconnect", "connection"),
    "send link page": Action("connection_link_send", "connection"),
    "check now": Action("connection_check", "connection", "POST"),
}


@dataclass
class Stage:
    firms: list[m.Firm]
    users: list[Any]
    browsers: list[Client]
    households: list[m.Household]
    connections: list[m.Connection]


@pytest.fixture
def stage(db: None, canned: CannedProvider) -> Stage:
    firms = [FirmFactory(), FirmFactory()]
    users = [UserFactory(username=f"user{i}") for i in range(USERS)]
    browsers = []
    for user in users:
        browser = Client()
        browser.force_login(user)
        browsers.append(browser)
    households = [HouseholdFactory(firm=firms[i % 2]) for i in range(HOUSEHOLDS)]
    connections = [ConnectionFactory(client=ClientFactory(household=h)) for h in households]
    return Stage(firms, users, browsers, households, connections)


membership = st.tuples(st.sampled_from([None, 0, 1]), st.sampled_from(list(m.Membership.Role)))
world = st.fixed_dictionaries(
    {
        "memberships": st.lists(membership, min_size=USERS, max_size=USERS),
        "advisers": st.lists(
            st.sets(st.integers(min_value=0, max_value=USERS - 1)), min_size=HOUSEHOLDS, max_size=HOUSEHOLDS
        ),
    }
)


def _write(stage: Stage, drawn: dict[str, Any]) -> None:
    m.Membership.objects.filter(user__in=stage.users).delete()
    m.Membership.objects.bulk_create(
        [
            m.Membership(user=user, firm=stage.firms[firm], role=role)
            for user, (firm, role) in zip(stage.users, drawn["memberships"], strict=True)
            if firm is not None
        ]
    )
    for household, advisers in zip(stage.households, drawn["advisers"], strict=True):
        household.advisers.set([stage.users[i] for i in advisers])


def permitted(drawn: dict[str, Any], stage: Stage, user_index: int, household_index: int) -> bool:
    firm, role = drawn["memberships"][user_index]
    household_firm = household_index % 2  # how the stage placed the households
    if firm is None or firm != household_firm:
        return False
    return role == m.Membership.Role.FIRM_ADMIN or user_index in drawn["advisers"][household_index]


@hsettings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    drawn=world,
    who=st.integers(min_value=-1, max_value=USERS - 1),  # -1: a visitor, not signed in
    target=st.integers(min_value=0, max_value=HOUSEHOLDS - 1),
    action=st.sampled_from(sorted(ACTIONS)),
)
def test_access_is_granted_exactly_when_permitted(
    stage: Stage, drawn: dict[str, Any], who: int, target: int, action: str
) -> None:
    _write(stage, drawn)
    spec = ACTIONS[action]
    obj = stage.households[target] if spec.on == "household" else stage.connections[target]
    url = reverse(spec.route, args=[obj.pk])
    browser = Client() if who < 0 else stage.browsers[who]

    response = browser.post(url) if spec.method == "POST" else browser.get(url)

    if who < 0:
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    elif drawn["memberships"][who][0] is None:
        assert response.status_code == 403
    elif permitted(drawn, stage, who, target):
        expected = 302 if spec.method == "POST" else 200
        assert response.status_code == expected, (action, response.status_code)
    else:
        assert response.status_code == 404, (action, response.status_code)
        # Nothing about the object leaks into the refusal.
        assert stage.households[target].name not in response.content.decode()
