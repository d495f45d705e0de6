"""Fixtures for the adviser web UI tests: firms, people, and a fake provider seam.

The provider seam is ``lifecycle.client_for_app``: tests swap it for a
subclass of the real provider client (so ``flow``, ``platforms`` and the
credential form are the real ones) whose network calls are scripted by a
:class:`FakeProvider`. Everything else (services, the lifecycle, the ORM) runs
for real.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from connections import models as m
from connections.providers.base import (
    AccountData,
    AuthorizationStart,
    ConnectionState,
    Grant,
    IssuedCredential,
    ProviderClient,
)
from connections.providers.errors import AuthorizationDenied, FailureReason, ProviderError
from tests.factories import (
    ClientFactory,
    ConnectionFactory,
    FirmFactory,
    HouseholdFactory,
    MembershipFactory,
    ProviderAppFactory,
    UserFactory,
)
from tests.provider_seam import provider_clients_replace

PASSWORD = "correct-horse-battery"


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass
class World:
    """Two firms; in the first, two advisers and a firm admin, each adviser with a household."""

    firm: m.Firm
    adviser: Any
    other_adviser: Any
    firm_admin: Any
    household: m.Household
    other_household: m.Household  # same firm, assigned to other_adviser only
    foreign_household: m.Household  # another firm
    client: m.Client
    turnqey: m.ProviderApp
    coinify: m.ProviderApp
    bloquo: m.ProviderApp
    dapi: m.ProviderApp
    connection: m.Connection  # in household
    other_connection: m.Connection  # in other_household
    foreign_connection: m.Connection  # in foreign_household


@pytest.fixture
def world(db: None) -> World:
    firm = FirmFactory(name="Harbour Wealth")
    adviser = MembershipFactory(firm=firm, user=UserFactory(username="alice", first_name="Alice")).user
    other_adviser = MembershipFactory(firm=firm, user=UserFactory(username="bob")).user
    firm_admin = MembershipFactory(
        firm=firm, user=UserFactory(username="carol"), role=m.Membership.Role.FIRM_ADMIN
    ).user
    household = HouseholdFactory(firm=firm, name="Nguyen Household", reference="HW-001", advisers=[adviser])
    other_household = HouseholdFactory(firm=firm, name="Okoro Household", reference="HW-002", advisers=[other_adviser])
    foreign_firm = FirmFactory(name="Elsewhere Capital")
    foreign_household = HouseholdFactory(firm=foreign_firm, name="Foreign Household")
    MembershipFactory(firm=foreign_firm, user=UserFactory(username="mallory"))
    client = ClientFactory(household=household, name="Linh Nguyen", email="linh@example.test")
    apps = {
        key: ProviderAppFactory(provider=key, name="sandbox", redirect_uri="")
        for key in ("turnqey", "coinify", "bloquo", "dapi")
    }
    connection = ConnectionFactory(client=client, provider_app=apps["turnqey"], platform="coinbase")
    other_connection = ConnectionFactory(
        client=ClientFactory(household=other_household, name="Ada Okoro"), provider_app=apps["turnqey"]
    )
    foreign_connection = ConnectionFactory(
        client=ClientFactory(household=foreign_household, name="Zed Foreign"), provider_app=apps["turnqey"]
    )
    return World(
        firm=firm,
        adviser=adviser,
        other_adviser=other_adviser,
        firm_admin=firm_admin,
        household=household,
        other_household=other_household,
        foreign_household=foreign_household,
        client=client,
        turnqey=apps["turnqey"],
        coinify=apps["coinify"],
        bloquo=apps["bloquo"],
        dapi=apps["dapi"],
        connection=connection,
        other_connection=other_connection,
        foreign_connection=foreign_connection,
    )


@pytest.fixture
def adviser_client(client: Any, world: World) -> Any:
    client.force_login(world.adviser)
    return client


@pytest.fixture
def broken(world: World) -> m.Connection:
    """A Turnqey connection of the world's client that the provider reports revoked."""
    return ConnectionFactory(
        client=world.client,
        provider_app=world.turnqey,
        platform="kraken",
        status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.REVOKED,
        external_account_id="source-account-1",
    )


# --- The fake provider seam -----------------------------------------------------------------


