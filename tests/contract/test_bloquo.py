"""Bloquo's client against Bloquo's simulator: key pairs per connection, staging apart from production."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from connections.providers.base import AppConfig, ConnectionState, Grant, ProviderClient
from connections.providers.bloquo import BloquoClient, decode_api_key
from connections.providers.errors import ErrorKind, FailureReason, ProviderError

from .contract import TRICKLE_INTERVAL, Expected, ProviderContract
from .support import MovableClock, Sandbox, check, connection_from, with_credentials

TOKEN = ("POST", "/api/v1/auth/token")
ACCOUNTS = ("GET", "/api/v1/accounting/accounts")
CUSTOMER = ("GET", "/api/v1/accounting/customer")


def production_app(world: Sandbox) -> AppConfig:
    return AppConfig(provider="bloquo", environment="production", base_url=world.base_url("bloquo-production"))


def pair(key: dict[str, Any]) -> dict[str, str]:
    """The form fields a client types for a key pair the sandbox handed out."""
    return {"clientId": key["client_id"], "clientSecret": key["client_secret"]}


class TestBloquoContract(ProviderContract):
    provider = "bloquo"
    mount = "bloquo"
    display_name = "Bloquo"
    platform = "bloquo"
    accounts_field = "data"
    account_field = "id"
    probe_path = "/api/v1/accounting/accounts"
    probe_method = "GET"
    renew_calls = ((*TOKEN, ""),)
    disconnect_calls = ()
    permanent_failures: ClassVar[dict[str, Expected]] = {
        "key_revoked_at_bloquo": (ErrorKind.REAUTH_REQUIRED, FailureReason.REVOKED),
        "wrong_client_secret": (ErrorKind.REAUTH_REQUIRED, FailureReason.CREDENTIALS_INVALID),
        "staging_key_used_in_production": (ErrorKind.REAUTH_REQUIRED, FailureReason.CREDENTIALS_INVALID),
    }

    # --- hooks ----------------------------------------------------------------------
    def register(self, world: Sandbox) -> AppConfig:
        # Bloquo has no partner app to register: each connection brings its own
        # key pair. The staging mount is the sandbox environment.
        return AppConfig(provider="bloquo", environment="sandbox", base_url=world.base_url("bloquo"))

    def connect(self, world: Sandbox, client: ProviderClient, *, username: str = "alice") -> Grant:
        key = world.subject(self.mount, client_id=f"bq-{username}", name=username.title())
        grant = client.connect_with_credentials(fields=pair(key), platform=self.platform)
        assert grant.external_account_id == key["customer_id"]
        return grant

    def probe_calls(self, connection: ConnectionState) -> list[tuple[str, str]]:
        return [ACCOUNTS]

    def secrets(self, app: AppConfig, client: ProviderClient, connection: ConnectionState) -> list[str]:
        # The typed pair is kept inside the api_key credential; its secret alone must not surface either.
        pair = decode_api_key(connection.credentials["api_key"].value)
        assert pair is not None
        return [*super().secrets(app, client, connection), pair[1]]

    def provoke(
        self, failure: str, world: Sandbox, app: AppConfig, client: ProviderClient, connection: ConnectionState
    ) -> Callable[[], object]:
        if failure == "key_revoked_at_bloquo":
            world.act("bloquo", "revoke", customer_id=connection.external_account_id)
            return lambda: check(client, connection)
        key = world.subject("bloquo", client_id="bq-carol")
        if failure == "wrong_client_secret":
            fields = {**pair(key), "clientSecret": "not-" + key["client_secret"]}
            return lambda: client.connect_with_credentials(fields=fields, platform=self.platform)
        production = self.client(production_app(world))
        return lambda: production.connect_with_credentials(fields=pair(key), platform=self.platform)

    # --- Bloquo only ------------------------------------------------------------------
    def test_connect_sends_token_customer_accounts_and_keeps_the_pair(self, world: Sandbox, app: AppConfig) -> None:
        grant = self.connect(world, self.client(app))

        assert {credential.kind for credential in grant.credentials} == {"api_key", "access"}
        assert [(c.method, c.path, c.status) for c in world.calls("bloquo")] == [
            (*TOKEN, 200),
            (*CUSTOMER, 200),
            (*ACCOUNTS, 200),
        ]

    def test_staging_and_production_are_separate_apps(self, world: Sandbox, app: AppConfig) -> None:
        staging = self.client(app)
        production = self.client(production_app(world))
        staging_connection = self.connected(world, staging)
        production_key = world.subject("bloquo-production", client_id="bq-prod")

        production_grant = production.connect_with_credentials(fields=pair(production_key), platform="bloquo")
        with pytest.raises(ProviderError) as production_key_at_staging:
            staging.connect_with_credentials(fields=pair(production_key), platform="bloquo")
        with pytest.raises(ProviderError) as staging_token_at_production:
            production.probe(connection=staging_connection)

        assert production_grant.external_account_id == production_key["customer_id"]
        assert production_key_at_staging.value.reason == FailureReason.CREDENTIALS_INVALID
        assert staging_token_at_production.value.access_rejected is True
        assert [(c.path, c.status) for c in world.calls("bloquo-production")] == [
            (TOKEN[1], 200),
            (CUSTOMER[1], 200),
            (ACCOUNTS[1], 200),
            (ACCOUNTS[1], 401),
        ]

    def test_a_token_expired_at_bloquo_is_refused_then_renewed_and_accepted(
        self, world: Sandbox, app: AppConfig
    ) -> None:
        client = self.client(app)
        connection = self.connected(world, client)
        world.act("bloquo", "expire", customer_id=connection.external_account_id)
        world.clear_log()

        with pytest.raises(ProviderError) as info:
            client.probe(connection=connection)
        renewed = with_credentials(connection, client.renew(connection=connection))
        accounts = client.probe(connection=renewed)

        assert info.value.access_rejected is True
        assert (info.value.kind, info.value.reason, info.value.status_code) == (
            ErrorKind.REAUTH_REQUIRED,
            FailureReason.EXPIRED,
            401,
        )
        assert self.balances(accounts)
        assert [(c.method, c.path, c.status) for c in world.calls("bloquo")] == [
            (*ACCOUNTS, 401),
            (*TOKEN, 200),
            (*ACCOUNTS, 200),
        ]

    def test_a_token_request_trickled_past_the_total_deadline_gives_up_within_it(
        self, world: Sandbox, app: AppConfig, settings: Any
    ) -> None:
        client = self.client(app)
        connection = self.connected(world, client)
        world.fault("bloquo", path=TOKEN[1], kind="trickle", interval=TRICKLE_INTERVAL, count=1)
        world.clear_log()

        self.assert_gives_up_at_the_total_deadline(lambda: client.renew(connection=connection), settings)

        assert [(c.method, c.path, c.fault) for c in world.calls("bloquo")] == [(*TOKEN, "trickle")]

    def test_a_short_lived_token_is_renewed_before_the_probe(self, world: Sandbox, app: AppConfig) -> None:
        world.lifetimes("bloquo", access=60)
        client = self.client(app)
        connection = self.connected(world, client)
        world.clear_log()

        due = client.renewal_due_at(connection)
        assert due is not None
        assert due <= client.now()
        renewed, accounts = check(client, connection)

        assert renewed.credentials["access"].value != connection.credentials["access"].value
        assert self.balances(accounts)
        assert [(c.method, c.path, c.status) for c in world.calls("bloquo")] == [(*TOKEN, 200), (*ACCOUNTS, 200)]

    def test_a_token_past_its_expires_in_is_refused_unsent_and_renewal_works(
        self, world: Sandbox, app: AppConfig
    ) -> None:
        world.lifetimes("bloquo", access=5)
        clock = MovableClock()
        client = BloquoClient(app, clock=clock)
        connection = self.connected(world, client)
        clock.advance(seconds=6)  # the portal's view of the 5-second token: lapsed
        world.clear_log()

        with pytest.raises(ProviderError) as info:
            client.probe(connection=connection)
        renewed, accounts = check(client, connection)

        assert info.value.access_rejected is True
        assert self.balances(accounts)
        assert renewed.credentials["access"].value != connection.credentials["access"].value
        # The lapsed token never went out; the renewal and one probe did.
        assert [(c.method, c.path, c.status) for c in world.calls("bloquo")] == [(*TOKEN, 200), (*ACCOUNTS, 200)]

    def test_a_restored_key_connects_again(self, world: Sandbox, app: AppConfig) -> None:
        client = self.client(app)
        grant = self.connect(world, client)
        connection = connection_from(grant, platform=self.platform)
        world.act("bloquo", "revoke", customer_id=grant.external_account_id)
        with pytest.raises(ProviderError) as revoked:
            client.renew(connection=connection)

        world.act("bloquo", "restore", customer_id=grant.external_account_id)
        _, accounts = check(client, connection)

        assert (revoked.value.reason, revoked.value.status_code) == (FailureReason.REVOKED, 403)
        assert self.balances(accounts) == self.balances(grant.accounts)
