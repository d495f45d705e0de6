"""``manage.py seed_demo``: demo data for development. Idempotent.

Creates the firm "Demo Advisory", development-only logins (see
:data:`DEMO_LOGINS`, all with :data:`DEMO_PASSWORD`), eight households with
clients, one sandbox ProviderApp per provider, and connections on all four
providers in every status, with accounts, deadlines and 30 days of history.

Real sandbox subjects. With the sandbox installed (``SANDBOX_ENABLED``, the
default in development) every active, degraded or needs-reconnect demo
connection is backed by a subject created in the sandbox through its
management commands (``sandbox_create_subject``, ``sandbox_subject_action``;
the web server need not run), and stores what the sandbox issued in the
formats the provider clients read:

* Coinify: a user (the client's email, password :data:`DEMO_PASSWORD`); the
  ``offline`` token only, so the first check renews with it;
  ``external_account_id`` the user id.
* Bloquo: a staging key pair stored as the ``api_key`` credential
  (``bloquo.encode_api_key``); ``external_account_id`` the customer id.
* Turnqey: an approved authorization (client identity, platform, the
  household's collection, the consent page's default username); grouping
  ``{"collection", "identity"}`` and ``external_account_id`` the source account id.
* Dapi: a Connect login (username: the client's email) whose access code the
  sandbox exchanges at once; ``permanent`` + ``user_secret`` credentials,
  grouping ``{"connectionID"}``, ``external_account_id`` the user id.

So active connections stay active under the real worker and degraded ones
recover at their next check. Needs-reconnect ones get a subject broken the
way their reason says (revoked, expired, a wrong secret), so a forced check
finds the same problem and a reconnect through the sandbox (same Turnqey
identity, Coinify email and demo password, Dapi username) proves the same
source account. Without the sandbox, connections hold placeholder secrets and
ids (a note says so), and the first checks flag the working ones.

Idempotent: every row has a natural key (username, household reference, client
name within a household, connection's client + app + platform), and only what
is missing is created, so a second run changes nothing. A connection's
accounts, credentials and history are created with it and never touched again,
so whatever the running system later did to a demo connection is kept. A
sandbox subject is created only for a demo connection that has none yet (an
empty or placeholder ``external_account_id``), so a second run creates none.

The sandbox's ``reset`` forgets every subject. After one, run ``seed_demo
--refresh-sandbox`` (before or instead of ``make run``'s plain ``seed_demo``):
it creates the subjects again and re-stores every demo connection's
credentials and ids; connections that were seeded working and have been
flagged since are reconnected through ``lifecycle.grant_apply``.

Refuses to run with ``DEBUG`` off: the logins share a published password.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from io import StringIO
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from connections import lifecycle, wording
from connections import models as m
from connections.lifecycle.store import credentials_keep_only, credentials_upsert
from connections.providers.base import Grant, IssuedCredential
from connections.providers.bloquo import encode_api_key

# Development only: printed by `demo_logins` and listed in the README. The
# command refuses to run with DEBUG off, so this never reaches production.
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
# What each provider's partner app holds (DESIGN.md, provider-assumptions.md):
# Turnqey a client id and secret, Coinify a partner id only, Dapi an app key
# and app secret. Bloquo has no partner app: its key pairs are per connection.
APP_HAS_CLIENT_ID = {"turnqey", "coinify", "dapi"}
APP_HAS_CLIENT_SECRET = {"turnqey", "dapi"}
# Providers whose partner app the sandbox registers (sandbox_register_app).
SANDBOX_REGISTRABLE = APP_HAS_CLIENT_ID
# The sandbox's management commands this command drives (never its modules:
# the portal imports nothing from the sandbox).
SANDBOX_COMMANDS = ("sandbox_register_app", "sandbox_create_subject", "sandbox_subject_action")
# The demo Bloquo app is a staging app, mounted at /sandbox/bloquo.
BLOQUO_SANDBOX_MOUNT = "bloquo"

# Stable ids (client identities, Turnqey collections) across fresh databases,
# so the sandbox and the portal agree on them run after run.
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
# the sandbox installed each is backed by a real sandbox subject (a broken one
# for needs_reconnect). Pending ones have none yet; disconnected ones lost
# their secrets on purpose.
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


# Every provider in every status; needs_reconnect with each reason that
# provider can actually produce (and every reason at least once overall).
CONNECTIONS: tuple[ConnectionSpec, ...] = (
    # Turnqey: app token + browser redirect; no per-connection secret.
    ConnectionSpec("DEMO-001", 0, "turnqey", "coinbase", S.ACTIVE),
    ConnectionSpec("DEMO-001", 1, "turnqey", "gemini", S.ACTIVE),
    ConnectionSpec("DEMO-003", 0, "turnqey", "gemini", S.ACTIVE),
    ConnectionSpec("DEMO-006", 0, "turnqey", "coinbase", S.ACTIVE),
    ConnectionSpec("DEMO-002", 0, "turnqey", "kraken", S.DEGRADED, R.TRANSIENT),
    ConnectionSpec("DEMO-004", 0, "turnqey", "binance", S.NEEDS_RECONNECT, R.REVOKED),
    ConnectionSpec("DEMO-005", 1, "turnqey", "coinbase", S.NEEDS_RECONNECT, R.EXPIRED),
    ConnectionSpec("DEMO-007", 0, "turnqey", "gemini", S.PENDING),
    ConnectionSpec("DEMO-008", 0, "turnqey", "kraken", S.DISCONNECTED),
    # Coinify: end-user grants, rotating refresh tokens.
    ConnectionSpec("DEMO-001", 0, "coinify", "coinify", S.ACTIVE),
    ConnectionSpec("DEMO-002", 1, "coinify", "coinify", S.ACTIVE),
    ConnectionSpec("DEMO-003", 0, "coinify", "coinify", S.DEGRADED, R.TRANSIENT),
    ConnectionSpec("DEMO-004", 1, "coinify", "coinify", S.NEEDS_RECONNECT, R.EXPIRED),
    ConnectionSpec("DEMO-005", 0, "coinify", "coinify", S.NEEDS_RECONNECT, R.REVOKED),
    ConnectionSpec("DEMO-006", 0, "coinify", "coinify", S.NEEDS_RECONNECT, R.CREDENTIALS_INVALID),
    ConnectionSpec("DEMO-007", 1, "coinify", "coinify", S.PENDING, R.AUTHORIZATION_ABANDONED),
    ConnectionSpec("DEMO-008", 0, "coinify", "coinify", S.DISCONNECTED),
    # Bloquo: client credentials per connection.
    ConnectionSpec("DEMO-002", 2, "bloquo", "bloquo", S.ACTIVE),
    ConnectionSpec("DEMO-006", 0, "bloquo", "bloquo", S.ACTIVE),
    ConnectionSpec("DEMO-008", 0, "bloquo", "bloquo", S.ACTIVE),
    ConnectionSpec("DEMO-004", 0, "bloquo", "bloquo", S.DEGRADED, R.TRANSIENT),
    ConnectionSpec("DEMO-001", 1, "bloquo", "bloquo", S.NEEDS_RECONNECT, R.CREDENTIALS_INVALID),
    ConnectionSpec("DEMO-007", 2, "bloquo", "bloquo", S.NEEDS_RECONNECT, R.REVOKED),
    ConnectionSpec("DEMO-005", 1, "bloquo", "bloquo", S.PENDING),
    ConnectionSpec("DEMO-003", 0, "bloquo", "bloquo", S.DISCONNECTED),
    # Dapi: access code exchange, permanent token.
    ConnectionSpec("DEMO-002", 0, "dapi", "binance", S.ACTIVE),
    ConnectionSpec("DEMO-005", 0, "dapi", "bitstamp", S.ACTIVE),
    ConnectionSpec("DEMO-004", 0, "dapi", "bitstamp", S.ACTIVE),
    ConnectionSpec("DEMO-006", 0, "dapi", "bitstamp", S.DEGRADED, R.TRANSIENT),
    ConnectionSpec("DEMO-007", 0, "dapi", "binance", S.NEEDS_RECONNECT, R.REVOKED),
    ConnectionSpec("DEMO-008", 0, "dapi", "bitstamp", S.NEEDS_RECONNECT, R.EXPIRED),
    ConnectionSpec("DEMO-004", 1, "dapi", "binance", S.PENDING),
    ConnectionSpec("DEMO-001", 0, "dapi", "bitstamp", S.DISCONNECTED),
)

# Plausible holdings: (account name, currency, low, high).
HOLDINGS: tuple[tuple[str, str, str, str], ...] = (
    ("BTC Wallet", "BTC", "0.05", "3.5"),
    ("ETH Wallet", "ETH", "0.8", "42"),
    ("SOL Wallet", "SOL", "12", "650"),
    ("USDC Balance", "USDC", "250", "48000"),
    ("ADA Wallet", "ADA", "400", "25000"),
    ("DOT Staking", "DOT", "30", "1800"),
)

TRANSIENT_ERRORS = {
    "turnqey": "Turnqey answered HTTP 503 Service Unavailable (Retry-After 120 s).",
    "coinify": "Coinify timed out after 10 s.",
    "bloquo": "Bloquo answered HTTP 429 Too Many Requests (Retry-After 60 s).",
    "dapi": "Dapi returned a malformed reply (truncated JSON).",
}
PERMANENT_ERRORS = {
    ("turnqey", R.REVOKED): "Turnqey reports the account as revoked.",
    ("turnqey", R.EXPIRED): "Turnqey reports the account as expired.",
    ("coinify", R.EXPIRED): "Coinify: Refresh token has expired.",
    ("coinify", R.REVOKED): "Coinify: Refresh token has been revoked.",
    ("coinify", R.CREDENTIALS_INVALID): "Coinify: Invalid email or password.",
    ("bloquo", R.CREDENTIALS_INVALID): "Bloquo: Invalid client credentials.",
    ("bloquo", R.REVOKED): "Bloquo: API key has been revoked.",
    ("dapi", R.REVOKED): "Dapi: TOKEN_DELINKED.",
    ("dapi", R.EXPIRED): "Dapi: INVALID_ACCESS_CODE (the access code was not exchanged within 30 minutes).",
}


@lru_cache(maxsize=1)
def _demo_password_hash() -> str:
    # Hashed once per process: password hashing is deliberately slow, and the
    # demo logins share one password anyway.
    return make_password(DEMO_PASSWORD)


def _email_for(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    local = ".".join(part for part in ascii_name.lower().replace("'", "").split())
    return f"{local}@example.com"


def _dummy_token(prefix: str) -> str:
    """A random stand-in for a provider token: obviously fake, still secret-shaped."""
    return f"demo-{prefix}-{secrets.token_urlsafe(24)}"


def _random_hash() -> str:
    return hashlib.sha256(secrets.token_bytes(32)).hexdigest()


@dataclass
class Created:
    """Counts of what one run created, for the summary line."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, label: str, n: int = 1) -> None:
        if n:
            self.counts[label] = self.counts.get(label, 0) + n

    def __bool__(self) -> bool:
        return bool(self.counts)

    def summary(self) -> str:
        return ", ".join(f"{n} {label}" for label, n in self.counts.items())


