"""What the demo world holds: its logins, firm, households, clients and connections (``manage.py seed_demo``).

Plain specifications, read by :mod:`connections.demo.seed`: every provider in
every status, each connection with the story its history is drawn from.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from connections import models as m
from connections import wording

# Development only: printed by `demo_logins` and listed in the README. The
# seed_demo command refuses to run with DEBUG off, so this never reaches production.
DEMO_PASSWORD = "demo-password-dev-only"  # noqa: S105


@dataclass(frozen=True)
class DemoLogin:
    username: str
    first_name: str
    last_name: str
    role: str  # a Membership role, or "superuser"
    description: str


DEMO_LOGINS: tuple[DemoLogin, ...] = (
    DemoLogin("adviser1", "Alex", "Morgan", m.Membership.Role.ADVISER, "adviser: four households"),
    DemoLogin("adviser2", "Sam", "Rivera", m.Membership.Role.ADVISER, "adviser: five households (one shared)"),
    DemoLogin("firmadmin", "Jordan", "Blake", m.Membership.Role.FIRM_ADMIN, "firm admin: sees the whole firm"),
    DemoLogin("admin", "Site", "Admin", "superuser", "Django admin (/admin/)"),
)

FIRM_NAME = "Demo Advisory"
FIRM_SLUG = "demo-advisory"
# Who reconnects what this command brings back after a sandbox reset.
ACTOR_LABEL = f"{wording.COMMAND}:seed_demo"

# Stable client identities across fresh databases, so a reconnect through the
# sandbox names the same partner-side identity run after run.
DEMO_NAMESPACE = uuid.UUID("6f1d7c3e-4b52-4a8e-9a0e-3d2b1c5e7f90")


@dataclass(frozen=True)
class HouseholdSpec:
    reference: str
    name: str
    advisers: tuple[str, ...]
    clients: tuple[str, ...]


HOUSEHOLDS: tuple[HouseholdSpec, ...] = (
    HouseholdSpec("DEMO-001", "Okafor Household", ("adviser1",), ("Chidi Okafor", "Amara Okafor")),
    HouseholdSpec(
        "DEMO-002",
        "Lindqvist Family",
        ("adviser1", "adviser2"),
        ("Erik Lindqvist", "Sofia Lindqvist", "Maja Lindqvist"),
    ),
    HouseholdSpec("DEMO-003", "Estate of Margaret Hale", ("adviser1",), ("Thomas Hale",)),
    HouseholdSpec("DEMO-004", "Tanaka Household", ("adviser1",), ("Hiroshi Tanaka", "Yuki Tanaka")),
    HouseholdSpec("DEMO-005", "Moreno García Household", ("adviser2",), ("Lucía Moreno", "Javier García")),
    HouseholdSpec("DEMO-006", "Patel Household", ("adviser2",), ("Priya Patel",)),
    HouseholdSpec("DEMO-007", "Dubois Household", ("adviser2",), ("Camille Dubois", "Antoine Dubois", "Léa Dubois")),
    HouseholdSpec("DEMO-008", "O'Connor Household", ("adviser2",), ("Siobhan O'Connor",)),
)

S = m.Status
R = m.Reason

# Connections in these statuses have a source account at the provider, so with
# the sandbox each one keeps a real subject (a broken one for needs_reconnect).
SUBJECT_STATUSES = (S.ACTIVE, S.DEGRADED, S.NEEDS_RECONNECT)
# Working connections: their credentials must keep working under the worker.
LIVE_STATUSES = (S.ACTIVE, S.DEGRADED)


@dataclass(frozen=True)
class ConnectionSpec:
    household: str  # HouseholdSpec.reference
    client: int  # index into HouseholdSpec.clients
    provider: str
    platform: str
    status: str
    reason: str = ""
    # Seeds the connection's life (its Story); empty: its own household, client,
    # provider and platform. Connections given the same story live the same life.
    story: str = ""

    @property
    def story_key(self) -> str:
        return self.story or f"{self.household}/{self.client}/{self.provider}/{self.platform}"


# Every provider in every status; needs_reconnect with each reason the
# provider's checks can come to (Coinify: expired, revoked; Bloquo: revoked,
# credentials_invalid; Turnqey: revoked, expired; Dapi: revoked), every reason
# at least once overall.
CONNECTIONS: tuple[ConnectionSpec, ...] = (
    ConnectionSpec("DEMO-001", 0, "turnqey", "coinbase", S.ACTIVE),
    ConnectionSpec("DEMO-001", 1, "turnqey", "gemini", S.ACTIVE),
    ConnectionSpec("DEMO-003", 0, "turnqey", "gemini", S.ACTIVE),
    ConnectionSpec("DEMO-006", 0, "turnqey", "coinbase", S.ACTIVE),
    ConnectionSpec("DEMO-002", 0, "turnqey", "kraken", S.DEGRADED, R.TRANSIENT),
    ConnectionSpec("DEMO-004", 0, "turnqey", "binance", S.NEEDS_RECONNECT, R.REVOKED),
    ConnectionSpec("DEMO-005", 1, "turnqey", "coinbase", S.NEEDS_RECONNECT, R.EXPIRED),
    ConnectionSpec("DEMO-007", 0, "turnqey", "gemini", S.PENDING),
    ConnectionSpec("DEMO-008", 0, "turnqey", "kraken", S.DISCONNECTED),
    ConnectionSpec("DEMO-001", 0, "coinify", "coinify", S.ACTIVE),
    ConnectionSpec("DEMO-002", 1, "coinify", "coinify", S.ACTIVE),
    ConnectionSpec("DEMO-006", 0, "coinify", "coinify", S.ACTIVE),
    ConnectionSpec("DEMO-003", 0, "coinify", "coinify", S.DEGRADED, R.TRANSIENT),
    ConnectionSpec("DEMO-004", 1, "coinify", "coinify", S.NEEDS_RECONNECT, R.EXPIRED),
    ConnectionSpec("DEMO-005", 0, "coinify", "coinify", S.NEEDS_RECONNECT, R.REVOKED),
    ConnectionSpec("DEMO-007", 1, "coinify", "coinify", S.PENDING, R.AUTHORIZATION_ABANDONED),
    ConnectionSpec("DEMO-008", 0, "coinify", "coinify", S.DISCONNECTED),
    ConnectionSpec("DEMO-002", 2, "bloquo", "bloquo", S.ACTIVE),
    ConnectionSpec("DEMO-006", 0, "bloquo", "bloquo", S.ACTIVE),
    ConnectionSpec("DEMO-008", 0, "bloquo", "bloquo", S.ACTIVE),
    ConnectionSpec("DEMO-004", 0, "bloquo", "bloquo", S.DEGRADED, R.TRANSIENT),
    ConnectionSpec("DEMO-001", 1, "bloquo", "bloquo", S.NEEDS_RECONNECT, R.CREDENTIALS_INVALID),
    ConnectionSpec("DEMO-007", 2, "bloquo", "bloquo", S.NEEDS_RECONNECT, R.REVOKED),
    ConnectionSpec("DEMO-005", 1, "bloquo", "bloquo", S.PENDING),
    ConnectionSpec("DEMO-003", 0, "bloquo", "bloquo", S.DISCONNECTED),
    ConnectionSpec("DEMO-002", 0, "dapi", "binance", S.ACTIVE),
    ConnectionSpec("DEMO-005", 0, "dapi", "bitstamp", S.ACTIVE),
    ConnectionSpec("DEMO-004", 0, "dapi", "bitstamp", S.ACTIVE),
    ConnectionSpec("DEMO-008", 0, "dapi", "bitstamp", S.ACTIVE),
    ConnectionSpec("DEMO-006", 0, "dapi", "bitstamp", S.DEGRADED, R.TRANSIENT),
    ConnectionSpec("DEMO-007", 0, "dapi", "binance", S.NEEDS_RECONNECT, R.REVOKED),
    ConnectionSpec("DEMO-004", 1, "dapi", "binance", S.PENDING),
    ConnectionSpec("DEMO-001", 0, "dapi", "bitstamp", S.DISCONNECTED),
)
