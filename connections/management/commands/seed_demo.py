"""``manage.py seed_demo``: demo data for development, built through the real lifecycle. Idempotent.

Creates the firm "Demo Advisory", development-only logins (see
:data:`DEMO_LOGINS`, all with :data:`DEMO_PASSWORD`), eight households with
clients, one sandbox ProviderApp per provider in the registry, and
connections on every provider in every status (:data:`CONNECTIONS`), with
accounts, deadlines and about 30 days of history.

The demo decides no status and words no event itself (:mod:`connections.demo.lives`).
A connection is started with ``lifecycle.connection_start`` and connected
with ``lifecycle.grant_apply`` and a real Grant; the checks of its past are
replayed through ``rules.decide`` on a simulated clock and stored the way a
check stores them, with the happenings a real check reports
(:mod:`connections.demo.history`); disconnected ones go through
``lifecycle.connection_disconnect``, the abandoned authorization through
``lifecycle.connections_abandon``. Every provider takes the same path: what
differs is what its client and the sandbox answer.

Real sandbox subjects. With the sandbox installed (``SANDBOX_ENABLED``, the
default in development) each connection's client grants access at the
sandbox (its ``sandbox_grant`` command), and the provider's real client
completes the connect from what the sandbox hands over (sign-in fields, or
the callback's parameters). No web server need run: while the command runs,
the providers' calls to ``SANDBOX_BASE_URL`` are served by this process
(:mod:`connections.demo.in_process`). An outage in a history is what the
real client reports when the sandbox fails once; a needs-reconnect
connection's subject is broken the way its reason says, and its flagging is
what the real client then finds. So active connections stay active under the
real worker and beat, degraded ones recover at their next check, and
needs-reconnect ones stay broken: a forced check finds them still needing a
reconnect, for the same reason wherever the lifecycle kept credentials to
check with (a renewal refused for good deletes them, as in production). A
reconnect through the sandbox (same Turnqey identity and consent-page
username, Coinify email and :data:`DEMO_PASSWORD`, Dapi username: the
client's email) proves the same source account.

Without the sandbox, grants are placeholders: made-up source-account ids and
balances, no credentials (a note says so); histories name no provider error,
and the first checks flag the working connections.

Idempotent: every row has a natural key (username, household reference,
client name within a household, connection's client + app + platform), and
only what is missing is created, so a second run changes nothing. A
connection's history is made with it and never touched again, so whatever
the running system later did to a demo connection is kept. A run with the
sandbox gives real subjects to the connections an earlier sandbox-less run
left with placeholders.

The sandbox's ``reset`` forgets every subject. After one, run ``seed_demo
--refresh-sandbox`` (before or instead of ``make run``'s plain ``seed_demo``):
it creates the subjects again and re-stores every demo connection's
credentials and ids; connections that were seeded working and have been
flagged since are reconnected through ``lifecycle.grant_apply``.

Refuses to run with ``DEBUG`` off: the logins share a published password.
"""

from __future__ import annotations

import secrets
import unicodedata
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
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
from connections.demo import history, lives
from connections.demo.in_process import sandbox_in_process
from connections.demo.sources import Placeholders, SandboxSubjects, Source, placeholder_account_id
from connections.providers import registry

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
# The sandbox's management commands this command drives (never its modules:
# the portal imports nothing from the sandbox).
SANDBOX_COMMANDS = ("sandbox_register_app", "sandbox_grant")
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


@lru_cache(maxsize=1)
def _demo_password_hash() -> str:
    # Hashed once per process: password hashing is deliberately slow, and the
    # demo logins share one password anyway.
    return make_password(DEMO_PASSWORD)