class Command(BaseCommand):
    help = "Load the demo firm, logins, households and connections (development only; idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--refresh-sandbox",
            action="store_true",
            help=(
                "Create the demo connections' sandbox subjects again and re-store their credentials "
                "(after the sandbox was reset)."
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "seed_demo creates logins with a published development password and refuses to run "
                "with DEBUG off (production)."
            )
        self.verbosity = int(options.get("verbosity", 1))
        refresh: bool = options.get("refresh_sandbox", False)
        with_subjects = self._sandbox_ready()
        if refresh and not with_subjects:
            raise CommandError(
                "--refresh-sandbox needs the sandbox app and its commands (SANDBOX_ENABLED on, in development)."
            )
        created = Created()
        # One transaction, the sandbox's tables included (they live in the same
        # database): a failure anywhere leaves neither half-seeded rows nor
        # orphaned sandbox subjects, and the next run starts over cleanly.
        with transaction.atomic():
            firm = self._firm(created)
            users = self._users(firm, created)
            provider_apps = self._provider_apps(created)
            households = self._households(firm, users, created)
            clients = self._clients(households, created)
            self._connections(households, clients, provider_apps, users, created, with_subjects=with_subjects)
            self._register_with_sandbox(provider_apps)
            if refresh:
                # A reset also forgot the apps, so checks since then flagged
                # them as rejected; they were just registered again with these
                # very credentials, so the sandbox accepts them once more.
                for app in provider_apps.values():
                    if app.credentials_rejected_at is not None:
                        lifecycle.app_credentials_accepted(app=app)
                        created.add("provider app flags cleared")
            if with_subjects:
                self._sandbox_subjects(households, clients, provider_apps, refresh=refresh, created=created)

        if created:
            self.stdout.write(self.style.SUCCESS(f"Demo data loaded: created {created.summary()}."))
        else:
            self.stdout.write("Demo data already present; nothing changed.")

    # --- people -----------------------------------------------------------

    def _firm(self, created: Created) -> m.Firm:
        firm, was_created = m.Firm.objects.get_or_create(slug=FIRM_SLUG, defaults={"name": FIRM_NAME})
        created.add("firm", int(was_created))
        return firm

    def _users(self, firm: m.Firm, created: Created) -> dict[str, Any]:
        User = get_user_model()
        users: dict[str, Any] = {}
        for login in DEMO_LOGINS:
            superuser = login.role == "superuser"
            user, was_created = User.objects.get_or_create(
                username=login.username,
                defaults={
                    "first_name": login.first_name,
                    "last_name": login.last_name,
                    "email": f"{login.username}@demo-advisory.example.com",
                    "is_staff": superuser,
                    "is_superuser": superuser,
                    "password": _demo_password_hash(),
                },
            )
            created.add("users", int(was_created))
            if not superuser:
                _, membership_created = m.Membership.objects.get_or_create(
                    user=user, defaults={"firm": firm, "role": login.role}
                )
                created.add("memberships", int(membership_created))
            users[login.username] = user
        return users

    def _provider_apps(self, created: Created) -> dict[str, m.ProviderApp]:
        """One sandbox app per provider; id and secret generated once, endpoints kept current.

        Each app gets the credentials its provider uses (see APP_HAS_CLIENT_ID
        and APP_HAS_CLIENT_SECRET), generated on creation and kept thereafter;
        a secret is replaced only when the endpoints move (a ProviderApp
        forgets its secret then, so a new one is entered and registered).
        """
        provider_apps: dict[str, m.ProviderApp] = {}
        for provider in m.Provider:
            base_url = f"{settings.SANDBOX_BASE_URL}/{provider.value}"
            redirect_uri = f"{settings.PORTAL_BASE_URL}/connect/{provider.value}/callback/"
            app, was_created = m.ProviderApp.objects.get_or_create(
                provider=provider.value,
                environment=m.Environment.SANDBOX,
                name="Sandbox",
                defaults={
                    "base_url": base_url,
                    "redirect_uri": redirect_uri,
                    "client_id": (
                        f"demo-{provider.value}-{secrets.token_hex(8)}" if provider.value in APP_HAS_CLIENT_ID else ""
                    ),
                    "client_secret": secrets.token_urlsafe(32) if provider.value in APP_HAS_CLIENT_SECRET else None,
                },
            )
            created.add("provider apps", int(was_created))
            if not was_created and (app.base_url != base_url or app.redirect_uri != redirect_uri):
                # PORTAL_BASE_URL or SANDBOX_BASE_URL changed since the last
                # run: follow them, keep the id. The old secret is forgotten
                # with the old endpoints; a new one is entered (and registered below).
                app.base_url, app.redirect_uri = base_url, redirect_uri
                fields = ["base_url", "redirect_uri", "updated_at"]
                if provider.value in APP_HAS_CLIENT_SECRET:
                    app.client_secret = secrets.token_urlsafe(32)
                    app.secret_entered = True
                    fields.append("client_secret")
                app.save(update_fields=fields)
                created.add("provider app endpoints updated")
            provider_apps[provider.value] = app
        return provider_apps

    def _households(self, firm: m.Firm, users: dict[str, Any], created: Created) -> dict[str, m.Household]:
        existing = {h.reference: h for h in m.Household.objects.filter(firm=firm, reference__startswith="DEMO-")}
        with_turnqey = {spec.household for spec in CONNECTIONS if spec.provider == m.Provider.TURNQEY}
        households: dict[str, m.Household] = {}
        for spec in HOUSEHOLDS:
            household = existing.get(spec.reference)
            if household is None:
                household = m.Household.objects.create(
                    firm=firm,
                    name=spec.name,
                    reference=spec.reference,
                    turnqey_collection=(
                        uuid.uuid5(DEMO_NAMESPACE, f"collection/{spec.reference}")
                        if spec.reference in with_turnqey
                        else None
                    ),
                )
                household.advisers.set([users[name] for name in spec.advisers])
                created.add("households")
            households[spec.reference] = household
        return households

    def _clients(self, households: dict[str, m.Household], created: Created) -> dict[tuple[str, int], m.Client]:
        existing = {
            (c.household_id, c.name): c for c in m.Client.objects.filter(household__in=list(households.values()))
        }
        new: list[m.Client] = []
        for spec in HOUSEHOLDS:
            household = households[spec.reference]
            for name in spec.clients:
                if (household.pk, name) not in existing:
                    client = m.Client(
                        household=household,
                        name=name,
                        email=_email_for(name),
                        identity=uuid.uuid5(DEMO_NAMESPACE, f"client/{spec.reference}/{name}"),
                    )
                    new.append(client)
                    existing[(household.pk, name)] = client
        m.Client.objects.bulk_create(new)
        created.add("clients", len(new))
        return {
            (spec.reference, index): existing[(households[spec.reference].pk, name)]
            for spec in HOUSEHOLDS
            for index, name in enumerate(spec.clients)
        }

    # --- connections and everything hanging off them -----------------------

    def _connections(
        self,
        households: dict[str, m.Household],
        clients: dict[tuple[str, int], m.Client],
        provider_apps: dict[str, m.ProviderApp],
        users: dict[str, Any],
        created: Created,
        *,
        with_subjects: bool,
    ) -> None:
        existing = set(
            m.Connection.objects.filter(household__in=list(households.values())).values_list(
                "client_id", "provider_app_id", "platform"
            )
        )
        now = timezone.now()
        builders: list[_ConnectionBuilder] = []
        for index, spec in enumerate(CONNECTIONS):
            client = clients[(spec.household, spec.client)]
            app = provider_apps[spec.provider]
            if (client.pk, app.pk, spec.platform) in existing:
                continue
            existing.add((client.pk, app.pk, spec.platform))
            household_spec = next(h for h in HOUSEHOLDS if h.reference == spec.household)
            adviser = users[household_spec.advisers[0]]
            builders.append(
                _ConnectionBuilder(
                    spec=spec,
                    index=index,
                    household=households[spec.household],
                    client=client,
                    app=app,
                    adviser=adviser,
                    now=now,
                    with_subjects=with_subjects,
                )
            )
        if not builders:
            return

        connections = [builder.connection() for builder in builders]
        m.Connection.objects.bulk_create(connections)
        accounts: list[m.Account] = []
        credentials: list[m.Credential] = []
        events: list[m.ConnectionEvent] = []
        requests: list[m.AuthorizationRequest] = []
        links: list[m.ClientLink] = []
        for builder in builders:
            accounts += builder.accounts()
            credentials += builder.credentials()
            events += builder.events()
            requests += builder.authorization_requests()
            links += builder.client_links()
        m.Account.objects.bulk_create(accounts)
        m.Credential.objects.bulk_create(credentials)
        m.AuthorizationRequest.objects.bulk_create(requests)
        m.ClientLink.objects.bulk_create(links)
        # Link events reference their link in details; created after links.
        events += [event for builder in builders for event in builder.link_events()]
        m.ConnectionEvent.objects.bulk_create(events, batch_size=500)
        created.add("connections", len(connections))
        created.add("accounts", len(accounts))
        created.add("credentials", len(credentials))
        created.add("events", len(events))
        created.add("authorization requests", len(requests))
        created.add("client links", len(links))

    # --- sandbox ------------------------------------------------------------

    def _sandbox_ready(self) -> bool:
        """Whether demo connections can get real sandbox subjects; says why not when it matters."""
        if not apps.is_installed("sandbox"):
            if self.verbosity >= 1:
                self.stdout.write(
                    "Note: the sandbox is not installed (SANDBOX_ENABLED is off), so demo connections hold "
                    "placeholder credentials and ids; checks will flag the working ones for reconnection."
                )
            return False
        missing = [name for name in SANDBOX_COMMANDS if name not in get_commands()]
        if missing:
            self.stderr.write(
                self.style.WARNING(
                    f"The sandbox is installed but lacks the commands {', '.join(missing)}; demo connections "
                    "hold placeholder credentials and ids"
                    + ("" if "sandbox_register_app" not in missing else ", and the demo apps were not registered")
                    + "."
                )
            )
            return False
        return True

    def _register_with_sandbox(self, provider_apps: dict[str, m.ProviderApp]) -> None:
        """Tell the in-process sandbox about each demo app (id, secret, redirect URI).

        Runs every time: the sandbox may have been reset since the last run, and
        its registration command is idempotent.
        """
        if not apps.is_installed("sandbox") or "sandbox_register_app" not in get_commands():
            return
        registrable = {p: app for p, app in provider_apps.items() if p in SANDBOX_REGISTRABLE}
        for provider, app in registrable.items():
            call_command(
                "sandbox_register_app",
                provider=provider,
                client_id=app.client_id,
                client_secret=app.client_secret or "",
                redirect_uri=app.redirect_uri,
                stdout=StringIO(),
            )
        if self.verbosity >= 1:
            self.stdout.write(f"Registered {len(registrable)} demo provider apps with the sandbox.")

    def _sandbox_subjects(
        self,
        households: dict[str, m.Household],
        clients: dict[tuple[str, int], m.Client],
        provider_apps: dict[str, m.ProviderApp],
        *,
        refresh: bool,
        created: Created,
    ) -> None:
        """Back each demo connection that has a source account with a real sandbox subject.

        A connection gets one when its ``external_account_id`` is empty (just
        seeded) or still the placeholder an earlier, sandbox-less seed gave it;
        with ``refresh`` every one does. A connection seeded working that has
        been flagged since (a sandbox reset, or placeholders a worker checked)
        is reconnected through :func:`lifecycle.grant_apply`, the same path as
        a client's connect.
        """
        specs: dict[tuple[int, int, str], tuple[int, ConnectionSpec]] = {}
        for index, spec in enumerate(CONNECTIONS):
            client = clients[(spec.household, spec.client)]
            specs[(client.pk, provider_apps[spec.provider].pk, spec.platform)] = (index, spec)
        rows = (
            m.Connection.objects.filter(household__in=list(households.values()), status__in=SUBJECT_STATUSES)
            .select_related("client", "household", "provider_app")
            .order_by("pk")
        )
        for row in rows:
            found = specs.get((row.client_id, row.provider_app_id, row.platform))
            if found is None:
                continue  # added through the UI: not the seed's to touch
            index, spec = found
            if not refresh and row.external_account_id not in ("", placeholder_account_id(spec, index)):
                continue
            live = row.status in LIVE_STATUSES or spec.status in LIVE_STATUSES
            subject = self._subject_create(row, live=live)
            if live and row.status == S.NEEDS_RECONNECT:
                m.Credential.objects.filter(connection=row).delete()
                lifecycle.grant_apply(
                    connection=row,
                    grant=Grant(
                        credentials=subject.credentials,
                        external_account_id=subject.external_account_id,
                        grouping=subject.grouping,
                    ),
                    purpose=m.AuthorizationRequest.Purpose.CONNECT,
                    actor_label="command:seed_demo",
                )
                created.add("connections reconnected to the sandbox")
            else:
                credentials_upsert(subject.credentials, connection_id=row.pk)
                credentials_keep_only(connection_id=row.pk, kinds=[c.kind for c in subject.credentials])
                row.external_account_id = subject.external_account_id
                row.grouping = subject.grouping
                row.save(update_fields=["external_account_id", "grouping", "updated_at"])
            created.add("sandbox subjects")

    def _sandbox(self, command: str, fields: dict[str, Any], row: m.Connection) -> dict[str, Any]:
        """Run a sandbox command with JSON fields and return its JSON reply (which may hold secrets)."""
        out = StringIO()
        try:
            call_command(command, json.dumps(fields), stdout=out)
        except CommandError as error:
            # The sandbox's messages never carry a secret.
            raise CommandError(f"The sandbox refused {command} for demo connection {row.pk}: {error}") from None
        reply: dict[str, Any] = json.loads(out.getvalue())
        return reply

    def _subject_create(self, row: m.Connection, *, live: bool) -> _Subject:
        """Create the connection's sandbox subject; unless ``live``, break it the way its reason says."""
        now = timezone.now()
        app, client, reason = row.provider_app, row.client, row.reason
        provider = row.provider
        if provider == m.Provider.TURNQEY:
            household = row.household
            reply = self._sandbox(
                "sandbox_create_subject",
                {
                    "provider": "turnqey",
                    "client": app.client_id,
                    "identity": str(client.identity),
                    "platform": row.platform,
                    # The household's collection is adopted when the sandbox
                    # does not know it, so it survives a sandbox reset.
                    "collection": str(household.turnqey_collection or ""),
                },
                row,
            )
            if str(household.turnqey_collection or "") != reply["collection"]:
                household.turnqey_collection = uuid.UUID(reply["collection"])
                household.save(update_fields=["turnqey_collection", "updated_at"])
            subject = _Subject(
                external_account_id=reply["source_account_id"],
                grouping={"collection": reply["collection"], "identity": reply["identity"]},
            )
            if not live:
                action = "expire" if reason == R.EXPIRED else "revoke"
                self._sandbox(
                    "sandbox_subject_action",
                    {
                        "provider": "turnqey",
                        "action": action,
                        "client": app.client_id,
                        "source_account_id": subject.external_account_id,
                    },
                    row,
                )
            return subject

        if provider == m.Provider.COINIFY:
            reply = self._sandbox(
                "sandbox_create_subject",
                {"provider": "coinify", "partner_id": app.client_id, "email": client.email, "password": DEMO_PASSWORD},
                row,
            )
            user_id = str(reply["user_id"])
            offline = IssuedCredential(kind=m.Credential.Kind.OFFLINE, value=reply["offline_token"], issued_at=now)
            if live:
                # No access token: the first check renews with the offline token.
                return _Subject(external_account_id=user_id, credentials=[offline])
            if reason == R.REVOKED:
                self._sandbox(
                    "sandbox_subject_action", {"provider": "coinify", "action": "revoke", "user_id": user_id}, row
                )
                return _Subject(external_account_id=user_id, credentials=[offline])
            # Expired (or a password that was refused): only a lapsed sign-in is left.
            issued = row.last_success_at or now
            lapsed = min(issued + timedelta(hours=24), row.last_checked_at or now)
            return _Subject(
                external_account_id=user_id,
                credentials=[
                    IssuedCredential(
                        kind=m.Credential.Kind.ACCESS,
                        value=_dummy_token("access"),
                        issued_at=issued,
                        expires_at=issued + timedelta(minutes=20),
                    ),
                    IssuedCredential(
                        kind=m.Credential.Kind.REFRESH,
                        value=_dummy_token("refresh"),
                        issued_at=issued,
                        expires_at=lapsed,
                    ),
                ],
            )

        if provider == m.Provider.BLOQUO:
            reply = self._sandbox(
                "sandbox_create_subject",
                {"provider": BLOQUO_SANDBOX_MOUNT, "name": client.name, "email": client.email},
                row,
            )
            customer_id = reply["customer_id"]
            secret = reply["client_secret"]
            if not live and reason == R.REVOKED:
                self._sandbox(
                    "sandbox_subject_action",
                    {"provider": BLOQUO_SANDBOX_MOUNT, "action": "revoke", "customer_id": customer_id},
                    row,
                )
            elif not live:
                # The client's key pair exists, but the secret on file is not its secret.
                secret = secrets.token_urlsafe(32)
            api_key = IssuedCredential(
                kind=m.Credential.Kind.API_KEY, value=encode_api_key(reply["client_id"], secret), issued_at=now
            )
            return _Subject(external_account_id=customer_id, credentials=[api_key])

        # Dapi. A working or revoked link had its access code exchanged; an
        # expired one never did (the 30 minutes ran out), so it has no token.
        exchange = live or reason == R.REVOKED
        reply = self._sandbox(
            "sandbox_create_subject",
            {"provider": "dapi", "app_key": app.client_id, "username": client.email, "exchange": exchange},
            row,
        )
        credentials = [IssuedCredential(kind=m.Credential.Kind.USER_SECRET, value=reply["user_secret"], issued_at=now)]
        if exchange:
            credentials.insert(
                0, IssuedCredential(kind=m.Credential.Kind.PERMANENT, value=reply["access_token"], issued_at=now)
            )
        if not live:
            action = "delink" if reason == R.REVOKED else "expire"
            self._sandbox(
                "sandbox_subject_action",
                {"provider": "dapi", "action": action, "connection_id": reply["connection_id"]},
                row,
            )
        return _Subject(
            external_account_id=reply["user_id"],
            grouping={"connectionID": reply["connection_id"]},
            credentials=credentials,
        )