@dataclass
class FakeProvider:
    """Scripts what the provider "does"; records what the portal asked (never a secret)."""

    external_account_id: str = "source-account-1"
    collection: str = field(default_factory=lambda: str(uuid.uuid4()))
    complete_error: Exception | None = None
    connect_error: Exception | None = None
    probe_error: Exception | None = None
    start_error: Exception | None = None
    balance: Decimal = Decimal("1.25000000")
    starts: list[dict[str, Any]] = field(default_factory=list)
    completes: list[dict[str, Any]] = field(default_factory=list)
    connects: list[dict[str, Any]] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    probes: int = 0

    def grant(self, platform: str) -> Grant:
        now = timezone.now()
        return Grant(
            credentials=[
                IssuedCredential(
                    kind="access", value="fake-access-token", issued_at=now, expires_at=now + timedelta(minutes=20)
                ),
                IssuedCredential(
                    kind="refresh", value="fake-refresh-token", issued_at=now, expires_at=now + timedelta(hours=24)
                ),
            ],
            external_account_id=self.external_account_id,
            grouping={"collection": self.collection},
            accounts=[
                AccountData(external_id=f"{platform}-btc", name="BTC Wallet", currency="BTC", balance=self.balance)
            ],
        )

    @staticmethod
    def state_from(redirect_url: str) -> str:
        return parse_qs(urlsplit(redirect_url).query)["state"][0]


def _fake_class(base: type[ProviderClient], fake: FakeProvider) -> type[ProviderClient]:
    """A subclass of the real client whose network calls follow ``fake``."""

    class Fake(base):  # type: ignore[valid-type, misc]
        def start_authorization(
            self, *, state: str, platform: str, identity: str, grouping: Mapping[str, str], redirect_uri: str
        ) -> AuthorizationStart:
            if fake.start_error is not None:
                raise fake.start_error
            fake.starts.append(
                {"platform": platform, "identity": identity, "grouping": dict(grouping), "redirect_uri": redirect_uri}
            )
            return AuthorizationStart(
                redirect_url=f"https://provider.test/{self.key}/authorize?state={state}", checksum="c0ffee"
            )

        def complete_authorization(self, *, params: Mapping[str, str], platform: str, identity: str) -> Grant:
            fake.completes.append({"platform": platform, "identity": identity, "params": dict(params)})
            if params.get("status") == "denied" or params.get("error") == "access_denied":
                raise AuthorizationDenied("denied", "The user declined at the platform.")
            if fake.complete_error is not None:
                raise fake.complete_error
            return fake.grant(platform)

        def connect_with_credentials(self, *, fields: Mapping[str, str], platform: str) -> Grant:
            cleaned = self.clean_credential_fields(fields)  # the real validation
            fake.connects.append({"platform": platform, "field_names": sorted(cleaned)})
            if fake.connect_error is not None:
                raise fake.connect_error
            if cleaned.get("password") == "wrong-password" or cleaned.get("clientSecret") == "wrong-secret":
                raise ProviderError.reauth(FailureReason.CREDENTIALS_INVALID, "Invalid email or password.")
            return fake.grant(platform)

        def renew(self, *, connection: ConnectionState) -> Sequence[IssuedCredential]:
            return ()

        def probe(self, *, connection: ConnectionState) -> Sequence[AccountData]:
            fake.probes += 1
            if fake.probe_error is not None:
                raise fake.probe_error
            return fake.grant(connection.platform).accounts or ()

        def revoke(self, *, connection: ConnectionState) -> None:
            fake.revoked.append(connection.external_account_id)

        def app_token(self) -> IssuedCredential | None:
            return None

    Fake.__name__ = f"Fake{base.__name__}"
    return Fake


@pytest.fixture
def fake_provider(monkeypatch: pytest.MonkeyPatch) -> FakeProvider:
    fake = FakeProvider()
    provider_clients_replace(monkeypatch, lambda cls: _fake_class(cls, fake))
    return fake


# --- Browser tests (Playwright, Chromium) ------------------------------------------------------

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """pytest-playwright's launch arguments: the system Chromium, quiet and sandbox-free (containers)."""
    import os

    return {
        **browser_type_launch_args,
        "executable_path": os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"),
        "args": CHROMIUM_ARGS,
    }


@pytest.fixture(scope="session", autouse=True)
def _waiting_assertions_wait_like_pages() -> None:
    """Playwright's ``expect`` waits as long as the browser tests' pages do (20 s, not 5 s).

    A check made right after a click that submits a form has to wait for the
    next document: an instant ``is_visible()`` can read the page between the
    new address and its body on a busy machine.
    """
    try:
        from playwright.sync_api import expect
    except ImportError:  # the browser suites are skipped without Playwright
        return
    expect.set_options(timeout=20_000)


@pytest.fixture
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_context_args, "viewport": {"width": 1280, "height": 900}, "locale": "en-GB"}


@pytest.fixture
def live_provider_http() -> Iterator[None]:
    """Closes the provider clients' pooled keep-alive sockets after a test against the live server.

    Otherwise a live-server thread can still be waiting on one of them when the
    server stops, which prints a stray thread exception at the end of the run.
    """
    yield
    from connections.providers.transport import shared_session

    shared_session().close()
