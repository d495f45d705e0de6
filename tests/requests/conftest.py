"""Fixtures of the reconnect-request suite: the end-to-end sandbox world, and an adviser of its household."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core import mail

from connections import models as m
from tests.e2e.conftest import beat, clock, portal, sandbox  # noqa: F401 - the sandbox world, reused
from tests.factories import MembershipFactory, UserFactory
from tests.web.conftest import adviser_client, broken, fake_provider, world  # noqa: F401 - the web suite's world, reused

REQUEST_URL = re.compile(r"https?://[^\s]+/r/[^\s/]+/")


@pytest.fixture
def adviser(portal: Any) -> Any:  # noqa: F811 - the fixture imported above
    """An adviser assigned to the sandbox world's household."""
    user = MembershipFactory(firm=portal.household.firm, user=UserFactory(username="adele", first_name="Adele")).user
    portal.household.advisers.add(user)
    return user


def request_path(message: Any) -> str:
    """The path of the request link in an email (the token is in it; only the client's email has it)."""
    found = REQUEST_URL.search(message.body)
    assert found is not None, message.body
    return urlsplit(found.group(0)).path


def emails_to(address: str) -> list[Any]:
    return [message for message in mail.outbox if message.to == [address]]


def open_request(client: Any, message: Any) -> tuple[Any, m.ReconnectRequest]:
    """Open the emailed link in ``client`` (a browser): it binds the request and lands on the list."""
    landing = client.get(request_path(message))
    assert landing.status_code == 302, landing
    assert "/r/" not in landing["Location"]  # the token stays on the emailed link
    page = client.get(landing["Location"])
    assert page.status_code == 200
    return page, m.ReconnectRequest.objects.get(pk=landing["Location"].rstrip("/").split("/")[-1])
