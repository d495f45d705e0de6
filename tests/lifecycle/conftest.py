"""A scriptable fake provider for the lifecycle tests.

Every provider key in the registry is mapped to :class:`FakeClient`, which
answers ``renew``/``probe``/``revoke``/``app_token`` from per-test scripts
held by a :class:`FakeWorld`. Nothing here speaks HTTP.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from connections import lifecycle
from connections.models import Credential, Provider, Status
from connections.providers.base import AccountData, ConnectionState, Grant, IssuedCredential, ProviderClient, renew_at
from tests.factories import ConnectionFactory, CredentialFactory, ProviderAppFactory
from tests.provider_seam import provider_clients_replace

ACCOUNTS = [
    AccountData(external_id="btc-1", name="BTC wallet", currency="BTC", balance=Decimal("0.50000000")),
    AccountData(external_id="eth-1", name="ETH wallet", currency="ETH", balance=Decimal("2.00000000")),
]
ACCESS_LIFETIME = timedelta(minutes=20)
REFRESH_LIFETIME = timedelta(hours=24)

Step = Any  # an AccountData list, a credential list, an exception, or a callable returning one


class FakeWorld:
    """Scripts and a record of what the fake provider was asked."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.renew_script: list[Step] = []
        self.probe_script: list[Step] = []
        self.revoke_script: list[Step] = []
        self.app_token_script: list[Step] = []
        self.renewable = True
        # The refresh token's end of life: a hard deadline, or one that rolls forward at every renewal.
        self.refresh_rolls = False
        self.has_app_token = True
        self.calls: dict[str, int] = {"renew": 0, "probe": 0, "revoke": 0, "app_token": 0}
        self.refresh_tokens_used: list[str] = []
        self.access_tokens_probed: list[str] = []
        self.on_renew: Callable[[], None] | None = None
        self._serial = itertools.count(1)

    def next_serial(self) -> int:
        with self.lock:
            return next(self._serial)

    def take(self, script: list[Step], name: str) -> Step:
        with self.lock:
            self.calls[name] += 1
            return script.pop(0) if script else None

    @staticmethod
    def play(step: Step) -> Any:
        if callable(step) and not isinstance(step, type):
            step = step()
        if isinstance(step, BaseException):
            raise step
        return step


def fresh_credentials(serial: int | str, *, now: datetime | None = None) -> list[IssuedCredential]:
    now = now or timezone.now()
    return [
        IssuedCredential(kind="access", value=f"access-{serial}", issued_at=now, expires_at=now + ACCESS_LIFETIME),
        IssuedCredential(kind="refresh", value=f"refresh-{serial}", issued_at=now, expires_at=now + REFRESH_LIFETIME),
    ]


class FakeClient(ProviderClient):
    key = "fake"
    display_name = "Fake"
    flow = "form"
    world: FakeWorld

    def renewal_due_at(self, connection: ConnectionState) -> datetime | None:
        if not self.world.renewable:
            return None
        access = connection.credentials.get("access")
        if access is None:
            return timezone.now()
        return renew_at(access, timedelta(minutes=2))

    def reconnect_deadline(self, connection: ConnectionState) -> datetime | None:
        if "offline" in connection.credentials or "permanent" in connection.credentials:
            return None
        refresh = connection.credentials.get("refresh")
        return refresh.expires_at if refresh is not None else None

    def deadline_rolls(self, connection: ConnectionState) -> bool:
        return self.world.refresh_rolls

    def renew(self, *, connection: ConnectionState) -> Sequence[IssuedCredential]:
        world = self.world
        step = world.take(world.renew_script, "renew")
        refresh = connection.credentials.get("refresh")
        with world.lock:
            world.refresh_tokens_used.append(refresh.value if refresh else "")
        if world.on_renew is not None:
            world.on_renew()
        result = world.play(step)
        if result is not None:
            return result
        if not world.renewable:
            return ()
        return fresh_credentials(f"renewed-{world.next_serial()}")

    def probe(self, *, connection: ConnectionState) -> Sequence[AccountData]:
        world = self.world
        step = world.take(world.probe_script, "probe")
        access = connection.credentials.get("access")
        with world.lock:
            world.access_tokens_probed.append(access.value if access else "")
        result = world.play(step)
        return ACCOUNTS if result is None else result

    def revoke(self, *, connection: ConnectionState) -> None:
        world = self.world
        world.play(world.take(world.revoke_script, "revoke"))

    def app_token(self) -> IssuedCredential | None:
        world = self.world
        result = world.play(world.take(world.app_token_script, "app_token"))
        if result is None and world.has_app_token:
            now = timezone.now()
            result = IssuedCredential(kind="app", value="app-token", issued_at=now, expires_at=now + timedelta(hours=1))
            self.app_token_cache.save(result)
        return result


@pytest.fixture(autouse=True)
def world(monkeypatch: pytest.MonkeyPatch, settings: Any) -> Iterator[FakeWorld]:
    """Every provider key answers through the fake; database rate limiter; fresh client cache."""
    fake_world = FakeWorld()
    monkeypatch.setattr(FakeClient, "world", fake_world, raising=False)
    provider_clients_replace(monkeypatch, lambda cls: FakeClient)
    settings.RATE_LIMIT_REDIS_URL = ""
    yield fake_world
    lifecycle.clients_forget()


@pytest.fixture
def app(db: None) -> Any:
    """A provider app without an outbound rate limit (tests of the limit set one)."""
    return ProviderAppFactory(provider=Provider.COINIFY, rate_limit_per_second=0)


def make_connection(
    app: Any,
    *,
    status: str = Status.ACTIVE,
    reason: str = "",
    access_expires_in: timedelta = timedelta(minutes=18),
    with_credentials: bool = True,
    **fields: Any,
) -> Any:
    """A connection with an access and a refresh token; access issued so it expires in ``access_expires_in``."""
    if status == Status.NEEDS_RECONNECT and not reason:
        reason = "revoked"
    if status in (Status.NEEDS_RECONNECT, Status.PENDING, Status.DISCONNECTED):
        fields.setdefault("next_check_at", None)
    if status == Status.DEGRADED:
        fields.setdefault("consecutive_failures", 3)
        fields.setdefault("degraded_since", timezone.now() - timedelta(hours=1))
        reason = reason or "transient"
    connection = ConnectionFactory(provider_app=app, status=status, reason=reason, **fields)
    if with_credentials:
        now = timezone.now()
        expires = now + access_expires_in
        CredentialFactory(
            connection=connection,
            kind=Credential.Kind.ACCESS,
            value="access-0",
            issued_at=expires - ACCESS_LIFETIME,
            expires_at=expires,
        )
        CredentialFactory(
            connection=connection,
            kind=Credential.Kind.REFRESH,
            value="refresh-0",
            issued_at=now - timedelta(hours=1),
            expires_at=now + REFRESH_LIFETIME - timedelta(hours=1),
        )
    return connection


def grant_for(connection: Any, serial: str = "granted", *, external_account_id: str | None = None) -> Grant:
    return Grant(
        credentials=fresh_credentials(serial),
        external_account_id=connection.external_account_id if external_account_id is None else external_account_id,
        accounts=ACCOUNTS,
    )
