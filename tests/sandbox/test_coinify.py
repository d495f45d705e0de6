"""Coinify simulator: the doc's three grants and revoke, rotation, /me, deactivation."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.test import Client
from django.utils import timezone

from sandbox import clock, tokens
from sandbox.models import Token
from tests.sandbox_client import control_headers

from .conftest import COINIFY_PARTNER, ControlClient, assert_same_shape, doc_example

AUTH_URL = "/sandbox/coinify/auth"
EXAMPLES = doc_example("coinify_requests.json")


def post_json(client: Client, url: str, body: Any) -> Any:
    return client.post(url, data=json.dumps(body), content_type="application/json")


def password_grant(client: Client) -> dict[str, Any]:
    response = post_json(client, AUTH_URL, EXAMPLES["password"])
    assert response.status_code == 200, response.content
    return response.json()


def refresh(client: Client, refresh_token: str) -> Any:
    return post_json(client, AUTH_URL, {"grant_type": "refresh_token", "refresh_token": refresh_token})


def assert_oauth_error(response: Any, error: str, description: str | None = None, status: int = 400) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    if description is not None:
        assert body["error_description"] == description


def assert_documented_grant(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert_same_shape(body, doc_example("coinify_auth_success.json"))
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 1200
    assert body["access_token"].count(".") == 2
    assert len(body["refresh_token"]) == 64
    assert body["refresh_token"].isalnum()
    return body


def seed_documented_token(user: dict[str, Any], kind: str, value: str) -> None:
    """Make the doc's literal token value one the sandbox issued to ``user``."""
    tokens.issue(
        kind, str(user["user_id"]), value=value, lifetime=None if kind == Token.Kind.COINIFY_OFFLINE else 86_400
    )


# --- The doc's examples -----------------------------------------------------------


def test_password_grant_as_documented_answers_the_documented_tokens(client: Client, coinify_user: dict) -> None:
    assert coinify_user["partner_id"] == COINIFY_PARTNER

    assert_documented_grant(post_json(client, AUTH_URL, EXAMPLES["password"]))


def test_refresh_grant_as_documented_answers_the_documented_tokens(client: Client, coinify_user: dict) -> None:
    seed_documented_token(coinify_user, Token.Kind.COINIFY_REFRESH, EXAMPLES["refresh_token"]["refresh_token"])

    body = assert_documented_grant(post_json(client, AUTH_URL, EXAMPLES["refresh_token"]))

    assert body["refresh_token"] != EXAMPLES["refresh_token"]["refresh_token"]


def test_offline_grant_as_documented_answers_the_documented_tokens(client: Client, coinify_user: dict) -> None:
    seed_documented_token(coinify_user, Token.Kind.COINIFY_OFFLINE, EXAMPLES["offline_token"]["offline_token"])

    assert_documented_grant(post_json(client, AUTH_URL, EXAMPLES["offline_token"]))


