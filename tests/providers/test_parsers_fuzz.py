"""Whatever a provider sends back, a client either succeeds or raises ProviderError: it never crashes."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connections.providers.base import AccountData, ConnectionState, Grant, IssuedCredential
from connections.providers.bloquo import BloquoClient, encode_api_key
from connections.providers.coinify import CoinifyClient
from connections.providers.dapi import DapiClient
from connections.providers.errors import ProviderError
from connections.providers.turnqey import TurnqeyClient

from .support import FixedClock, app_config, load_fixture

NOW = datetime(2024, 6, 14, 6, 59, 37, tzinfo=UTC)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@st.composite
def near_misses(draw: st.DrawFn, fixture: str) -> Any:
    """A documented body with one part deleted or replaced by anything at all."""
    body = load_fixture(fixture)
    path = draw(st.sampled_from(_paths(body)))
    parent = body
    for step in path[:-1]:
        parent = parent[step]
    if draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_values)
    return body


def bodies(fixture: str) -> st.SearchStrategy[bytes]:
    as_json = st.one_of(near_misses(fixture), json_values).map(lambda value: json.dumps(value).encode())
    return st.one_of(as_json, as_json.map(lambda raw: raw[: len(raw) // 2]), st.binary(max_size=64))


statuses = st.sampled_from([200, 200, 200, 400, 401, 403, 404])


def _survives(call: Callable[[], Any]) -> None:
    try:
        result = call()
    except ProviderError:
        return
    if isinstance(result, Grant):
        assert result.external_account_id
        return
    assert all(isinstance(account, AccountData) for account in result)


def _cred(kind: str, value: str, minutes: int | None = None) -> IssuedCredential:
    return IssuedCredential(
        kind=kind, value=value, issued_at=NOW, expires_at=NOW + timedelta(minutes=minutes) if minutes else None
    )


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(body=bodies("turnqey_accounts"), status=statuses)
def test_turnqey_probe_never_crashes(body: bytes, status: int) -> None:
    base = "http://provider.test/turnqey"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.POST, f"{base}/v1/api/token", json=load_fixture("turnqey_token_success"))
        rsps.add(responses.GET, f"{base}/v1/api/collections/c1/accounts", body=body, status=status)
        client = TurnqeyClient(app_config("turnqey", base_url=base), clock=FixedClock(NOW))
        state = ConnectionState(platform="coinbase", grouping={"collection": "c1", "identity": "i1"})
        _survives(lambda: client.probe(connection=state))


@FUZZ
@given(body=bodies("turnqey_token_success"), status=statuses)
def test_turnqey_token_parser_never_crashes(body: bytes, status: int) -> None:
    base = "http://provider.test/turnqey"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.POST, f"{base}/v1/api/token", body=body, status=status)
        client = TurnqeyClient(app_config("turnqey", base_url=base), clock=FixedClock(NOW))
        try:
            token = client.app_token()
        except ProviderError:
            return
        assert token.value
        assert token.expires_at is not None


@FUZZ
@given(auth=bodies("coinify_auth_success"), me=bodies("coinify_me"), status=statuses)
def test_coinify_connect_never_crashes(auth: bytes, me: bytes, status: int) -> None:
    base = "http://provider.test/coinify"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.POST, f"{base}/auth", body=auth, status=status)
        rsps.add(responses.GET, f"{base}/me", body=me, status=200)
        rsps.add(responses.POST, f"{base}/auth/revoke", status=204)
        client = CoinifyClient(app_config("coinify", base_url=base), clock=FixedClock(NOW))
        _survives(
            lambda: client.connect_with_credentials(fields={"email": "a@example.com", "password": "pw"}, platform="c")
        )


@FUZZ
@given(body=bodies("bloquo_accounts"), token=bodies("bloquo_token_success"), status=statuses)
def test_bloquo_probe_and_renew_never_crash(body: bytes, token: bytes, status: int) -> None:
    base = "http://provider.test/bloquo"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, f"{base}/api/v1/accounting/accounts", body=body, status=status)
        rsps.add(responses.POST, f"{base}/api/v1/auth/token", body=token, status=status)
        client = BloquoClient(app_config("bloquo", base_url=base), clock=FixedClock(NOW))
        state = ConnectionState(
            platform="bloquo",
            credentials={"access": _cred("access", "t", 60), "api_key": _cred("api_key", encode_api_key("i", "s"))},
        )
        _survives(lambda: client.probe(connection=state))
        try:
            renewed = client.renew(connection=state)
        except ProviderError:
            return
        assert [c.kind for c in renewed] == ["access"]


@FUZZ
@given(
    exchange=bodies("dapi_exchange_success"),
    identity=bodies("dapi_identity"),
    accounts=bodies("dapi_accounts"),
    status=statuses,
)
def test_dapi_callback_never_crashes(exchange: bytes, identity: bytes, accounts: bytes, status: int) -> None:
    base = "http://provider.test/dapi"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.POST, f"{base}/v2/auth/ExchangeToken", body=exchange, status=status)
        rsps.add(responses.POST, f"{base}/v2/data/identity/get", body=identity, status=status)
        rsps.add(responses.POST, f"{base}/v2/data/accounts/get", body=accounts, status=status)
        client = DapiClient(app_config("dapi", base_url=base), clock=FixedClock(NOW))
        params = {k: v for k, v in load_fixture("dapi_connect_success").items() if k != "success"}
        _survives(lambda: client.complete_authorization(params=params, platform="binance", identity="x"))
