"""The one contract every provider client and its simulator must meet, over real HTTP.

:class:`ProviderContract` holds the scenarios common to all providers; each
``test_<provider>.py`` subclasses it as ``Test<Provider>Contract``, fills in
the hooks (how to register the app, how a client connects, what a probe and
a renewal send, how to provoke each permanent failure at the sandbox) and adds
what only that provider does. The client under test is the real class from
the registry; the sandbox is reached only through the live server, its
control API and its pages, never imported. The two sides were written
independently from docs/provider-assumptions.md: these tests are where they
are shown to meet.

What the provider contract asks of every client (``connections/providers/base.py``;
docs/architecture.md, "One status vocabulary") is checked here: transport failures and
malformed replies are ``transient`` errors with a clear message, never a
crash and never a silent pass; redirects are not followed; balances are
``Decimal``; no secret surfaces in a message, a repr or a log line. A
provider that cannot be reached is a local port next to the sandbox (one that
refuses connections, one that never answers). The few reply shapes the
sandbox cannot serve (the providers' documented examples with their exact
decimals, JSON that is not an object, balances that are not decimal strings)
are tested per provider in ``tests/providers`` with HTTP mocked.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest

from connections.providers.base import AppConfig, ConnectionState, Grant, ProviderClient
from connections.providers.errors import ErrorKind, FailureReason, ProviderError
from connections.providers.registry import client_class

from .support import (
    Sandbox,
    assert_no_secret_in,
    connection_from,
    refusing_port,
    secret_values,
    unanswered_port,
    with_credentials,
)

Expected = tuple[ErrorKind, FailureReason | None]

# A trickled reply: one byte every TRICKLE_INTERVAL seconds, far inside any
# read timeout, so only the call's total deadline (TOTAL_DEADLINE) can end it.
TRICKLE_INTERVAL = 0.2
TOTAL_DEADLINE = 1.0
# What giving up may take beyond the deadline on a loaded machine.
DEADLINE_SLACK = 1.0

# Faults injected on the probe endpoint, for one request each. What the client
# must make of them: a transient error, the request not repeated, and the next
# probe fine again.
PROBE_FAULTS: dict[str, dict[str, Any]] = {
    "unavailable_with_retry_after": {"kind": "status", "status": 503, "retry_after": 120},
    "rate_limited_with_retry_after": {"kind": "status", "status": 429, "retry_after": 7},
    "server_error": {"kind": "status", "status": 500},
    # The sandbox sends the redirect back to the probe's own URL: a client that
    # followed it would show a second request in the log.
    "redirect": {"kind": "status", "status": 302},
    "truncated_json": {"kind": "truncated_json"},
    "html_error_page": {"kind": "html"},
    "accounts_missing": {"kind": "missing_field"},
    # These two name their field per provider (see the test).
    "balance_missing": {"kind": "missing_field"},
    "account_field_missing": {"kind": "missing_field"},
}

# Failures of the probe whose errors, and the log lines written meanwhile, must
# hold no secret. The last one outlasts the read timeout the test sets.
SECRET_PROBING_FAULTS: tuple[dict[str, Any], ...] = (
    {"kind": "status", "status": 500},
    {"kind": "status", "status": 401},
    {"kind": "status", "status": 403},
    {"kind": "status", "status": 400},
    {"kind": "truncated_json"},
    {"kind": "latency", "latency_ms": 1000},
)


class ProviderContract:
    """Scenarios common to every provider. Not collected on its own (no ``Test`` prefix)."""

    # The tests write nothing but the sandbox's own tables (over HTTP), so only
    # those are emptied after each one: flushing every app's tables would cost
    # more than the test itself on PostgreSQL.
    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [
        pytest.mark.django_db(transaction=True, available_apps=["sandbox"])
    ]

    provider: ClassVar[str]  # registry key
    mount: ClassVar[str]  # sandbox mount beneath /sandbox/
    display_name: ClassVar[str]
    platform: ClassVar[str]
    # Dotted path of the accounts list in the probe's reply ("result.accounts").
    accounts_field: ClassVar[str]
    # A field each listed account must carry besides its balance.
    account_field: ClassVar[str]
    # The probe endpoint, as a path prefix beneath the mount, and its method.
    probe_path: ClassVar[str]
    probe_method: ClassVar[str]
    # Exactly what one renewal sends: (method, path, Coinify grant type); empty
    # for providers with nothing to renew.
    renew_calls: ClassVar[tuple[tuple[str, str, str], ...]]
    # Exactly what a disconnect sends: (method, path, status).
    disconnect_calls: ClassVar[tuple[tuple[str, str, int], ...]]
    # Scenario name -> the error it must end in (see ``provoke``).
    permanent_failures: ClassVar[dict[str, Expected]]

    # --- hooks ----------------------------------------------------------------------
    def register(self, world: Sandbox) -> AppConfig:
        """Register the portal's app at the sandbox (control API) and return its config."""
        raise NotImplementedError

    def connect(self, world: Sandbox, client: ProviderClient, *, username: str = "alice") -> Grant:
        """Connect as the source-platform user ``username``, the way the portal would."""
        raise NotImplementedError

    def probe_calls(self, connection: ConnectionState) -> list[tuple[str, str]]:
        """Exactly what one probe of ``connection`` sends: (method, path)."""
        raise NotImplementedError

    def provoke(
        self,
        failure: str,
        world: Sandbox,
        app: AppConfig,
        client: ProviderClient,
        connection: ConnectionState,
    ) -> Callable[[], object]:
        """Set the sandbox up for ``failure``; return the client call that must then fail."""
        raise NotImplementedError

    def secrets(self, app: AppConfig, client: ProviderClient, connection: ConnectionState) -> list[str]:
        """Every secret of the scenario: the app's, the connection's and the app token; providers add typed ones."""
        app_token = client.app_token_cache.load()
        return secret_values(connection, app.client_secret, app_token.value if app_token is not None else "")

    # --- helpers --------------------------------------------------------------------
    @pytest.fixture
    def app(self, world: Sandbox) -> AppConfig:
        return self.register(world)

    def client(self, app: AppConfig, **options: Any) -> ProviderClient:
        return client_class(self.provider)(app, **options)

    def app_registered(
        self, world: Sandbox, *, client_id: str, client_secret: str = "", redirect_uri: str = ""
    ) -> AppConfig:
        """Register the portal's app for ``self.provider`` at the sandbox; its config, as the portal holds it."""
        world.register_app(self.provider, client_id=client_id, client_secret=client_secret, redirect_uri=redirect_uri)
        return AppConfig(
            provider=self.provider,
            environment="sandbox",
            base_url=world.base_url(self.provider),
            client_id=client_id,
            client_secret=client_secret,
            redirect_uri=redirect_uri,
        )

    def connected(self, world: Sandbox, client: ProviderClient, *, username: str = "alice") -> ConnectionState:
        return connection_from(self.connect(world, client, username=username), platform=self.platform)

    def client_at_port(
        self, app: AppConfig, client: ProviderClient, port: int, allow_hosts: Callable[..., None]
    ) -> ProviderClient:
        """``client``, app token and all, talking to a local ``port`` (allowed for the test) instead of the sandbox."""
        allow_hosts(self.provider, app.environment, f"127.0.0.1:{port}")
        elsewhere = dataclasses.replace(app, base_url=f"http://127.0.0.1:{port}{urlsplit(app.base_url).path}")
        return self.client(elsewhere, app_token_cache=client.app_token_cache)

    @staticmethod
    def balances(accounts: Any) -> dict[str, Decimal]:
        return {account.external_id: account.balance for account in accounts}

    # --- the contract -----------------------------------------------------------------
    def test_is_registered_under_its_key(self, app: AppConfig) -> None:
        client = self.client(app)

        assert client_class(self.provider) is type(client)
        assert client.key == self.provider
        assert client.display_name == self.display_name
        assert client.flow in ("redirect", "form")
        assert self.platform in client.platforms

    def test_connect_yields_the_source_account_and_decimal_balances(self, world: Sandbox, app: AppConfig) -> None:
        grant = self.connect(world, self.client(app))

        assert grant.external_account_id
        assert grant.accounts
        assert all(type(account.balance) is Decimal for account in grant.accounts)
        assert all(account.currency and account.external_id for account in grant.accounts)

    def test_probe_returns_the_accounts_the_connect_saw(self, world: Sandbox, app: AppConfig) -> None:
        client = self.client(app)
        grant = self.connect(world, client)
        connection = connection_from(grant, platform=self.platform)
        world.clear_log()

        accounts = client.probe(connection=connection)

        assert all(type(account.balance) is Decimal for account in accounts)
        assert self.balances(accounts) == self.balances(grant.accounts)
        calls = world.calls(self.mount)
        assert [(c.method, c.path, c.status) for c in calls] == [(m, p, 200) for m, p in self.probe_calls(connection)]

    def test_renew_returns_fresh_credentials_the_next_probe_accepts(self, world: Sandbox, app: AppConfig) -> None:
        client = self.client(app)
        connection = self.connected(world, client)
        world.clear_log()

        issued = client.renew(connection=connection)

        calls = world.calls(self.mount)
        assert [(c.method, c.path, c.grant_type, c.status) for c in calls] == [
            (method, path, grant, 200) for method, path, grant in self.renew_calls
        ]
        if not self.renew_calls:
            # Nothing renewable: no deadline, nothing returned, nothing sent.
            assert list(issued) == []
            assert client.renewal_due_at(connection) is None
            return
        before = {credential.kind: credential.value for credential in connection.credentials.values()}
        assert issued
        assert all(credential.value != before.get(credential.kind) for credential in issued)
        assert client.probe(connection=with_credentials(connection, issued))

    def test_reconnecting_the_same_source_keeps_its_account_id(self, world: Sandbox, app: AppConfig) -> None:
        client = self.client(app)
        first = self.connect(world, client, username="alice")
        again = self.connect(world, client, username="alice")
        someone_else = self.connect(world, client, username="bob")

        assert again.external_account_id == first.external_account_id
        assert someone_else.external_account_id != first.external_account_id

    def test_permanent_failure_is_reported_with_its_reason(self, world: Sandbox, app: AppConfig, failure: str) -> None:
        client = self.client(app)
        connection = self.connected(world, client)
        action = self.provoke(failure, world, app, client, connection)
        kind, reason = self.permanent_failures[failure]

        with pytest.raises(ProviderError) as info:
            action()

        assert (info.value.kind, info.value.reason) == (kind, reason)
        assert self.display_name in info.value.message
        assert_no_secret_in(info.value, secret_values(connection, app.client_secret))

    @pytest.mark.parametrize("fault", list(PROBE_FAULTS))
    def test_fault_on_the_probe_is_transient_and_not_repeated(self, world: Sandbox, app: AppConfig, fault: str) -> None:
        client = self.client(app)
        connection = self.connected(world, client)
        rule = dict(PROBE_FAULTS[fault])
        if fault == "balance_missing":
            rule["field"] = f"{self.accounts_field}.0.balance"
        if fault == "account_field_missing":
            rule["field"] = f"{self.accounts_field}.0.{self.account_field}"
        world.fault(self.mount, path=self.probe_path, count=1, **rule)
        world.clear_log()

        with pytest.raises(ProviderError) as info:
            client.probe(connection=connection)

        error = info.value
        assert error.kind == ErrorKind.TRANSIENT
        assert error.outcome_unknown is False
        assert self.display_name in error.message
        accounts_label = self.accounts_field
        expected_words = {
            "redirect": "redirect",
            "truncated_json": "JSON",
            "html_error_page": "HTML",
            "accounts_missing": f"'{accounts_label}'",
            "balance_missing": f"'{accounts_label}[0].balance'",
            "account_field_missing": f"'{accounts_label}[0].{self.account_field}'",
        }
        if fault in expected_words:
            assert expected_words[fault] in error.message
        if rule["kind"] == "status":
            assert error.status_code == rule["status"]
            assert error.retry_after == rule.get("retry_after")
        calls = world.calls(self.mount)
        assert [(c.method, c.path, c.fault) for c in calls] == [
            (method, path, rule["kind"]) for method, path in self.probe_calls(connection)
        ]
        # The fault was for one request: the next probe is fine again.
        assert self.balances(client.probe(connection=connection))

    def test_a_brief_unavailability_is_retried_only_when_the_probe_is_idempotent(
        self, world: Sandbox, app: AppConfig
    ) -> None:
        client = self.client(app)
        connection = self.connected(world, client)
        world.fault(self.mount, path=self.probe_path, kind="status", status=503, retry_after=1, count=1)
        world.clear_log()
        (method, path), *_ = self.probe_calls(connection)

        if self.probe_method == "GET":
            # A GET is safe to repeat: the helper waits out the short Retry-After.
            assert client.probe(connection=connection)
            expected = [(method, path, 503), (method, path, 200)]
        else:
            # A POST is never repeated by the transport; the hint goes up instead.
            with pytest.raises(ProviderError) as info:
                client.probe(connection=connection)
            assert info.value.kind == ErrorKind.TRANSIENT
            assert info.value.retry_after == 1
            expected = [(method, path, 503)]
        assert [(c.method, c.path, c.status) for c in world.calls(self.mount)] == expected

    def test_a_reply_slower_than_the_read_timeout_is_transient_with_the_outcome_unknown(
        self, world: Sandbox, app: AppConfig, settings: Any
    ) -> None:
        client = self.client(app)
        connection = self.connected(world, client)
        world.fault(self.mount, path=self.probe_path, kind="latency", latency_ms=1000, count=1)
        world.clear_log()
        settings.PROVIDER_READ_TIMEOUT = 0.3

        with pytest.raises(ProviderError) as info:
            client.probe(connection=connection)

        assert info.value.kind == ErrorKind.TRANSIENT
        assert info.value.outcome_unknown is True
        assert self.display_name in info.value.message
        expected = [(method, path, "latency") for method, path in self.probe_calls(connection)]
        calls = world.wait_for_calls(self.mount, len(expected))
        assert [(c.method, c.path, c.fault) for c in calls] == expected

    def assert_gives_up_at_the_total_deadline(self, call: Callable[[], object], settings: Any) -> None:
        """``call``, against a provider that trickles its reply, ends in time as a transient error."""
        settings.PROVIDER_TOTAL_TIMEOUT = TOTAL_DEADLINE
        started = time.monotonic()

        with pytest.raises(ProviderError) as info:
            call()

        elapsed = time.monotonic() - started
        assert info.value.kind == ErrorKind.TRANSIENT
        assert info.value.outcome_unknown is True
        assert self.display_name in info.value.message
        assert f"within the call's {TOTAL_DEADLINE:g} s limit" in info.value.message
        assert TOTAL_DEADLINE <= elapsed < TOTAL_DEADLINE + DEADLINE_SLACK

    def test_a_probe_trickled_past_the_total_deadline_gives_up_within_it(
        self, world: Sandbox, app: AppConfig, settings: Any
    ) -> None:
        client = self.client(app)
        connection = self.connected(world, client)
        world.fault(self.mount, path=self.probe_path, kind="trickle", interval=TRICKLE_INTERVAL, count=1)
        world.clear_log()

        self.assert_gives_up_at_the_total_deadline(lambda: client.probe(connection=connection), settings)

        calls = world.calls(self.mount)
        assert [(c.method, c.path, c.fault) for c in calls] == [
            (method, path, "trickle") for method, path in self.probe_calls(connection)
        ]

    def test_a_refused_connection_is_transient_and_the_request_never_sent(
        self, world: Sandbox, app: AppConfig, allow_hosts: Callable[..., None]
    ) -> None:
        client = self.client(app)
        connection = self.connected(world, client)

        with refusing_port() as port, pytest.raises(ProviderError) as info:
            self.client_at_port(app, client, port, allow_hosts).probe(connection=connection)

        assert info.value.kind == ErrorKind.TRANSIENT
        assert info.value.outcome_unknown is False
        assert self.display_name in info.value.message

    def test_a_connect_timeout_is_transient_and_the_request_never_sent(
        self, world: Sandbox, app: AppConfig, settings: Any, allow_hosts: Callable[..., None]
    ) -> None:
        client = self.client(app)
        connection = self.connected(world, client)
        settings.PROVIDER_CONNECT_TIMEOUT = 0.2

        with unanswered_port() as port, pytest.raises(ProviderError) as info:
            self.client_at_port(app, client, port, allow_hosts).probe(connection=connection)

        assert info.value.kind == ErrorKind.TRANSIENT
        assert info.value.outcome_unknown is False
        assert "could not connect within 0.2 s" in info.value.message
        assert self.display_name in info.value.message

    def test_secrets_never_surface_in_errors_or_logs(
        self, world: Sandbox, app: AppConfig, settings: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        client = self.client(app)
        connection = self.connected(world, client)
        settings.PROVIDER_READ_TIMEOUT = 0.3
        caplog.set_level(logging.DEBUG)
        errors: list[ProviderError] = []
        for rule in SECRET_PROBING_FAULTS:
            logged = len(world.calls(self.mount))
            world.fault(self.mount, path=self.probe_path, count=1, **rule)
            try:
                client.probe(connection=connection)
            except ProviderError as error:
                errors.append(error)
            # A request the sandbox is still sleeping through must end before the next rule.
            world.wait_for_calls(self.mount, logged + 1)
        texts = [text for error in errors for text in (str(error), repr(error), error.message)]
        texts += [repr(client), repr(client.app), repr(connection), repr(list(connection.credentials.values()))]
        # What the client wrote; the live server's threads log the other side.
        texts += [record.getMessage() for record in caplog.records if record.thread == threading.get_ident()]

        assert errors
        for secret in self.secrets(app, client, connection):
            assert all(secret not in text for text in texts), "a secret surfaced"

    def test_a_healthy_connection_is_not_due_for_renewal_yet(self, world: Sandbox, app: AppConfig) -> None:
        client = self.client(app)
        due = client.renewal_due_at(self.connected(world, client))

        # A deadline exactly when there is something to renew, and not already passed.
        assert (due is None) == (not self.renew_calls)
        assert due is None or due > client.now()

    def test_disconnect_sends_exactly_the_providers_revoke_call(self, world: Sandbox, app: AppConfig) -> None:
        client = self.client(app)
        connection = self.connected(world, client)
        world.clear_log()

        assert client.revoke(connection=connection) is None

        assert [(c.method, c.path, c.status) for c in world.calls(self.mount)] == list(self.disconnect_calls)
