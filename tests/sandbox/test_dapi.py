"""Dapi simulator: Connect page, the doc's ExchangeToken, accounts, delink."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from django.test import Client
from django.utils import timezone

from sandbox import clock, tokens
from sandbox.models import App, DapiConnection, Token
from tests.sandbox_client import control_headers

from .conftest import DAPI_APP, ControlClient, assert_same_shape, doc_example

EXAMPLES = doc_example("dapi.json")
EXCHANGE_URL = "/sandbox/dapi/v2/auth/ExchangeToken"
ACCOUNTS_URL = "/sandbox/dapi/v2/data/accounts/get"
IDENTITY_URL = "/sandbox/dapi/v2/data/identity/get"
DELINK_URL = "/sandbox/dapi/v2/users/DelinkUser"


def connect_url(**overrides: str) -> str:
    params = {"appKey": DAPI_APP["client_id"], "state": "st-9", "redirectUri": DAPI_APP["redirect_uri"], **overrides}
    return "/sandbox/dapi/connect?" + urlencode(params)


def post_json(client: Client, url: str, body: Any, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post(url, data=json.dumps(body), content_type="application/json", headers=headers)


def connect(client: Client, username: str = "layla") -> dict[str, str]:
    response = client.post(connect_url(), {"decision": "approve", "username": username})
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == DAPI_APP["redirect_uri"]
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def exchange(client: Client, result: dict[str, str]) -> Any:
    body = {
        "appSecret": DAPI_APP["client_secret"],
        "accessCode": result["accessCode"],
        "connectionID": result["connectionID"],
    }
    return post_json(client, EXCHANGE_URL, body)


def linked(client: Client, username: str = "layla") -> tuple[dict[str, str], str]:
    result = connect(client, username)
    return result, exchange(client, result).json()["accessToken"]


def secrets_body(result: dict[str, str]) -> dict[str, str]:
    return {"appSecret": DAPI_APP["client_secret"], "userSecret": result["userSecret"]}


# --- Connect -------------------------------------------------------------------------


@pytest.mark.usefixtures("dapi_app")
def test_connect_page_asks_to_sign_in_and_approve_or_deny(client: Client) -> None:
    response = client.get(connect_url())

    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="username"' in html
    assert ">Approve<" in html
    assert ">Deny<" in html
    assert "read-only" in html
    assert "https://portal.test" in response["Content-Security-Policy"]


@pytest.mark.usefixtures("dapi_app")
@pytest.mark.parametrize(
    "url",
    [
        connect_url(appKey="unknown"),
        connect_url(redirectUri="https://evil.test/callback"),
        "/sandbox/dapi/connect?state=x",
    ],
)
def test_connect_with_an_unknown_app_or_unregistered_redirect_is_a_400_page(client: Client, url: str) -> None:
    response = client.get(url)

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.usefixtures("dapi_app")
@pytest.mark.parametrize(
    ("username", "message"),
    [("  ", "Enter your username."), ("u" * 201, "at most 200 characters"), ("la\x00yla", "NUL characters")],
)
def test_a_blank_or_unstorable_username_asks_again_on_the_connect_page(
    client: Client, username: str, message: str
) -> None:
    response = client.post(connect_url(), {"decision": "approve", "username": username})

    assert response.status_code == 400
    assert 'name="username"' in response.content.decode()
    assert message in response.content.decode()
    assert not DapiConnection.objects.exists()


@pytest.mark.usefixtures("dapi_app")
def test_approving_redirects_with_the_documented_connect_fields_and_state(client: Client) -> None:
    result = connect(client)

    documented = {k: v for k, v in EXAMPLES["connect_result"].items() if k != "success"}
    assert set(result) == set(documented) | {"state"}
    assert result["state"] == "st-9"
    assert all(result[name] for name in documented)


@pytest.mark.usefixtures("dapi_app")
def test_denying_redirects_with_access_denied(client: Client) -> None:
    response = client.post(connect_url(), {"decision": "deny"})

    params = {k: v[0] for k, v in parse_qs(urlsplit(response["Location"]).query).items()}
    assert params == {"state": "st-9", "error": "access_denied", "error_description": "The user denied access."}


@pytest.mark.usefixtures("dapi_app")
def test_the_same_login_keeps_its_user_id_on_reconnect(client: Client) -> None:
    first, second, other = connect(client, "layla"), connect(client, "layla"), connect(client, "omar")

    assert first["userID"] == second["userID"] != other["userID"]
    assert first["connectionID"] != second["connectionID"]


# --- ExchangeToken -------------------------------------------------------------------


@pytest.fixture
def documented_code(db: None) -> None:
    """Make the doc's literal appSecret, accessCode and connectionID valid in the sandbox."""
    App.objects.create(
        provider="dapi",
        client_id="app_key_value",
        client_secret="app_secret_value",
        redirect_uri=DAPI_APP["redirect_uri"],
    )
    connection = DapiConnection.objects.create(
        app_key="app_key_value",
        connection_id="connection_id_value",
        user_id="user_id_value",
        username="doc",
        user_secret_digest=tokens.digest("user_secret_value"),
        token_id="token_id_value",
    )
    tokens.issue(Token.Kind.DAPI_CODE, str(connection.pk), value="access_code_value", lifetime=1800)


