"""Sign-in hints: in development the sandbox says who can sign in, so a demo needs no command line.

Nothing secret is repeated: a password is named only when it is a development
password that works, and a Bloquo secret or a Coinify offline token is issued
afresh and shown once, as the provider's own account page would. With DEBUG
off there is no hint anywhere.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

from connections.demo.world import DEMO_PASSWORD

from .conftest import COINIFY_PARTNER, ControlClient
from .test_dapi import connect, connect_url
from .test_turnqey import approve, authorize_query, authorize_url

HINTS_URL = "/sandbox/_hints/"


@pytest.fixture
def development(settings: Any) -> None:
    settings.DEBUG = True
    settings.SANDBOX_SIGN_IN_HINTS = True
    settings.SANDBOX_HINT_PASSWORDS = [DEMO_PASSWORD]


def _issued_secret(page: str) -> str:
    found = re.search(r'<dt>(?:Client secret|Offline token)</dt><dd><code class="secret">([^<]+)</code>', page)
    assert found is not None, page
    return found.group(1)


@pytest.mark.usefixtures("development")
def test_coinify_users_are_listed_with_the_development_password_only_where_it_works(
    client: Client, control: ControlClient
) -> None:
    control.post("subjects", {"provider": "coinify", "partner_id": COINIFY_PARTNER, "email": "ann@example.test",
                              "password": DEMO_PASSWORD}, expect=201)  # fmt: skip
    control.post("subjects", {"provider": "coinify", "partner_id": COINIFY_PARTNER, "email": "bo@example.test",
                              "password": "a-password-of-bos-own"}, expect=201)  # fmt: skip

    page = client.get(HINTS_URL).content.decode()

    ann = page[page.index("ann@example.test") : page.index("bo@example.test")]
    assert DEMO_PASSWORD in ann
    assert "a-password-of-bos-own" not in page
    assert "not a development password" in page[page.index("bo@example.test") :]


@pytest.mark.usefixtures("development")
def test_a_new_bloquo_secret_issued_here_signs_in_and_the_old_one_stops(client: Client, control: ControlClient) -> None:
    old = control.post(
        "subjects", {"provider": "bloquo", "name": "Ada Okafor", "email": "ada@example.test"}, expect=201
    )
    control.post("actions", {"provider": "bloquo", "action": "revoke", "customer_id": old["customer_id"]})

    page = client.get(HINTS_URL + "?provider=bloquo").content.decode()
    assert "Ada Okafor" in page
    assert old["client_id"] in page
    assert "revoked" in page
    assert old["client_secret"] not in page

    issued = client.post(HINTS_URL, {"action": "bloquo-secret", "mount": "bloquo", "customer_id": old["customer_id"]})
    assert issued.status_code == 200
    assert issued["Cache-Control"].startswith("max-age=0")
    secret = _issued_secret(issued.content.decode())

    def token(client_secret: str) -> int:
        return client.post(
            "/sandbox/bloquo/api/v1/auth/token",
            data=json.dumps({"clientId": old["client_id"], "clientSecret": client_secret}),
            content_type="application/json",
        ).status_code

    assert token(secret) == 200  # the revoked key works again with its new secret: a reconnect of the same customer
    assert token(old["client_secret"]) != 200
    assert secret not in client.get(HINTS_URL).content.decode()  # shown once


@pytest.mark.usefixtures("development")
def test_a_coinify_offline_token_issued_here_signs_in(client: Client, coinify_user: dict[str, Any]) -> None:
    user_id = re.search(r'name="user_id" value="(\d+)"', client.get(HINTS_URL).content.decode())
    assert user_id is not None

    token = _issued_secret(
        client.post(HINTS_URL, {"action": "coinify-offline", "user_id": user_id.group(1)}).content.decode()
    )

    signed_in = client.post(
        "/sandbox/coinify/auth",
        data={"grant_type": "offline_token", "offline_token": token},
        content_type="application/json",
        headers={"X-Coinify-Partner-Id": COINIFY_PARTNER},
    )
    assert signed_in.status_code == 200, signed_in.content


@pytest.mark.usefixtures("development", "dapi_app")
def test_dapis_sign_in_page_lists_who_signed_in_before(client: Client) -> None:
    assert "Nobody has signed in here yet" in client.get(connect_url()).content.decode()
    connect(client, "layla@example.test")

    page = client.get(connect_url()).content.decode()

    assert "<code>layla@example.test</code>" in page
    assert 'href="/sandbox/_hints/"' in page


@pytest.mark.usefixtures("development", "turnqey_app")
def test_turnqeys_consent_page_lists_the_usernames_this_identity_used_before(client: Client) -> None:
    approve(client, username="okafor-coinbase")

    page = client.get(authorize_url(authorize_query())).content.decode()

    assert "<code>okafor-coinbase</code>" in page
    other_platform = client.get(authorize_url(authorize_query(platform="kraken"))).content.decode()
    assert "okafor-coinbase" not in other_platform


@pytest.mark.usefixtures("dapi_app", "turnqey_app")
def test_with_debug_off_there_are_no_hints_anywhere(client: Client, control: ControlClient, settings: Any) -> None:
    settings.DEBUG = False
    connect(client, "layla@example.test")

    assert client.get(HINTS_URL).status_code == 404
    assert client.post(HINTS_URL, {"action": "coinify-offline", "user_id": "1"}).status_code == 404
    assert "Sandbox sign-ins" not in client.get(connect_url()).content.decode()
    assert "Sandbox sign-ins" not in client.get(authorize_url(authorize_query())).content.decode()


@pytest.mark.usefixtures("development", "db")
def test_issuing_for_someone_who_does_not_exist_says_so(client: Client) -> None:
    response = client.post(HINTS_URL, {"action": "bloquo-secret", "mount": "bloquo", "customer_id": "cus_nobody"})
    assert response.status_code == 404
    assert "No such Bloquo customer." in response.content.decode()
    assert client.post(HINTS_URL, {"action": "coinify-offline", "user_id": "x"}).status_code == 400


@pytest.mark.usefixtures("development")
def test_each_issued_secret_and_mount_is_named_as_its_provider_names_it(
    client: Client, control: ControlClient, coinify_user: dict[str, Any]
) -> None:
    staging = control.post("subjects", {"provider": "bloquo", "name": "Ada Okafor"}, expect=201)
    control.post("subjects", {"provider": "bloquo-production", "name": "Ben Live"}, expect=201)
    bloquo_page = client.get(HINTS_URL + "?provider=bloquo").content.decode()
    user_id = re.search(r'name="user_id" value="(\d+)"', client.get(HINTS_URL).content.decode())
    assert user_id is not None

    key_pair = client.post(
        HINTS_URL, {"action": "bloquo-secret", "mount": "bloquo", "customer_id": staging["customer_id"]}
    )
    offline = client.post(HINTS_URL, {"action": "coinify-offline", "user_id": user_id.group(1)})

    assert re.search(r'Ben Live <span class="muted">[^<]* · production', bloquo_page)
    assert not re.search(r'Ada Okafor <span class="muted">[^<]* · production', bloquo_page)
    assert "New key pair for Ada Okafor" in key_pair.content.decode()
    assert "<dt>Client secret</dt>" in key_pair.content.decode()
    assert "New offline token for" in offline.content.decode()
    assert "<dt>Offline token</dt>" in offline.content.decode()
