"""Seeding the demo world (``manage.py seed_demo``), through the real lifecycle. Idempotent.

:class:`Seeder` creates what :mod:`connections.demo.world` specifies and is
missing: the firm, logins, one sandbox ProviderApp per provider in the
registry, households, clients, and the connections, each lived through
:mod:`connections.demo.lives`. With the sandbox installed and its commands
present, the apps are registered with it and connections get real sandbox
subjects (:class:`~connections.demo.sources.SandboxSubjects`), the sandbox
answering in this process (:mod:`connections.demo.in_process`); without it,
placeholders. Everything happens in one transaction.
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
from django.core.management.base import CommandError, OutputWrapper
from django.core.management.color import Style
from django.db import transaction
from django.utils import timezone

from connections import lifecycle
from connections import models as m
from connections.providers import registry

from . import history, lives, world
from .in_process import sandbox_in_process
from .sources import Placeholders, SandboxSubjects, Source, placeholder_account_id

# The sandbox's management commands the seed drives (never its modules:
# the portal imports nothing from the sandbox).
SANDBOX_COMMANDS = ("sandbox_register_app", "sandbox_grant")


@lru_cache(maxsize=1)
def _demo_password_hash() -> str:
    # Hashed once per process: password hashing is deliberately slow, and the
    # demo logins share one password anyway.
    return make_password(world.DEMO_PASSWORD)


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


class Seeder:
    """One run of the seed; says what it does on the command's ``stdout`` and ``stderr``."""

    def __init__(self, *, stdout: OutputWrapper, stderr: OutputWrapper, style: Style, verbosity: int) -> None:
        self.stdout, self.stderr, self.style, self.verbosity = stdout, stderr, style, verbosity

    def run(self, *, refresh: bool) -> Created:
        """Create what is missing (with ``refresh``, the sandbox subjects of every demo connection again)."""
        with_subjects = self._sandbox_ready()
        if refresh and not with_subjects:
            raise CommandError(
                "--refresh-sandbox needs the sandbox app and its commands (SANDBOX_ENABLED on, in development)."
            )
        created = Created()
        source: Source = SandboxSubjects(password=world.DEMO_PASSWORD) if with_subjects else Placeholders()
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
        return created

    # --- people -----------------------------------------------------------

    def _firm(self, created: Created) -> m.Firm:
        firm, was_created = m.Firm.objects.get_or_create(slug=world.FIRM_SLUG, defaults={"name": world.FIRM_NAME})
        created.add("firm", int(was_created))
        return firm

    def _users(self, firm: m.Firm, created: Created) -> dict[str, Any]:
        User = get_user_model()
        users: dict[str, Any] = {}
        for login in world.DEMO_LOGINS:
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
        for spec in world.HOUSEHOLDS:
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
        for spec in world.HOUSEHOLDS:
            household = households[spec.reference]
            for name in spec.clients:
                if (household.pk, name) not in existing:
                    client = m.Client(
                        household=household,
                        name=name,
                        email=_email_for(name),
                        identity=uuid.uuid5(world.DEMO_NAMESPACE, f"client/{spec.reference}/{name}"),
                    )
                    new.append(client)
                    existing[(household.pk, name)] = client
        m.Client.objects.bulk_create(new)
        created.add("clients", len(new))
        return {
            (spec.reference, index): existing[(households[spec.reference].pk, name)]
            for spec in world.HOUSEHOLDS
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
        for spec in world.CONNECTIONS:
            client = clients[(spec.household, spec.client)]
            app = provider_apps[spec.provider]
            if (client.pk, app.pk, spec.platform) in existing:
                continue
            existing.add((client.pk, app.pk, spec.platform))
            household_spec = next(h for h in world.HOUSEHOLDS if h.reference == spec.household)
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
            (clients[(s.household, s.client)].pk, provider_apps[s.provider].pk, s.platform): s
            for s in world.CONNECTIONS
        }
        rows = (
            m.Connection.objects.filter(household__in=list(households.values()), status__in=world.SUBJECT_STATUSES)
            .select_related("client", "household", "provider_app")
            .order_by("pk")
        )
        for row in rows:
            spec = specs.get((row.client_id, row.provider_app_id, row.platform))
            if spec is None:
                continue  # added through the UI: not the seed's to touch
            if not refresh and row.external_account_id != placeholder_account_id(row):
                continue
            seeded_working = spec.status in world.LIVE_STATUSES
            if lives.subject_restore(row, seeded_working=seeded_working, source=source, actor_label=world.ACTOR_LABEL):
                created.add("connections reconnected to the sandbox")
