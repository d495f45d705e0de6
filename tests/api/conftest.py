"""Fixtures of the API and webhook suites: two firms with keys, an HTTP client for the live server, a clock.

The API is always reached over real HTTP (the live server): authentication,
headers and status codes are what a firm's CRM would see.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.utils import timezone

from api.keys import api_key_create, api_key_revoke
from api.models import ApiKey, EventType
from api.webhooks.services import EndpointSecret, endpoint_create
from connections import models as m
from connections.providers import base as providers_base
from tests.e2e.support import Clock
from tests.factories import (
    AccountFactory,
    ClientFactory,
    ConnectionEventFactory,
    ConnectionFactory,
    CredentialFactory,
    FirmFactory,
    HouseholdFactory,
    MembershipFactory,
    ProviderAppFactory,
    UserFactory,
)

HTTP_TIMEOUT = 15.0


class ApiClient:
    """``requests`` against ``/api/v1/`` of a live server, with one key (or none)."""

    def __init__(self, server_url: str, key: str | None) -> None:
        self.base = f"{server_url}/api/v1"
        self.http = requests.Session()
        if key is not None:
            self.http.headers["Authorization"] = f"Bearer {key}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(self.base + path, timeout=HTTP_TIMEOUT, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.post(self.base + path, timeout=HTTP_TIMEOUT, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, self.base + path, timeout=HTTP_TIMEOUT, **kwargs)

    def close(self) -> None:
        self.http.close()


@dataclass
class ApiFirm:
    """A firm with households, clients, connections of every status, and a read and a write key."""

    firm: m.Firm
    admin: Any
    households: list[m.Household]
    clients: list[m.Client]
    connections: list[m.Connection]
    read_key: str
    write_key: str

    @property
    def ids(self) -> dict[str, set[int]]:
        return {
            "households": {h.pk for h in self.households},
            "clients": {c.pk for c in self.clients},
            "connections": {c.pk for c in self.connections},
        }


@dataclass
class ApiWorld:
    url: str
    ours: ApiFirm
    theirs: ApiFirm
    revoked_key: str
    clients: list[ApiClient] = field(default_factory=list)

    def client(self, key: str | None) -> ApiClient:
        made = ApiClient(self.url, key)
        self.clients.append(made)
        return made


STATUSES = (
    (m.Status.ACTIVE, ""),
    (m.Status.NEEDS_RECONNECT, m.Reason.REVOKED),
    (m.Status.DEGRADED, m.Reason.TRANSIENT),
    (m.Status.PENDING, ""),
)


def make_firm(name: str, *, households: int = 2, apps: dict[str, m.ProviderApp]) -> ApiFirm:
    firm = FirmFactory(name=name)
    admin = MembershipFactory(firm=firm, role=m.Membership.Role.FIRM_ADMIN, user=UserFactory()).user
    made_households, made_clients, made_connections = [], [], []
    for index in range(households):
        household = HouseholdFactory(firm=firm, name=f"{name} household {index}", reference=f"REF-{index}")
        client = ClientFactory(household=household)
        made_households.append(household)
        made_clients.append(client)
        for offset, (status, reason) in enumerate(STATUSES):
            provider = ("turnqey", "coinify", "bloquo", "dapi")[(index + offset) % 4]
            connection = ConnectionFactory(
                client=client,
                provider_app=apps[provider],
                platform="coinbase" if provider in ("turnqey", "dapi") else provider,
                status=status,
                reason=reason,
                reconnect_by=timezone.now() + timedelta(hours=20) if status == m.Status.ACTIVE else None,
            )
            CredentialFactory(connection=connection, kind="access", value=f"SECRET-access-{connection.pk}")
            AccountFactory(connection=connection)
            ConnectionEventFactory(connection=connection, kind="connected", to_status="active", message="Connected.")
            made_connections.append(connection)
    return ApiFirm(
        firm=firm,
        admin=admin,
        households=made_households,
        clients=made_clients,
        connections=made_connections,
        read_key=api_key_create(firm=firm, name="CRM read").key,
        write_key=api_key_create(firm=firm, name="CRM write", scope=ApiKey.Scope.WRITE).key,
    )


def provider_apps() -> dict[str, m.ProviderApp]:
    return {key: ProviderAppFactory(provider=key, name="api-tests") for key in ("turnqey", "coinify", "bloquo", "dapi")}


@pytest.fixture
def api_world(live_server: Any, settings: Any) -> Iterator[ApiWorld]:
    settings.API_RATE_LIMIT_PER_MINUTE = 0  # the limit has its own test
    apps = provider_apps()
    ours = make_firm("Harbour Wealth", apps=apps)
    theirs = make_firm("Elsewhere Capital", apps=apps)
    revoked = api_key_create(firm=ours.firm, name="old", scope=ApiKey.Scope.WRITE)
    api_key_revoke(api_key=revoked.api_key)
    world = ApiWorld(url=live_server.url, ours=ours, theirs=theirs, revoked_key=revoked.key)
    yield world
    for client in world.clients:
        client.close()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The portal's clock, moved only by the test (webhook signatures still carry the real time)."""
    controlled = Clock(timezone.now().replace(microsecond=0))
    monkeypatch.setattr(timezone, "now", controlled.now)
    monkeypatch.setattr(providers_base, "utcnow", controlled.now)
    random.seed(20241201)
    return controlled


@pytest.fixture
def local_receivers(settings: Any) -> None:
    """Let webhooks go to a receiver on this machine over plain HTTP (production refuses both)."""
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    settings.WEBHOOK_REQUIRE_HTTPS = False


ALL_TYPES = list(EventType.values)


def endpoint_for(firm: m.Firm, url: str, *, types: list[str] | None = None) -> EndpointSecret:
    return endpoint_create(firm=firm, url=url, event_types=types or ALL_TYPES, description="CRM")