def test_offline_token_from_subject_creation_still_grants_tokens_a_year_later(
    client: Client, coinify_user: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = timezone.now() + timedelta(days=365)
    monkeypatch.setattr(clock, "now", lambda: later)
    body = {"grant_type": "offline_token", "offline_token": coinify_user["offline_token"]}

    assert_documented_grant(post_json(client, AUTH_URL, body))


def test_revoke_as_documented_is_204_and_the_token_is_dead(client: Client, coinify_user: dict) -> None:
    seed_documented_token(coinify_user, Token.Kind.COINIFY_REFRESH, EXAMPLES["revoke"]["token"])

    response = post_json(client, "/sandbox/coinify/auth/revoke", EXAMPLES["revoke"])

    assert response.status_code == 204
    assert response.content == b""
    assert_oauth_error(refresh(client, EXAMPLES["revoke"]["token"]), "invalid_grant", "Refresh token has been revoked.")


@pytest.mark.usefixtures("coinify_user")
def test_revoking_an_unknown_or_revoked_token_is_still_204(client: Client) -> None:
    response = post_json(client, "/sandbox/coinify/auth/revoke", EXAMPLES["revoke"])

    assert response.status_code == 204


@pytest.mark.usefixtures("coinify_user")
@pytest.mark.parametrize(
    "body", [{"token_type_hint": "access_token", "token": "x"}, {"token_type_hint": "refresh_token"}, []]
)
def test_a_malformed_revoke_is_an_oauth2_invalid_request(client: Client, body: Any) -> None:
    assert_oauth_error(post_json(client, "/sandbox/coinify/auth/revoke", body), "invalid_request")


# --- Rotation ----------------------------------------------------------------------


@pytest.mark.usefixtures("coinify_user")
def test_refresh_rotates_and_the_old_token_is_then_already_used(client: Client) -> None:
    first = password_grant(client)

    second = assert_documented_grant(refresh(client, first["refresh_token"]))
    reused = refresh(client, first["refresh_token"])

    assert second["refresh_token"] != first["refresh_token"]
    assert_oauth_error(reused, "invalid_grant", "Refresh token has already been used.")
    assert_documented_grant(refresh(client, second["refresh_token"]))


@pytest.mark.usefixtures("coinify_user")
def test_a_refresh_token_past_its_lifetime_has_expired(client: Client, control: ControlClient) -> None:
    control.post("lifetimes", {"provider": "coinify", "refresh": 0})
    grant = password_grant(client)

    assert_oauth_error(refresh(client, grant["refresh_token"]), "invalid_grant", "Refresh token has expired.")


@pytest.mark.usefixtures("coinify_user")
def test_an_unknown_refresh_token_is_invalid_grant(client: Client) -> None:
    assert_oauth_error(refresh(client, "no-such-token"), "invalid_grant", "Refresh token is invalid.")


@pytest.mark.usefixtures("coinify_user")
def test_access_lifetime_is_reported_in_expires_in(client: Client, control: ControlClient) -> None:
    control.post("lifetimes", {"provider": "coinify", "access": 30})

    assert password_grant(client)["expires_in"] == 30


# --- Grant errors ------------------------------------------------------------------


@pytest.mark.usefixtures("coinify_user")
@pytest.mark.parametrize(
    "change", [{"password": "wrong"}, {"email": "nobody@example.test"}, {"partnerId": "other-partner"}]
)
def test_wrong_email_password_or_partner_is_invalid_grant(client: Client, change: dict[str, str]) -> None:
    response = post_json(client, AUTH_URL, {**EXAMPLES["password"], **change})

    assert_oauth_error(response, "invalid_grant", "Invalid email or password.")


@pytest.mark.usefixtures("coinify_user")
@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"grant_type": "password", "email": "a@example.test", "partnerId": COINIFY_PARTNER}, "invalid_request"),
        ({"grant_type": "refresh_token"}, "invalid_request"),
        ({"grant_type": "offline_token"}, "invalid_request"),
        ({"email": "a@example.test"}, "invalid_request"),
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ("not an object", "invalid_request"),
    ],
)
def test_malformed_grants_are_oauth2_errors(client: Client, body: Any, error: str) -> None:
    assert_oauth_error(post_json(client, AUTH_URL, body), error)


@pytest.mark.usefixtures("coinify_user")
def test_a_form_encoded_body_is_refused_because_the_doc_says_json(client: Client) -> None:
    response = client.post(AUTH_URL, EXAMPLES["password"])

    assert_oauth_error(response, "invalid_request")


# --- /me and deactivation ----------------------------------------------------------


def test_me_answers_the_user_and_accounts(client: Client, coinify_user: dict) -> None:
    grant = password_grant(client)

    response = client.get("/sandbox/coinify/me", headers={"Authorization": f"Bearer {grant['access_token']}"})

    assert response.status_code == 200
    body = response.json()
    assert_same_shape(body, doc_example("coinify_me.json"))
    assert body["id"] == coinify_user["user_id"]
    assert body["email"] == EXAMPLES["password"]["email"]
    assert body["partnerId"] == COINIFY_PARTNER
    assert all(account["balance"].count(".") == 1 for account in body["accounts"])


@pytest.mark.usefixtures("coinify_user")
@pytest.mark.parametrize(
    ("authorization", "description"),
    [(None, "Missing access token."), ("Bearer nope", "The access token is invalid.")],
)
def test_me_without_a_valid_token_is_401_invalid_token(
    client: Client, authorization: str | None, description: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}

    assert_oauth_error(client.get("/sandbox/coinify/me", headers=headers), "invalid_token", description, status=401)


@pytest.mark.usefixtures("coinify_user")
def test_me_with_an_expired_access_token_is_401(client: Client, control: ControlClient) -> None:
    control.post("lifetimes", {"provider": "coinify", "access": 0})
    grant = password_grant(client)

    response = client.get("/sandbox/coinify/me", headers={"Authorization": f"Bearer {grant['access_token']}"})

    assert_oauth_error(response, "invalid_token", "The access token has expired.", status=401)