def _email_for(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    local = ".".join(part for part in ascii_name.lower().replace("'", "").split())
    return f"{local}@example.com"


# What one run created, for the summary line: rows counted before and after.
COUNTED: tuple[tuple[str, type[Any]], ...] = (
    ("connections", m.Connection),
    ("accounts", m.Account),
    ("credentials", m.Credential),
    ("events", m.ConnectionEvent),
    ("authorization requests", m.AuthorizationRequest),
    ("client links", m.ClientLink),
)


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
        source: Source = SandboxSubjects(password=DEMO_PASSWORD) if with_subjects else Placeholders()
        # One transaction, the sandbox's tables included (they live in the same
        # database, and the in-process sandbox answers on this connection): a
        # failure anywhere leaves neither half-seeded rows nor orphaned subjects.
        with transaction.atomic(), sandbox_in_process() if with_subjects else nullcontext():
            firm = self._firm(created)
            users = self._users(firm, created)
            provider_apps = self._provider_apps(created)
            self._register_with_sandbox(provider_apps)
            if refresh:
                # A reset also forgot the apps, so checks since then flagged
                # them as rejected; they were just registered again with these
                # very credentials, so the sandbox accepts them once more.
                for app in provider_apps.values():
                    if app.credentials_rejected_at is not None:
                        lifecycle.app_credentials_accepted(app=app)
                        created.add("provider app flags cleared")
            households = self._households(firm, users, created)
            clients = self._clients(households, created)
            before = {label: model.objects.count() for label, model in COUNTED}
            self._connections(households, clients, provider_apps, users, source)
            if with_subjects:
                self._sandbox_subjects(households, clients, provider_apps, source, refresh=refresh, created=created)
            for label, model in COUNTED:
                created.add(label, model.objects.count() - before[label])
            created.add("sandbox subjects", source.subjects)

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
        """One sandbox app per provider in the registry; credentials generated once, endpoints kept current.

        Each app gets the credentials its provider issues to a partner (the
        client's ``partner_credentials``), generated on creation and kept; a
        secret is replaced only when the endpoints move (a ProviderApp forgets
        its secret then, so a new one is entered and registered).
        """
        provider_apps: dict[str, m.ProviderApp] = {}
        for provider, client_class in registry.PROVIDERS.items():
            base_url = f"{settings.SANDBOX_BASE_URL}/{provider}"
            redirect_uri = f"{settings.PORTAL_BASE_URL}/connect/{provider}/callback/"
            issued = client_class.partner_credentials
            app, was_created = m.ProviderApp.objects.get_or_create(
                provider=provider,
                environment=m.Environment.SANDBOX,
                name="Sandbox",
                defaults={
                    "base_url": base_url,
                    "redirect_uri": redirect_uri,
                    "client_id": f"demo-{provider}-{secrets.token_hex(8)}" if "client_id" in issued else "",
                    "client_secret": secrets.token_urlsafe(32) if "client_secret" in issued else None,
                },
            )
            created.add("provider apps", int(was_created))
            if not was_created and (app.base_url != base_url or app.redirect_uri != redirect_uri):
                # PORTAL_BASE_URL or SANDBOX_BASE_URL changed since the last
                # run: follow them, keep the id. The old secret is forgotten
                # with the old endpoints; a new one is entered (and registered below).
                app.base_url, app.redirect_uri = base_url, redirect_uri
                fields = ["base_url", "redirect_uri", "updated_at"]
                if "client_secret" in issued:
                    app.client_secret = secrets.token_urlsafe(32)
                    app.secret_entered = True
                    fields.append("client_secret")
                app.save(update_fields=fields)
                created.add("provider app endpoints updated")
            provider_apps[provider] = app
        return provider_apps

    def _households(self, firm: m.Firm, users: dict[str, Any], created: Created) -> dict[str, m.Household]:
        # No provider grouping here: a household gets its Turnqey collection from
        # its first grant, as any household does (lifecycle.grant_apply).
        existing = {h.reference: h for h in m.Household.objects.filter(firm=firm, reference__startswith="DEMO-")}
        households: dict[str, m.Household] = {}
        for spec in HOUSEHOLDS:
            household = existing.get(spec.reference)
            if household is None:
                household = m.Household.objects.create(firm=firm, name=spec.name, reference=spec.reference)
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

    # --- connections: each one lived through the lifecycle -------------------

    def _connections(
        self,
        households: dict[str, m.Household],
        clients: dict[tuple[str, int], m.Client],
        provider_apps: dict[str, m.ProviderApp],
        users: dict[str, Any],
        source: Source,
    ) -> None:
        existing = set(
            m.Connection.objects.filter(household__in=list(households.values())).values_list(
                "client_id", "provider_app_id", "platform"
            )
        )
        now = timezone.now()
        degraded_after = lifecycle.tunables().degraded_after
        for spec in CONNECTIONS:
            client = clients[(spec.household, spec.client)]
            app = provider_apps[spec.provider]
            if (client.pk, app.pk, spec.platform) in existing:
                continue
            existing.add((client.pk, app.pk, spec.platform))
            household_spec = next(h for h in HOUSEHOLDS if h.reference == spec.household)
            lives.connection_live(
                household=households[spec.household],
                client=client,
                app=app,
                platform=spec.platform,
                reason=spec.reason,
                key=spec.story_key,
                story=history.Story.draw(
                    spec.story_key, status=spec.status, reason=spec.reason, now=now, degraded_after=degraded_after
                ),
                adviser=users[household_spec.advisers[0]],
                source=source,
                now=now,
            )

    # --- sandbox ------------------------------------------------------------

    def _sandbox_ready(self) -> bool:
        """Whether demo connections can get real sandbox subjects; says why not when it matters."""
        if not apps.is_installed("sandbox"):
            if self.verbosity >= 1:
                self.stdout.write(
                    "Note: the sandbox is not installed (SANDBOX_ENABLED is off), so demo connections hold "
                    "placeholder source accounts and balances and no credentials; checks will flag the working "
                    "ones for reconnection."
                )
            return False
        missing = [name for name in SANDBOX_COMMANDS if name not in get_commands()]
        if missing:
            self.stderr.write(
                self.style.WARNING(
                    f"The sandbox is installed but lacks the commands {', '.join(missing)}; demo connections "
                    "hold placeholder source accounts and no credentials"
                    + ("" if "sandbox_register_app" not in missing else ", and the demo apps were not registered")
                    + "."
                )
            )
            return False
        return True

    def _register_with_sandbox(self, provider_apps: dict[str, m.ProviderApp]) -> None:
        """Tell the sandbox about each demo app that has a partner registration (id, secret, redirect URI).

        Runs every time: the sandbox may have been reset since the last run, and
        its registration command is idempotent.
        """
        if not apps.is_installed("sandbox") or "sandbox_register_app" not in get_commands():
            return
        registrable = {provider: app for provider, app in provider_apps.items() if app.client_id}
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
        source: Source,
        *,
        refresh: bool,
        created: Created,
    ) -> None:
        """Real subjects for demo connections that hold a placeholder (or, with ``refresh``, for every one);
        see :func:`lives.subject_restore`."""
        specs = {
            (clients[(s.household, s.client)].pk, provider_apps[s.provider].pk, s.platform): s for s in CONNECTIONS
        }
        rows = (
            m.Connection.objects.filter(household__in=list(households.values()), status__in=SUBJECT_STATUSES)
            .select_related("client", "household", "provider_app")
            .order_by("pk")
        )
        for row in rows:
            spec = specs.get((row.client_id, row.provider_app_id, row.platform))
            if spec is None:
                continue  # added through the UI: not the seed's to touch
            if not refresh and row.external_account_id != placeholder_account_id(row):
                continue
            seeded_working = spec.status in LIVE_STATUSES
            if lives.subject_restore(row, seeded_working=seeded_working, source=source, actor_label=ACTOR_LABEL):
                created.add("connections reconnected to the sandbox")
