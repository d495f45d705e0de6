"""Coinify's client against Coinify's simulator: the three grants, rotation, revoke, 401 versus 403."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from connections.providers.base import AppConfig, ConnectionState, Grant, ProviderClient
from connections.providers.errors import ErrorKind, FailureReason, ProviderError

from .contract import TRICKLE_INTERVAL, Expected, ProviderContract
from .support import Sandbox, check, connection_from, with_credentials

PARTNER_ID = "5f51bfe2-d08a-4b43-9d5c-405fd2f2ede6"
PASSWORD = "correct horse battery staple"
REFRESH = ("POST", "/auth", "refresh_token")


class TestCoinifyContract(ProviderContract):
    provider = "coinify"
    mount = "coinify"
    display_name = "Coinify"
    platform = "coinify"
    accounts_field = "accounts"
    account_field = "currency"
    probe_path = "/me"
    probe_method = "GET"
    renew_calls = (REFRESH,)
    disconnect_calls = (("POST", "/auth/revoke", 204),)
    permanent_failures: ClassVar[dict[str, Expected]] = {
        "revoked_at_coinify": (ErrorKind.REAUTH_REQUIRED, FailureReason.REVOKED),
        "expired_at_coinify": (ErrorKind.REAUTH_REQUIRED, FailureReason.EXPIRED),
        "account_deactivated": (ErrorKind.REAUTH_REQUIRED, FailureReason.REVOKED),
        "spent_refresh_token_reused": (ErrorKind.REAUTH_REQUIRED, FailureReason.REVOKED),
        "offline_token_revoked": (ErrorKind.REAUTH_REQUIRED, FailureReason.REVOKED),
        "wrong_password": (ErrorKind.REAUTH_REQUIRED, FailureReason.CREDENTIALS_INVALID),
        "refresh_token_unknown_to_coinify": (ErrorKind.REAUTH_REQUIRED, FailureReason.EXPIRED),
    }

    # --- hooks ----------------------------------------------------------------------
    def register(self, world: Sandbox) -> AppConfig:
        return self.app_registered(world, client_id=PARTNER_ID)

    def user(self, world: Sandbox, username: str) -> dict[str, Any]:
        """A Coinify user of the portal's partner (again: same user, another offline token)."""
        return world.subject("coinify", partner_id=PARTNER_ID, email=f"{username}@example.test", password=PASSWORD)

    def connect(self, world: Sandbox, client: ProviderClient, *, username: str = "alice") -> Grant:
        user = self.user(world, username)
        grant = client.connect_with_credentials(
            fields={"email": user["email"], "password": PASSWORD}, platform=self.platform
        )
        assert grant.external_account_id == str(user["user_id"])
        return grant

    def probe_calls(self, connection: ConnectionState) -> list[tuple[str, str]]:
        return [("GET", "/me")]

    def secrets(self, app: AppConfig, client: ProviderClient, connection: ConnectionState) -> list[str]:
        return [*super().secrets(app, client, connection), PASSWORD]

    def provoke(
        self, failure: str, world: Sandbox, app: AppConfig, client: ProviderClient, connection: ConnectionState
    ) -> Callable[[], object]:
        user_id = connection.external_account_id
        if failure == "revoked_at_coinify":
            world.act("coinify", "revoke", user_id=user_id)
            return lambda: check(client, connection)
        if failure == "expired_at_coinify":
            world.act("coinify", "expire", user_id=user_id)
            return lambda: check(client, connection)
        if failure == "account_deactivated":
            world.act("coinify", "deactivate", user_id=user_id)
            return lambda: check(client, connection)
        if failure == "spent_refresh_token_reused":
            client.renew(connection=connection)  # rotates: the stored refresh token is now spent
            return lambda: client.renew(connection=connection)
        if failure == "offline_token_revoked":
            offline = self.user(world, "olivia")["offline_token"]
            grant = client.connect_with_credentials(fields={"offline_token": offline}, platform=self.platform)
            world.act("coinify", "revoke", user_id=grant.external_account_id)
            return lambda: check(client, connection_from(grant, platform=self.platform))
        if failure == "refresh_token_unknown_to_coinify":
            refresh = connection.credentials["refresh"]
            made_up = with_credentials(connection, [dataclasses.replace(refresh, value=refresh.value[::-1])])
            return lambda: client.renew(connection=made_up)
        email = self.user(world, "walter")["email"]
        return lambda: client.connect_with_credentials(
            fields={"email": email, "password": "not the password"}, platform=self.platform
        )

    # --- Coinify only -----------------------------------------------------------------
    def test_the_password_grant_sends_the_partner_id_and_keeps_no_password(
        self, world: Sandbox, app: AppConfig
    ) -> None:
        grant = self.connect(world, self.client(app))

        assert {credential.kind for credential in grant.credentials} == {"access", "refresh"}
        assert all(PASSWORD not in credential.value for credential in grant.credentials)
        assert [(c.method, c.path, c.grant_type, c.status) for c in world.calls("coinify")] == [
            ("POST", "/auth", "password", 200),
            ("GET", "/me", "", 200),
        ]

    def test_an_offline_token_connects_and_renews_with_the_offline_grant(self, world: Sandbox, app: AppConfig) -> None:
        client = self.client(app)
        user = self.user(world, "olivia")
        grant = client.connect_with_credentials(fields={"offline_token": user["offline_token"]}, platform="coinify")
        connection = connection_from(grant, platform=self.platform)
        world.clear_log()

        issued = client.renew(connection=connection)

        assert grant.external_account_id == str(user["user_id"])
        assert {credential.kind for credential in grant.credentials} == {"access", "refresh", "offline"}
        assert client.reconnect_deadline(connection) is None
        assert [(c.method, c.path, c.grant_type, c.status) for c in world.calls("coinify")] == [
            ("POST", "/auth", "offline_token", 200)
        ]
        assert client.probe(connection=with_credentials(connection, issued))

    def test_refresh_rotation_refuses_the_spent_token_and_keeps_its_successor(
        self, world: Sandbox, app: AppConfig
    ) -> None:
        client = self.client(app)
        connection = self.connected(world, client)
        world.clear_log()

        renewed = with_credentials(connection, client.renew(connection=connection))
        with pytest.raises(ProviderError) as info:
            client.renew(connection=connection)
        renewed_again = with_credentials(renewed, client.renew(connection=renewed))

        assert (info.value.kind, info.value.reason) == (ErrorKind.REAUTH_REQUIRED, FailureReason.REVOKED)
        assert "used twice" in info.value.message
        assert renewed.credentials["refresh"].value != connection.credentials["refresh"].value
        assert client.probe(connection=renewed_again)
        # One request per renewal: the invalid_grant was not retried.
        assert [(c.method, c.path, c.grant_type, c.status) for c in world.calls("coinify")] == [
            ("POST", "/auth", "refresh_token", 200),
            ("POST", "/auth", "refresh_token", 400),
            ("POST", "/auth", "refresh_token", 200),
            ("GET", "/me", "", 200),
        ]

    def test_a_refresh_trickled_past_the_total_deadline_gives_up_within_it(
        self, world: Sandbox, app: AppConfig, settings: Any
    ) -> None:
        client = self.client(app)
        connection = self.connected(world, client)
        world.fault(
            "coinify", path="/auth", grant_type="refresh_token", kind="trickle", interval=TRICKLE_INTERVAL, count=1
        )
        world.clear_log()

        self.assert_gives_up_at_the_total_deadline(lambda: client.renew(connection=connection), settings)

        assert [(c.method, c.path, c.grant_type, c.fault) for c in world.calls("coinify")] == [(*REFRESH, "trickle")]

    def test_a_revoked_refresh_token_cannot_renew_after_disconnect(self, world: Sandbox, app: AppConfig) -> None:
        client = self.client(app)
        connection = self.connected(world, client)

        client.revoke(connection=connection)
        with pytest.raises(ProviderError) as info:
            client.renew(connection=connection)

        assert (info.value.kind, info.value.reason) == (ErrorKind.REAUTH_REQUIRED, FailureReason.REVOKED)
        # RFC 7009: revoking it again is still a 204, and still fine.
        assert client.revoke(connection=connection) is None

    def test_a_refused_access_token_is_401_and_a_deactivated_account_403(self, world: Sandbox, app: AppConfig) -> None:
        client = self.client(app)
        connection = self.connected(world, client)
        access = connection.credentials["access"]
        forged = with_credentials(connection, [dataclasses.replace(access, value=access.value[::-1])])

        with pytest.raises(ProviderError) as rejected:
            client.probe(connection=forged)
        world.act("coinify", "deactivate", user_id=connection.external_account_id)
        with pytest.raises(ProviderError) as deactivated:
            client.probe(connection=connection)

        assert rejected.value.access_rejected is True
        assert rejected.value.status_code == 401
        assert (rejected.value.kind, rejected.value.reason) == (ErrorKind.REAUTH_REQUIRED, FailureReason.EXPIRED)
        assert deactivated.value.access_rejected is False
        assert deactivated.value.status_code == 403
        assert (deactivated.value.kind, deactivated.value.reason) == (ErrorKind.REAUTH_REQUIRED, FailureReason.REVOKED)

    def test_a_refused_refresh_is_not_repeated_and_the_token_stays_usable(self, world: Sandbox, app: AppConfig) -> None:
        client = self.client(app)
        connection = self.connected(world, client)
        world.fault(
            "coinify", path="/auth", grant_type="refresh_token", kind="status", status=503, retry_after=1, count=1
        )
        world.clear_log()

        with pytest.raises(ProviderError) as info:
            client.renew(connection=connection)
        issued = client.renew(connection=connection)

        assert info.value.kind == ErrorKind.TRANSIENT
        assert info.value.retry_after == 1
        assert info.value.outcome_unknown is False
        assert issued
        assert [(c.path, c.grant_type, c.status, c.fault) for c in world.calls("coinify")] == [
            ("/auth", "refresh_token", 503, "status"),
            ("/auth", "refresh_token", 200, ""),
        ]

    def test_a_lost_refresh_reply_is_outcome_unknown_and_the_spent_token_is_then_refused(
        self, world: Sandbox, app: AppConfig, settings: Any
    ) -> None:
        client = self.client(app)
        connection = self.connected(world, client)
        # Coinify rotates the token but the reply never arrives in time.
        world.fault(
            "coinify", path="/auth", grant_type="refresh_token", kind="timeout", hang_seconds=1.0, process=True, count=1
        )
        world.clear_log()
        settings.PROVIDER_READ_TIMEOUT = 0.3

        with pytest.raises(ProviderError) as lost:
            client.renew(connection=connection)
        calls = world.wait_for_calls("coinify", 1)
        with pytest.raises(ProviderError) as retried:
            client.renew(connection=connection)

        assert lost.value.kind == ErrorKind.TRANSIENT
        assert lost.value.outcome_unknown is True
        assert [(c.path, c.grant_type, c.status, c.fault) for c in calls] == [
            ("/auth", "refresh_token", 200, "timeout")
        ]
        # The one retry the lifecycle allows finds the token spent: the chain is
        # broken, and only the client can mend it.
        assert (retried.value.kind, retried.value.reason) == (ErrorKind.REAUTH_REQUIRED, FailureReason.REVOKED)

    def test_a_revoke_coinify_cannot_take_now_is_transient_with_the_hint(self, world: Sandbox, app: AppConfig) -> None:
        client = self.client(app)
        connection = self.connected(world, client)
        world.fault("coinify", path="/auth/revoke", kind="status", status=503, retry_after=30, count=1)

        with pytest.raises(ProviderError) as info:
            client.revoke(connection=connection)
        client.revoke(connection=connection)

        assert info.value.kind == ErrorKind.TRANSIENT
        assert info.value.retry_after == 30
        with pytest.raises(ProviderError) as after:
            client.renew(connection=connection)
        assert after.value.reason == FailureReason.REVOKED

    def test_a_sign_in_whose_accounts_cannot_be_read_is_revoked_not_left_live(
        self, world: Sandbox, app: AppConfig
    ) -> None:
        client = self.client(app)
        user = self.user(world, "alice")
        world.fault("coinify", path="/me", kind="status", status=500, count=1)
        world.clear_log()

        with pytest.raises(ProviderError) as info:
            client.connect_with_credentials(fields={"email": user["email"], "password": PASSWORD}, platform="coinify")

        assert info.value.kind == ErrorKind.TRANSIENT
        assert [(c.method, c.path, c.grant_type, c.status) for c in world.calls("coinify")] == [
            ("POST", "/auth", "password", 200),
            ("GET", "/me", "", 500),
            ("POST", "/auth/revoke", "", 204),
        ]
