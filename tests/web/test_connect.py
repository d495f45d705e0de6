"""Connect and reconnect: the source form, the redirect start, and the credential forms."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from connections import models as m
from connections.providers.errors import ProviderError

from .conftest import FakeProvider, World, sha256

SECRET_PASSWORD = "Sup3r-Secret-Passw0rd!"


def _row_counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (m.Connection, m.AuthorizationRequest, m.Credential, m.Account, m.ConnectionEvent, m.ClientLink)
    }


def _connect_url(world: World) -> str:
    return reverse("household_connect", args=[world.household.pk])


def test_connect_form_offers_the_households_clients_and_grouped_platforms(adviser_client: Any, world: World) -> None:
    body = adviser_client.get(_connect_url(world)).content.decode()
    assert "Linh Nguyen" in body
    assert "Ada Okoro" not in body
    assert '<optgroup label="Turnqey">' in body
    assert '<optgroup label="Dapi">' in body
    assert '<label for="id_platform">Platform</label>' in body


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"platform": "coinify", "app": "turnqey"}, "platform", "Turnqey does not connect Coinify"),
        ({"platform": "nowhere", "app": "turnqey"}, "platform", "Select a valid choice"),
        ({"platform": "coinbase", "app": None}, "provider_app", "Select a valid choice"),
        ({"platform": "coinbase", "app": "turnqey", "client": "foreign"}, "client", "Select a valid choice"),
    ],
)
def test_bad_connect_input_gives_a_clear_error_and_changes_nothing(
    adviser_client: Any, world: World, fake_provider: FakeProvider, data: dict, field: str, message: str
) -> None:
    before = _row_counts()
    client = world.foreign_connection.client if data.get("client") == "foreign" else world.client
    post = {
        "client": client.pk,
        "provider_app": getattr(world, data["app"]).pk if data["app"] else 999999,
        "platform": data["platform"],
    }
    response = adviser_client.post(_connect_url(world), post)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert field in response.context["form"].errors
    assert _row_counts() == before
    assert fake_provider.starts == []


def test_redirect_connect_creates_a_pending_connection_and_a_hashed_single_use_state(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    world.household.turnqey_collection = uuid.uuid4()
    world.household.save()
    response = adviser_client.post(
        _connect_url(world), {"client": world.client.pk, "provider_app": world.turnqey.pk, "platform": "gemini"}
    )
    assert response.status_code == 302
    assert response["Location"].startswith("https://provider.test/turnqey/authorize?")
    state = fake_provider.state_from(response["Location"])
    assert len(state) >= 43  # 256 bits, URL-safe
    request = m.AuthorizationRequest.objects.get()
    assert request.state_hash == sha256(state)
    assert state not in str(m.AuthorizationRequest.objects.values().get())
    assert request.started_by == world.adviser
    assert request.household == world.household
    assert request.purpose == "connect"
    assert request.used_at is None
    assert timedelta(minutes=14) < request.expires_at - timezone.now() <= timedelta(minutes=15)
    pending = request.connection
    assert pending.status == m.Status.PENDING
    assert pending.platform == "gemini"
    assert pending.events.get().kind == m.ConnectionEvent.Kind.CREATED
    start = fake_provider.starts[0]
    assert start["grouping"] == {"collection": str(world.household.turnqey_collection)}
    assert start["identity"] == str(world.client.identity)
    # The portal's configured address, not the test client's Host (testserver).
    assert start["redirect_uri"] == f"{settings.PORTAL_BASE_URL}/connect/turnqey/callback/"


def test_starting_twice_reuses_the_unfinished_connection(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    data = {"client": world.client.pk, "provider_app": world.dapi.pk, "platform": "kraken"}
    adviser_client.post(_connect_url(world), data)
    adviser_client.post(_connect_url(world), data)
    assert m.Connection.objects.filter(status=m.Status.PENDING).count() == 1
    assert m.AuthorizationRequest.objects.count() == 2


def test_provider_down_at_start_changes_nothing(adviser_client: Any, world: World, fake_provider: FakeProvider) -> None:
    fake_provider.start_error = ProviderError.transient("Turnqey timed out.")
    before = _row_counts()
    response = adviser_client.post(
        _connect_url(world), {"client": world.client.pk, "provider_app": world.turnqey.pk, "platform": "gemini"}
    )
    assert response.status_code == 502
    assert b"could not start the authorization" in response.content
    assert _row_counts() == before


def _coinify_credentials_url(world: World) -> str:
    response_url = reverse("household_connect_credentials", args=[world.household.pk])
    return f"{response_url}?client={world.client.pk}&provider_app={world.coinify.pk}&platform=coinify"


def test_form_provider_goes_to_its_credential_form(adviser_client: Any, world: World, fake_provider: Any) -> None:
    response = adviser_client.post(
        _connect_url(world), {"client": world.client.pk, "provider_app": world.coinify.pk, "platform": "coinify"}
    )
    assert response.status_code == 302
    page = adviser_client.get(response["Location"])
    assert page.status_code == 200
    body = page.content.decode()
    assert 'type="password" name="password"' in body
    assert 'name="offline_token"' in body
    assert "A password is never stored" in body


def _password_everywhere() -> list[str]:
    """Every place a password could leak into the database."""
    texts: list[str] = []
    for credential in m.Credential.objects.all():
        texts.append(credential.value)
    for event in m.ConnectionEvent.objects.all():
        texts += [event.message, str(event.details)]
    for request in m.AuthorizationRequest.objects.all():
        texts.append(request.outcome_message)
    for connection in m.Connection.objects.all():
        texts += [connection.last_error, str(connection.grouping)]
    return texts


def test_wrong_coinify_password_is_refused_never_echoed_and_changes_nothing(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    before = _row_counts()
    response = adviser_client.post(
        _coinify_credentials_url(world),
        {
            "client": world.client.pk,
            "provider_app": world.coinify.pk,
            "platform": "coinify",
            "email": "linh@example.test",
            "password": "wrong-password",
        },
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert "Coinify did not accept these credentials" in body
    assert "wrong-password" not in body
    assert 'value="linh@example.test"' in body  # the email is kept, the password is not
    assert _row_counts() == before


def test_coinify_password_connects_and_is_stored_nowhere(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    response = adviser_client.post(
        _coinify_credentials_url(world),
        {
            "client": world.client.pk,
            "provider_app": world.coinify.pk,
            "platform": "coinify",
            "email": "linh@example.test",
            "password": SECRET_PASSWORD,
        },
        follow=True,
    )
    assert response.redirect_chain[-1][0] == reverse("household_detail", args=[world.household.pk])
    body = response.content.decode()
    assert "Coinify connected for Linh Nguyen." in body
    assert SECRET_PASSWORD not in body
    connection = m.Connection.objects.get(provider=m.Provider.COINIFY)
    assert connection.status == m.Status.ACTIVE
    assert connection.created_by == world.adviser
    assert list(connection.events.values_list("kind", flat=True).order_by("id")) == ["created", "connected"]
    assert fake_provider.connects == [{"platform": "coinify", "field_names": ["email", "password"]}]
    assert all(SECRET_PASSWORD not in text for text in _password_everywhere())


def test_coinify_offline_token_connects(adviser_client: Any, world: World, fake_provider: FakeProvider) -> None:
    response = adviser_client.post(
        _coinify_credentials_url(world),
        {
            "client": world.client.pk,
            "provider_app": world.coinify.pk,
            "platform": "coinify",
            "offline_token": "offline-token-value",
        },
    )
    assert response.status_code == 302
    assert fake_provider.connects[0]["field_names"] == ["offline_token"]
    assert m.Connection.objects.filter(provider="coinify", status=m.Status.ACTIVE).exists()


def test_incomplete_coinify_credentials_say_what_is_missing(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    before = _row_counts()
    response = adviser_client.post(
        _coinify_credentials_url(world),
        {
            "client": world.client.pk,
            "provider_app": world.coinify.pk,
            "platform": "coinify",
            "email": "linh@example.test",
        },
    )
    assert response.status_code == 400
    assert response.context["credentials_form"].errors
    assert _row_counts() == before


def test_bloquo_key_pair_connects(adviser_client: Any, world: World, fake_provider: FakeProvider) -> None:
    url = reverse("household_connect_credentials", args=[world.household.pk])
    data = {"client": world.client.pk, "provider_app": world.bloquo.pk, "platform": "bloquo"}
    assert adviser_client.get(url, data).status_code == 200
    response = adviser_client.post(url, {**data, "clientId": "key-id", "clientSecret": "key-secret"})
    assert response.status_code == 302
    assert m.Connection.objects.get(provider="bloquo").status == m.Status.ACTIVE


def test_bloquo_missing_secret_is_a_field_error(adviser_client: Any, world: World, fake_provider: Any) -> None:
    url = reverse("household_connect_credentials", args=[world.household.pk])
    data = {"client": world.client.pk, "provider_app": world.bloquo.pk, "platform": "bloquo", "clientId": "key-id"}
    before = _row_counts()
    response = adviser_client.post(url, data)
    assert response.status_code == 400
    assert "clientSecret" in response.context["credentials_form"].errors
    assert _row_counts() == before


def test_credentials_page_refuses_a_redirect_provider(adviser_client: Any, world: World, fake_provider: Any) -> None:
    url = reverse("household_connect_credentials", args=[world.household.pk])
    response = adviser_client.get(
        url, {"client": world.client.pk, "provider_app": world.turnqey.pk, "platform": "coinbase"}
    )
    assert response.status_code == 400


def test_reconnect_page_for_a_redirect_provider_starts_the_flow_on_post(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    url = reverse("connection_reconnect", args=[world.connection.pk])
    page = adviser_client.get(url)
    assert b"Continue to Turnqey" in page.content
    assert m.AuthorizationRequest.objects.count() == 0
    response = adviser_client.post(url)
    assert response.status_code == 302
    request = m.AuthorizationRequest.objects.get()
    assert request.purpose == "reconnect"
    assert request.connection == world.connection
    assert m.Connection.objects.count() == 3  # no new row for a reconnect


def test_reconnect_with_credentials_of_another_account_is_refused(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    from tests.factories import ConnectionFactory

    connection = ConnectionFactory(
        client=world.client,
        provider_app=world.coinify,
        platform="coinify",
        status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.EXPIRED,
        external_account_id="the-original-account",
    )
    fake_provider.external_account_id = "someone-else"
    response = adviser_client.post(
        reverse("connection_reconnect", args=[connection.pk]),
        {"email": "other@example.test", "password": SECRET_PASSWORD},
    )
    assert response.status_code == 400
    assert "belong to a different Coinify account" in response.content.decode()
    assert SECRET_PASSWORD not in response.content.decode()
    connection.refresh_from_db()
    assert connection.status == m.Status.NEEDS_RECONNECT
    assert connection.external_account_id == "the-original-account"
    assert connection.events.filter(kind=m.ConnectionEvent.Kind.RECONNECT_REFUSED).exists()


def test_reconnect_with_the_same_account_recovers(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    from tests.factories import ConnectionFactory

    connection = ConnectionFactory(
        client=world.client,
        provider_app=world.coinify,
        platform="coinify",
        status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.EXPIRED,
        external_account_id="source-account-1",
    )
    response = adviser_client.post(
        reverse("connection_reconnect", args=[connection.pk]),
        {"email": "linh@example.test", "password": SECRET_PASSWORD},
        follow=True,
    )
    assert "Coinify reconnected for Linh Nguyen." in response.content.decode()
    connection.refresh_from_db()
    assert connection.status == m.Status.ACTIVE
    assert set(connection.events.values_list("kind", flat=True)) >= {"reconnected", "recovered"}


@pytest.mark.parametrize(
    ("debug", "on_sandbox", "linked"), [(True, True, True), (True, False, False), (False, True, False)]
)
def test_a_sandbox_apps_credential_form_links_to_the_sandbox_sign_ins_in_development_only(
    adviser_client: Any, world: World, fake_provider: Any, settings: Any, debug: bool, on_sandbox: bool, linked: bool
) -> None:
    settings.DEBUG = debug
    if on_sandbox:
        world.coinify.base_url = f"{settings.SANDBOX_BASE_URL}/coinify"
        world.coinify.save()
    started = adviser_client.post(
        _connect_url(world), {"client": world.client.pk, "provider_app": world.coinify.pk, "platform": "coinify"}
    )

    body = adviser_client.get(started["Location"]).content.decode()

    hints = f'href="{settings.SANDBOX_BASE_URL}/_hints/?provider=coinify"'
    assert (hints in body) is linked
