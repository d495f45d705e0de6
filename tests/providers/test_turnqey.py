"""Turnqey: app token envelopes and caching, checksum, redirect flow, account statuses."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses

from connections.providers.base import ConnectionState, MemoryAppTokenCache
from connections.providers.errors import AuthorizationDenied, ErrorKind, FailureReason, ProviderError
from connections.providers.turnqey import TurnqeyClient, authorization_checksum
from tests.contract.support import assert_no_secret_in

from .support import NOT_DECIMAL_STRINGS, FixedClock, app_config, load_fixture

BASE = "http://provider.test/sandbox/turnqey"
TOKEN_URL = f"{BASE}/v1/api/token"
COLLECTION = "6f1c2b0e-8a4d-4c55-9d2e-0b7f3a9c1e11"
IDENTITY = "0d5e0c2a-3f7b-4d8e-9a61-2b4c6d8e0f12"
COLLECTION_URL = f"{BASE}/v1/api/collections/{COLLECTION}/accounts"
IDENTITY_URL = f"{BASE}/v1/api/identities/{IDENTITY}/accounts"
DOC_TOKEN = "eyJ0eXAiO.............................................WLLC26yzxcDiuqJjg"
APP_SECRET = "turnqey-app-secret-s3cr3t"
# The doc's token says expiresOn 13:29:36.8287785+05:30, i.e. 07:59:36.828778 UTC.
DOC_EXPIRES_ON = datetime(2024, 6, 14, 7, 59, 36, 828778, tzinfo=UTC)
# The moment the doc's token was issued, in our tests (expiresIn 3599 s before).
DOC_ISSUED_AT = datetime(2024, 6, 14, 6, 59, 37, tzinfo=UTC)


def token_reply(token: str = DOC_TOKEN, *, expires_on: str = "2024-06-14T13:29:36.8287785+05:30") -> dict[str, Any]:
    body = load_fixture("turnqey_token_success")
    body["result"]["token"] = token
    body["result"]["expiresOn"] = expires_on
    return body


def make_client(clock: FixedClock, **app: str) -> TurnqeyClient:
    return TurnqeyClient(app_config("turnqey", **app), app_token_cache=MemoryAppTokenCache(), clock=clock)


def connection(**grouping: str) -> ConnectionState:
    return ConnectionState(
        platform="coinbase",
        external_account_id="cb-user-123",
        grouping=grouping or {"collection": COLLECTION, "identity": IDENTITY},
    )


@pytest.fixture
def doc_clock() -> FixedClock:
    return FixedClock(DOC_ISSUED_AT)


# --- app token -------------------------------------------------------------------------


def test_app_token_request_sends_the_documented_headers(rsps: responses.RequestsMock, doc_clock: FixedClock) -> None:
    rsps.add(responses.POST, TOKEN_URL, json=token_reply())

    make_client(doc_clock).app_token()

    sent = rsps.calls[0].request
    assert sent.method == "POST"
    assert sent.headers["clientId"] == "turnqey-client-id"
    assert sent.headers["clientSecret"] == APP_SECRET
    assert sent.headers["accept"] == "application/json"
    assert APP_SECRET not in sent.url


def test_doc_success_envelope_gives_token_and_expiry(rsps: responses.RequestsMock, doc_clock: FixedClock) -> None:
    rsps.add(responses.POST, TOKEN_URL, json=load_fixture("turnqey_token_success"))

    token = make_client(doc_clock).app_token()

    assert token.kind == "app"
    assert token.value == DOC_TOKEN
    assert token.expires_at == DOC_EXPIRES_ON
    assert token.issued_at == DOC_ISSUED_AT


def test_validation_envelope_errors_reach_the_message(rsps: responses.RequestsMock, doc_clock: FixedClock) -> None:
    rsps.add(responses.POST, TOKEN_URL, json=load_fixture("turnqey_token_validation_error"), status=400)

    with pytest.raises(ProviderError) as info:
        make_client(doc_clock, client_id="", client_secret="").app_token()

    assert info.value.kind == ErrorKind.APP_CREDENTIALS_INVALID
    assert "The ClientId field is required." in info.value.message
    assert "The ClientSecret field is required." in info.value.message
    # A missing credential is left out, so Turnqey's envelope names exactly what is missing.
    assert "clientId" not in rsps.calls[0].request.headers


def test_rejected_client_credentials_flag_the_app(rsps: responses.RequestsMock, doc_clock: FixedClock) -> None:
    rsps.add(responses.POST, TOKEN_URL, json=load_fixture("turnqey_token_invalid_credentials"), status=401)

    with pytest.raises(ProviderError) as info:
        make_client(doc_clock).app_token()

    assert info.value.kind == ErrorKind.APP_CREDENTIALS_INVALID
    assert "Invalid client credentials." in info.value.message
    assert APP_SECRET not in repr(info.value) + info.value.message


def test_token_envelope_marked_as_error_is_transient(rsps: responses.RequestsMock, doc_clock: FixedClock) -> None:
    body = token_reply()
    body["isError"] = True
    rsps.add(responses.POST, TOKEN_URL, json=body)

    with pytest.raises(ProviderError) as info:
        make_client(doc_clock).app_token()

    assert info.value.kind == ErrorKind.TRANSIENT


def test_app_token_is_cached_between_calls(rsps: responses.RequestsMock, doc_clock: FixedClock) -> None:
    token_route = rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    rsps.add(responses.GET, COLLECTION_URL, json=load_fixture("turnqey_accounts"))
    client = make_client(doc_clock)

    client.probe(connection=connection())
    doc_clock.advance(minutes=30)
    client.probe(connection=connection())

    assert token_route.call_count == 1


def test_app_token_is_fetched_again_ahead_of_its_expiry(rsps: responses.RequestsMock, doc_clock: FixedClock) -> None:
    rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    client = make_client(doc_clock)
    first = client.app_token()
    # Renewal point: expiry minus max(60 s, 10 % of ~1 h) = about six minutes before.
    doc_clock.at = DOC_EXPIRES_ON - timedelta(minutes=7)
    assert client.app_token() is first
    doc_clock.at = DOC_EXPIRES_ON - timedelta(minutes=5)
    rsps.replace(responses.POST, TOKEN_URL, json=token_reply("second-token", expires_on="2024-06-14T14:25:00+05:30"))

    second = client.app_token()

    assert sum(1 for call in rsps.calls if call.request.url == TOKEN_URL) == 2
    assert second.value == "second-token"


def test_app_token_is_shared_through_the_cache(rsps: responses.RequestsMock, doc_clock: FixedClock) -> None:
    token_route = rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    cache = MemoryAppTokenCache()

    TurnqeyClient(app_config("turnqey"), app_token_cache=cache, clock=doc_clock).app_token()
    TurnqeyClient(app_config("turnqey"), app_token_cache=cache, clock=doc_clock).app_token()

    assert token_route.call_count == 1


def test_provider_clock_behind_ours_falls_back_to_expires_in(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    rsps.add(responses.POST, TOKEN_URL, json=load_fixture("turnqey_token_success"))

    token = make_client(clock).app_token()  # clock is 2025; the doc's expiresOn is 2024

    assert token.expires_at == clock.at + timedelta(seconds=3599)


def test_expired_app_token_is_fetched_again_exactly_once(rsps: responses.RequestsMock, doc_clock: FixedClock) -> None:
    token_route = rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    accounts_route = rsps.add(responses.GET, COLLECTION_URL, json=load_fixture("turnqey_app_token_expired"), status=401)
    rsps.add(responses.GET, COLLECTION_URL, json=load_fixture("turnqey_accounts"))

    accounts = make_client(doc_clock).probe(connection=connection())

    assert token_route.call_count == 2
    assert accounts_route.call_count == 1
    assert [a.external_id for a in accounts] == ["acc-1", "acc-2"]


def test_fresh_app_token_rejected_again_is_the_apps_problem(
    rsps: responses.RequestsMock, doc_clock: FixedClock
) -> None:
    token_route = rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    accounts_route = rsps.add(responses.GET, COLLECTION_URL, json=load_fixture("turnqey_app_token_expired"), status=401)

    with pytest.raises(ProviderError) as info:
        make_client(doc_clock).probe(connection=connection())

    assert info.value.kind == ErrorKind.APP_CREDENTIALS_INVALID
    assert token_route.call_count == 2
    assert accounts_route.call_count == 2


# --- checksum and authorize URL ----------------------------------------------------------


def test_checksum_matches_a_known_vector() -> None:
    params = {
        "client": "tq-client",
        "platform": "coinbase",
        "identity": IDENTITY,
        "collection": COLLECTION,
        "state": "Zm9v YmFy/=",
    }
    # openssl dgst -sha256 -hmac tq-secret over
    # client=tq-client&collection=...&identity=...&platform=coinbase&state=Zm9v+YmFy%2F%3D
    assert authorization_checksum(params, "tq-secret") == (
        "118dea5aa17e30f134c1aec989e06e2657afc475254135b2d5418a96049459d3"
    )


def test_checksum_leaves_out_an_empty_collection_and_itself() -> None:
    params = {"client": "tq-client", "platform": "gemini", "identity": "partner-user-1", "state": "abc"}
    expected = "b406417c54c7cc8ba3b600553bac4bfc192d328a925b8f3b246e2294acb6fcdc"

    assert authorization_checksum(params, "tq-secret") == expected
    assert authorization_checksum({**params, "collection": "", "checksum": "zzz"}, "tq-secret") == expected


def test_authorize_url_carries_state_identity_collection_and_checksum(
    clock: FixedClock, allow_hosts: Callable[..., None]
) -> None:
    allow_hosts("turnqey", "sandbox", "browser.test")
    client = make_client(clock, connect_url="http://browser.test/sandbox/turnqey")

    start = client.start_authorization(
        state="st-123", platform="coinbase", identity=IDENTITY, grouping={"collection": COLLECTION}, redirect_uri=""
    )

    url = urlsplit(start.redirect_url)
    query = dict(parse_qsl(url.query))
    assert f"{url.scheme}://{url.netloc}{url.path}" == "http://browser.test/sandbox/turnqey/authorize"
    assert query == {
        "client": "turnqey-client-id",
        "platform": "coinbase",
        "identity": IDENTITY,
        "collection": COLLECTION,
        "state": "st-123",
        "checksum": start.checksum,
    }
    assert start.checksum == authorization_checksum(query, APP_SECRET)
    assert APP_SECRET not in start.redirect_url


def test_authorize_url_without_a_collection_lets_turnqey_create_one(clock: FixedClock) -> None:
    start = make_client(clock).start_authorization(
        state="st", platform="gemini", identity=IDENTITY, grouping={}, redirect_uri=""
    )

    assert start.redirect_url.startswith(f"{BASE}/authorize?")
    assert "collection" not in dict(parse_qsl(urlsplit(start.redirect_url).query))


# --- callback -----------------------------------------------------------------------------


def callback(**overrides: str) -> dict[str, str]:
    params = {
        "state": "st-123",
        "identity": IDENTITY,
        "collection": COLLECTION,
        "platform": "coinbase",
        "status": "success",
    }
    params.update(overrides)
    return params


def test_successful_callback_yields_the_source_account_and_grouping(
    rsps: responses.RequestsMock, doc_clock: FixedClock
) -> None:
    rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    rsps.add(responses.GET, IDENTITY_URL, json=load_fixture("turnqey_accounts"))

    grant = make_client(doc_clock).complete_authorization(params=callback(), platform="coinbase", identity=IDENTITY)

    assert grant.external_account_id == "cb-user-123"
    assert dict(grant.grouping) == {"collection": COLLECTION, "identity": IDENTITY}
    assert list(grant.credentials) == []
    assert [a.external_id for a in grant.accounts or []] == ["acc-1", "acc-2"]


def test_a_rewritten_collection_in_the_callback_is_not_what_the_grant_keeps(
    rsps: responses.RequestsMock, doc_clock: FixedClock
) -> None:
    rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    rsps.add(responses.GET, IDENTITY_URL, json=load_fixture("turnqey_accounts"))
    elsewhere = "00000000-0000-4000-8000-000000000000"

    grant = make_client(doc_clock).complete_authorization(
        params=callback(collection=elsewhere), platform="coinbase", identity=IDENTITY
    )

    assert dict(grant.grouping) == {"collection": COLLECTION, "identity": IDENTITY}


@pytest.mark.parametrize("status", ["expired", "revoked"])
def test_success_in_the_callback_is_no_grant_while_turnqey_lists_no_active_account(
    rsps: responses.RequestsMock, doc_clock: FixedClock, status: str
) -> None:
    body = load_fixture("turnqey_accounts")
    for account in body["result"]["accounts"]:
        account["status"] = status
    rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    rsps.add(responses.GET, IDENTITY_URL, json=body)

    with pytest.raises(AuthorizationDenied) as info:
        make_client(doc_clock).complete_authorization(params=callback(), platform="coinbase", identity=IDENTITY)

    assert info.value.outcome == "error"
    assert "does not list this authorization as active" in info.value.message


def test_a_grant_holds_only_the_accounts_turnqey_lists_as_active(
    rsps: responses.RequestsMock, doc_clock: FixedClock
) -> None:
    body = load_fixture("turnqey_accounts")
    body["result"]["accounts"][0]["status"] = "expired"
    rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    rsps.add(responses.GET, IDENTITY_URL, json=body)

    grant = make_client(doc_clock).complete_authorization(params=callback(), platform="coinbase", identity=IDENTITY)

    assert [a.external_id for a in grant.accounts or []] == ["acc-2"]


@pytest.mark.parametrize(("status", "outcome"), [("denied", "denied"), ("error", "error")])
def test_declined_or_failed_callback_is_an_outcome_in_plain_words(
    doc_clock: FixedClock, status: str, outcome: str
) -> None:
    params = callback(status=status, error_description="User cancelled at Coinbase")

    with pytest.raises(AuthorizationDenied) as info:
        make_client(doc_clock).complete_authorization(params=params, platform="coinbase", identity=IDENTITY)

    assert info.value.outcome == outcome
    assert "Coinbase via Turnqey" in info.value.message
    assert "User cancelled at Coinbase" in info.value.message


def test_callback_for_another_identity_is_refused(doc_clock: FixedClock) -> None:
    with pytest.raises(AuthorizationDenied):
        make_client(doc_clock).complete_authorization(
            params=callback(identity="someone-else"), platform="coinbase", identity=IDENTITY
        )


def test_success_without_accounts_yet_is_transient(rsps: responses.RequestsMock, doc_clock: FixedClock) -> None:
    rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    rsps.add(responses.GET, IDENTITY_URL, json={**load_fixture("turnqey_accounts"), "result": {"accounts": []}})

    with pytest.raises(ProviderError) as info:
        make_client(doc_clock).complete_authorization(
            params=callback(platform="kraken"), platform="kraken", identity=IDENTITY
        )

    assert info.value.kind == ErrorKind.TRANSIENT


# --- probe and account statuses ------------------------------------------------------------


def accounts_with_statuses(*statuses: str) -> dict[str, Any]:
    body = load_fixture("turnqey_accounts")
    mine = [a for a in body["result"]["accounts"] if a["platform"] == "coinbase" and a["identity"] == IDENTITY]
    for account, status in zip(mine, statuses, strict=True):
        account["status"] = status
    return body


@pytest.mark.parametrize(
    ("statuses", "reason"),
    [
        (("revoked", "active"), FailureReason.REVOKED),
        (("expired", "revoked"), FailureReason.REVOKED),
        (("expired", "expired"), FailureReason.EXPIRED),
    ],
)
def test_account_status_maps_to_reconnect_reason(
    rsps: responses.RequestsMock, doc_clock: FixedClock, statuses: tuple[str, str], reason: FailureReason
) -> None:
    rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    rsps.add(responses.GET, COLLECTION_URL, json=accounts_with_statuses(*statuses))

    with pytest.raises(ProviderError) as info:
        make_client(doc_clock).probe(connection=connection())

    assert info.value.kind == ErrorKind.REAUTH_REQUIRED
    assert info.value.reason == reason
    assert "Coinbase via Turnqey" in info.value.message


def test_partly_expired_connection_reports_its_active_accounts(
    rsps: responses.RequestsMock, doc_clock: FixedClock
) -> None:
    rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    rsps.add(responses.GET, COLLECTION_URL, json=accounts_with_statuses("expired", "active"))

    accounts = make_client(doc_clock).probe(connection=connection())

    assert [a.external_id for a in accounts] == ["acc-2"]


def test_probe_ignores_other_identities_and_platforms(rsps: responses.RequestsMock, doc_clock: FixedClock) -> None:
    # acc-4 (another identity) is revoked and acc-3 is on gemini: neither is this connection's.
    rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    rsps.add(responses.GET, COLLECTION_URL, json=load_fixture("turnqey_accounts"))

    accounts = make_client(doc_clock).probe(connection=connection())

    assert {a.external_id for a in accounts} == {"acc-1", "acc-2"}


def test_probe_by_identity_when_no_collection_is_known(rsps: responses.RequestsMock, doc_clock: FixedClock) -> None:
    rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    rsps.add(responses.GET, IDENTITY_URL, json=load_fixture("turnqey_accounts"))

    accounts = make_client(doc_clock).probe(connection=connection(identity=IDENTITY))

    assert {a.external_id for a in accounts} == {"acc-1", "acc-2"}


def test_probe_falls_back_to_the_households_collection_and_the_clients_identity(
    rsps: responses.RequestsMock, doc_clock: FixedClock
) -> None:
    # A row stored before connections kept their own grouping.
    rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    collection_route = rsps.add(responses.GET, COLLECTION_URL, json=load_fixture("turnqey_accounts"))
    state = ConnectionState(platform="coinbase", identity=IDENTITY, household_grouping={"collection": COLLECTION})

    accounts = make_client(doc_clock).probe(connection=state)

    # acc-4 belongs to another identity in the same collection: not this client's.
    assert {a.external_id for a in accounts} == {"acc-1", "acc-2"}
    assert collection_route.call_count == 1


def test_probe_by_the_clients_identity_when_no_collection_is_known(
    rsps: responses.RequestsMock, doc_clock: FixedClock
) -> None:
    rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    identity_route = rsps.add(responses.GET, IDENTITY_URL, json=load_fixture("turnqey_accounts"))

    accounts = make_client(doc_clock).probe(connection=ConnectionState(platform="coinbase", identity=IDENTITY))

    assert {a.external_id for a in accounts} == {"acc-1", "acc-2"}
    assert identity_route.call_count == 1


def test_the_connections_own_grouping_wins_over_the_households(
    rsps: responses.RequestsMock, doc_clock: FixedClock
) -> None:
    rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    rsps.add(responses.GET, COLLECTION_URL, json=load_fixture("turnqey_accounts"))
    state = dataclasses.replace(
        connection(),
        identity="9c3a2f70-0000-4000-8000-000000000000",
        household_grouping={"collection": "5b1d4e2a-0000-4000-8000-000000000000"},
    )

    accounts = make_client(doc_clock).probe(connection=state)

    assert {a.external_id for a in accounts} == {"acc-1", "acc-2"}
    assert [call.request.url for call in rsps.calls][1:] == [COLLECTION_URL]


def test_a_connection_without_any_identity_asks_for_reconnect(
    rsps: responses.RequestsMock, doc_clock: FixedClock
) -> None:
    with pytest.raises(ProviderError) as info:
        make_client(doc_clock).probe(connection=ConnectionState(platform="coinbase"))

    assert info.value.reason == FailureReason.EXPIRED
    assert len(rsps.calls) == 0


def test_vanished_collection_asks_for_reconnect(rsps: responses.RequestsMock, doc_clock: FixedClock) -> None:
    rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    rsps.add(responses.GET, COLLECTION_URL, json=load_fixture("turnqey_collection_not_found"), status=404)

    with pytest.raises(ProviderError) as info:
        make_client(doc_clock).probe(connection=connection())

    assert info.value.reason == FailureReason.REVOKED


def test_html_not_found_page_is_no_verdict_on_the_connection(
    rsps: responses.RequestsMock, doc_clock: FixedClock
) -> None:
    rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    rsps.add(responses.GET, COLLECTION_URL, body="<html>Not Found</html>", status=404, content_type="text/html")

    with pytest.raises(ProviderError) as info:
        make_client(doc_clock).probe(connection=connection())

    assert info.value.kind == ErrorKind.TRANSIENT


def test_unknown_account_status_is_transient(rsps: responses.RequestsMock, doc_clock: FixedClock) -> None:
    rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    rsps.add(responses.GET, COLLECTION_URL, json=accounts_with_statuses("paused", "active"))

    with pytest.raises(ProviderError) as info:
        make_client(doc_clock).probe(connection=connection())

    assert info.value.kind == ErrorKind.TRANSIENT
    assert "result.accounts[0].status" in info.value.message


def test_connections_hold_no_secret_and_never_renew(doc_clock: FixedClock) -> None:
    client = make_client(doc_clock)

    assert client.renewal_due_at(connection()) is None
    assert client.renew(connection=connection()) == ()
    assert client.revoke(connection=connection()) is None


# --- replies the sandbox does not serve ------------------------------------------------------
# (tests/contract runs everything else every client must do, over real HTTP)

SECRETS = (APP_SECRET, DOC_TOKEN)


def test_probe_reads_the_documented_balances_as_exact_decimals(
    rsps: responses.RequestsMock, doc_clock: FixedClock
) -> None:
    rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    rsps.add(responses.GET, COLLECTION_URL, json=load_fixture("turnqey_accounts"))

    accounts = make_client(doc_clock).probe(connection=connection())

    assert all(type(account.balance) is Decimal for account in accounts)
    assert {account.external_id: account.balance for account in accounts} == {
        "acc-1": Decimal("0.50000000"),
        "acc-2": Decimal("12.000000000000000001"),
    }


@pytest.mark.parametrize("balance", NOT_DECIMAL_STRINGS)
def test_a_balance_that_is_not_a_decimal_string_is_transient(
    rsps: responses.RequestsMock, doc_clock: FixedClock, balance: object
) -> None:
    body = load_fixture("turnqey_accounts")
    body["result"]["accounts"][0]["balance"] = balance
    rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    rsps.add(responses.GET, COLLECTION_URL, json=body)

    with pytest.raises(ProviderError) as info:
        make_client(doc_clock).probe(connection=connection())

    assert info.value.kind == ErrorKind.TRANSIENT
    assert "balance" in info.value.message
    assert_no_secret_in(info.value, SECRETS)


def test_a_reply_that_is_json_but_not_an_object_is_transient(
    rsps: responses.RequestsMock, doc_clock: FixedClock
) -> None:
    rsps.add(responses.POST, TOKEN_URL, json=token_reply())
    rsps.add(responses.GET, COLLECTION_URL, json=[1, 2, 3])

    with pytest.raises(ProviderError) as info:
        make_client(doc_clock).probe(connection=connection())

    assert info.value.kind == ErrorKind.TRANSIENT
    assert "Turnqey" in info.value.message
    assert_no_secret_in(info.value, SECRETS)
