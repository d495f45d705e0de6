"""Dapi: Connect redirect, access code exchange within 30 minutes, permanent token, delinking."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses

from connections.providers.base import ConnectionState
from connections.providers.dapi import ACCESS_CODE_LIFETIME, DapiClient
from connections.providers.errors import AuthorizationDenied, ErrorKind, FailureReason, ProviderError
from tests.contract.support import assert_no_secret_in

from .support import NOT_DECIMAL_STRINGS, FixedClock, app_config, credential, load_fixture, request_json

BASE = "http://provider.test/sandbox/dapi"
EXCHANGE_URL = f"{BASE}/v2/auth/ExchangeToken"
ACCOUNTS_URL = f"{BASE}/v2/data/accounts/get"
IDENTITY_URL = f"{BASE}/v2/data/identity/get"
DELINK_URL = f"{BASE}/v2/users/DelinkUser"
APP_SECRET = "app_secret_value"  # the doc's own placeholder, so the doc's request body matches exactly
DOC_CALLBACK = load_fixture("dapi_connect_success")
ACCESS_TOKEN = load_fixture("dapi_exchange_success")["accessToken"]
USER_SECRET = DOC_CALLBACK["userSecret"]


def make_client(clock: FixedClock, **app: str) -> DapiClient:
    return DapiClient(app_config("dapi", client_id="dapi-app-key", client_secret=APP_SECRET, **app), clock=clock)


def connection(clock: FixedClock) -> ConnectionState:
    return ConnectionState(
        platform="binance",
        external_account_id="user_id_value",
        credentials={
            "permanent": credential("permanent", ACCESS_TOKEN, issued_at=clock.at),
            "user_secret": credential("user_secret", USER_SECRET, issued_at=clock.at),
        },
        grouping={"connectionID": "connection_id_value"},
    )


def callback() -> dict[str, str]:
    params = {k: v for k, v in DOC_CALLBACK.items() if k != "success"}
    return {"state": "st-1", **params}


def test_connect_page_url_carries_app_key_state_and_redirect_uri(
    clock: FixedClock, allow_hosts: Callable[..., None]
) -> None:
    allow_hosts("dapi", "sandbox", "browser.test")
    client = make_client(clock, connect_url="http://browser.test/sandbox/dapi")

    start = client.start_authorization(
        state="st-1",
        platform="binance",
        identity="ignored",
        grouping={},
        redirect_uri="http://portal.test/connect/dapi/callback/",
    )

    url = urlsplit(start.redirect_url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == "http://browser.test/sandbox/dapi/connect"
    assert dict(parse_qsl(url.query)) == {
        "appKey": "dapi-app-key",
        "state": "st-1",
        "redirectUri": "http://portal.test/connect/dapi/callback/",
    }
    assert APP_SECRET not in start.redirect_url


def test_callback_exchanges_the_code_with_the_documented_request(
    rsps: responses.RequestsMock, clock: FixedClock
) -> None:
    rsps.add(responses.POST, EXCHANGE_URL, json=load_fixture("dapi_exchange_success"))
    rsps.add(responses.POST, IDENTITY_URL, json=load_fixture("dapi_identity"))
    rsps.add(responses.POST, ACCOUNTS_URL, json=load_fixture("dapi_accounts"))

    grant = make_client(clock).complete_authorization(params=callback(), platform="binance", identity="x")

    assert request_json(rsps.calls[0].request) == load_fixture("dapi_exchange_request")
    assert [call.request.url for call in rsps.calls[1:]] == [IDENTITY_URL, ACCOUNTS_URL]
    for call in rsps.calls[1:]:
        assert call.request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
        assert request_json(call.request) == {"appSecret": APP_SECRET, "userSecret": USER_SECRET}
    kinds = {c.kind: c for c in grant.credentials}
    assert kinds["permanent"].value == ACCESS_TOKEN
    assert kinds["permanent"].expires_at is None
    assert kinds["user_secret"].value == USER_SECRET
    assert grant.external_account_id == "user_id_value"
    assert dict(grant.grouping) == {"connectionID": "connection_id_value"}
    assert [a.external_id for a in grant.accounts or []] == ["dp-acc-1"]


def test_the_account_id_is_the_one_dapi_names_not_the_callbacks(
    rsps: responses.RequestsMock, clock: FixedClock
) -> None:
    # The browser rewrote userID to another user's; Dapi's identity answer says whose token it is.
    rsps.add(responses.POST, EXCHANGE_URL, json=load_fixture("dapi_exchange_success"))
    rsps.add(responses.POST, IDENTITY_URL, json=load_fixture("dapi_identity"))
    rsps.add(responses.POST, ACCOUNTS_URL, json=load_fixture("dapi_accounts"))

    grant = make_client(clock).complete_authorization(
        params={**callback(), "userID": "someone-elses-user-id"}, platform="binance", identity="x"
    )

    assert grant.external_account_id == "user_id_value"


def test_a_callback_without_user_id_still_connects(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    rsps.add(responses.POST, EXCHANGE_URL, json=load_fixture("dapi_exchange_success"))
    rsps.add(responses.POST, IDENTITY_URL, json=load_fixture("dapi_identity"))
    rsps.add(responses.POST, ACCOUNTS_URL, json=load_fixture("dapi_accounts"))
    params = callback()
    del params["userID"]

    grant = make_client(clock).complete_authorization(params=params, platform="binance", identity="x")

    assert grant.external_account_id == "user_id_value"


@pytest.mark.parametrize(
    "reply",
    [
        {"status": 502},
        {"json": {"success": True, "identity": {"name": "no id"}}},
        {"json": {"success": True}},
    ],
    ids=["server error", "identity without id", "no identity"],
)
def test_no_grant_without_dapis_word_on_whose_token_it_is(
    rsps: responses.RequestsMock, clock: FixedClock, reply: dict[str, object]
) -> None:
    rsps.add(responses.POST, EXCHANGE_URL, json=load_fixture("dapi_exchange_success"))
    rsps.add(responses.POST, IDENTITY_URL, **reply)

    with pytest.raises(ProviderError) as info:
        make_client(clock).complete_authorization(params=callback(), platform="binance", identity="x")

    assert info.value.kind == ErrorKind.TRANSIENT
    assert_no_secret_in(info.value, (APP_SECRET, ACCESS_TOKEN, USER_SECRET))


def test_late_or_reused_access_code_is_expired(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    rsps.add(
        responses.POST,
        EXCHANGE_URL,
        json={"success": False, "type": "INVALID_ACCESS_CODE", "msg": "Access code expired"},
        status=400,
    )

    with pytest.raises(ProviderError) as info:
        make_client(clock).complete_authorization(params=callback(), platform="binance", identity="x")

    assert info.value.kind == ErrorKind.REAUTH_REQUIRED
    assert info.value.reason == FailureReason.EXPIRED
    assert "30 minutes" in info.value.message


def test_wrong_app_secret_is_the_apps_problem(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    rsps.add(
        responses.POST, EXCHANGE_URL, json={"success": False, "type": "INVALID_APP_SECRET", "msg": "no"}, status=401
    )

    with pytest.raises(ProviderError) as info:
        make_client(clock).complete_authorization(params=callback(), platform="binance", identity="x")

    assert info.value.kind == ErrorKind.APP_CREDENTIALS_INVALID
    assert APP_SECRET not in info.value.message


def test_denied_callback_is_an_outcome(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    params = {"state": "st-1", "error": "access_denied", "error_description": "The user cancelled."}

    with pytest.raises(AuthorizationDenied) as info:
        make_client(clock).complete_authorization(params=params, platform="binance", identity="x")

    assert info.value.outcome == "denied"
    assert "Binance via Dapi" in info.value.message
    assert len(rsps.calls) == 0


def test_callback_missing_the_code_is_an_error_outcome(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    params = callback()
    del params["accessCode"]

    with pytest.raises(AuthorizationDenied) as info:
        make_client(clock).complete_authorization(params=params, platform="binance", identity="x")

    assert info.value.outcome == "error"
    assert len(rsps.calls) == 0


def test_grant_survives_a_failed_first_probe(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    # The code is spent once exchanged; the permanent token must not be lost to a hiccup.
    rsps.add(responses.POST, EXCHANGE_URL, json=load_fixture("dapi_exchange_success"))
    rsps.add(responses.POST, IDENTITY_URL, json=load_fixture("dapi_identity"))
    rsps.add(responses.POST, ACCOUNTS_URL, status=502)

    grant = make_client(clock).complete_authorization(params=callback(), platform="binance", identity="x")

    assert grant.accounts is None
    assert {c.kind for c in grant.credentials} == {"permanent", "user_secret"}


@pytest.mark.parametrize("error_type", ["TOKEN_DELINKED", "INVALID_TOKEN"])
def test_delinked_token_is_revoked(rsps: responses.RequestsMock, clock: FixedClock, error_type: str) -> None:
    rsps.add(responses.POST, ACCOUNTS_URL, json={"success": False, "type": error_type, "msg": "gone"}, status=401)

    with pytest.raises(ProviderError) as info:
        make_client(clock).probe(connection=connection(clock))

    assert info.value.reason == FailureReason.REVOKED
    assert info.value.access_rejected is False
    assert "Binance via Dapi" in info.value.message


def test_permanent_token_never_needs_renewal(clock: FixedClock) -> None:
    client = make_client(clock)

    assert client.renewal_due_at(connection(clock)) is None
    assert client.authorization_code_lifetime == ACCESS_CODE_LIFETIME == timedelta(minutes=30)


def test_disconnect_delinks_the_user(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    rsps.add(responses.POST, DELINK_URL, json={"success": True})

    make_client(clock).revoke(connection=connection(clock))

    assert rsps.calls[0].request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert request_json(rsps.calls[0].request) == {"appSecret": APP_SECRET, "userSecret": USER_SECRET}


def test_disconnect_of_an_already_delinked_user_is_done(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    rsps.add(responses.POST, DELINK_URL, json={"success": False, "type": "TOKEN_DELINKED", "msg": "x"}, status=401)

    assert make_client(clock).revoke(connection=connection(clock)) is None


# --- replies the sandbox does not serve ------------------------------------------------------
# (tests/contract runs everything else every client must do, over real HTTP)

SECRETS = (APP_SECRET, ACCESS_TOKEN, USER_SECRET)


def test_probe_reads_the_documented_balances_as_exact_decimals(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    rsps.add(responses.POST, ACCOUNTS_URL, json=load_fixture("dapi_accounts"))

    accounts = make_client(clock).probe(connection=connection(clock))

    assert all(type(account.balance) is Decimal for account in accounts)
    assert {account.external_id: account.balance for account in accounts} == {"dp-acc-1": Decimal("0.50000000")}


@pytest.mark.parametrize("balance", NOT_DECIMAL_STRINGS)
def test_a_balance_that_is_not_a_decimal_string_is_transient(
    rsps: responses.RequestsMock, clock: FixedClock, balance: object
) -> None:
    body = load_fixture("dapi_accounts")
    body["accounts"][0]["balance"] = balance
    rsps.add(responses.POST, ACCOUNTS_URL, json=body)

    with pytest.raises(ProviderError) as info:
        make_client(clock).probe(connection=connection(clock))

    assert info.value.kind == ErrorKind.TRANSIENT
    assert "balance" in info.value.message
    assert_no_secret_in(info.value, SECRETS)


def test_a_reply_that_is_json_but_not_an_object_is_transient(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    rsps.add(responses.POST, ACCOUNTS_URL, json=[1, 2, 3])

    with pytest.raises(ProviderError) as info:
        make_client(clock).probe(connection=connection(clock))

    assert info.value.kind == ErrorKind.TRANSIENT
    assert "Dapi" in info.value.message
    assert_no_secret_in(info.value, SECRETS)
