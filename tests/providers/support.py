"""Helpers shared by the provider-client tests: fixtures, a fixed clock, app configs."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from requests import PreparedRequest

from connections.providers.base import AppConfig, IssuedCredential

FIXTURES = Path(__file__).parent / "fixtures"

# Balances a reply might carry that are not decimal strings (a float has lost
# precision already): each must be refused, never stored.
NOT_DECIMAL_STRINGS: tuple[object, ...] = (0.5, "not-a-number", "NaN", None, True)

# Fixtures that are the providers' documentation examples, as printed.
DOC_FIXTURES = (
    "turnqey_token_success",
    "turnqey_token_validation_error",
    "coinify_auth_success",
    "coinify_password_request",
    "coinify_refresh_request",
    "coinify_offline_request",
    "coinify_revoke_request",
    "dapi_connect_success",
    "dapi_exchange_request",
    "dapi_exchange_success",
)


def load_fixture(name: str) -> Any:
    """A fresh copy of a JSON fixture (tests may mutate it)."""
    return copy.deepcopy(json.loads((FIXTURES / f"{name}.json").read_text()))


def request_json(request: PreparedRequest) -> Any:
    body = request.body
    if isinstance(body, bytes):
        body = body.decode()
    return json.loads(body or "null")


class FixedClock:
    """A clock tests move by hand, so nothing depends on how fast the test runs."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at = self.at + timedelta(**delta)


def app_config(provider: str, **overrides: str) -> AppConfig:
    values = {
        "provider": provider,
        "environment": "sandbox",
        "base_url": f"http://provider.test/sandbox/{provider}",
        "client_id": f"{provider}-client-id",
        "client_secret": f"{provider}-app-secret-s3cr3t",
        "redirect_uri": f"http://portal.test/connect/{provider}/callback/",
    }
    values.update(overrides)
    return AppConfig(**values)


def credential(kind: str, value: str, *, issued_at: datetime, lifetime: timedelta | None = None) -> IssuedCredential:
    return IssuedCredential(
        kind=kind, value=value, issued_at=issued_at, expires_at=issued_at + lifetime if lifetime else None
    )


def start_of_test_day() -> datetime:
    return datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
