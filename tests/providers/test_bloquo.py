"""Bloquo: per-connection client credentials, staging versus production, new tokens when they lapse."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import responses

from connections.providers.base import ConnectionState
from connections.providers.bloquo import STAGING_BASE_URL, BloquoClient, encode_api_key
from connections.providers.errors import ErrorKind, FailureReason, InvalidCredentialFields, ProviderError
from tests.contract.support import assert_no_secret_in

from .support import NOT_DECIMAL_STRINGS, FixedClock, app_config, credential, load_fixture, request_json

BASE = "http://provider.test/sandbox/bloquo"
TOKEN_URL = f"{BASE}/api/v1/auth/token"
CUSTOMER_URL = f"{BASE}/api/v1/accounting/customer"
ACCOUNTS_URL = f"{BASE}/api/v1/accounting/accounts"
CLIENT_ID = "bq-client-7"
CLIENT_SECRET = "bq-client-secret-very-private"
DOC_TOKEN = load_fixture("bloquo_token_success")["accessToken"]


def make_client(clock: FixedClock, **app: str) -> BloquoClient:
    return BloquoClient(app_config("bloquo", **app), clock=clock)


def connection(clock: FixedClock, *, access_age: timedelta = timedelta(0)) -> ConnectionState:
    issued = clock.at - access_age
    return ConnectionState(
        platform="bloquo",
        external_account_id="cus_8f2a1c",
        credentials={
            "api_key": credential("api_key", encode_api_key(CLIENT_ID, CLIENT_SECRET), issued_at=issued),
            "access": credential("access", DOC_TOKEN, issued_at=issued, lifetime=timedelta(seconds=3600)),
        },
    )


def mock_connect(rsps: responses.RequestsMock, base: str = BASE) -> None:
    rsps.add(responses.POST, f"{base}/api/v1/auth/token", json=load_fixture("bloquo_token_success"))
    rsps.add(responses.GET, f"{base}/api/v1/accounting/customer", json=load_fixture("bloquo_customer"))
    rsps.add(responses.GET, f"{base}/api/v1/accounting/accounts", json=load_fixture("bloquo_accounts"))


def test_connect_trades_the_pair_for_a_token_and_keeps_the_pair(
    rsps: responses.RequestsMock, clock: FixedClock
) -> None:
    mock_connect(rsps)

    grant = make_client(clock).connect_with_credentials(
        fields={"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}, platform="bloquo"
    )

    assert request_json(rsps.calls[0].request) == {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}
    assert rsps.calls[1].request.headers["Authorization"] == f"Bearer {DOC_TOKEN}"
    assert grant.external_account_id == "cus_8f2a1c"
    kinds = {c.kind: c for c in grant.credentials}
    assert json.loads(kinds["api_key"].value) == {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}
    assert kinds["api_key"].expires_at is None
    assert kinds["access"].value == DOC_TOKEN
    assert kinds["access"].expires_at == clock.at + timedelta(seconds=3600)
    assert [a.external_id for a in grant.accounts or []] == ["bq-acc-1", "bq-acc-2"]


def test_staging_and_production_apps_use_their_own_base_urls(
    rsps: responses.RequestsMock, clock: FixedClock, allow_hosts: Callable[..., None]
) -> None:
    # Bloquo hands out its production host on request (PROVIDER_HOSTS_BLOQUO_PRODUCTION).
    allow_hosts("bloquo", "production", "api.bloquo.example")
    production = "https://api.bloquo.example"
    mock_connect(rsps, STAGING_BASE_URL)
    mock_connect(rsps, production)
    fields = {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}

    make_client(clock, environment="sandbox", base_url=STAGING_BASE_URL).connect_with_credentials(
        fields=fields, platform="bloquo"
    )
    make_client(clock, environment="production", base_url=production).connect_with_credentials(
        fields=fields, platform="bloquo"
    )

    hosts = [call.request.url.split("/")[2] for call in rsps.calls]
    assert hosts == ["staging-api.bloquo.io"] * 3 + ["api.bloquo.example"] * 3


def test_production_app_pointing_at_staging_is_an_app_problem(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    client = make_client(clock, environment="production", base_url=STAGING_BASE_URL)

    with pytest.raises(ProviderError) as info:
        client.connect_with_credentials(fields={"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}, platform="x")

    assert info.value.kind == ErrorKind.APP_CREDENTIALS_INVALID
    assert len(rsps.calls) == 0


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (401, {"status": False, "message": "Invalid client credentials."}, FailureReason.CREDENTIALS_INVALID),
        (
            400,
            {"status": False, "message": "clientId and clientSecret are required."},
            FailureReason.CREDENTIALS_INVALID,
        ),
        (403, {"status": False, "message": "API key has been revoked."}, FailureReason.REVOKED),
    ],
)
def test_refused_pair_asks_for_reconnect(
    rsps: responses.RequestsMock, clock: FixedClock, status: int, body: dict[str, Any], reason: FailureReason
) -> None:
    rsps.add(responses.POST, TOKEN_URL, json=body, status=status)

    with pytest.raises(ProviderError) as info:
        make_client(clock).connect_with_credentials(
            fields={"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}, platform="bloquo"
        )

    assert info.value.kind == ErrorKind.REAUTH_REQUIRED
    assert info.value.reason == reason
    assert CLIENT_SECRET not in info.value.message + repr(info.value)


def test_token_reply_with_status_false_is_transient(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    rsps.add(responses.POST, TOKEN_URL, json={**load_fixture("bloquo_token_success"), "status": False})

    with pytest.raises(ProviderError) as info:
        make_client(clock).renew(connection=connection(clock))

    assert info.value.kind == ErrorKind.TRANSIENT


def test_missing_fields_are_refused_before_any_call(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    with pytest.raises(InvalidCredentialFields) as info:
        make_client(clock).connect_with_credentials(fields={"clientId": CLIENT_ID}, platform="bloquo")

    assert info.value.field == "clientSecret"
    assert len(rsps.calls) == 0


def test_renewal_requests_a_new_token_with_the_stored_pair(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    rsps.add(responses.POST, TOKEN_URL, json={**load_fixture("bloquo_token_success"), "accessToken": "bq-new"})

    renewed = make_client(clock).renew(connection=connection(clock, access_age=timedelta(minutes=55)))

    assert request_json(rsps.calls[0].request) == {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}
    assert [(c.kind, c.value) for c in renewed] == [("access", "bq-new")]


def test_a_token_renews_six_minutes_before_it_lapses(clock: FixedClock) -> None:
    client = make_client(clock)
    state = connection(clock)

    # One hour: max(120 s, 10 % = 6 min) before expiry.
    assert client.renewal_due_at(state) == clock.at + timedelta(minutes=54)
    assert client.reconnect_deadline(state) is None


def test_rejected_access_token_asks_the_lifecycle_to_renew_and_retry(
    rsps: responses.RequestsMock, clock: FixedClock
) -> None:
    rsps.add(responses.GET, ACCOUNTS_URL, json={"status": False, "message": "Token expired or invalid."}, status=401)

    with pytest.raises(ProviderError) as info:
        make_client(clock).probe(connection=connection(clock))

    assert info.value.access_rejected is True
    assert info.value.reason == FailureReason.EXPIRED


def test_unreadable_stored_pair_asks_for_reconnect(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    state = connection(clock)
    broken = ConnectionState(
        platform="bloquo",
        credentials={**state.credentials, "api_key": credential("api_key", "not json", issued_at=clock.at)},
    )

    with pytest.raises(ProviderError) as info:
        make_client(clock).renew(connection=broken)

    assert info.value.reason == FailureReason.CREDENTIALS_INVALID
    assert len(rsps.calls) == 0


# --- replies the sandbox does not serve ------------------------------------------------------
# (tests/contract runs everything else every client must do, over real HTTP)

SECRETS = ("bloquo-app-secret-s3cr3t", CLIENT_SECRET, DOC_TOKEN)


def test_probe_reads_the_documented_balances_as_exact_decimals(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    rsps.add(responses.GET, ACCOUNTS_URL, json=load_fixture("bloquo_accounts"))

    accounts = make_client(clock).probe(connection=connection(clock))

    assert all(type(account.balance) is Decimal for account in accounts)
    assert {account.external_id: account.balance for account in accounts} == {
        "bq-acc-1": Decimal("0.50000000"),
        "bq-acc-2": Decimal("99.99"),
    }


@pytest.mark.parametrize("balance", NOT_DECIMAL_STRINGS)
def test_a_balance_that_is_not_a_decimal_string_is_transient(
    rsps: responses.RequestsMock, clock: FixedClock, balance: object
) -> None:
    body = load_fixture("bloquo_accounts")
    body["data"][0]["balance"] = balance
    rsps.add(responses.GET, ACCOUNTS_URL, json=body)

    with pytest.raises(ProviderError) as info:
        make_client(clock).probe(connection=connection(clock))

    assert info.value.kind == ErrorKind.TRANSIENT
    assert "balance" in info.value.message
    assert_no_secret_in(info.value, SECRETS)


def test_a_reply_that_is_json_but_not_an_object_is_transient(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    rsps.add(responses.GET, ACCOUNTS_URL, json=[1, 2, 3])

    with pytest.raises(ProviderError) as info:
        make_client(clock).probe(connection=connection(clock))

    assert info.value.kind == ErrorKind.TRANSIENT
    assert "Bloquo" in info.value.message
    assert_no_secret_in(info.value, SECRETS)
