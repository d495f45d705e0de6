"""Coinify: the three grants, rotating refresh tokens, invalid_grant, 401 versus 403, revoke."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

import pytest
import responses

from connections.providers.base import ConnectionState
from connections.providers.coinify import CoinifyClient, invalid_grant_reason
from connections.providers.errors import ErrorKind, FailureReason, InvalidCredentialFields, ProviderError
from tests.contract.support import assert_no_secret_in

from .support import NOT_DECIMAL_STRINGS, FixedClock, app_config, credential, load_fixture, request_json

BASE = "http://provider.test/sandbox/coinify"
AUTH_URL = f"{BASE}/auth"
REVOKE_URL = f"{BASE}/auth/revoke"
ME_URL = f"{BASE}/me"
DOC = load_fixture("coinify_auth_success")
ACCESS = DOC["access_token"]
REFRESH = DOC["refresh_token"]
OFFLINE = load_fixture("coinify_offline_request")["offline_token"]
PARTNER_ID = load_fixture("coinify_password_request")["partnerId"]
NEW_REFRESH = "rotated-refresh-token-2"


def make_client(clock: FixedClock) -> CoinifyClient:
    return CoinifyClient(app_config("coinify", client_id=PARTNER_ID), clock=clock)


def connection(clock: FixedClock, *, offline: bool = False, access_age: timedelta = timedelta(0)) -> ConnectionState:
    issued = clock.at - access_age
    creds = {
        "access": credential("access", ACCESS, issued_at=issued, lifetime=timedelta(seconds=1200)),
        "refresh": credential("refresh", REFRESH, issued_at=issued, lifetime=timedelta(hours=24)),
    }
    if offline:
        creds["offline"] = credential("offline", OFFLINE, issued_at=issued)
    return ConnectionState(platform="coinify", external_account_id="12345", credentials=creds)


def oauth_error(description: str, error: str = "invalid_grant") -> dict[str, str]:
    return {"error": error, "error_description": description}


# --- the three grants, with the doc's request bodies ----------------------------------------


def test_password_grant_sends_the_documented_body(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    rsps.add(responses.POST, AUTH_URL, json=DOC)
    rsps.add(responses.GET, ME_URL, json=load_fixture("coinify_me"))

    grant = make_client(clock).connect_with_credentials(
        fields={"email": "client@example.com", "password": "password"}, platform="coinify"
    )

    assert request_json(rsps.calls[0].request) == load_fixture("coinify_password_request")
    assert rsps.calls[1].request.headers["Authorization"] == f"Bearer {ACCESS}"
    assert grant.external_account_id == "12345"
    kinds = {c.kind: c for c in grant.credentials}
    assert set(kinds) == {"access", "refresh"}
    assert kinds["access"].expires_at == clock.at + timedelta(seconds=1200)
    assert kinds["refresh"].expires_at == clock.at + timedelta(hours=24)
    assert "password" not in {c.kind for c in grant.credentials}
    assert all(c.value != "password" for c in grant.credentials)


def test_offline_token_grant_sends_the_documented_body_and_keeps_the_token(
    rsps: responses.RequestsMock, clock: FixedClock
) -> None:
    rsps.add(responses.POST, AUTH_URL, json=DOC)
    rsps.add(responses.GET, ME_URL, json=load_fixture("coinify_me"))

    grant = make_client(clock).connect_with_credentials(fields={"offline_token": OFFLINE}, platform="coinify")

    assert request_json(rsps.calls[0].request) == load_fixture("coinify_offline_request")
    kinds = {c.kind: c for c in grant.credentials}
    assert set(kinds) == {"access", "refresh", "offline"}
    assert kinds["offline"].value == OFFLINE
    assert kinds["offline"].expires_at is None


def test_refresh_rotates_and_returns_the_new_refresh_token(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    rsps.add(responses.POST, AUTH_URL, json={**DOC, "access_token": "new-access", "refresh_token": NEW_REFRESH})
    clock.advance(minutes=19)

    renewed = make_client(clock).renew(connection=connection(clock, access_age=timedelta(minutes=19)))

    assert request_json(rsps.calls[0].request) == load_fixture("coinify_refresh_request")
    kinds = {c.kind: c for c in renewed}
    assert kinds["access"].value == "new-access"
    assert kinds["refresh"].value == NEW_REFRESH
    assert kinds["refresh"].expires_at == clock.at + timedelta(hours=24)


def test_renewal_prefers_the_offline_token(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    rsps.add(responses.POST, AUTH_URL, json=DOC)

    make_client(clock).renew(connection=connection(clock, offline=True))

    assert request_json(rsps.calls[0].request) == load_fixture("coinify_offline_request")


@pytest.mark.parametrize(
    ("description", "reason"),
    [
        ("Invalid email or password.", FailureReason.CREDENTIALS_INVALID),
        ("Refresh token has expired.", FailureReason.EXPIRED),
        ("Refresh token has already been used.", FailureReason.REVOKED),
        ("Refresh token has been revoked.", FailureReason.REVOKED),
        ("Offline token is invalid.", FailureReason.REVOKED),
        ("User account is deactivated.", FailureReason.REVOKED),
        ("Something new Coinify says.", FailureReason.EXPIRED),
    ],
)
def test_invalid_grant_asks_for_reconnect_with_the_mapped_reason_and_is_never_retried(
    rsps: responses.RequestsMock, clock: FixedClock, description: str, reason: FailureReason
) -> None:
    rsps.add(responses.POST, AUTH_URL, json=oauth_error(description), status=400)

    with pytest.raises(ProviderError) as info:
        make_client(clock).renew(connection=connection(clock))

    assert info.value.kind == ErrorKind.REAUTH_REQUIRED
    assert info.value.reason == reason
    assert invalid_grant_reason(description)[0] == reason
    assert len(rsps.calls) == 1
    assert REFRESH not in info.value.message


def test_wrong_password_is_credentials_invalid(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    rsps.add(responses.POST, AUTH_URL, json=oauth_error("Invalid email or password."), status=400)

    with pytest.raises(ProviderError) as info:
        make_client(clock).connect_with_credentials(
            fields={"email": "client@example.com", "password": "hunter2-wrong"}, platform="coinify"
        )

    assert info.value.reason == FailureReason.CREDENTIALS_INVALID
    assert "hunter2-wrong" not in info.value.message + repr(info.value)


def test_refresh_during_an_outage_is_not_retried(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    # A refresh token is single use: a POST is never repeated automatically.
    rsps.add(responses.POST, AUTH_URL, status=503, body="down")

    with pytest.raises(ProviderError) as info:
        make_client(clock).renew(connection=connection(clock))

    assert info.value.kind == ErrorKind.TRANSIENT
    assert len(rsps.calls) == 1


def test_malformed_request_error_is_transient_not_a_reconnect(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    rsps.add(responses.POST, AUTH_URL, json=oauth_error("grant_type is missing", "invalid_request"), status=400)

    with pytest.raises(ProviderError) as info:
        make_client(clock).renew(connection=connection(clock))

    assert info.value.kind == ErrorKind.TRANSIENT
    assert "invalid_request" in info.value.message


def test_lapsed_refresh_token_asks_for_reconnect_without_a_call(
    rsps: responses.RequestsMock, clock: FixedClock
) -> None:
    state = connection(clock)
    clock.advance(hours=25)

    with pytest.raises(ProviderError) as info:
        make_client(clock).renew(connection=state)

    assert info.value.reason == FailureReason.EXPIRED
    assert len(rsps.calls) == 0


# --- form validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"email": "client@example.com"},
        {"password": "pw"},
        {"email": "client@example.com", "password": "pw", "offline_token": OFFLINE},
    ],
)
def test_incomplete_or_doubled_credentials_are_refused_before_any_call(
    rsps: responses.RequestsMock, clock: FixedClock, fields: dict[str, str]
) -> None:
    with pytest.raises(InvalidCredentialFields) as info:
        make_client(clock).connect_with_credentials(fields=fields, platform="coinify")

    assert OFFLINE not in str(info.value)
    assert len(rsps.calls) == 0


def test_form_fields_say_which_pair_to_use(clock: FixedClock) -> None:
    fields = {f.name: f for f in make_client(clock).credential_fields()}

    assert set(fields) == {"email", "password", "offline_token"}
    assert not any(f.required for f in fields.values())
    assert fields["password"].secret
    assert fields["offline_token"].secret
    # Email and password go together; the offline token is the other choice, and the form says so.
    assert fields["email"].group == fields["password"].group != fields["offline_token"].group
    form = make_client(clock).credential_form()
    assert form.empty_message == "Enter either the email and password, or an offline token."
    assert "offline token" in form.groups[fields["offline_token"].group].lower()


# --- probe: 401 versus 403 --------------------------------------------------------------------


def test_rejected_access_token_asks_the_lifecycle_to_renew_and_retry(
    rsps: responses.RequestsMock, clock: FixedClock
) -> None:
    rsps.add(responses.GET, ME_URL, json={"error": "invalid_token", "error_description": "Expired"}, status=401)

    with pytest.raises(ProviderError) as info:
        make_client(clock).probe(connection=connection(clock))

    assert info.value.kind == ErrorKind.REAUTH_REQUIRED
    assert info.value.reason == FailureReason.EXPIRED
    assert info.value.access_rejected is True


def test_deactivated_account_is_revoked(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    rsps.add(responses.GET, ME_URL, json={"error": "forbidden", "error_description": "Forbidden"}, status=403)

    with pytest.raises(ProviderError) as info:
        make_client(clock).probe(connection=connection(clock))

    assert info.value.reason == FailureReason.REVOKED
    assert info.value.access_rejected is False


def test_lapsed_access_token_is_rejected_without_a_call(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    state = connection(clock)
    clock.advance(minutes=21)

    with pytest.raises(ProviderError) as info:
        make_client(clock).probe(connection=state)

    assert info.value.access_rejected is True
    assert len(rsps.calls) == 0


def test_connect_that_fails_after_sign_in_revokes_the_fresh_sign_in(
    rsps: responses.RequestsMock, clock: FixedClock
) -> None:
    rsps.add(responses.POST, AUTH_URL, json=DOC)
    rsps.add(responses.GET, ME_URL, status=500)
    revoke_route = rsps.add(responses.POST, REVOKE_URL, status=204)

    with pytest.raises(ProviderError):
        make_client(clock).connect_with_credentials(
            fields={"email": "client@example.com", "password": "password"}, platform="coinify"
        )

    assert revoke_route.call_count == 1


# --- renewal deadlines ----------------------------------------------------------------------


def test_access_token_renews_two_minutes_before_expiry(clock: FixedClock) -> None:
    client = make_client(clock)
    state = connection(clock)

    # 20-minute token: max(60 s, 10 % = 120 s) before expiry.
    assert client.renewal_due_at(state) == clock.at + timedelta(minutes=18)


def test_refresh_token_end_of_life_is_the_reconnect_deadline(clock: FixedClock) -> None:
    client = make_client(clock)

    assert client.reconnect_deadline(connection(clock)) == clock.at + timedelta(hours=24)
    assert client.reconnect_deadline(connection(clock, offline=True)) is None


# --- revoke (RFC 7009) ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 204])
def test_revoke_sends_the_documented_body(rsps: responses.RequestsMock, clock: FixedClock, status: int) -> None:
    rsps.add(responses.POST, REVOKE_URL, status=status)

    make_client(clock).revoke(connection=connection(clock))

    assert request_json(rsps.calls[0].request) == load_fixture("coinify_revoke_request")


def test_revoke_during_an_outage_is_transient_with_the_hint(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    rsps.add(responses.POST, REVOKE_URL, status=503, headers={"Retry-After": "30"})

    with pytest.raises(ProviderError) as info:
        make_client(clock).revoke(connection=connection(clock))

    assert info.value.kind == ErrorKind.TRANSIENT
    assert info.value.retry_after == 30
    assert len(rsps.calls) == 1


def test_revoke_refused_with_400_counts_as_done_and_is_noted(
    rsps: responses.RequestsMock, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    rsps.add(responses.POST, REVOKE_URL, json={"error": "invalid_request", "error_description": "bad"}, status=400)

    with caplog.at_level(logging.WARNING):
        make_client(clock).revoke(connection=connection(clock))

    assert "invalid_request" in caplog.text
    assert REFRESH not in caplog.text


# --- replies the sandbox does not serve ------------------------------------------------------
# (tests/contract runs everything else every client must do, over real HTTP)

SECRETS = ("coinify-app-secret-s3cr3t", ACCESS, REFRESH, OFFLINE)


def test_probe_reads_the_documented_balances_as_exact_decimals(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    rsps.add(responses.GET, ME_URL, json=load_fixture("coinify_me"))

    accounts = make_client(clock).probe(connection=connection(clock))

    assert all(type(account.balance) is Decimal for account in accounts)
    assert {account.external_id: account.balance for account in accounts} == {
        "acc-btc": Decimal("0.50000000"),
        "acc-eur": Decimal("1250.75"),
    }


@pytest.mark.parametrize("balance", NOT_DECIMAL_STRINGS)
def test_a_balance_that_is_not_a_decimal_string_is_transient(
    rsps: responses.RequestsMock, clock: FixedClock, balance: object
) -> None:
    body = load_fixture("coinify_me")
    body["accounts"][0]["balance"] = balance
    rsps.add(responses.GET, ME_URL, json=body)

    with pytest.raises(ProviderError) as info:
        make_client(clock).probe(connection=connection(clock))

    assert info.value.kind == ErrorKind.TRANSIENT
    assert "balance" in info.value.message
    assert_no_secret_in(info.value, SECRETS)


def test_a_reply_that_is_json_but_not_an_object_is_transient(rsps: responses.RequestsMock, clock: FixedClock) -> None:
    rsps.add(responses.GET, ME_URL, json=[1, 2, 3])

    with pytest.raises(ProviderError) as info:
        make_client(clock).probe(connection=connection(clock))

    assert info.value.kind == ErrorKind.TRANSIENT
    assert "Coinify" in info.value.message
    assert_no_secret_in(info.value, SECRETS)
