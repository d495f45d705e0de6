"""Fixtures of the security suite: firms and people in every role, and a provider seam without network.

The seam replaces ``lifecycle.client_for_app`` with subclasses of the real
provider clients (real ``flow``, platforms and credential form) whose network
calls are canned, so the suite can throw thousands of requests at the views
quickly. Suites that need the real wire use the sandbox behind a live server
(``tests.faults.support``).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.urls import reverse
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


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass
class People:
    """Two firms. In the first: an assigned adviser, an unassigned adviser, a firm admin.

    In the second: an adviser and a firm admin. Plus a user with no membership
    and a superuser (staff, no membership).
    """

    firm: m.Firm
    other_firm: m.Firm
    assigned: Any
    unassigned: Any
    firm_admin: Any
    other_adviser: Any
    other_admin: Any
    no_membership: Any
    superuser: Any
    household: m.Household  # firm, assigned adviser only
    sibling_household: m.Household  # firm, unassigned adviser only
    foreign_household: m.Household  # other firm, other adviser
    client: m.Client
    apps: dict[str, m.ProviderApp]
    connection: m.Connection  # in household
    sibling_connection: m.Connection
    foreign_connection: m.Connection


@pytest.fixture
def people(db: None) -> People:
    return build_people()


def build_people() -> People:
    """The :class:`People` world (for tests that need it outside the ``people`` fixture)."""
    firm = FirmFactory(name="Harbour Wealth")
    other_firm = FirmFactory(name="Elsewhere Capital")
    assigned = MembershipFactory(firm=firm, user=UserFactory(username="assigned")).user
    unassigned = MembershipFactory(firm=firm, user=UserFactory(username="unassigned")).user
    firm_admin = MembershipFactory(
        firm=firm, user=UserFactory(username="firmadmin"), role=m.Membership.Role.FIRM_ADMIN
    ).user
    other_adviser = MembershipFactory(firm=other_firm, user=UserFactory(username="otheradviser")).user
    other_admin = MembershipFactory(
        firm=other_firm, user=UserFactory(username="otheradmin"), role=m.Membership.Role.FIRM_ADMIN
    ).user
    no_membership = UserFactory(username="nomember")
    superuser = UserFactory(username="root", is_staff=True, is_superuser=True)
    household = HouseholdFactory(firm=firm, name="Nguyen Household", advisers=[assigned])
    sibling = HouseholdFactory(firm=firm, name="Okoro Household", advisers=[unassigned])
    foreign = HouseholdFactory(firm=other_firm, name="Foreign Household", advisers=[other_adviser])
    client = ClientFactory(household=household, name="Linh Nguyen", email="linh@example.test")
    apps = {
        key: ProviderAppFactory(provider=key, name="sandbox", redirect_uri="", rate_limit_per_second=0)
        for key in ("turnqey", "coinify", "bloquo", "dapi")
    }
    return People(
        firm=firm,
        other_firm=other_firm,
        assigned=assigned,
        unassigned=unassigned,
        firm_admin=firm_admin,
        other_adviser=other_adviser,
        other_admin=other_admin,
        no_membership=no_membership,
        superuser=superuser,
        household=household,
        sibling_household=sibling,
        foreign_household=foreign,
        client=client,
        apps=apps,
        connection=ConnectionFactory(client=client, provider_app=apps["turnqey"], platform="coinbase"),
        sibling_connection=ConnectionFactory(
            client=ClientFactory(household=sibling), provider_app=apps["turnqey"], platform="gemini"
        ),
        foreign_connection=ConnectionFactory(
            client=ClientFactory(household=foreign), provider_app=apps["turnqey"], platform="kraken"
        ),
    )


def logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- The provider seam -------------------------------------------------------------------------------


# A password the canned provider refuses, as a provider refuses a wrong one.
WRONG_PASSWORD = "wrong-password"


@dataclass
class CannedProvider:
    """What the canned provider answers; what it was asked (no secrets kept)."""

    external_account_id: str = "source-account-1"
    collection: str = field(default_factory=lambda: str(uuid.uuid4()))
    completes: int = 0
    connects: int = 0  # credential forms that reached the provider
    probes: int = 0

    def grant(self, platform: str) -> Grant:
        now = timezone.now()
        return Grant(
            credentials=[
                IssuedCredential(
                    kind="access", value="canned-access", issued_at=now, expires_at=now + timedelta(minutes=20)
                ),
                IssuedCredential(
                    kind="refresh", value="canned-refresh", issued_at=now, expires_at=now + timedelta(hours=24)
                ),
            ],
            external_account_id=self.external_account_id,
            grouping={"collection": self.collection},
            accounts=[AccountData(external_id=f"{platform}-btc", name="BTC", currency="BTC", balance=Decimal("1"))],
        )


def _canned_class(base: type[ProviderClient], canned: CannedProvider) -> type[ProviderClient]:
    class Canned(base):  # type: ignore[valid-type, misc]
        def start_authorization(
            self, *, state: str, platform: str, identity: str, grouping: Mapping[str, str], redirect_uri: str
        ) -> AuthorizationStart:
            return AuthorizationStart(redirect_url=f"https://provider.test/{self.key}/authorize?state={state}")

        def complete_authorization(self, *, params: Mapping[str, str], platform: str, identity: str) -> Grant:
            canned.completes += 1
            if params.get("status") == "denied" or params.get("error") == "access_denied":
                raise AuthorizationDenied("denied", "The user declined at the platform.")
            return canned.grant(platform)

        def connect_with_credentials(self, *, fields: Mapping[str, str], platform: str) -> Grant:
            self.clean_credential_fields(fields)
            canned.connects += 1
            if fields.get("password") == WRONG_PASSWORD:
                raise ProviderError.reauth(FailureReason.CREDENTIALS_INVALID, "Invalid email or password.")
            return canned.grant(platform)

        def renew(self, *, connection: ConnectionState) -> Sequence[IssuedCredential]:
            return ()

        def probe(self, *, connection: ConnectionState) -> Sequence[AccountData]:
            canned.probes += 1
            return canned.grant(connection.platform).accounts or ()

        def revoke(self, *, connection: ConnectionState) -> None:
            return None

        def app_token(self) -> IssuedCredential | None:
            return None

    Canned.__name__ = f"Canned{base.__name__}"
    return Canned


@pytest.fixture
def canned(monkeypatch: pytest.MonkeyPatch) -> CannedProvider:
    provider = CannedProvider()
    provider_clients_replace(monkeypatch, lambda cls: _canned_class(cls, provider))
    return provider


def start_connect(client: Client, household: m.Household, app: m.ProviderApp, *, platform: str = "coinbase") -> str:
    """Start a redirect flow through the connect view, as the browser would; returns the state."""
    response = client.post(
        reverse("household_connect", args=[household.pk]),
        {"client": household.clients.first().pk, "provider_app": app.pk, "platform": platform},
    )
    assert response.status_code == 302, response.content[:500]
    return parse_qs(urlsplit(response["Location"]).query)["state"][0]


TURNQEY_SUCCESS = {"identity": "x", "collection": "y", "platform": "coinbase", "status": "success"}
DAPI_SUCCESS = {"accessCode": "a", "connectionID": "c", "userSecret": "u", "userID": "id-1", "tokenID": "t"}
