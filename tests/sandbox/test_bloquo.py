"""Bloquo simulator: the doc's token request, accounting endpoints, staging and production apart."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import requests
from django.test import Client

from tests.sandbox_client import control_headers

from .conftest import ControlClient, assert_same_shape, doc_example

EXAMPLES = doc_example("bloquo.json")
STAGING = "/sandbox/bloquo/api/v1"
DOC_KEY_PAIR = {
    "client_id": EXAMPLES["token_request"]["clientId"],
    "client_secret": EXAMPLES["token_request"]["clientSecret"],
}
PRODUCTION = "/sandbox/bloquo-production/api/v1"


def token_request(client: Client, base: str, body: Any) -> Any:
    return client.post(f"{base}/auth/token", data=json.dumps(body), content_type="application/json")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def documented_customer(control: ControlClient) -> dict[str, Any]:
    """A staging key pair holding exactly the doc's sample credentials."""
    return control.post("subjects", {"provider": "bloquo", **DOC_KEY_PAIR}, expect=201)


def test_token_request_as_documented_answers_the_documented_reply(client: Client, documented_customer: dict) -> None:
    response = token_request(client, STAGING, EXAMPLES["token_request"])

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert_same_shape(body, EXAMPLES["token_response"])
    assert body["expiresIn"] == 3600
    assert body["tokenType"] == "Bearer"
    assert body["status"] is True


def test_customer_and_accounts_answer_with_the_bearer_token(client: Client, documented_customer: dict) -> None:
    token = token_request(client, STAGING, EXAMPLES["token_request"]).json()["accessToken"]

    customer = client.get(f"{STAGING}/accounting/customer", headers=bearer(token))
    accounts = client.get(f"{STAGING}/accounting/accounts", headers=bearer(token))

    assert customer.status_code == 200
    assert_same_shape(customer.json(), EXAMPLES["customer_response"])
    assert customer.json()["data"]["id"] == documented_customer["customer_id"]
    assert accounts.status_code == 200
    assert_same_shape(accounts.json(), EXAMPLES["accounts_response"])
    kinds = {a["type"] for a in accounts.json()["data"]}
    assert kinds == {"CRYPTO", "FIAT"}
    for account in accounts.json()["data"]:
        places = 2 if account["type"] == "FIAT" else 8
        assert re.match(rf"^\d+\.\d{{{places}}}$", account["balance"])


@pytest.mark.usefixtures("documented_customer")
@pytest.mark.parametrize("body", [{"clientId": "your_client_id"}, {"clientSecret": "x"}, {}, "text"])
def test_a_token_request_without_both_fields_is_400(client: Client, body: Any) -> None:
    response = token_request(client, STAGING, body)

    assert response.status_code == 400
    assert response.json() == {"status": False, "message": "clientId and clientSecret are required."}


@pytest.mark.usefixtures("documented_customer")
@pytest.mark.parametrize(
    "body", [{"clientId": "your_client_id", "clientSecret": "wrong"}, {"clientId": "nobody", "clientSecret": "x"}]
)
def test_wrong_credentials_are_401(client: Client, body: dict[str, str]) -> None:
    response = token_request(client, STAGING, body)

    assert response.status_code == 401
    assert response.json() == {"status": False, "message": "Invalid client credentials."}


def test_a_revoked_key_pair_is_403_and_its_tokens_stop_working(
    client: Client, control: ControlClient, documented_customer: dict
) -> None:
    token = token_request(client, STAGING, EXAMPLES["token_request"]).json()["accessToken"]

    control.post(
        "actions", {"provider": "bloquo", "action": "revoke", "customer_id": documented_customer["customer_id"]}
    )

    refused = token_request(client, STAGING, EXAMPLES["token_request"])
    assert refused.status_code == 403
    assert refused.json() == {"status": False, "message": "API key has been revoked."}
    stale = client.get(f"{STAGING}/accounting/accounts", headers=bearer(token))
    assert stale.status_code == 401
    assert stale.json() == {"status": False, "message": "Token expired or invalid."}

    control.post(
        "actions", {"provider": "bloquo", "action": "restore", "customer_id": documented_customer["customer_id"]}
    )
    assert token_request(client, STAGING, EXAMPLES["token_request"]).status_code == 200


def test_an_expired_token_is_401_and_a_new_one_works(
    client: Client, control: ControlClient, documented_customer: dict
) -> None:
    token = token_request(client, STAGING, EXAMPLES["token_request"]).json()["accessToken"]

    control.post(
        "actions", {"provider": "bloquo", "action": "expire", "customer_id": documented_customer["customer_id"]}
    )

    assert client.get(f"{STAGING}/accounting/accounts", headers=bearer(token)).status_code == 401
    fresh = token_request(client, STAGING, EXAMPLES["token_request"]).json()["accessToken"]
    assert client.get(f"{STAGING}/accounting/accounts", headers=bearer(fresh)).status_code == 200


@pytest.mark.usefixtures("documented_customer")
def test_staging_credentials_and_tokens_are_unknown_to_production(client: Client) -> None:
    assert token_request(client, PRODUCTION, EXAMPLES["token_request"]).status_code == 401
    token = token_request(client, STAGING, EXAMPLES["token_request"]).json()["accessToken"]

    assert client.get(f"{PRODUCTION}/accounting/customer", headers=bearer(token)).status_code == 401


@pytest.mark.usefixtures("documented_customer")
def test_production_has_its_own_key_pairs_and_lifetimes(client: Client, control: ControlClient) -> None:
    production = control.post("subjects", {"provider": "bloquo-production"}, expect=201)
    control.post("lifetimes", {"provider": "bloquo-production", "access": 60})

    reply = token_request(
        client, PRODUCTION, {"clientId": production["client_id"], "clientSecret": production["client_secret"]}
    ).json()

    assert reply["expiresIn"] == 60
    assert token_request(client, STAGING, EXAMPLES["token_request"]).json()["expiresIn"] == 3600
    customer = client.get(f"{PRODUCTION}/accounting/customer", headers=bearer(reply["accessToken"])).json()
    assert customer["data"]["id"] == production["customer_id"]


@pytest.mark.usefixtures("documented_customer")
@pytest.mark.parametrize("path", ["customer", "accounts"])
def test_accounting_without_a_token_is_401(client: Client, path: str) -> None:
    response = client.get(f"{STAGING}/accounting/{path}")

    assert response.status_code == 401
    assert response.json() == {"status": False, "message": "Token expired or invalid."}


@pytest.mark.django_db(transaction=True)
def test_bloquo_token_and_accounts_over_http(live_server: Any) -> None:
    base = live_server.url + "/sandbox"
    created = requests.post(
        base + "/_control/subjects", json={"provider": "bloquo", **DOC_KEY_PAIR}, headers=control_headers(), timeout=10
    )
    assert created.status_code == 201

    token = requests.post(base + "/bloquo/api/v1/auth/token", json=EXAMPLES["token_request"], timeout=10)
    assert token.status_code == 200
    assert_same_shape(token.json(), EXAMPLES["token_response"])
    accounts = requests.get(
        base + "/bloquo/api/v1/accounting/accounts", headers=bearer(token.json()["accessToken"]), timeout=10
    )
    assert accounts.status_code == 200
    assert_same_shape(accounts.json(), EXAMPLES["accounts_response"])
