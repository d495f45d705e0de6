"""Turnqey simulator: the doc's token requests and replies, the authorize flow, accounts."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from django.test import Client

from sandbox import clock
from tests.sandbox_client import control_headers

from .conftest import TURNQEY_CLIENT, ControlClient, assert_same_shape, doc_example, turnqey_checksum

TOKEN_URL = "/sandbox/turnqey/v1/api/token"
DOC_HEADERS = {
    "accept": "application/json",
    "clientId": TURNQEY_CLIENT["client_id"],
    "clientSecret": TURNQEY_CLIENT["client_secret"],
}
EXPIRES_ON = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}[+-]\d\d:\d\d$")


def authorize_query(**overrides: str) -> dict[str, str]:
    params = {
        "client": TURNQEY_CLIENT["client_id"],
        "platform": "coinbase",
        "identity": "partner-user-1",
        "state": "st-123",
    }
    params.update(overrides)
    params = {k: v for k, v in params.items() if v is not None}
    params["checksum"] = turnqey_checksum(TURNQEY_CLIENT["client_secret"], params)
    return params


def authorize_url(params: dict[str, str]) -> str:
    return "/sandbox/turnqey/authorize?" + urlencode(params)


def redirect_params(response: Any) -> dict[str, str]:
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == TURNQEY_CLIENT["redirect_uri"]
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def approve(client: Client, *, username: str | None = None, **overrides: str) -> dict[str, str]:
    data = {"decision": "approve"}
    if username is not None:
        data["username"] = username
    return redirect_params(client.post(authorize_url(authorize_query(**overrides)), data))


def app_token(client: Client) -> str:
    return client.post(TOKEN_URL, headers=DOC_HEADERS).json()["result"]["token"]


# --- App token: the doc's examples --------------------------------------------


@pytest.mark.usefixtures("turnqey_app")
def test_token_post_with_the_documented_headers_answers_the_documented_envelope(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = datetime(2024, 6, 14, 7, 59, 36, 828778, tzinfo=UTC)
    monkeypatch.setattr(clock, "now", lambda: issued)

    response = client.post(TOKEN_URL, headers=DOC_HEADERS)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert_same_shape(body, doc_example("turnqey_token_success.json"))
    assert body["statusCode"] == 200
    assert body["message"] == "POST Request successful."
    assert body["isError"] is False
    assert body["result"]["expiresIn"] == 3599
    # One hour after issue, in the doc's format: 7 fractional digits and +05:30.
    assert EXPIRES_ON.match(body["result"]["expiresOn"])
    assert body["result"]["expiresOn"].startswith("2024-06-14T14:29:36.828778")
    assert body["result"]["expiresOn"].endswith("+05:30")
    assert datetime.fromisoformat(body["result"]["expiresOn"]) == issued + timedelta(hours=1)
    assert body["result"]["token"].count(".") == 2  # shaped like the doc's JWT


@pytest.mark.usefixtures("turnqey_app")
def test_token_get_as_in_the_doc_curl_example_is_accepted(client: Client) -> None:
    response = client.get(TOKEN_URL, headers=DOC_HEADERS)

    assert response.status_code == 200
    body = response.json()
    assert_same_shape(body, doc_example("turnqey_token_success.json"))
    assert body["message"] == "GET Request successful."


@pytest.mark.usefixtures("turnqey_app")
def test_token_without_credentials_answers_the_documented_validation_envelope(client: Client) -> None:
    response = client.post(TOKEN_URL, headers={"accept": "application/json"})

    assert response.status_code == 400
    body = response.json()
    documented = doc_example("turnqey_token_validation_error.json")
    assert_same_shape(body, documented)
    message = body["responseException"]["exceptionMessage"]
    assert body["statusCode"] == 400
    assert body["isError"] is True
    assert message["type"] == documented["responseException"]["exceptionMessage"]["type"]
    assert message["title"] == "One or more validation errors occurred."
    assert message["status"] == 400
    assert message["errors"] == documented["responseException"]["exceptionMessage"]["errors"]
    assert re.match(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-00$", message["traceId"])


@pytest.mark.usefixtures("turnqey_app")
def test_token_validation_envelope_lists_only_the_missing_header(client: Client) -> None:
    response = client.post(TOKEN_URL, headers={"accept": "application/json", "clientId": "tq-client"})

    assert response.status_code == 400
    assert response.json()["responseException"]["exceptionMessage"]["errors"] == {
        "ClientSecret": ["The ClientSecret field is required."]
    }


@pytest.mark.usefixtures("turnqey_app")
@pytest.mark.parametrize(("client_id", "secret"), [("tq-client", "wrong"), ("unknown", "tq-secret")])
def test_token_with_bad_credentials_is_401_invalid_client_credentials(
    client: Client, client_id: str, secret: str
) -> None:
    response = client.post(
        TOKEN_URL, headers={"accept": "application/json", "clientId": client_id, "clientSecret": secret}
    )

    assert response.status_code == 401
    assert response.json() == {
        "statusCode": 401,
        "isError": True,
        "responseException": {"exceptionMessage": "Invalid client credentials."},
    }


@pytest.mark.django_db(transaction=True)
def test_token_over_http_answers_post_and_the_doc_curl_get(live_server: Any) -> None:
    base = live_server.url + "/sandbox"
    registered = requests.post(
        base + "/_control/apps", json={"provider": "turnqey", **TURNQEY_CLIENT}, headers=control_headers(), timeout=10
    )
    assert registered.status_code == 201

    for method, message in (("POST", "POST Request successful."), ("GET", "GET Request successful.")):
        response = requests.request(method, base + "/turnqey/v1/api/token", headers=DOC_HEADERS, timeout=10)
        assert response.status_code == 200
        body = response.json()
        assert_same_shape(body, doc_example("turnqey_token_success.json"))
        assert body["message"] == message
        assert EXPIRES_ON.match(body["result"]["expiresOn"])

    missing = requests.post(base + "/turnqey/v1/api/token", headers={"accept": "application/json"}, timeout=10)
    assert missing.status_code == 400
    assert set(missing.json()["responseException"]["exceptionMessage"]["errors"]) == {"ClientId", "ClientSecret"}


# --- Authorize and consent -----------------------------------------------------


@pytest.mark.usefixtures("turnqey_app")
def test_consent_page_is_at_the_source_platform_with_read_only_notice_and_choices(client: Client) -> None:
    response = client.get(authorize_url(authorize_query()))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Sign in to Coinbase" in html
    assert "read-only" in html
    assert 'name="username"' in html
    assert 'value="approve"' in html
    assert ">Approve<" in html
    assert 'value="deny"' in html
    assert ">Deny<" in html
    assert "csrfmiddlewaretoken" in html
    assert TURNQEY_CLIENT["client_secret"] not in html


@pytest.mark.usefixtures("turnqey_app")
def test_consent_page_lets_its_form_redirect_to_the_registered_origin(client: Client) -> None:
    response = client.get(authorize_url(authorize_query()))

    policy = response["Content-Security-Policy"]
    form_action = next(part for part in policy.split(";") if "form-action" in part)
    assert "https://portal.test" in form_action


@pytest.mark.usefixtures("turnqey_app")
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({**authorize_query(), "checksum": "0" * 64}, "checksum"),
        ({**authorize_query(), "identity": "someone-else"}, "checksum"),
        ({**authorize_query(), "client": "unknown"}, "Unknown client"),
        ({k: v for k, v in authorize_query().items() if k != "identity"}, "identity"),
    ],
)
def test_a_bad_authorize_request_shows_a_400_page_and_does_not_redirect(
    client: Client, params: dict[str, str], message: str
) -> None:
    response = client.get(authorize_url(params))

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    assert message in response.content.decode()


@pytest.mark.usefixtures("turnqey_app")
def test_approving_without_a_collection_creates_one_and_redirects_with_success(client: Client) -> None:
    params = approve(client)

    assert set(params) == {"state", "identity", "collection", "platform", "status"}
    assert params["state"] == "st-123"
    assert params["identity"] == "partner-user-1"
    assert params["platform"] == "coinbase"
    assert params["status"] == "success"
    uuid.UUID(params["collection"])


@pytest.mark.usefixtures("turnqey_app")
def test_approving_with_a_collection_joins_it(client: Client) -> None:
    household = approve(client)["collection"]

    params = approve(client, platform="gemini", collection=household)

    assert params["collection"] == household
    assert params["status"] == "success"


@pytest.mark.usefixtures("turnqey_app")
def test_denying_redirects_with_denied_and_a_description(client: Client) -> None:
    params = redirect_params(client.post(authorize_url(authorize_query()), {"decision": "deny"}))

    assert params["status"] == "denied"
    assert params["state"] == "st-123"
    assert params["identity"] == "partner-user-1"
    assert params["platform"] == "coinbase"
    assert "denied" in params["error_description"]
    assert "collection" not in params


@pytest.mark.usefixtures("turnqey_app")
def test_a_platform_failure_redirects_with_status_error(client: Client) -> None:
    params = redirect_params(client.post(authorize_url(authorize_query()), {"decision": "error"}))

    assert params["status"] == "error"
    assert params["error_description"]


@pytest.mark.usefixtures("turnqey_app")
def test_approving_a_tampered_request_is_refused(client: Client) -> None:
    params = {**authorize_query(), "identity": "partner-user-2"}

    response = client.post(authorize_url(params), {"decision": "approve"})

    assert response.status_code == 400


@pytest.mark.usefixtures("turnqey_app")
def test_consent_form_requires_its_csrf_token(db: None) -> None:
    strict = Client(enforce_csrf_checks=True)

    response = strict.post(authorize_url(authorize_query()), {"decision": "approve"})

    assert response.status_code == 403


# --- Accounts -------------------------------------------------------------------


@pytest.mark.usefixtures("turnqey_app")
def test_collection_accounts_answer_the_envelope_with_active_accounts(client: Client) -> None:
    collection = approve(client)["collection"]

    response = client.get(
        f"/sandbox/turnqey/v1/api/collections/{collection}/accounts",
        headers={"Authorization": f"Bearer {app_token(client)}"},
    )

    assert response.status_code == 200
    body = response.json()
    assert_same_shape(body, doc_example("turnqey_accounts.json"))
    assert body["message"] == "GET Request successful."
    accounts = body["result"]["accounts"]
    assert 2 <= len(accounts) <= 3
    for account in accounts:
        assert account["collection"] == collection
        assert account["identity"] == "partner-user-1"
        assert account["platform"] == "coinbase"
        assert account["status"] == "active"
        assert Decimal(account["balance"]) > 0
        assert re.match(r"^\d+\.\d{8}$", account["balance"])


@pytest.mark.usefixtures("turnqey_app")
def test_identity_accounts_cover_every_platform_of_the_identity(client: Client) -> None:
    approve(client)
    approve(client, platform="gemini")

    body = client.get(
        "/sandbox/turnqey/v1/api/identities/partner-user-1/accounts",
        headers={"Authorization": f"Bearer {app_token(client)}"},
    ).json()

    assert {a["platform"] for a in body["result"]["accounts"]} == {"coinbase", "gemini"}


@pytest.mark.usefixtures("turnqey_app")
def test_balances_are_deterministic_per_source_account(client: Client) -> None:
    collection = approve(client)["collection"]
    url = f"/sandbox/turnqey/v1/api/collections/{collection}/accounts"

    first = client.get(url, headers={"Authorization": f"Bearer {app_token(client)}"}).json()
    second = client.get(url, headers={"Authorization": f"Bearer {app_token(client)}"}).json()

    assert first["result"]["accounts"] == second["result"]["accounts"]


@pytest.mark.usefixtures("turnqey_app")
def test_source_account_id_is_stable_for_the_same_user_and_changes_for_another(client: Client) -> None:
    def source_account(collection: str) -> str:
        body = client.get(
            f"/sandbox/turnqey/v1/api/collections/{collection}/accounts",
            headers={"Authorization": f"Bearer {app_token(client)}"},
        ).json()
        return {a["sourceAccountId"] for a in body["result"]["accounts"]}.pop()

    collection = approve(client, username="alice")["collection"]
    original = source_account(collection)
    approve(client, username="alice", collection=collection)
    assert source_account(collection) == original

    approve(client, username="mallory", collection=collection)
    assert source_account(collection) != original


@pytest.mark.usefixtures("turnqey_app")
@pytest.mark.parametrize(("action", "status"), [("revoke", "revoked"), ("expire", "expired"), ("restore", "active")])
def test_acting_on_an_authorization_flips_its_accounts_status(
    client: Client, control: ControlClient, action: str, status: str
) -> None:
    collection = approve(client)["collection"]
    if action == "restore":
        control.post(
            "actions", {"provider": "turnqey", "action": "revoke", "identity": "partner-user-1", "platform": "coinbase"}
        )

    reply = control.post(
        "actions", {"provider": "turnqey", "action": action, "identity": "partner-user-1", "platform": "coinbase"}
    )

    assert reply == {"provider": "turnqey", "action": action, "affected": 1}
    body = client.get(
        f"/sandbox/turnqey/v1/api/collections/{collection}/accounts",
        headers={"Authorization": f"Bearer {app_token(client)}"},
    ).json()
    assert {a["status"] for a in body["result"]["accounts"]} == {status}


@pytest.mark.usefixtures("turnqey_app")
def test_revoking_by_source_account_id_reaches_the_same_authorization(client: Client, control: ControlClient) -> None:
    collection = approve(client)["collection"]
    url = f"/sandbox/turnqey/v1/api/collections/{collection}/accounts"
    source = client.get(url, headers={"Authorization": f"Bearer {app_token(client)}"}).json()["result"]["accounts"][0][
        "sourceAccountId"
    ]

    control.post("actions", {"provider": "turnqey", "action": "revoke", "source_account_id": source})

    body = client.get(url, headers={"Authorization": f"Bearer {app_token(client)}"}).json()
    assert {a["status"] for a in body["result"]["accounts"]} == {"revoked"}


@pytest.mark.usefixtures("turnqey_app")
@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic abc"])
def test_accounts_without_a_valid_app_token_are_401(client: Client, authorization: str | None) -> None:
    collection = approve(client)["collection"]
    headers = {"Authorization": authorization} if authorization else {}

    response = client.get(f"/sandbox/turnqey/v1/api/collections/{collection}/accounts", headers=headers)

    assert response.status_code == 401
    assert response.json() == {
        "statusCode": 401,
        "isError": True,
        "responseException": {"exceptionMessage": "The access token is invalid or has expired."},
    }


@pytest.mark.usefixtures("turnqey_app")
def test_an_app_token_past_its_lifetime_is_401(client: Client, control: ControlClient) -> None:
    collection = approve(client)["collection"]
    control.post("lifetimes", {"provider": "turnqey", "app_token": 0})
    token = app_token(client)

    response = client.get(
        f"/sandbox/turnqey/v1/api/collections/{collection}/accounts", headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 401


@pytest.mark.usefixtures("turnqey_app")
@pytest.mark.parametrize("collection", ["3f0c1c9e-5b7a-4d8e-9f21-6a4b2c8d1e07", "not-a-uuid"])
def test_an_unknown_collection_is_the_404_envelope(client: Client, collection: str) -> None:
    response = client.get(
        f"/sandbox/turnqey/v1/api/collections/{collection}/accounts",
        headers={"Authorization": f"Bearer {app_token(client)}"},
    )

    assert response.status_code == 404
    assert response.json() == {
        "statusCode": 404,
        "isError": True,
        "responseException": {"exceptionMessage": "Collection not found."},
    }
