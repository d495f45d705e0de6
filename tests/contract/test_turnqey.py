"""Turnqey's client against Turnqey's simulator: app token, checksum, consent, accounts."""

from __future__ import annotations

import dataclasses
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest

from connections.providers.base import AppConfig, ConnectionState, Grant, ProviderClient
from connections.providers.errors import AuthorizationDenied, ErrorKind, FailureReason, ProviderError
from connections.providers.turnqey import TurnqeyClient

from .contract import Expected, ProviderContract
from .support import Sandbox, browser_consent, check, consent_page

CLIENT_ID = "tq-contract-client"
REDIRECT_URI = "https://portal.test/connect/turnqey/callback/"
# The portal client's stable partner-side identity.
IDENTITY = "0b7e4a52-2f8c-4d0e-9a43-5f6c1d2e3b4a"
TOKEN_PATH = "/v1/api/token"


class TestTurnqeyContract(ProviderContract):
    provider = "turnqey"
    mount = "turnqey"
    display_name = "Turnqey"
    platform = "coinbase"
    accounts_field = "result.accounts"
    account_field = "sourceAccountId"
    probe_path = "/v1/api/collections"
    probe_method = "GET"
    renew_calls = ()
    disconnect_calls = ()
    permanent_failures: ClassVar[dict[str, Expected]] = {
        "revoked_at_the_platform": (ErrorKind.REAUTH_REQUIRED, FailureReason.REVOKED),
        "expired_at_the_platform": (ErrorKind.REAUTH_REQUIRED, FailureReason.EXPIRED),
        "app_secret_rejected": (ErrorKind.APP_CREDENTIALS_INVALID, None),
        "app_secret_missing": (ErrorKind.APP_CREDENTIALS_INVALID, None),
    }

    # The household's collection once the first connect returned it.
    collection: str = ""

    # --- hooks ----------------------------------------------------------------------
    def register(self, world: Sandbox) -> AppConfig:
        return self.app_registered(
            world, client_id=CLIENT_ID, client_secret=secrets.token_urlsafe(24), redirect_uri=REDIRECT_URI
        )

    def authorize_url(self, client: ProviderClient, *, state: str, collection: str = "") -> str:
        start = client.start_authorization(
            state=state,
            platform=self.platform,
            identity=IDENTITY,
            grouping={"collection": collection} if collection else {},
            redirect_uri=REDIRECT_URI,
        )
        assert start.checksum
        return start.redirect_url

    def connect(self, world: Sandbox, client: ProviderClient, *, username: str = "alice") -> Grant:
        state = secrets.token_urlsafe(24)
        answer = browser_consent(self.authorize_url(client, state=state, collection=self.collection), username=username)
        assert answer.location.startswith(REDIRECT_URI + "?")
        assert answer.params["state"] == state
        grant = client.complete_authorization(params=answer.params, platform=self.platform, identity=IDENTITY)
        self.collection = grant.grouping["collection"]
        return grant

    def probe_calls(self, connection: ConnectionState) -> list[tuple[str, str]]:
        return [("GET", f"/v1/api/collections/{connection.grouping['collection']}/accounts")]

    def provoke(
        self, failure: str, world: Sandbox, app: AppConfig, client: ProviderClient, connection: ConnectionState
    ) -> Callable[[], object]:
        if failure == "revoked_at_the_platform":
            assert world.act("turnqey", "revoke", source_account_id=connection.external_account_id) == 1
            return lambda: check(client, connection)
        if failure == "expired_at_the_platform":
            assert world.act("turnqey", "expire", identity=IDENTITY, platform=self.platform) == 1
            return lambda: check(client, connection)
        secret = "not-the-secret" if failure == "app_secret_rejected" else ""
        other = self.client(dataclasses.replace(app, client_secret=secret))
        return lambda: other.probe(connection=connection)

    # --- Turnqey only -----------------------------------------------------------------
    def test_the_app_token_is_fetched_once_and_cached(self, world: Sandbox, app: AppConfig) -> None:
        client = self.client(app)
        connection = self.connected(world, client)

        client.probe(connection=connection)
        client.probe(connection=connection)

        accounts = f"/v1/api/collections/{connection.grouping['collection']}/accounts"
        assert [(c.method, c.path, c.status) for c in world.calls("turnqey")] == [
            ("GET", "/authorize", 200),  # the checksum was accepted: a consent page, not an error
            ("POST", "/authorize", 302),
            ("POST", TOKEN_PATH, 200),
            ("GET", f"/v1/api/identities/{IDENTITY}/accounts", 200),
            ("GET", accounts, 200),
            ("GET", accounts, 200),
        ]

    def test_a_tampered_or_wrongly_signed_authorize_url_is_refused(self, world: Sandbox, app: AppConfig) -> None:
        signed = self.authorize_url(self.client(app), state="s-1")
        tampered = signed.replace(f"identity={IDENTITY}", "identity=someone-else")
        forged = self.authorize_url(self.client(dataclasses.replace(app, client_secret="a-guess")), state="s-1")

        assert consent_page(signed).status_code == 200
        assert tampered != signed
        assert consent_page(tampered).status_code == 400
        assert consent_page(forged).status_code == 400

    def test_a_connect_joins_the_households_existing_collection(self, world: Sandbox, app: AppConfig) -> None:
        household_collection = str(uuid.uuid4())
        self.collection = household_collection
        client = self.client(app)

        grant = self.connect(world, client)

        assert grant.grouping == {"collection": household_collection, "identity": IDENTITY}
        by_collection = client.accounts_by_collection(household_collection)
        assert by_collection is not None
        assert self.balances(a.account for a in by_collection) == self.balances(grant.accounts)

    def test_accounts_by_collection_and_by_identity_agree(self, world: Sandbox, app: AppConfig) -> None:
        client = self.client(app)
        grant = self.connect(world, client)

        by_collection = client.accounts_by_collection(grant.grouping["collection"])
        by_identity = client.accounts_by_identity(IDENTITY)

        assert by_collection is not None
        assert by_collection == by_identity
        assert {(a.identity, a.platform, a.source_account_id, a.account.status) for a in by_identity} == {
            (IDENTITY, self.platform, grant.external_account_id, "active")
        }
        assert client.accounts_by_collection(str(uuid.uuid4())) is None
        assert client.accounts_by_identity("nobody-we-know") == []

    @pytest.mark.parametrize(("decision", "outcome"), [("deny", "denied"), ("error", "error")])
    def test_a_consent_that_did_not_succeed_is_reported_as_such(
        self, world: Sandbox, app: AppConfig, decision: str, outcome: str
    ) -> None:
        client = self.client(app)
        answer = browser_consent(self.authorize_url(client, state="s-2"), decision=decision)

        with pytest.raises(AuthorizationDenied) as info:
            client.complete_authorization(params=answer.params, platform=self.platform, identity=IDENTITY)

        assert info.value.outcome == outcome
        assert "Coinbase via Turnqey" in info.value.message
        assert [c.path for c in world.calls("turnqey")] == ["/authorize", "/authorize"]

    def test_a_collection_of_another_partner_comes_back_as_an_error(self, world: Sandbox, app: AppConfig) -> None:
        world.register_app("turnqey", client_id="another-partner", client_secret="x" * 24, redirect_uri=REDIRECT_URI)
        theirs = world.subject("turnqey", client="another-partner", identity="their-client", platform="gemini")
        client = self.client(app)
        answer = browser_consent(self.authorize_url(client, state="s-3", collection=theirs["collection"]))

        with pytest.raises(AuthorizationDenied) as info:
            client.complete_authorization(params=answer.params, platform=self.platform, identity=IDENTITY)

        assert answer.params["status"] == "error"
        assert info.value.outcome == "error"
        assert "Collection not found." in info.value.message

    def test_a_missing_app_secret_is_named_in_the_message(self, world: Sandbox, app: AppConfig) -> None:
        client = self.client(dataclasses.replace(app, client_secret=""))

        with pytest.raises(ProviderError) as info:
            client.app_token()

        assert info.value.kind == ErrorKind.APP_CREDENTIALS_INVALID
        assert info.value.status_code == 400
        assert "The ClientSecret field is required." in info.value.message

    def test_a_short_lived_app_token_is_replaced_before_it_lapses(self, world: Sandbox, app: AppConfig) -> None:
        # 30 s is inside the client's renewal margin: every call fetches a new
        # token first, so Turnqey never sees one that has lapsed.
        world.lifetimes("turnqey", app_token=30)
        client = self.client(app)
        connection = self.connected(world, client)
        world.clear_log()

        client.probe(connection=connection)

        accounts = f"/v1/api/collections/{connection.grouping['collection']}/accounts"
        assert [(c.method, c.path, c.status) for c in world.calls("turnqey")] == [
            ("POST", TOKEN_PATH, 200),
            ("GET", accounts, 200),
        ]

    def test_an_app_token_that_lapsed_at_turnqey_is_fetched_again_once(self, world: Sandbox, app: AppConfig) -> None:
        # The portal's clock runs ten minutes behind Turnqey's, so the client
        # still trusts a token Turnqey has already let lapse. A one-second
        # token also says "expiresIn": 0, which must still be taken.
        world.lifetimes("turnqey", app_token=1)
        client = TurnqeyClient(app, clock=lambda: datetime.now(UTC) - timedelta(minutes=10))
        connection = self.connected(world, client)
        world.clear_log()
        time.sleep(1.1)  # the one-second token lapses at Turnqey

        accounts = client.probe(connection=connection)

        assert accounts
        path = f"/v1/api/collections/{connection.grouping['collection']}/accounts"
        assert [(c.method, c.path, c.status) for c in world.calls("turnqey")] == [
            ("GET", path, 401),
            ("POST", TOKEN_PATH, 200),
            ("GET", path, 200),
        ]

    def test_a_fresh_app_token_refused_too_is_the_apps_problem(self, world: Sandbox, app: AppConfig) -> None:
        client = self.client(app)
        connection = self.connected(world, client)
        world.fault("turnqey", path=self.probe_path, kind="status", status=401, count=2)
        world.clear_log()

        with pytest.raises(ProviderError) as info:
            client.probe(connection=connection)

        assert info.value.kind == ErrorKind.APP_CREDENTIALS_INVALID
        path = f"/v1/api/collections/{connection.grouping['collection']}/accounts"
        assert [(c.method, c.path, c.status) for c in world.calls("turnqey")] == [
            ("GET", path, 401),
            ("POST", TOKEN_PATH, 200),
            ("GET", path, 401),
        ]
