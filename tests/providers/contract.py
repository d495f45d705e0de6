"""The shared contract every provider client honours, as one test class.

Each provider's test module subclasses :class:`ProviderContract` (as
``Test<Provider>Contract``) and fills in the hooks: how to build the client, a
healthy connection, the probe endpoint and its success body. The tests here
then check what DESIGN.md asks of every client: transport failures and
malformed replies are ``transient`` errors with a clear message, never a crash
and never a silent pass; redirects are not followed; balances are ``Decimal``;
no secret surfaces in a message, a repr or a log line.

HTTP is mocked with ``responses``. The same expectations will later run
against the sandbox over real HTTP.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any, ClassVar

import pytest
import requests
import responses
import urllib3.exceptions

from connections.providers.base import AccountData, ConnectionState, ProviderClient
from connections.providers.errors import ErrorKind, ProviderError
from connections.providers.registry import client_class

from .support import FixedClock


class ProviderContract:
    """Behaviour common to all provider clients. Not collected on its own (no ``Test`` prefix)."""

    provider_key: ClassVar[str]
    display_name: ClassVar[str]
    probe_method: ClassVar[str]
    probe_url: ClassVar[str]
    # Every secret the scenario involves (app secret, tokens, typed secrets).
    secrets: ClassVar[tuple[str, ...]]

    # --- hooks -------------------------------------------------------------------
    def make_client(self, clock: FixedClock) -> ProviderClient:
        raise NotImplementedError

    def healthy_connection(self, clock: FixedClock) -> ConnectionState:
        raise NotImplementedError

    def probe_body(self) -> dict[str, Any]:
        raise NotImplementedError

    def expected_balances(self) -> dict[str, Decimal]:
        raise NotImplementedError

    def without_required_field(self, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """The success body with one required field removed, and that field's path."""
        raise NotImplementedError

    def with_first_balance(self, body: dict[str, Any], value: object) -> dict[str, Any]:
        raise NotImplementedError

    def mock_prerequisites(self, rsps: responses.RequestsMock) -> None:
        """Replies needed before the probe request itself (an app token, say)."""

    # --- helpers -------------------------------------------------------------------
    def probe_failure(self, rsps: responses.RequestsMock, clock: FixedClock, **reply: Any) -> ProviderError:
        self.mock_prerequisites(rsps)
        rsps.add(self.probe_method, self.probe_url, **reply)
        client = self.make_client(clock)
        with pytest.raises(ProviderError) as info:
            client.probe(connection=self.healthy_connection(clock))
        self.assert_no_secrets(str(info.value), repr(info.value), info.value.message)
        return info.value

    def assert_no_secrets(self, *texts: str) -> None:
        for text in texts:
            for secret in self.secrets:
                assert secret not in text, "a secret surfaced"

    def probe_calls(self, rsps: responses.RequestsMock) -> int:
        return sum(1 for call in rsps.calls if call.request.url.split("?")[0] == self.probe_url)

    # --- the contract ------------------------------------------------------------------
    def test_is_registered_under_its_key(self, clock: FixedClock) -> None:
        client = self.make_client(clock)
        assert client_class(self.provider_key) is type(client)
        assert client.key == self.provider_key
        assert client.display_name == self.display_name
        assert client.flow in ("redirect", "form")
        assert client.platforms

    def test_probe_returns_accounts_with_decimal_balances(
        self, rsps: responses.RequestsMock, clock: FixedClock
    ) -> None:
        self.mock_prerequisites(rsps)
        rsps.add(self.probe_method, self.probe_url, json=self.probe_body(), status=200)

        accounts = self.make_client(clock).probe(connection=self.healthy_connection(clock))

        assert all(isinstance(account, AccountData) for account in accounts)
        assert all(type(account.balance) is Decimal for account in accounts)
        assert {account.external_id: account.balance for account in accounts} == self.expected_balances()

    def test_read_timeout_is_transient_and_the_outcome_unknown(
        self, rsps: responses.RequestsMock, clock: FixedClock
    ) -> None:
        error = self.probe_failure(rsps, clock, body=requests.exceptions.ReadTimeout("read timed out"))

        assert error.kind == ErrorKind.TRANSIENT
        assert error.outcome_unknown is True
        assert self.display_name in error.message

    def test_connect_timeout_is_transient_and_the_request_never_sent(
        self, rsps: responses.RequestsMock, clock: FixedClock
    ) -> None:
        error = self.probe_failure(rsps, clock, body=requests.exceptions.ConnectTimeout("connect timed out"))

        assert error.kind == ErrorKind.TRANSIENT
        assert error.outcome_unknown is False

    def test_refused_connection_is_transient(self, rsps: responses.RequestsMock, clock: FixedClock) -> None:
        refused = requests.exceptions.ConnectionError(
            urllib3.exceptions.MaxRetryError(
                None, self.probe_url, urllib3.exceptions.NewConnectionError(None, "Connection refused")
            )
        )
        error = self.probe_failure(rsps, clock, body=refused)

        assert error.kind == ErrorKind.TRANSIENT
        assert error.outcome_unknown is False
        assert self.display_name in error.message

    def test_server_error_is_transient(self, rsps: responses.RequestsMock, clock: FixedClock) -> None:
        error = self.probe_failure(rsps, clock, status=500, body="Internal Server Error")

        assert error.kind == ErrorKind.TRANSIENT
        assert error.status_code == 500

    def test_unavailable_with_retry_after_is_transient_with_the_hint(
        self, rsps: responses.RequestsMock, clock: FixedClock
    ) -> None:
        # 120 s is beyond what a request waits out: no automatic retry, the hint goes up.
        error = self.probe_failure(rsps, clock, status=503, headers={"Retry-After": "120"}, body="busy")

        assert error.kind == ErrorKind.TRANSIENT
        assert error.retry_after == 120
        assert self.probe_calls(rsps) == 1

    def test_rate_limit_is_transient_with_the_hint(self, rsps: responses.RequestsMock, clock: FixedClock) -> None:
        error = self.probe_failure(rsps, clock, status=429, headers={"Retry-After": "7"}, body="slow down")

        assert error.kind == ErrorKind.TRANSIENT
        assert error.retry_after == 7
        assert error.status_code == 429

    def test_html_page_is_transient(self, rsps: responses.RequestsMock, clock: FixedClock) -> None:
        html = "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"
        error = self.probe_failure(rsps, clock, status=200, body=html, content_type="text/html")

        assert error.kind == ErrorKind.TRANSIENT
        assert "HTML" in error.message
        assert self.display_name in error.message

    def test_truncated_json_is_transient(self, rsps: responses.RequestsMock, clock: FixedClock) -> None:
        text = json.dumps(self.probe_body())
        error = self.probe_failure(
            rsps, clock, status=200, body=text[: len(text) // 2], content_type="application/json"
        )

        assert error.kind == ErrorKind.TRANSIENT
        assert "JSON" in error.message

    def test_json_that_is_not_an_object_is_transient(self, rsps: responses.RequestsMock, clock: FixedClock) -> None:
        error = self.probe_failure(rsps, clock, status=200, json=[1, 2, 3])

        assert error.kind == ErrorKind.TRANSIENT

    def test_missing_field_is_transient_and_named(self, rsps: responses.RequestsMock, clock: FixedClock) -> None:
        body, field_path = self.without_required_field(self.probe_body())
        error = self.probe_failure(rsps, clock, status=200, json=body)

        assert error.kind == ErrorKind.TRANSIENT
        assert field_path in error.message
        assert self.display_name in error.message

    @pytest.mark.parametrize("balance", [0.5, "not-a-number", "NaN", None, True])
    def test_balance_that_is_not_a_decimal_string_is_refused(
        self, rsps: responses.RequestsMock, clock: FixedClock, balance: object
    ) -> None:
        body = self.with_first_balance(self.probe_body(), balance)
        error = self.probe_failure(rsps, clock, status=200, json=body)

        assert error.kind == ErrorKind.TRANSIENT
        assert "balance" in error.message

    def test_redirect_is_not_followed(self, rsps: responses.RequestsMock, clock: FixedClock) -> None:
        elsewhere = "http://elsewhere.test/collect"
        rsps.add(responses.GET, elsewhere, json=self.probe_body())
        rsps.add(responses.POST, elsewhere, json=self.probe_body())

        error = self.probe_failure(rsps, clock, status=302, headers={"Location": elsewhere})

        assert error.kind == ErrorKind.TRANSIENT
        assert "redirect" in error.message
        assert not [call for call in rsps.calls if call.request.url.startswith(elsewhere)]

    def test_secrets_never_surface_in_errors_or_logs(
        self, rsps: responses.RequestsMock, clock: FixedClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        failures: list[dict[str, Any]] = [
            {"status": 500, "body": "oops"},
            {"status": 401, "json": {"error": "invalid_token", "message": "no", "success": False}},
            {"status": 403, "json": {"error": "forbidden", "status": False}},
            {"status": 400, "json": {"error": "invalid_request"}},
            {"status": 200, "body": "{"},
            {"body": requests.exceptions.ReadTimeout()},
        ]
        texts: list[str] = []
        for reply in failures:
            rsps.reset()
            self.mock_prerequisites(rsps)
            rsps.add(self.probe_method, self.probe_url, **reply)
            client = self.make_client(clock)
            try:
                client.probe(connection=self.healthy_connection(clock))
            except ProviderError as error:
                texts += [str(error), repr(error), error.message]
        client = self.make_client(clock)
        connection = self.healthy_connection(clock)
        texts += [repr(client), repr(client.app), repr(connection), repr(list(connection.credentials.values()))]

        self.assert_no_secrets(*texts, caplog.text)

    def test_a_healthy_connection_is_not_due_for_renewal_yet(self, clock: FixedClock) -> None:
        client = self.make_client(clock)
        due = client.renewal_due_at(self.healthy_connection(clock))

        assert due is None or due > client.now()
