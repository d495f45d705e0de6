"""Same-account proof comes from the provider, never from the browser: callbacks rewritten on the way back.

A provider's callback travels through the browser, and whoever holds the
browser can edit its query string before it reaches the portal. These tests
run the real flows through the portal's views against the sandbox over HTTP
(the consent and Connect pages as a browser would see them), then rewrite the
callback the way an attacker would: claim another Dapi user's id, move a
Turnqey connection to another collection, or say "success" for access that
Turnqey itself reports as expired.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.urls import reverse

from connections import lifecycle
from connections import models as m
from tests.factories import MembershipFactory
from tests.faults.support import Portal, SandboxControl, portal_on_sandbox
from tests.sandbox_client import ConsentAnswer, browser_consent, sandbox_session

# The providers send the browser back here (the apps' registered redirect URIs).
REDIRECT_BASE = "http://testserver"


@pytest.fixture
def sandbox(live_server: Any, transactional_db: None, settings: Any) -> Iterator[SandboxControl]:
    settings.PORTAL_BASE_URL = REDIRECT_BASE  # the apps' redirect URIs must be the portal's own callbacks
    with sandbox_session(live_server.url, settings) as control:
        yield control


@pytest.fixture
def portal(sandbox: SandboxControl) -> Portal:
    return portal_on_sandbox(sandbox, redirect_base=REDIRECT_BASE)


@pytest.fixture
def adviser(portal: Portal) -> Client:
    """The household's adviser, signed in; the same browser session runs every flow of a test."""
    user = MembershipFactory(firm=portal.household.firm).user
    portal.household.advisers.add(user)
    browser = Client()
    browser.force_login(user)
    return browser


def callback(adviser: Client, provider: str, params: dict[str, str]) -> Any:
    return adviser.get(reverse("connect_callback", args=[provider]), params)


def connect(adviser: Client, portal: Portal, provider: str, platform: str, *, username: str | None) -> m.Connection:
    """A new connection made the way the adviser makes it: the connect form, the provider's page, the callback."""
    started = adviser.post(
        reverse("household_connect", args=[portal.household.pk]),
        {"client": portal.client.pk, "provider_app": portal.apps[provider].pk, "platform": platform},
    )
    assert started.status_code == 302, started.content[:300]
    answer = browser_consent(started["Location"], username=username)
    assert callback(adviser, provider, answer.params).status_code == 302
    connection = m.Connection.objects.get(client=portal.client, provider=provider, platform=platform)
    assert connection.status == m.Status.ACTIVE
    return connection


def reconnect_started(adviser: Client, connection: m.Connection) -> str:
    """Where the reconnect sends the browser (the provider's page, with a fresh state)."""
    started = adviser.post(reverse("connection_reconnect", args=[connection.pk]))
    assert started.status_code == 302, started.content[:300]
    return str(started["Location"])


def reconnect_signed_in(adviser: Client, connection: m.Connection, *, username: str | None) -> ConsentAnswer:
    return browser_consent(reconnect_started(adviser, connection), username=username)


def credential_values(connection: m.Connection) -> dict[str, str]:
    return dict(m.Credential.objects.filter(connection=connection).values_list("kind", "value"))


def test_a_rewritten_dapi_user_id_cannot_attach_another_user_to_a_connection(
    sandbox: SandboxControl, portal: Portal, adviser: Client
) -> None:
    connection = connect(adviser, portal, "dapi", "binance", username="alice")
    alice = connection.external_account_id
    alices_tokens = credential_values(connection)

    # Bob signs in at Dapi; his browser claims to be Alice on the way back.
    bob = reconnect_signed_in(adviser, connection, username="bob")
    assert bob.params["userID"] != alice
    response = callback(adviser, "dapi", {**bob.params, "userID": alice})

    assert response.status_code == 409
    connection.refresh_from_db()
    assert connection.external_account_id == alice
    assert credential_values(connection) == alices_tokens
    refused = m.ConnectionEvent.objects.get(connection=connection, kind=m.ConnectionEvent.Kind.RECONNECT_REFUSED)
    assert refused.details["returned_account"] == bob.params["userID"]