@dataclass
class _Subject:
    """What a sandbox subject gives a demo connection: its source account, grouping and secrets."""

    external_account_id: str
    grouping: dict[str, str] = field(default_factory=dict)
    credentials: list[IssuedCredential] = field(default_factory=list)


def placeholder_account_id(spec: ConnectionSpec, index: int) -> str:
    """The made-up source account id a connection gets without the sandbox (stable per spec)."""
    if spec.status == S.PENDING:
        return ""  # the source account is known once authorization completes
    token = hashlib.sha256(f"{DEMO_NAMESPACE}/{index}".encode()).hexdigest()
    return {
        "turnqey": f"{spec.platform[:2]}-user-{token[:10]}",
        "coinify": str(100000 + int(token[:6], 16) % 900000),
        "bloquo": f"cus_{token[:14]}",
        "dapi": f"user-{token[:12]}",
    }[spec.provider]


@dataclass
class _ConnectionBuilder:
    """Builds one demo connection and its rows, consistent with its status."""

    spec: ConnectionSpec
    index: int
    household: m.Household
    client: m.Client
    app: m.ProviderApp
    adviser: Any
    now: datetime
    # With the sandbox: connections with a source account get their ids and
    # secrets from a real sandbox subject afterwards (Command._sandbox_subjects).
    with_subjects: bool = False
    row: m.Connection | None = None

    def __post_init__(self) -> None:
        # Seeded per connection so each one's story is stable and independent.
        self.rng = random.Random(f"{self.spec.household}/{self.spec.client}/{self.spec.provider}/{self.spec.platform}")
        rng, now = self.rng, self.now
        self.connected_at = now - timedelta(days=rng.randint(35, 150), hours=rng.randint(0, 23))
        self.last_success_at: datetime | None = now - timedelta(minutes=rng.randint(4, 40))
        self.degraded_since: datetime | None = None
        self.flagged_at: datetime | None = None
        self.disconnected_at: datetime | None = None
        self.started_at: datetime | None = None
        status = self.spec.status
        if status == S.PENDING:
            self.connected_at = None  # type: ignore[assignment]
            self.last_success_at = None
            if self.spec.reason == R.AUTHORIZATION_ABANDONED:
                self.started_at = now - timedelta(days=2, hours=rng.randint(1, 9))
            else:
                self.started_at = now - timedelta(minutes=rng.randint(2, 12))
        elif status == S.DEGRADED:
            self.last_success_at = now - timedelta(hours=rng.randint(2, 7), minutes=rng.randint(0, 59))
            self.degraded_since = self.last_success_at + timedelta(minutes=rng.randint(10, 30))
        elif status == S.NEEDS_RECONNECT:
            self.flagged_at = now - timedelta(days=rng.randint(1, 12), hours=rng.randint(0, 23))
            self.last_success_at = self.flagged_at - timedelta(minutes=rng.randint(20, 40))
        elif status == S.DISCONNECTED:
            self.disconnected_at = now - timedelta(days=rng.randint(3, 20), hours=rng.randint(0, 23))
            self.last_success_at = self.disconnected_at - timedelta(hours=rng.randint(1, 6))

    # --- the connection row ---------------------------------------------------

    @property
    def backed_by_subject(self) -> bool:
        return self.with_subjects and self.spec.status in SUBJECT_STATUSES

    def external_account_id(self) -> str:
        if self.backed_by_subject:
            return ""  # filled in from the sandbox subject
        return placeholder_account_id(self.spec, self.index)

    def grouping(self) -> dict[str, str]:
        """Provider-side grouping as the grant would have returned it."""
        if self.spec.status == S.PENDING or self.backed_by_subject:
            return {}
        if self.spec.provider == m.Provider.TURNQEY:
            return {"collection": str(self.household.turnqey_collection), "identity": str(self.client.identity)}
        if self.spec.provider == m.Provider.DAPI:
            token = hashlib.sha256(f"{DEMO_NAMESPACE}/connection/{self.index}".encode()).hexdigest()
            return {"connectionID": f"conn-{token[:16]}"}
        return {}

    def connection(self) -> m.Connection:
        spec, rng, now = self.spec, self.rng, self.now
        status = spec.status
        next_check_at: datetime | None = None
        reconnect_by: datetime | None = None
        last_error = ""
        failures = 0
        if status == S.ACTIVE:
            next_check_at = now + timedelta(minutes=rng.randint(5, 55))
        elif status == S.DEGRADED:
            next_check_at = now + timedelta(minutes=rng.randint(2, 9))
            last_error = TRANSIENT_ERRORS[spec.provider]
            failures = rng.randint(3, 6)
            if spec.provider == m.Provider.COINIFY:
                # The refresh token lives 24 hours from its last rotation: if the
                # outage outlasts it, only the client can restore access.
                reconnect_by = self.last_success_at + timedelta(hours=24)  # type: ignore[operator]
        elif status == S.NEEDS_RECONNECT:
            last_error = PERMANENT_ERRORS[(spec.provider, spec.reason)]
            failures = 1
        elif status == S.PENDING and spec.provider == m.Provider.DAPI and not spec.reason:
            # Dapi's access code must be exchanged within 30 minutes.
            reconnect_by = self.started_at + timedelta(minutes=30)  # type: ignore[operator]

        self.row = m.Connection(
            household=self.household,
            client=self.client,
            provider_app=self.app,
            provider=spec.provider,
            platform=spec.platform,
            label=""
            if rng.random() < 0.6
            else f"{self.client.name.split()[0]}'s {wording.platform_name(spec.platform)}",
            status=status,
            reason=spec.reason,
            external_account_id=self.external_account_id(),
            grouping=self.grouping(),
            last_success_at=self.last_success_at,
            last_checked_at=(
                None
                if status == S.PENDING
                else (self.disconnected_at or self.flagged_at or now - timedelta(minutes=rng.randint(1, 4)))
            ),
            last_error=last_error,
            next_check_at=next_check_at,
            reconnect_by=reconnect_by,
            consecutive_failures=failures,
            degraded_since=self.degraded_since,
            connected_at=self.connected_at,
            disconnected_at=self.disconnected_at,
            created_by=self.adviser,
            created_at=self.started_at or self.connected_at,
        )
        return self.row

    # --- children ---------------------------------------------------------

    def accounts(self) -> list[m.Account]:
        if self.spec.status == S.PENDING:
            return []
        rng = self.rng
        as_of = self.last_success_at or self.now
        chosen = rng.sample(HOLDINGS, k=rng.randint(1, 3))
        rows = []
        for position, (name, currency, low, high) in enumerate(chosen):
            low_d, high_d = Decimal(low), Decimal(high)
            balance = (low_d + (high_d - low_d) * Decimal(str(rng.random()))).quantize(Decimal("0.00000001"))
            rows.append(
                m.Account(
                    connection=self.row,
                    external_id=f"{self.spec.provider}-acc-{self.index}-{position}",
                    name=name,
                    currency=currency,
                    balance=balance,
                    status="active",
                    as_of=as_of,
                )
            )
        return rows

    def credentials(self) -> list[m.Credential]:
        """Encrypted placeholder secrets of the kinds this provider keeps per connection.

        None for pending (nothing granted yet), none for disconnected (secrets
        are deleted on disconnect), none for Turnqey (its token is the app's),
        none for a connection whose sandbox subject supplies real ones.
        """
        spec, now = self.spec, self.now
        if spec.status in (S.PENDING, S.DISCONNECTED) or self.backed_by_subject:
            return []
        issued = self.last_success_at or now
        rows: list[tuple[str, datetime | None]] = []
        if spec.provider == m.Provider.COINIFY:
            rows.append((m.Credential.Kind.ACCESS, issued + timedelta(minutes=20)))
            refresh_expires = issued + timedelta(hours=24)
            if spec.reason == R.EXPIRED:
                refresh_expires = min(refresh_expires, self.flagged_at or now)
            rows.append((m.Credential.Kind.REFRESH, refresh_expires))
            if self.index % 2 == 0:
                rows.append((m.Credential.Kind.OFFLINE, None))
        elif spec.provider == m.Provider.BLOQUO:
            rows.append((m.Credential.Kind.API_KEY, None))
            rows.append((m.Credential.Kind.ACCESS, issued + timedelta(hours=1)))
        elif spec.provider == m.Provider.DAPI:
            rows.append((m.Credential.Kind.PERMANENT, None))
            rows.append((m.Credential.Kind.USER_SECRET, None))
        return [
            m.Credential(
                connection=self.row,
                kind=kind,
                value=_dummy_token(kind),
                issued_at=issued,
                expires_at=expires_at,
                created_at=issued,
            )
            for kind, expires_at in rows
        ]

    def authorization_requests(self) -> list[m.AuthorizationRequest]:
        spec = self.spec
        if spec.status != S.PENDING:
            return []
        assert self.started_at is not None
        abandoned = spec.reason == R.AUTHORIZATION_ABANDONED
        return [
            m.AuthorizationRequest(
                state_hash=_random_hash(),
                provider_app=self.app,
                provider=spec.provider,
                platform=spec.platform,
                purpose=m.AuthorizationRequest.Purpose.CONNECT,
                household=self.household,
                client=self.client,
                connection=self.row,
                started_by=self.adviser,
                created_at=self.started_at,
                expires_at=self.started_at + timedelta(minutes=30 if spec.provider == m.Provider.DAPI else 15),
                outcome=m.AuthorizationRequest.Outcome.EXPIRED if abandoned else m.AuthorizationRequest.Outcome.PENDING,
                outcome_message="The client did not finish authorizing in time." if abandoned else "",
            )
        ]

    def client_links(self) -> list[m.ClientLink]:
        """A reconnect link for revoked connections (one opened, the rest sent)."""
        spec = self.spec
        if spec.status != S.NEEDS_RECONNECT or spec.reason != R.REVOKED:
            return []
        assert self.flagged_at is not None
        sent_at = self.flagged_at + timedelta(hours=2)
        opened = self.index % 2 == 1
        self.link = m.ClientLink(
            token_hash=_random_hash(),
            household=self.household,
            client=self.client,
            connection=self.row,
            provider_app=self.app,
            platform=spec.platform,
            status=m.ClientLink.LinkStatus.OPENED if opened else m.ClientLink.LinkStatus.SENT,
            sent_to=self.client.email,
            created_by=self.adviser,
            created_at=sent_at,
            expires_at=sent_at + timedelta(days=7),
            sent_at=sent_at,
            opened_at=sent_at + timedelta(hours=5) if opened else None,
        )
        return [self.link]

    def link_events(self) -> list[m.ConnectionEvent]:
        link: m.ClientLink | None = getattr(self, "link", None)
        if link is None:
            return []
        events = [
            self._event(
                m.ConnectionEvent.Kind.LINK_SENT,
                link.sent_at,
                message=f"Reconnect link sent to {link.sent_to}.",
                actor=self.adviser,
                details={"client_link": str(link.pk)},
            )
        ]
        if link.opened_at:
            events.append(
                self._event(
                    m.ConnectionEvent.Kind.LINK_OPENED,
                    link.opened_at,
                    message="The client opened the reconnect link.",
                    actor_label="client-link",
                    details={"client_link": str(link.pk)},
                )
            )
        return events

    # --- history ------------------------------------------------------------

    def _event(self, kind: str, at: datetime, **fields: Any) -> m.ConnectionEvent:
        return m.ConnectionEvent(connection=self.row, kind=kind, created_at=at, **fields)

    def _message(self, status: str, reason: str = "") -> str:
        return wording.status_message(
            provider=self.spec.provider,
            platform=self.spec.platform,
            status=status,
            reason=reason,
        )

    def events(self) -> list[m.ConnectionEvent]:
        """About 30 days of history: daily checks, a blip or two, and how it got here."""
        spec, rng, now = self.spec, self.rng, self.now
        K = m.ConnectionEvent.Kind
        events: list[m.ConnectionEvent] = []
        if spec.status == S.PENDING:
            assert self.started_at is not None
            events.append(
                self._event(
                    K.CREATED,
                    self.started_at,
                    to_status=S.PENDING,
                    message=f"Connection to {wording.platform_name(spec.platform)} started.",
                    actor=self.adviser,
                )
            )
            if spec.reason == R.AUTHORIZATION_ABANDONED:
                events.append(
                    self._event(
                        K.STATUS_CHANGED,
                        self.started_at + timedelta(minutes=15),
                        from_status=S.PENDING,
                        to_status=S.PENDING,
                        reason=R.AUTHORIZATION_ABANDONED,
                        message=self._message(S.PENDING, R.AUTHORIZATION_ABANDONED),
                        actor_label="job:sweep",
                    )
                )
            return events

        window_start = now - timedelta(days=30)
        if self.connected_at >= window_start:
            events.append(
                self._event(
                    K.CONNECTED,
                    self.connected_at,
                    from_status=S.PENDING,
                    to_status=S.ACTIVE,
                    message=self._message(S.ACTIVE),
                    actor=self.adviser,
                )
            )
        healthy_until = self.degraded_since or self.flagged_at or self.disconnected_at or now
        day = max(self.connected_at, window_start) + timedelta(hours=rng.randint(1, 6))
        # One transient blip that recovered, on some connections: recoveries are
        # events too, and the health strip should show one.
        blip_day = now - timedelta(days=rng.randint(8, 25)) if self.index % 3 == 0 else None
        while day < healthy_until:
            if blip_day is not None and abs((day - blip_day).total_seconds()) < 12 * 3600:
                events += self._blip(day)
                blip_day = None
            else:
                events.append(
                    self._event(
                        K.CHECK_SUCCEEDED,
                        day,
                        message=f"Fetched {rng.randint(1, 3)} account(s).",
                        actor_label="job:check",
                    )
                )
                if spec.provider in (m.Provider.COINIFY, m.Provider.BLOQUO) and rng.random() < 0.5:
                    events.append(
                        self._event(
                            K.RENEWED,
                            day - timedelta(minutes=rng.randint(1, 5)),
                            message="Access token renewed ahead of expiry.",
                            actor_label="job:sweep",
                        )
                    )
            day += timedelta(hours=rng.randint(20, 28))

        if spec.status == S.DEGRADED:
            events += self._degraded_tail()
        elif spec.status == S.NEEDS_RECONNECT:
            assert self.flagged_at is not None
            events.append(
                self._event(
                    K.CHECK_FAILED,
                    self.flagged_at - timedelta(seconds=1),
                    reason=spec.reason,
                    message=PERMANENT_ERRORS[(spec.provider, spec.reason)],
                    actor_label="job:check",
                )
            )
            events.append(
                self._event(
                    K.STATUS_CHANGED,
                    self.flagged_at,
                    from_status=S.ACTIVE,
                    to_status=S.NEEDS_RECONNECT,
                    reason=spec.reason,
                    message=self._message(S.NEEDS_RECONNECT, spec.reason),
                    actor_label="job:check",
                )
            )
        elif spec.status == S.DISCONNECTED:
            assert self.disconnected_at is not None
            events.append(
                self._event(
                    K.DISCONNECTED,
                    self.disconnected_at,
                    from_status=S.ACTIVE,
                    to_status=S.DISCONNECTED,
                    message=self._message(S.DISCONNECTED),
                    actor=self.adviser,
                )
            )
        return events

    def _blip(self, at: datetime) -> list[m.ConnectionEvent]:
        K = m.ConnectionEvent.Kind
        error = TRANSIENT_ERRORS[self.spec.provider]
        recovered = at + timedelta(hours=self.rng.randint(1, 4))
        return [
            self._event(K.CHECK_FAILED, at, reason=R.TRANSIENT, message=error, actor_label="job:check"),
            self._event(
                K.STATUS_CHANGED,
                at + timedelta(seconds=1),
                from_status=S.ACTIVE,
                to_status=S.DEGRADED,
                reason=R.TRANSIENT,
                message=self._message(S.DEGRADED),
                actor_label="job:check",
            ),
            self._event(
                K.RECOVERED,
                recovered,
                from_status=S.DEGRADED,
                to_status=S.ACTIVE,
                message=self._message(S.ACTIVE),
                actor_label="job:check",
            ),
        ]

    def _degraded_tail(self) -> list[m.ConnectionEvent]:
        K = m.ConnectionEvent.Kind
        assert self.degraded_since is not None
        error = TRANSIENT_ERRORS[self.spec.provider]
        events = [
            self._event(
                K.CHECK_FAILED, self.degraded_since, reason=R.TRANSIENT, message=error, actor_label="job:check"
            ),
            self._event(
                K.STATUS_CHANGED,
                self.degraded_since + timedelta(seconds=1),
                from_status=S.ACTIVE,
                to_status=S.DEGRADED,
                reason=R.TRANSIENT,
                message=self._message(S.DEGRADED),
                actor_label="job:check",
            ),
        ]
        at = self.degraded_since
        # Capped backoff: further failures, further apart, up to now.
        assert self.row is not None
        for attempt in range(1, self.row.consecutive_failures):
            at += timedelta(minutes=min(5 * 2**attempt, 60))
            if at >= self.now:
                break
            events.append(self._event(K.CHECK_FAILED, at, reason=R.TRANSIENT, message=error, actor_label="job:check"))
        return events