@pytest.mark.usefixtures("documented_code")
def test_exchange_token_as_documented_answers_the_documented_reply(client: Client) -> None:
    response = post_json(client, EXCHANGE_URL, EXAMPLES["exchange_request"])

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert_same_shape(body, EXAMPLES["exchange_response"])
    assert body["success"] is True


@pytest.mark.usefixtures("documented_code")
def test_an_access_code_is_single_use(client: Client) -> None:
    post_json(client, EXCHANGE_URL, EXAMPLES["exchange_request"])

    response = post_json(client, EXCHANGE_URL, EXAMPLES["exchange_request"])

    assert response.status_code == 400
    assert response.json() == {
        "success": False,
        "type": "INVALID_ACCESS_CODE",
        "msg": "The access code has already been used.",
    }


@pytest.mark.usefixtures("documented_code")
def test_an_access_code_lapses_after_30_minutes(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    later = timezone.now() + timedelta(minutes=30, seconds=1)
    monkeypatch.setattr(clock, "now", lambda: later)

    response = post_json(client, EXCHANGE_URL, EXAMPLES["exchange_request"])

    assert response.status_code == 400
    assert response.json()["type"] == "INVALID_ACCESS_CODE"
    assert response.json()["msg"] == "The access code has expired."


@pytest.mark.usefixtures("documented_code")
@pytest.mark.parametrize(
    ("change", "status", "kind"),
    [
        ({"appSecret": "wrong"}, 401, "INVALID_APP_SECRET"),
        ({"accessCode": "other"}, 400, "INVALID_ACCESS_CODE"),
        ({"connectionID": "other"}, 400, "INVALID_ACCESS_CODE"),
        ({"accessCode": ""}, 400, "INVALID_REQUEST"),
    ],
)
def test_exchange_failures_have_the_assumed_types(client: Client, change: dict, status: int, kind: str) -> None:
    response = post_json(client, EXCHANGE_URL, {**EXAMPLES["exchange_request"], **change})

    assert response.status_code == status
    body = response.json()
    assert body["success"] is False
    assert body["type"] == kind
    assert body["msg"]


@pytest.mark.usefixtures("dapi_app")
def test_control_expire_lapses_an_unexchanged_code(client: Client, control: ControlClient) -> None:
    result = connect(client)

    control.post("actions", {"provider": "dapi", "action": "expire", "user_id": result["userID"]})

    assert exchange(client, result).json()["type"] == "INVALID_ACCESS_CODE"


# --- Accounts and delink -------------------------------------------------------------


@pytest.mark.usefixtures("dapi_app")
def test_accounts_answer_with_the_permanent_token(client: Client) -> None:
    result, token = linked(client)

    response = post_json(client, ACCOUNTS_URL, secrets_body(result), token)

    assert response.status_code == 200
    assert_same_shape(response.json(), EXAMPLES["accounts_response"])
    assert response.json()["success"] is True


@pytest.mark.usefixtures("dapi_app")
def test_identity_names_the_user_the_token_was_issued_for(client: Client) -> None:
    layla, layla_token = linked(client, "layla")
    omar, omar_token = linked(client, "omar")

    mine = post_json(client, IDENTITY_URL, secrets_body(layla), layla_token)
    theirs = post_json(client, IDENTITY_URL, secrets_body(omar), omar_token)

    assert mine.status_code == theirs.status_code == 200
    assert_same_shape(mine.json(), EXAMPLES["identity_response"])
    assert mine.json()["identity"]["id"] == layla["userID"]
    assert theirs.json()["identity"]["id"] == omar["userID"] != layla["userID"]


@pytest.mark.usefixtures("dapi_app")
def test_identity_is_the_links_own_whatever_user_secret_is_sent(client: Client) -> None:
    _, layla_token = linked(client, "layla")
    omar, _ = linked(client, "omar")

    # Another user's secret with Layla's token: refused, never Omar's identity.
    response = post_json(client, IDENTITY_URL, secrets_body(omar), layla_token)

    assert response.status_code == 401
    assert response.json()["type"] == "INVALID_USER_SECRET"


@pytest.mark.usefixtures("dapi_app")
def test_identity_of_a_delinked_token_is_refused(client: Client, control: ControlClient) -> None:
    result, token = linked(client)
    control.post("actions", {"provider": "dapi", "action": "delink", "user_id": result["userID"]})

    response = post_json(client, IDENTITY_URL, secrets_body(result), token)

    assert response.status_code == 401
    assert response.json()["type"] == "TOKEN_DELINKED"


@pytest.mark.usefixtures("dapi_app")
def test_a_reconnected_user_sees_the_same_accounts(client: Client) -> None:
    first, first_token = linked(client)
    second, second_token = linked(client)

    one = post_json(client, ACCOUNTS_URL, secrets_body(first), first_token).json()
    two = post_json(client, ACCOUNTS_URL, secrets_body(second), second_token).json()

    assert one == two


@pytest.mark.usefixtures("dapi_app")
def test_delink_user_then_the_token_is_delinked(client: Client) -> None:
    result, token = linked(client)

    response = post_json(client, DELINK_URL, secrets_body(result), token)

    assert response.status_code == 200
    assert response.json() == {"success": True}
    after = post_json(client, ACCOUNTS_URL, secrets_body(result), token)
    assert after.status_code == 401
    assert after.json()["type"] == "TOKEN_DELINKED"


@pytest.mark.usefixtures("dapi_app")
@pytest.mark.parametrize("subject", ["user_id", "connection_id", "access_token"])
def test_control_delink_by_any_subject_id(client: Client, control: ControlClient, subject: str) -> None:
    result, token = linked(client)
    value = {"user_id": result["userID"], "connection_id": result["connectionID"], "access_token": token}[subject]

    reply = control.post("actions", {"provider": "dapi", "action": "delink", subject: value})

    assert reply["affected"] == 1
    assert post_json(client, ACCOUNTS_URL, secrets_body(result), token).json()["type"] == "TOKEN_DELINKED"


@pytest.mark.usefixtures("dapi_app")
@pytest.mark.parametrize(
    ("token", "body", "kind"),
    [
        ("unknown", None, "INVALID_TOKEN"),
        (None, {"appSecret": "wrong"}, "INVALID_APP_SECRET"),
        (None, {"userSecret": "wrong"}, "INVALID_USER_SECRET"),
    ],
)
def test_accounts_refusals_have_types(client: Client, token: str | None, body: dict | None, kind: str) -> None:
    result, real_token = linked(client)

    response = post_json(client, ACCOUNTS_URL, {**secrets_body(result), **(body or {})}, token or real_token)

    assert response.status_code == 401
    assert response.json()["success"] is False
    assert response.json()["type"] == kind


@pytest.mark.django_db(transaction=True)
def test_dapi_connect_exchange_and_accounts_over_http(live_server: Any) -> None:
    base = live_server.url + "/sandbox"
    registered = requests.post(
        base + "/_control/apps", json={"provider": "dapi", **DAPI_APP}, headers=control_headers(), timeout=10
    )
    assert registered.status_code == 201
    browser = requests.Session()
    url = (
        base
        + "/dapi/connect?"
        + urlencode({"appKey": DAPI_APP["client_id"], "state": "s1", "redirectUri": DAPI_APP["redirect_uri"]})
    )
    page = browser.get(url, timeout=10)
    assert page.status_code == 200
    csrf = page.text.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]

    answer = browser.post(
        url,
        data={"csrfmiddlewaretoken": csrf, "username": "layla", "decision": "approve"},
        headers={"Referer": url},
        allow_redirects=False,
        timeout=10,
    )

    assert answer.status_code == 302
    result = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["Location"]).query).items()}
    exchanged = requests.post(
        base + "/dapi/v2/auth/ExchangeToken",
        json={
            "appSecret": DAPI_APP["client_secret"],
            "accessCode": result["accessCode"],
            "connectionID": result["connectionID"],
        },
        timeout=10,
    )
    assert exchanged.status_code == 200
    assert_same_shape(exchanged.json(), EXAMPLES["exchange_response"])
    accounts = requests.post(
        base + "/dapi/v2/data/accounts/get",
        json={"appSecret": DAPI_APP["client_secret"], "userSecret": result["userSecret"]},
        headers={"Authorization": f"Bearer {exchanged.json()['accessToken']}"},
        timeout=10,
    )
    assert accounts.status_code == 200
    assert_same_shape(accounts.json(), EXAMPLES["accounts_response"])
