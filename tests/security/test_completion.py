"""What a completion re-checks when it completes, not only when it started.

Attacks: a late callback for a connection disconnected meanwhile, two
authorizations from one client link, a link withdrawn or expired mid-flight,
two tabs connecting the same client and platform to different accounts, an
adviser removed from a household while their authorization was in flight.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.db import connection as db_connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from connections import models as m
from connections import services

from .conftest import TURNQEY_SUCCESS, CannedProvider, People, logged_in, start_connect

K = m.ConnectionEvent.Kind


def callback(client: Client, params: dict[str, str]) -> Any:
    return client.get(f"{reverse('connect_callback', args=['turnqey'])}?{urlencode(params)}")


def reconnect_start(adviser: Client, connection: m.Connection) -> str:
    response = adviser.post(reverse("connection_reconnect", args=[connection.pk]))
    assert response.status_code == 302, response.content[:300]
    return parse_qs(urlsplit(response["Location"]).query)["state"][0]


def link_for(people: People, connection: m.Connection) -> str:
    created = services.client_link_create(
        household=people.household, client=people.client, connection=connection, user=people.assigned
    )
    return urlsplit(created.url).path


def link_start(link_path: str) -> tuple[Client, str]:
    """A client's browser opens the link and starts the authorization; returns (browser, state)."""
    browser = Client()
    assert browser.get(link_path).status_code == 200
    response = browser.post(link_path)
    assert response.status_code == 302, response.content[:300]
    return browser, parse_qs(urlsplit(response["Location"]).query)["state"][0]


def broken_connection(people: People) -> m.Connection:
    connection = people.connection
    m.Connection.objects.filter(pk=connection.pk).update(
        status=m.Status.NEEDS_RECONNECT, reason=m.Reason.REVOKED, next_check_at=None
    )
    connection.refresh_from_db()
    return connection


def kinds(connection: m.Connection) -> list[str]:
    return list(connection.events.order_by("created_at", "id").values_list("kind", flat=True))


# --- Disconnected is final ---------------------------------------------------------------------------


def test_a_late_callback_does_not_bring_a_disconnected_connection_back(people: People, canned: CannedProvider) -> None:
    adviser = logged_in(people.assigned)
    connection = people.connection
    canned.external_account_id = connection.external_account_id
    state = reconnect_start(adviser, connection)
    services.connection_disconnect_now(connection=connection, user=people.assigned)

    response = callback(adviser, {"state": state, **TURNQEY_SUCCESS})

    assert response.status_code == 410
    assert "removed while the authorization was in progress" in response.content.decode()
    connection.refresh_from_db()
    assert connection.status == m.Status.DISCONNECTED
    assert not connection.credentials.exists()
    assert K.RECONNECTED not in kinds(connection)


def test_a_client_links_authorization_in_flight_cannot_revive_a_disconnected_connection(
    people: People, canned: CannedProvider
) -> None:
    connection = broken_connection(people)
    canned.external_account_id = connection.external_account_id
    browser, state = link_start(link_for(people, connection))
    services.connection_disconnect_now(connection=connection, user=people.assigned)

    response = callback(browser, {"state": state, **TURNQEY_SUCCESS})

    assert response.status_code == 410
    connection.refresh_from_db()
    assert connection.status == m.Status.DISCONNECTED
    assert not connection.credentials.exists()


# --- A client link completes once ---------------------------------------------------------------------


def test_two_authorizations_started_from_one_link_complete_once(people: People, canned: CannedProvider) -> None:
    connection = broken_connection(people)
    canned.external_account_id = connection.external_account_id
    path = link_for(people, connection)
    first_browser, first_state = link_start(path)
    second_browser, second_state = link_start(path)

    first = callback(first_browser, {"state": first_state, **TURNQEY_SUCCESS})
    second = callback(second_browser, {"state": second_state, **TURNQEY_SUCCESS})

    assert first.status_code == 200
    assert second.status_code == 410
    assert "already used" in second.content.decode()
    assert kinds(connection).count(K.RECONNECTED) == 1
    assert kinds(connection).count(K.LINK_COMPLETED) == 1


