"""Fixtures for the sandbox tests: doc examples, a JSON control client, registered apps."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client

from sandbox import faults
from tests.sandbox_client import control_headers

FIXTURES = Path(__file__).parent / "fixtures"

TURNQEY_CLIENT = {
    "client_id": "tq-client",
    "client_secret": "tq-secret",
    "redirect_uri": "https://portal.test/connect/turnqey/callback/",
}
DAPI_APP = {
    "client_id": "dapi-app-key",
    "client_secret": "dapi-app-secret",
    "redirect_uri": "https://portal.test/connect/dapi/callback/",
}
COINIFY_PARTNER = "5f51bfe2-d08a-4b43-9d5c-405fd2f2ede6"


def doc_example(name: str) -> Any:
    """A documented example copied into tests/sandbox/fixtures/."""
    return json.loads((FIXTURES / name).read_text())


def assert_same_shape(actual: Any, documented: Any, where: str = "$") -> None:
    """Every documented field is present with the documented JSON type, and no other field.

    Lists: every element of ``actual`` has the shape of the documented first element.
    """
    assert type(actual) is type(documented), (
        f"{where}: {type(actual).__name__} where the doc has {type(documented).__name__}"
    )
    if isinstance(documented, dict):
        assert set(actual) == set(documented), f"{where}: keys {sorted(actual)} where the doc has {sorted(documented)}"
        for key, value in documented.items():
            assert_same_shape(actual[key], value, f"{where}.{key}")
    elif isinstance(documented, list) and documented:
        assert actual, f"{where}: empty list where the doc shows items"
        for index, item in enumerate(actual):
            assert_same_shape(item, documented[0], f"{where}[{index}]")


def turnqey_checksum(secret: str, params: dict[str, str]) -> str:
    """The checksum recipe of docs/provider-assumptions.md, written out independently here."""
    message = urlencode(sorted((k, v) for k, v in params.items() if k != "checksum" and v))
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


class ControlClient:
    """JSON calls to /sandbox/_control/ through Django's test client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def post(self, path: str, body: dict[str, Any] | None = None, *, expect: int | None = 200) -> Any:
        response = self.client.post(
            f"/sandbox/_control/{path}",
            data=json.dumps(body or {}),
            content_type="application/json",
            headers=control_headers(),
        )
        if expect is not None:
            assert response.status_code == expect, response.content
        return response.json()

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        response = self.client.get(f"/sandbox/_control/{path}", params or {}, headers=control_headers())
        assert response.status_code == 200, response.content
        return response.json()

    def delete(self, path: str) -> Any:
        response = self.client.delete(f"/sandbox/_control/{path}", headers=control_headers())
        assert response.status_code == 200, response.content
        return response.json()

    def fault(self, **fields: Any) -> dict[str, Any]:
        return self.post("faults", fields, expect=201)

    def requests(self, **filters: str) -> list[dict[str, Any]]:
        return self.get("requests", filters)["requests"]


@pytest.fixture
def control(client: Client, db: None) -> ControlClient:
    return ControlClient(client)


@pytest.fixture
def turnqey_app(control: ControlClient) -> dict[str, str]:
    control.post("apps", {"provider": "turnqey", **TURNQEY_CLIENT}, expect=201)
    return TURNQEY_CLIENT


@pytest.fixture
def dapi_app(control: ControlClient) -> dict[str, str]:
    control.post("apps", {"provider": "dapi", **DAPI_APP}, expect=201)
    return DAPI_APP


@pytest.fixture
def coinify_user(control: ControlClient) -> dict[str, Any]:
    """A Coinify user of the documented partner, with the documented email and password."""
    example = doc_example("coinify_requests.json")["password"]
    return control.post(
        "subjects",
        {
            "provider": "coinify",
            "partner_id": COINIFY_PARTNER,
            "email": example["email"],
            "password": example["password"],
        },
        expect=201,
    )


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the sandbox's fault sleeps instead of sleeping."""
    recorded: list[float] = []
    monkeypatch.setattr(faults, "_sleep", recorded.append)
    return recorded