def test_a_dapi_reconnect_by_the_same_user_still_works_without_trusting_the_callback(
    sandbox: SandboxControl, portal: Portal, adviser: Client
) -> None:
    connection = connect(adviser, portal, "dapi", "binance", username="alice")
    alice = connection.external_account_id

    again = reconnect_signed_in(adviser, connection, username="alice")
    response = callback(adviser, "dapi", {**again.params, "userID": "whatever-the-browser-says"})

    assert response.status_code == 302
    connection.refresh_from_db()
    assert (connection.status, connection.external_account_id) == (m.Status.ACTIVE, alice)


def test_a_rewritten_turnqey_collection_does_not_move_a_working_connection(
    sandbox: SandboxControl, portal: Portal, adviser: Client
) -> None:
    connection = connect(adviser, portal, "turnqey", "coinbase", username=None)
    collection = connection.grouping["collection"]
    # Another partner's collection at Turnqey: a real one, just not ours.
    sandbox.register_app("turnqey", client_id="another-partner", client_secret="x" * 24, redirect_uri="https://x.test/")
    theirs = sandbox.subject("turnqey", client="another-partner", identity="their-client", platform="gemini")

    approved = reconnect_signed_in(adviser, connection, username=None)
    response = callback(adviser, "turnqey", {**approved.params, "collection": theirs["collection"]})

    assert response.status_code == 302
    connection.refresh_from_db()
    portal.household.refresh_from_db()
    assert connection.grouping["collection"] == collection
    assert str(portal.household.turnqey_collection) == collection
    # And it keeps working: the next check reads the collection Turnqey put it in.
    assert lifecycle.connection_check(connection_id=connection.pk, force=True).status == m.Status.ACTIVE


def test_a_rewritten_turnqey_collection_on_a_first_connect_does_not_become_the_households(
    sandbox: SandboxControl, portal: Portal, adviser: Client
) -> None:
    started = adviser.post(
        reverse("household_connect", args=[portal.household.pk]),
        {"client": portal.client.pk, "provider_app": portal.apps["turnqey"].pk, "platform": "coinbase"},
    )
    approved = browser_consent(started["Location"])
    planted = "7d3c1e52-0000-4000-8000-00000000beef"

    assert callback(adviser, "turnqey", {**approved.params, "collection": planted}).status_code == 302

    portal.household.refresh_from_db()
    assert str(portal.household.turnqey_collection) == approved.params["collection"] != planted


def test_success_in_the_browser_does_not_revive_access_turnqey_reports_expired(
    sandbox: SandboxControl, portal: Portal, adviser: Client
) -> None:
    connection = connect(adviser, portal, "turnqey", "coinbase", username=None)
    identity = str(portal.client.identity)
    assert sandbox.act("turnqey", "expire", identity=identity, platform="coinbase") == 1
    assert lifecycle.connection_check(connection_id=connection.pk, force=True).status == m.Status.NEEDS_RECONNECT

    # The reconnect is started, but the client never approves at Turnqey: the
    # browser comes straight back saying it did.
    state = parse_qs(urlsplit(reconnect_started(adviser, connection)).query)["state"][0]
    response = callback(
        adviser,
        "turnqey",
        {
            "state": state,
            "identity": identity,
            "collection": connection.grouping["collection"],
            "platform": "coinbase",
            "status": "success",
        },
    )

    assert response.status_code == 502
    connection.refresh_from_db()
    assert (connection.status, connection.reason) == (m.Status.NEEDS_RECONNECT, m.Reason.EXPIRED)
    assert not m.ConnectionEvent.objects.filter(
        connection=connection, kind__in=[m.ConnectionEvent.Kind.RECONNECTED, m.ConnectionEvent.Kind.RECOVERED]
    ).exists()