@pytest.mark.parametrize("meanwhile", ["withdrawn", "expired"])
def test_a_link_withdrawn_or_expired_while_an_authorization_was_in_flight_does_not_complete(
    people: People, canned: CannedProvider, meanwhile: str
) -> None:
    connection = broken_connection(people)
    canned.external_account_id = connection.external_account_id
    browser, state = link_start(link_for(people, connection))
    link = m.ClientLink.objects.get(connection=connection)
    if meanwhile == "withdrawn":
        m.ClientLink.objects.filter(pk=link.pk).update(status=m.ClientLink.LinkStatus.CANCELLED)
    else:
        m.ClientLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    response = callback(browser, {"state": state, **TURNQEY_SUCCESS})

    assert response.status_code == 410
    assert canned.completes == 0, "the provider is not even asked"
    connection.refresh_from_db()
    assert connection.status == m.Status.NEEDS_RECONNECT
    assert K.RECONNECTED not in kinds(connection)


def test_a_completion_that_fails_gives_the_link_back(people: People, canned: CannedProvider) -> None:
    connection = broken_connection(people)
    canned.external_account_id = connection.external_account_id
    path = link_for(people, connection)
    browser, state = link_start(path)

    denied = callback(browser, {"state": state, **{**TURNQEY_SUCCESS, "status": "denied"}})

    assert denied.status_code == 200
    link = m.ClientLink.objects.get(connection=connection)
    assert link.status == m.ClientLink.LinkStatus.OPENED
    browser, state = link_start(path)
    assert callback(browser, {"state": state, **TURNQEY_SUCCESS}).status_code == 200


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_completions_of_one_link_complete_once(canned: CannedProvider) -> None:
    from .conftest import build_people

    people = build_people()
    connection = broken_connection(people)
    canned.external_account_id = connection.external_account_id
    path = link_for(people, connection)
    starts = [link_start(path), link_start(path)]
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def complete(browser: Client, state: str) -> None:
        try:
            barrier.wait()
            statuses.append(callback(browser, {"state": state, **TURNQEY_SUCCESS}).status_code)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=complete, args=start) for start in starts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(statuses) == [200, 410]
    assert kinds(connection).count(K.RECONNECTED) == 1
    assert kinds(connection).count(K.LINK_COMPLETED) == 1


def test_a_credential_link_completes_once(people: People, canned: CannedProvider) -> None:
    connection = m.Connection.objects.create(
        household=people.household,
        client=people.client,
        provider_app=people.apps["bloquo"],
        provider="bloquo",
        platform="bloquo",
        status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.REVOKED,
        external_account_id=canned.external_account_id,
    )
    path = link_for(people, connection)
    fields = {"clientId": "client-1", "clientSecret": "secret-1"}
    first, second = Client(), Client()
    first.get(path)
    second.get(path)

    assert first.post(path, fields).status_code == 200
    refused = second.post(path, fields)

    assert refused.status_code in (400, 410)
    assert kinds(connection).count(K.RECONNECTED) == 1


# --- A pending connection does not switch accounts ----------------------------------------------------


def test_two_tabs_connecting_the_same_client_and_platform_keep_both_accounts(
    people: People, canned: CannedProvider
) -> None:
    adviser = logged_in(people.assigned)
    first_tab = start_connect(adviser, people.household, people.apps["turnqey"], platform="gemini")
    second_tab = start_connect(adviser, people.household, people.apps["turnqey"], platform="gemini")

    canned.external_account_id = "account-a"
    assert callback(adviser, {"state": first_tab, **TURNQEY_SUCCESS, "platform": "gemini"}).status_code == 302
    canned.external_account_id = "account-b"
    assert callback(adviser, {"state": second_tab, **TURNQEY_SUCCESS, "platform": "gemini"}).status_code == 302

    rows = m.Connection.objects.filter(client=people.client, platform="gemini").order_by("pk")
    assert [(row.external_account_id, row.status) for row in rows] == [
        ("account-a", m.Status.ACTIVE),
        ("account-b", m.Status.ACTIVE),
    ]
    assert all(K.CONNECTED in kinds(row) for row in rows)


# --- Scope is checked when work completes --------------------------------------------------------------


def test_an_adviser_removed_from_the_household_mid_flight_cannot_complete(
    people: People, canned: CannedProvider
) -> None:
    adviser = logged_in(people.assigned)
    connection = broken_connection(people)
    canned.external_account_id = connection.external_account_id
    state = reconnect_start(adviser, connection)
    people.household.advisers.remove(people.assigned)

    response = callback(adviser, {"state": state, **TURNQEY_SUCCESS})

    assert response.status_code == 403
    assert canned.completes == 0
    connection.refresh_from_db()
    assert connection.status == m.Status.NEEDS_RECONNECT
