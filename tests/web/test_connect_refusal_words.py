"""A connect the provider refuses is told in words for whoever reads it: the client on their link, the adviser."""

from __future__ import annotations

import html
from typing import Any

from django.test import Client
from django.urls import reverse

from connections import models as m
from connections import services
from connections.providers.errors import FailureReason, ProviderError
from tests.factories import ConnectionFactory

from .conftest import FakeProvider, World

# Bloquo's own words for a revoked key: written for the adviser, wrong in front of the client.
BLOQUO_REVOKED = ProviderError.reauth(
    FailureReason.REVOKED, "Bloquo: the API key has been revoked. Ask the client to reconnect."
)
REVOKED_SENTENCE = "Bloquo: these credentials have been revoked, so nothing was connected."
KEY_PAIR = {"clientId": "key-id", "clientSecret": "key-secret"}


def _page_text(response: Any) -> str:
    return html.unescape(response.content.decode())


def test_a_client_whose_bloquo_key_was_revoked_is_told_once_and_never_to_ask_the_client(
    world: World, fake_provider: FakeProvider
) -> None:
    connection = ConnectionFactory(
        client=world.client,
        provider_app=world.bloquo,
        platform="bloquo",
        status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.REVOKED,
        external_account_id=fake_provider.external_account_id,
    )
    created = services.client_link_create(
        household=world.household, client=world.client, connection=connection, user=world.adviser
    )
    path = "/" + created.url.split("/", 3)[3]
    fake_provider.connect_error = BLOQUO_REVOKED
    browser = Client()
    assert browser.get(path).status_code == 200

    page = _page_text(browser.post(path, KEY_PAIR))

    assert fake_provider.connects, "the form reached the provider"
    assert page.count(REVOKED_SENTENCE) == 1
    assert "Start again with new ones." in page
    assert "ask the client" not in page.lower()
    assert "refused access (" not in page


def test_an_adviser_whose_bloquo_key_was_revoked_is_told_to_get_new_credentials_from_the_client(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    fake_provider.connect_error = BLOQUO_REVOKED
    url = reverse("household_connect_credentials", args=[world.household.pk])
    data = {"client": world.client.pk, "provider_app": world.bloquo.pk, "platform": "bloquo", **KEY_PAIR}

    page = _page_text(adviser_client.post(url, data))

    assert page.count(REVOKED_SENTENCE) == 1
    assert "Start again with new ones from the client." in page
    assert "refused access (" not in page
    assert not m.Connection.objects.filter(provider="bloquo").exists()
