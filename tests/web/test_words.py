"""Words on the pages: who is spoken to, what went together, what happened, said once and truly."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urlencode

from django.core import mail
from django.test import Client
from django.urls import reverse

from connections import models as m
from connections import services
from tests.factories import ConnectionFactory

from .conftest import FakeProvider, World


def _coinify_form(adviser_client: Any, world: World, data: dict[str, str] | None = None) -> Any:
    url = reverse("household_connect_credentials", args=[world.household.pk])
    query = {"client": world.client.pk, "provider_app": world.coinify.pk, "platform": "coinify"}
    if data is None:
        return adviser_client.get(url, query)
    return adviser_client.post(url, {**query, **data})


def test_the_coinify_form_says_which_fields_go_together_and_what_each_choice_gives(
    adviser_client: Any, world: World
) -> None:
    page = _coinify_form(adviser_client, world).content.decode()
    assert "<legend>Email and password</legend>" in page
    assert "<legend>Or an offline token (recommended)</legend>" in page
    assert "they go together" in page
    assert "renews itself for 24 hours at a time" in page
    assert "does not expire, so we recommend it" in page
    assert "(optional)" not in page


def test_an_empty_coinify_form_says_exactly_what_is_needed(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    response = _coinify_form(adviser_client, world, {"email": "", "password": "", "offline_token": ""})
    assert response.status_code == 400
    assert "Enter either the email and password, or an offline token." in response.content.decode()
    assert fake_provider.connects == []


def test_client_facing_pages_speak_to_the_client(adviser_client: Any, world: World) -> None:
    bloquo = ConnectionFactory(
        client=world.client,
        provider_app=world.bloquo,
        platform="bloquo",
        status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.REVOKED,
    )
    created = services.client_link_create(
        household=world.household, client=world.client, connection=bloquo, user=world.adviser
    )
    page = Client().get(created.url.split("testserver", 1)[-1].replace("http://127.0.0.1:8000", "")).content.decode()
    page = html.unescape(page)
    assert "From your Bloquo API settings." in page
    assert "the client's" not in page
    adviser_page = html.unescape(adviser_client.get(reverse("connection_reconnect", args=[bloquo.pk])).content.decode())
    assert "From the client's Bloquo API settings." in adviser_page


def _start(adviser_client: Any, world: World) -> str:
    response = adviser_client.post(
        reverse("household_connect", args=[world.household.pk]),
        {"client": world.client.pk, "provider_app": world.turnqey.pk, "platform": "gemini"},
    )
    return FakeProvider.state_from(response["Location"])


def _callback(client: Any, params: dict[str, str]) -> Any:
    return client.get(f"{reverse('connect_callback', args=['turnqey'])}?{urlencode(params)}")


def test_the_deny_page_says_what_happened_once_keeps_the_header_and_blames_nobody(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    state = _start(adviser_client, world)
    params = {"state": state, "identity": "x", "collection": "y", "platform": "gemini", "status": "denied"}
    page = _callback(adviser_client, params).content.decode()
    message = re.search(r"<p>(Gemini via Turnqey: .*?)</p>", page)
    assert message is not None
    assert message.group(1) == "Gemini via Turnqey: access was not granted at Gemini, so nothing was connected."
    assert "the client declined" not in page
    assert world.adviser.get_full_name() in page  # the signed-in header stays
    assert reverse("dashboard") in page


def test_a_callback_replayed_in_the_same_browser_says_already_used(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    state = _start(adviser_client, world)
    params = {"state": state, "identity": "x", "collection": "y", "platform": "gemini", "status": "success"}
    assert _callback(adviser_client, params).status_code == 302

    again = _callback(adviser_client, params)

    body = again.content.decode()
    assert again.status_code == 400
    assert "already used" in body
    assert "started elsewhere" not in body
    assert "someone else or in another browser" not in body


def _reconnect_link(world: World, connection: m.Connection) -> str:
    created = services.client_link_create(
        household=world.household, client=world.client, connection=connection, user=world.adviser
    )
    return "/" + created.url.split("/", 3)[3]


def test_a_used_link_does_not_say_both_done_and_nothing_connected(world: World, fake_provider: FakeProvider) -> None:
    connection = ConnectionFactory(
        client=world.client,
        provider_app=world.coinify,
        platform="coinify",
        status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.EXPIRED,
        external_account_id=fake_provider.external_account_id,
    )
    path = _reconnect_link(world, connection)
    browser = Client()
    browser.get(path)
    assert browser.post(path, {"email": "linh@example.test", "password": "right-password"}).status_code == 200

    used = browser.get(path).content.decode()

    assert "already used to finish the connection" in used
    assert "Nothing was connected" not in used


def test_a_new_reconnect_link_supersedes_the_older_live_one(world: World) -> None:
    connection = ConnectionFactory(
        client=world.client, provider_app=world.turnqey, status=m.Status.NEEDS_RECONNECT, reason=m.Reason.REVOKED
    )
    older = _reconnect_link(world, connection)
    newer = _reconnect_link(world, connection)

    stale = Client().get(older)

    assert stale.status_code == 410
    assert "newer link" in stale.content.decode()
    assert Client().get(newer).status_code == 200
    assert m.ClientLink.objects.get(connection=connection, status="superseded")
    assert len(mail.outbox) == 2


def test_a_recovery_says_the_client_reconnected_only_when_the_client_did(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    broken = ConnectionFactory(
        client=world.client,
        provider_app=world.turnqey,
        platform="gemini",
        status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.REVOKED,
        external_account_id=fake_provider.external_account_id,
    )
    response = adviser_client.post(reverse("connection_reconnect", args=[broken.pk]))
    state = FakeProvider.state_from(response["Location"])
    _callback(
        adviser_client, {"state": state, "identity": "x", "collection": "y", "platform": "gemini", "status": "success"}
    )

    recovered = broken.events.get(kind=m.ConnectionEvent.Kind.RECOVERED)
    assert "client" not in recovered.message
    assert "after the reconnect" in recovered.message