@pytest.mark.usefixtures("coinify_user")
def test_deactivating_the_account_forbids_me_and_refuses_every_grant(client: Client) -> None:
    grant = password_grant(client)
    bearer = {"Authorization": f"Bearer {grant['access_token']}"}

    response = client.put("/sandbox/coinify/me/deactivate", headers=bearer)

    assert response.status_code == 204
    assert response.content == b""
    assert_oauth_error(
        client.get("/sandbox/coinify/me", headers=bearer), "forbidden", "User account is deactivated.", 403
    )
    assert_oauth_error(
        post_json(client, AUTH_URL, EXAMPLES["password"]), "invalid_grant", "User account is deactivated."
    )
    assert_oauth_error(refresh(client, grant["refresh_token"]), "invalid_grant", "User account is deactivated.")


def test_control_revoke_kills_refresh_offline_and_access_tokens(
    client: Client, coinify_user: dict, control: ControlClient
) -> None:
    grant = password_grant(client)

    reply = control.post("actions", {"provider": "coinify", "action": "revoke", "user_id": coinify_user["user_id"]})

    assert reply["affected"] == 3  # access, refresh, offline
    assert_oauth_error(refresh(client, grant["refresh_token"]), "invalid_grant", "Refresh token has been revoked.")
    offline = {"grant_type": "offline_token", "offline_token": coinify_user["offline_token"]}
    assert_oauth_error(post_json(client, AUTH_URL, offline), "invalid_grant", "Offline token is invalid.")
    me = client.get("/sandbox/coinify/me", headers={"Authorization": f"Bearer {grant['access_token']}"})
    assert me.status_code == 401


def test_control_expire_lapses_refresh_and_access_tokens(
    client: Client, coinify_user: dict, control: ControlClient
) -> None:
    grant = password_grant(client)

    control.post("actions", {"provider": "coinify", "action": "expire", "user_id": coinify_user["user_id"]})

    assert_oauth_error(refresh(client, grant["refresh_token"]), "invalid_grant", "Refresh token has expired.")
    me = client.get("/sandbox/coinify/me", headers={"Authorization": f"Bearer {grant['access_token']}"})
    assert_oauth_error(me, "invalid_token", "The access token has expired.", status=401)


def test_control_deactivate_and_restore_the_account(client: Client, coinify_user: dict, control: ControlClient) -> None:
    control.post("actions", {"provider": "coinify", "action": "deactivate", "user_id": coinify_user["user_id"]})
    assert_oauth_error(
        post_json(client, AUTH_URL, EXAMPLES["password"]), "invalid_grant", "User account is deactivated."
    )

    control.post("actions", {"provider": "coinify", "action": "restore", "user_id": coinify_user["user_id"]})
    password_grant(client)


@pytest.mark.django_db(transaction=True)
def test_coinify_grants_and_revoke_over_http(live_server: Any) -> None:
    base = live_server.url + "/sandbox"
    example = EXAMPLES["password"]
    created = requests.post(
        base + "/_control/subjects",
        json={
            "provider": "coinify",
            "partner_id": example["partnerId"],
            "email": example["email"],
            "password": example["password"],
        },
        headers=control_headers(),
        timeout=10,
    )
    assert created.status_code == 201

    grant = requests.post(base + "/coinify/auth", json=example, timeout=10)
    assert grant.status_code == 200
    assert_same_shape(grant.json(), doc_example("coinify_auth_success.json"))
    me = requests.get(
        base + "/coinify/me", headers={"Authorization": f"Bearer {grant.json()['access_token']}"}, timeout=10
    )
    assert me.status_code == 200
    assert me.json()["id"] == created.json()["user_id"]
    rotated = requests.post(
        base + "/coinify/auth",
        json={"grant_type": "refresh_token", "refresh_token": grant.json()["refresh_token"]},
        timeout=10,
    )
    assert rotated.status_code == 200
    revoked = requests.post(
        base + "/coinify/auth/revoke",
        json={"token_type_hint": "refresh_token", "token": rotated.json()["refresh_token"]},
        timeout=10,
    )
    assert revoked.status_code == 204
    again = requests.post(
        base + "/coinify/auth",
        json={"grant_type": "refresh_token", "refresh_token": rotated.json()["refresh_token"]},
        timeout=10,
    )
    assert again.status_code == 400
    assert again.json() == {"error": "invalid_grant", "error_description": "Refresh token has been revoked."}
