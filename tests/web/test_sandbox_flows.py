"""Connect through the real provider clients against the sandbox served by the live server.

The portal side is driven with Django's test client (in process); the provider
clients make real HTTP calls to the sandbox mounted in the live server. This is
what the fakes in the other tests stand in for.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from django.urls import reverse

from connections import models as m
from tests.factories import ClientFactory, FirmFactory, HouseholdFactory, MembershipFactory, ProviderAppFactory
from tests.sandbox_client import control_headers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_provider_http")]


def _control(base: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{base}/sandbox/_control/{path}", json=payload, headers=control_headers(), timeout=10)
    assert response.status_code in {200, 201}, response.text
    return response.json()


@pytest.fixture
def household(live_server: Any, client: Any) -> m.Household:
    firm = FirmFactory(name="Harbour Wealth")
    adviser = MembershipFactory(firm=firm).user
    household = HouseholdFactory(firm=firm, name="Nguyen Household", advisers=[adviser])
    ClientFactory(household=household, name="Linh Nguyen", email="linh@example.test")
    client.force_login(adviser)
    return household


def _credentials(household: m.Household, app: m.ProviderApp, platform: str) -> tuple[str, dict[str, Any]]:
    url = reverse("household_connect_credentials", args=[household.pk])
    return url, {"client": household.clients.get().pk, "provider_app": app.pk, "platform": platform}


def test_coinify_password_connects_through_the_sandbox_and_checks(
    live_server: Any, client: Any, household: m.Household
) -> None:
    app = ProviderAppFactory(
        provider="coinify", name="sandbox", base_url=f"{live_server.url}/sandbox/coinify", client_id="partner-web"
    )
    subject = {"provider": "coinify", "email": "linh@example.test", "password": "Sandbox-Pass-1"}
    _control(live_server.url, "subjects", {**subject, "partner_id": "partner-web"})
    url, source = _credentials(household, app, "coinify")
    wrong = client.post(url, {**source, "email": "linh@example.test", "password": "not-her-password"})
    assert wrong.status_code == 400
    assert "did not accept these credentials" in wrong.content.decode()
    assert not m.Connection.objects.exists()

    right = client.post(url, {**source, "email": "linh@example.test", "password": "Sandbox-Pass-1"})
    assert right.status_code == 302
    connection = m.Connection.objects.get()
    assert connection.status == m.Status.ACTIVE
    assert set(connection.credentials.values_list("kind", flat=True)) >= {"access", "refresh"}
    assert all("Sandbox-Pass-1" not in c.value for c in connection.credentials.all())
    assert connection.reconnect_by is not None  # the refresh token's end of life, shown as a deadline

    checked = client.post(reverse("connection_check", args=[connection.pk]), HTTP_HX_REQUEST="true")
    assert checked.status_code == 200
    assert "Checked just now. Coinify: connected and up to date." in checked.content.decode()


def test_bloquo_key_pair_connects_through_the_sandbox(live_server: Any, client: Any, household: m.Household) -> None:
    app = ProviderAppFactory(provider="bloquo", name="sandbox", base_url=f"{live_server.url}/sandbox/bloquo")
    keys = _control(live_server.url, "subjects", {"provider": "bloquo"})
    url, source = _credentials(household, app, "bloquo")
    wrong = client.post(url, {**source, "clientId": keys["client_id"], "clientSecret": "wrong"})
    assert wrong.status_code == 400
    assert not m.Connection.objects.exists()
    right = client.post(url, {**source, "clientId": keys["client_id"], "clientSecret": keys["client_secret"]})
    assert right.status_code == 302
    connection = m.Connection.objects.get()
    assert connection.status == m.Status.ACTIVE
    assert connection.external_account_id == keys["customer_id"]
    assert connection.accounts.exists()
