"""Dapi's client against Dapi's simulator: Connect page, single-use access code, permanent token, delink."""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import quote_plus

import pytest

from connections.providers.base import AppConfig, ConnectionState, Grant, ProviderClient
from connections.providers.errors import AuthorizationDenied, ErrorKind, FailureReason, ProviderError

from .contract import Expected, ProviderContract
from .support import ConsentAnswer, Sandbox, browser_consent, consent_page

APP_KEY = "dapi-contract-app"
REDIRECT_URI = "https://portal.test/connect/dapi/callback/"
EXCHANGE = ("POST", "/v2/auth/ExchangeToken")
IDENTITY = ("POST", "/v2/data/identity/get")
ACCOUNTS = ("POST", "/v2/data/accounts/get")
DELINK = ("POST", "/v2/users/DelinkUser")


class TestDapiContract(ProviderContract):
    provider = "dapi"
    mount = "dapi"
    display_name = "Dapi"
    platform = "binance"
    accounts_field = "accounts"
    account_field = "id"
    probe_path = "/v2/data/accounts/get"
    probe_method = "POST"
    renew_calls = ()
    disconnect_calls = ((*DELINK, 200),)
    permanent_failures: ClassVar[dict[str, Expected]] = {
        "delinked_at_dapi": (ErrorKind.REAUTH_REQUIRED, FailureReason.REVOKED),
        "access_code_reused": (ErrorKind.REAUTH_REQUIRED, FailureReason.EXPIRED),
        "access_code_past_its_lifetime": (ErrorKind.REAUTH_REQUIRED, FailureReason.EXPIRED),
        "access_code_expired_by_dapi": (ErrorKind.REAUTH_REQUIRED, FailureReason.EXPIRED),
        "wrong_app_secret": (ErrorKind.APP_CREDENTIALS_INVALID, None),
    }

    @pytest.fixture(autouse=True)
    def _portal_at_the_redirect_uris_host(self, settings: Any) -> None:
        # The client sends only the portal's own callback (ProviderClient.portal_callback).
        settings.PORTAL_BASE_URL = "https://portal.test"

    # --- hooks ----------------------------------------------------------------------
    def register(self, world: Sandbox) -> AppConfig:
        return self.app_registered(
            world, client_id=APP_KEY, client_secret=secrets.token_urlsafe(24), redirect_uri=REDIRECT_URI
        )

    def connect_url(self, client: ProviderClient, *, state: str, redirect_uri: str = REDIRECT_URI) -> str:
        return client.start_authorization(
            state=state, platform=self.platform, identity="", grouping={}, redirect_uri=redirect_uri
        ).redirect_url

    def approve(self, client: ProviderClient, *, username: str = "alice", decision: str = "approve") -> ConsentAnswer:
        """The user signs in on the Connect page and decides; the redirect back is captured."""
        state = secrets.token_urlsafe(24)
        answer = browser_consent(self.connect_url(client, state=state), decision=decision, username=username)
        assert answer.location.startswith(REDIRECT_URI + "?")
        assert answer.params["state"] == state
        return answer

    def complete(self, client: ProviderClient, answer: ConsentAnswer) -> Grant:
        return client.complete_authorization(params=answer.params, platform=self.platform, identity="")

    def connect(self, world: Sandbox, client: ProviderClient, *, username: str = "alice") -> Grant:
        return self.complete(client, self.approve(client, username=username))

    def probe_calls(self, connection: ConnectionState) -> list[tuple[str, str]]:
        return [ACCOUNTS]

    def provoke(
        self, failure: str, world: Sandbox, app: AppConfig, client: ProviderClient, connection: ConnectionState
    ) -> Callable[[], object]:
        if failure == "delinked_at_dapi":
            world.act("dapi", "delink", user_id=connection.external_account_id)
            return lambda: client.probe(connection=connection)
        if failure == "access_code_reused":
            answer = self.approve(client, username="bob")
            self.complete(client, answer)
            return lambda: self.complete(client, answer)
        if failure == "access_code_past_its_lifetime":
            world.lifetimes("dapi", access_code=1)
            answer = self.approve(client, username="bob")
            time.sleep(1.1)  # past the one-second lifetime
            return lambda: self.complete(client, answer)
        if failure == "access_code_expired_by_dapi":
            answer = self.approve(client, username="bob")
            world.act("dapi", "expire", connection_id=answer.params["connectionID"])
            return lambda: self.complete(client, answer)
        wrong = self.client(dataclasses.replace(app, client_secret="not-the-app-secret"))
        answer = self.approve(wrong, username="bob")
        return lambda: self.complete(wrong, answer)

    # --- Dapi only --------------------------------------------------------------------
    def test_connect_exchanges_the_code_once_and_keeps_the_permanent_token(
        self, world: Sandbox, app: AppConfig
    ) -> None:
        client = self.client(app)
        answer = self.approve(client)

        grant = self.complete(client, answer)

        assert {credential.kind for credential in grant.credentials} == {"permanent", "user_secret"}
        assert all(credential.expires_at is None for credential in grant.credentials)
        assert grant.external_account_id == answer.params["userID"]
        assert grant.grouping == {"connectionID": answer.params["connectionID"]}
        assert [(c.method, c.path, c.status) for c in world.calls("dapi")] == [
            ("GET", "/connect", 200),
            ("POST", "/connect", 302),
            (*EXCHANGE, 200),
            (*IDENTITY, 200),
            (*ACCOUNTS, 200),
        ]

    def test_a_rewritten_user_id_in_the_callback_does_not_name_the_account(
        self, world: Sandbox, app: AppConfig
    ) -> None:
        client = self.client(app)
        alice = self.connect(world, client, username="alice")
        bob_signs_in = self.approve(client, username="bob")
        # Bob's browser claims to be Alice on the way back.
        rewritten = {**bob_signs_in.params, "userID": alice.external_account_id}

        grant = self.complete(client, ConsentAnswer(location=bob_signs_in.location, params=rewritten))

        assert grant.external_account_id == bob_signs_in.params["userID"] != alice.external_account_id

    def test_a_declined_connect_is_reported_and_nothing_is_exchanged(self, world: Sandbox, app: AppConfig) -> None:
        client = self.client(app)
        answer = self.approve(client, decision="deny", username="")

        with pytest.raises(AuthorizationDenied) as info:
            self.complete(client, answer)

        assert info.value.outcome == "denied"
        assert "Binance via Dapi" in info.value.message
        assert [c.path for c in world.calls("dapi")] == ["/connect", "/connect"]

    def test_the_connect_page_refuses_a_redirect_uri_other_than_the_registered_one(
        self, world: Sandbox, app: AppConfig
    ) -> None:
        client = self.client(app)

        assert consent_page(self.connect_url(client, state="s-1")).status_code == 200
        # The client never builds one (it sends the portal's own callback only): rewritten on the way.
        elsewhere = self.connect_url(client, state="s-1").replace(
            quote_plus(REDIRECT_URI), quote_plus("https://evil.test/cb")
        )
        assert consent_page(elsewhere).status_code == 400

    def test_disconnect_delinks_and_a_second_disconnect_is_quiet(self, world: Sandbox, app: AppConfig) -> None:
        client = self.client(app)
        connection = self.connected(world, client)

        client.revoke(connection=connection)
        with pytest.raises(ProviderError) as info:
            client.probe(connection=connection)
        world.clear_log()
        again = client.revoke(connection=connection)

        assert (info.value.kind, info.value.reason) == (ErrorKind.REAUTH_REQUIRED, FailureReason.REVOKED)
        assert again is None
        assert [(c.method, c.path, c.status) for c in world.calls("dapi")] == [(*DELINK, 401)]

    def test_a_wrong_app_secret_on_the_probe_is_the_apps_problem(self, world: Sandbox, app: AppConfig) -> None:
        connection = self.connected(world, self.client(app))
        wrong = self.client(dataclasses.replace(app, client_secret="not-the-app-secret"))

        with pytest.raises(ProviderError) as info:
            wrong.probe(connection=connection)

        assert info.value.kind == ErrorKind.APP_CREDENTIALS_INVALID
        assert info.value.status_code == 401
