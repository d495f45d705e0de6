"""``sandbox_grant``: a person's grant answered in the provider's own terms, and broken the way a reason says."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from .conftest import COINIFY_PARTNER, DAPI_APP, TURNQEY_CLIENT

pytestmark = pytest.mark.django_db

IDENTITY = "4a7f9a52-5bd6-4d8e-9f0e-2b7c1f9d3e11"
PERSON = {"name": "Ann Example", "email": "ann@example.test", "identity": IDENTITY}


def grant(provider: str, **options: Any) -> dict[str, Any]:
    out = io.StringIO()
    call_command("sandbox_grant", provider, stdout=out, **{**PERSON, **options})
    reply: dict[str, Any] = json.loads(out.getvalue())
    return reply


def post_json(client: Client, path: str, body: dict[str, Any], **headers: str) -> Any:
    return client.post(path, data=json.dumps(body), content_type="application/json", headers=headers)


# --- What the partner receives ---------------------------------------------------------------


def test_a_coinify_grant_answers_the_sign_in_fields_and_they_sign_in(client: Client) -> None:
    reply = grant("coinify", app_id=COINIFY_PARTNER, password="correct horse")

    assert reply["fields"] == {"email": "ann@example.test", "password": "correct horse"}
    signed_in = post_json(
        client, "/sandbox/coinify/auth", {"grant_type": "password", "partnerId": COINIFY_PARTNER, **reply["fields"]}
    )
    assert signed_in.status_code == 200
    assert signed_in.json()["refresh_token"]


def test_a_coinify_grant_without_a_password_makes_one_up_and_answers_it() -> None:
    reply = grant("coinify", app_id=COINIFY_PARTNER)

    assert len(reply["fields"]["password"]) >= 12


def test_a_bloquo_grant_answers_a_key_pair_under_bloquos_names_that_buys_a_token(client: Client) -> None:
    reply = grant("bloquo")

    assert set(reply["fields"]) == {"clientId", "clientSecret"}
    token = post_json(client, "/sandbox/bloquo/api/v1/auth/token", reply["fields"])
    assert token.status_code == 200
    customer = client.get(
        "/sandbox/bloquo/api/v1/accounting/customer", headers={"Authorization": f"Bearer {token.json()['accessToken']}"}
    )
    assert customer.json()["data"] == {
        "id": reply["subject"]["customer_id"],
        "name": "Ann Example",
        "email": "ann@example.test",
    }


def test_a_turnqey_grant_answers_the_callback_of_an_approved_consent(
    client: Client, turnqey_app: dict[str, str]
) -> None:
    collection = "0b1d2c3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"

    reply = grant("turnqey", app_id=TURNQEY_CLIENT["client_id"], platform="gemini", collection=collection)

    assert reply["params"] == {
        "identity": IDENTITY,
        "collection": collection,
        "platform": "gemini",
        "status": "success",
    }
    token = client.post(
        "/sandbox/turnqey/v1/api/token",
        headers={"clientId": TURNQEY_CLIENT["client_id"], "clientSecret": TURNQEY_CLIENT["client_secret"]},
    ).json()["result"]["token"]
    listed = client.get(
        f"/sandbox/turnqey/v1/api/identities/{IDENTITY}/accounts", headers={"Authorization": f"Bearer {token}"}
    )
    accounts = listed.json()["result"]["accounts"]
    assert accounts
    assert {(a["platform"], a["status"], a["sourceAccountId"]) for a in accounts} == {
        ("gemini", "active", reply["subject"]["source_account_id"])
    }


def test_a_dapi_grant_answers_the_connect_callback_whose_code_exchanges(
    client: Client, dapi_app: dict[str, str]
) -> None:
    reply = grant("dapi", app_id=DAPI_APP["client_id"])

    assert set(reply["params"]) == {"accessCode", "connectionID", "userSecret", "userID", "tokenID"}
    exchanged = post_json(
        client,
        "/sandbox/dapi/v2/auth/ExchangeToken",
        {
            "appSecret": DAPI_APP["client_secret"],
            "accessCode": reply["params"]["accessCode"],
            "connectionID": reply["params"]["connectionID"],
        },
    )
    assert exchanged.json()["success"] is True


def test_the_same_person_granting_dapi_again_is_the_same_dapi_user(dapi_app: dict[str, str]) -> None:
    first = grant("dapi", app_id=DAPI_APP["client_id"])
    again = grant("dapi", app_id=DAPI_APP["client_id"])

    assert again["params"]["userID"] == first["params"]["userID"]
    assert again["params"]["connectionID"] != first["params"]["connectionID"]


def test_a_grant_for_an_unregistered_turnqey_client_is_refused() -> None:
    with pytest.raises(CommandError, match="Unknown Turnqey client"):
        grant("turnqey", app_id="nobody", platform="gemini")


def test_a_grant_without_what_the_provider_needs_says_what_is_missing() -> None:
    with pytest.raises(CommandError, match="needs: app_id"):
        grant("coinify")


# --- Broken the way a reason says -------------------------------------------------------------


def test_a_revoked_coinify_grant_refuses_its_refresh_token_as_revoked(client: Client) -> None:
    fields = grant("coinify", app_id=COINIFY_PARTNER)["fields"]
    tokens = post_json(
        client, "/sandbox/coinify/auth", {"grant_type": "password", "partnerId": COINIFY_PARTNER, **fields}
    )

    broken = grant("coinify", app_id=COINIFY_PARTNER, how="revoked")

    assert broken["broken"] == "revoked"
    refused = post_json(
        client,
        "/sandbox/coinify/auth",
        {"grant_type": "refresh_token", "refresh_token": tokens.json()["refresh_token"]},
    )
    assert refused.json() == {"error": "invalid_grant", "error_description": "Refresh token has been revoked."}


def test_an_expired_coinify_grant_refuses_its_refresh_token_as_expired(client: Client) -> None:
    fields = grant("coinify", app_id=COINIFY_PARTNER)["fields"]
    tokens = post_json(
        client, "/sandbox/coinify/auth", {"grant_type": "password", "partnerId": COINIFY_PARTNER, **fields}
    )

    grant("coinify", app_id=COINIFY_PARTNER, how="expired")

    refused = post_json(
        client,
        "/sandbox/coinify/auth",
        {"grant_type": "refresh_token", "refresh_token": tokens.json()["refresh_token"]},
    )
    assert refused.json()["error_description"] == "Refresh token has expired."


@pytest.mark.parametrize(("how", "status"), [("credentials_invalid", 401), ("revoked", 403)])
def test_a_broken_bloquo_key_pair_is_refused_and_its_live_token_ends(client: Client, how: str, status: int) -> None:
    fields = grant("bloquo")["fields"]
    token = post_json(client, "/sandbox/bloquo/api/v1/auth/token", fields).json()["accessToken"]

    grant("bloquo", how=how)

    assert post_json(client, "/sandbox/bloquo/api/v1/auth/token", fields).status_code == status
    accounts = client.get("/sandbox/bloquo/api/v1/accounting/accounts", headers={"Authorization": f"Bearer {token}"})
    assert accounts.status_code == 401


@pytest.mark.parametrize(("how", "status"), [("revoked", "revoked"), ("expired", "expired")])
def test_a_broken_turnqey_grant_lists_its_accounts_that_way(
    client: Client, turnqey_app: dict[str, str], how: str, status: str
) -> None:
    grant("turnqey", app_id=TURNQEY_CLIENT["client_id"], platform="kraken")

    grant("turnqey", app_id=TURNQEY_CLIENT["client_id"], platform="kraken", how=how)

    token = client.post(
        "/sandbox/turnqey/v1/api/token",
        headers={"clientId": TURNQEY_CLIENT["client_id"], "clientSecret": TURNQEY_CLIENT["client_secret"]},
    ).json()["result"]["token"]
    listed = client.get(
        f"/sandbox/turnqey/v1/api/identities/{IDENTITY}/accounts", headers={"Authorization": f"Bearer {token}"}
    )
    assert {a["status"] for a in listed.json()["result"]["accounts"]} == {status}


def test_a_revoked_dapi_grant_is_delinked(client: Client, dapi_app: dict[str, str]) -> None:
    params = grant("dapi", app_id=DAPI_APP["client_id"])["params"]
    exchange = {
        "appSecret": DAPI_APP["client_secret"],
        "accessCode": params["accessCode"],
        "connectionID": params["connectionID"],
    }
    token = post_json(client, "/sandbox/dapi/v2/auth/ExchangeToken", exchange).json()["accessToken"]

    grant("dapi", app_id=DAPI_APP["client_id"], how="revoked")

    accounts = post_json(
        client,
        "/sandbox/dapi/v2/data/accounts/get",
        {"appSecret": DAPI_APP["client_secret"], "userSecret": params["userSecret"]},
        Authorization=f"Bearer {token}",
    )
    assert accounts.json()["type"] == "TOKEN_DELINKED"


@pytest.mark.parametrize(
    ("provider", "how", "why"),
    [
        ("turnqey", "credentials_invalid", "no per-connection credentials"),
        ("coinify", "credentials_invalid", "only shows at sign-in"),
        ("bloquo", "expired", "does not expire"),
        ("dapi", "expired", "never expires"),
        ("dapi", "credentials_invalid", "only delinking"),
    ],
)
def test_a_break_the_provider_cannot_suffer_is_refused_with_the_reason(provider: str, how: str, why: str) -> None:
    with pytest.raises(CommandError, match=why):
        grant(provider, app_id="any", platform="gemini", how=how)


def test_breaking_a_grant_nobody_made_is_an_error() -> None:
    with pytest.raises(CommandError, match="No such Coinify user"):
        grant("coinify", app_id=COINIFY_PARTNER, how="revoked")
