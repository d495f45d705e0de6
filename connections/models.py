"""The portal's domain model (see DESIGN.md, "Domain model").

Rows only: decisions about status live in :mod:`connections.lifecycle.rules`,
writes in :mod:`connections.services`, reads in :mod:`connections.selectors`,
and names and messages in :mod:`connections.wording`.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from datetime import datetime
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.utils import timezone

from . import signals, wording
from .fields import EncryptedTextField
from .providers.endpoints import url_refusal


class Provider(models.TextChoices):
    TURNQEY = "turnqey", "Turnqey"
    COINIFY = "coinify", "Coinify"
    BLOQUO = "bloquo", "Bloquo"
    DAPI = "dapi", "Dapi"


class Environment(models.TextChoices):
    SANDBOX = "sandbox", "Sandbox"
    PRODUCTION = "production", "Production"


class Status(models.TextChoices):
    """One status vocabulary across providers (DESIGN.md)."""

    PENDING = "pending", "Pending"
    ACTIVE = "active", "Active"
    DEGRADED = "degraded", "Degraded"
    NEEDS_RECONNECT = "needs_reconnect", "Needs reconnect"
    DISCONNECTED = "disconnected", "Disconnected"


class Reason(models.TextChoices):
    """Why a connection is not simply active. Empty when it is."""

    NONE = "", "—"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"
    CREDENTIALS_INVALID = "credentials_invalid", "Credentials invalid"
    CREDENTIALS_UNREADABLE = "credentials_unreadable", "Stored credentials unreadable"
    TRANSIENT = "transient", "Temporary provider problem"
    AUTHORIZATION_ABANDONED = "authorization_abandoned", "Authorization not finished"


class TimeStamped(models.Model):
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


# --- Firms and people ---------------------------------------------------------


class Firm(TimeStamped):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    # Firm oversight settings, set by the firm's admins (reports/ and mfa/ read them).
    mfa_required = models.BooleanField(
        default=False, help_text="Every member must sign in with a second factor (an authenticator app)."
    )
    freshness_window_hours = models.PositiveSmallIntegerField(
        default=24, help_text="A connection's data counts as fresh when it is at most this many hours old."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(TimeStamped):
    """A user's place in one firm. A user belongs to at most one firm."""

    class Role(models.TextChoices):
        ADVISER = "adviser", "Adviser"
        FIRM_ADMIN = "firm_admin", "Firm admin"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.ADVISER)
    # The digest job sends each adviser what happened after this moment, then
    # moves it forward: one email per adviser per run, nothing sent twice.
    digest_sent_up_to = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["firm", "role"])]

    def __str__(self) -> str:
        return f"{self.user} ({self.get_role_display()}, {self.firm})"

    @property
    def is_firm_admin(self) -> bool:
        return self.role == self.Role.FIRM_ADMIN


class Household(TimeStamped):
    """A client household, estate or adviser record: the unit advisers work in."""

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="households")
    name = models.CharField(max_length=200)
    reference = models.CharField(max_length=64, blank=True, help_text="The firm's own reference for this household.")
    advisers = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="assigned_households", blank=True)
    # Provider-side grouping: a new Turnqey connection joins this collection so
    # a household's sources stay together at the provider too.
    turnqey_collection = models.UUIDField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["firm", "name"])]

    def __str__(self) -> str:
        return self.name


class Client(TimeStamped):
    """A person in a household."""

    household = models.ForeignKey(Household, on_delete=models.CASCADE, related_name="clients")
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    # Partner-side identity in provider flows (Turnqey `identity`): stable and
    # meaningless outside the portal, so no personal data leaves with it.
    identity = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


# --- Providers ----------------------------------------------------------------

# The URLs that say where an app's secrets and its browsers go (see ProviderApp.save).
ENDPOINT_FIELDS = ("base_url", "connect_url", "redirect_uri")


class SecretDeferringManager(models.Manager["ProviderApp"]):
    """Loads ProviderApps without decrypting their client secret until something reads it.

    Pages, forms and lists never need the secret; a provider call reads it
    (``client_secret`` is then fetched and decrypted on first access). So one
    secret that no key decrypts breaks the calls that need it, not every page
    that shows the app's name. (Not the base manager: ``refresh_from_db`` must
    keep reading every column.) Lists that follow a relation defer it themselves
    (``selectors.NO_SECRETS``).
    """

    def get_queryset(self) -> models.QuerySet[ProviderApp]:
        return super().get_queryset().defer("client_secret")


class ProviderApp(TimeStamped):
    """The portal's own credentials with one provider in one environment."""

    class BreakerState(models.TextChoices):
        CLOSED = "closed", "Closed"
        OPEN = "open", "Open"
        HALF_OPEN = "half_open", "Half-open"

    provider = models.CharField(max_length=20, choices=Provider.choices)
    environment = models.CharField(max_length=20, choices=Environment.choices, default=Environment.SANDBOX)
    name = models.CharField(max_length=100)
    base_url = models.URLField(max_length=300, help_text="API base URL, without a trailing slash.")
    connect_url = models.URLField(
        max_length=300, blank=True, help_text="Browser-facing base URL, when it differs from the API base URL."
    )
    client_id = models.CharField(
        max_length=200, blank=True, help_text="Turnqey client id, Coinify partner id, Dapi app key."
    )
    client_secret = EncryptedTextField(
        null=True, blank=True, help_text="Turnqey client secret, Dapi app secret. Write-only."
    )
    redirect_uri = models.URLField(
        max_length=300, blank=True, help_text="Redirect URI registered with the provider for this app."
    )
    is_enabled = models.BooleanField(default=True)
    # Outbound rate limit shared by every worker (token bucket in the database).
    rate_limit_per_second = models.FloatField(default=20.0)
    rate_tokens = models.FloatField(default=20.0)
    rate_updated_at = models.DateTimeField(null=True, blank=True)
    # Circuit breaker across all of this app's connections.
    breaker_state = models.CharField(max_length=12, choices=BreakerState.choices, default=BreakerState.CLOSED)
    breaker_failures = models.PositiveIntegerField(default=0)
    breaker_window_started_at = models.DateTimeField(null=True, blank=True)
    breaker_opened_at = models.DateTimeField(null=True, blank=True)
    # The app's own health: set when the provider rejects our client id/secret.
    credentials_rejected_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)

    objects = SecretDeferringManager()
    # Set by whoever types the client secret in along with an endpoint change
    # (the admin's form does), so the change keeps the secret just entered.
    # Not a column.
    secret_entered: bool = False
    # Set by save() when an endpoint change made it forget the client secret.
    secret_cleared: bool = False

    class Meta:
        ordering = ["provider", "environment", "name"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "environment", "name"], name="providerapp_unique_name"),
        ]

    def __str__(self) -> str:
        return wording.app_name(provider=self.provider, environment=self.environment, name=self.name)

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save; a changed endpoint forgets the client secret and the cached app token.

        The secret was given for the old endpoints: sent to new ones, it would
        reach whoever runs them. So unless a secret was entered with the
        change (``secret_entered``, or a value other than the stored one), it is
        cleared and must be entered again. Every path that saves a model meets
        this: admin, forms and scripts alike.
        """
        update_fields = kwargs.get("update_fields")
        watched = update_fields is None or bool(set(update_fields) & set(ENDPOINT_FIELDS))
        if self.pk is None or not watched:
            super().save(*args, **kwargs)
            return
        with transaction.atomic():
            stored = (
                ProviderApp.objects.filter(pk=self.pk)
                .annotate(has_secret=ExpressionWrapper(Q(client_secret__isnull=False), output_field=BooleanField()))
                .values(*ENDPOINT_FIELDS, "has_secret")
                .first()
            )
            moved = stored is not None and any(stored[name] != getattr(self, name) for name in ENDPOINT_FIELDS)
            if moved and not self._secret_entered_now():
                self.client_secret = None
                if update_fields is not None:
                    kwargs["update_fields"] = [*update_fields, "client_secret"]
                self.secret_cleared = bool(stored and stored["has_secret"])
            super().save(*args, **kwargs)
            if moved:
                # The app token was issued for the old endpoint's client.
                Credential.objects.filter(provider_app_id=self.pk, kind=Credential.Kind.APP).delete()

    def clean(self) -> None:
        """The provider URLs must pass :func:`~connections.providers.endpoints.url_refusal`.

        They decide where the app's client secret, its app token and every
        connection's tokens are sent, and where browsers go with a ``state``.
        """
        super().clean()
        errors: dict[str, str] = {}
        for name in ("base_url", "connect_url"):
            value = str(getattr(self, name) or "")
            if not value:
                continue
            refusal = url_refusal(value, provider=self.provider, environment=self.environment)
            if refusal is not None:
                errors[name] = (
                    f"Refused: this URL {refusal}. The portal sends the app's secrets and its clients' tokens "
                    "to this address, so only the provider's own hosts are accepted."
                )
        if errors:
            raise ValidationError(errors)

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any) -> ProviderApp:
        instance = super().from_db(db, field_names, values)
        if "client_secret" in field_names:
            # What was stored, so save() can tell a secret typed in from the one loaded.
            instance._loaded_secret = values[list(field_names).index("client_secret")]  # noqa: SLF001 (its own class)
        return instance

    def refresh_from_db(self, using: str | None = None, fields: Any = None, from_queryset: Any = None) -> None:
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)
        if fields is None or "client_secret" in fields:
            self._loaded_secret = self.__dict__.get("client_secret")

    def _secret_entered_now(self) -> bool:
        if self.secret_entered:
            return True
        if "client_secret" not in self.__dict__:  # deferred: nobody touched it
            return False
        current = self.__dict__["client_secret"]
        return bool(current) and current != getattr(self, "_loaded_secret", None)


class Connection(TimeStamped):
    """One authorized source (a platform through a provider) for one client."""

    # No single-column index on household or provider_app: the composite
    # indexes below lead with them and serve the same lookups, and every
    # index a check's UPDATE has to maintain costs write time.
    household = models.ForeignKey(Household, on_delete=models.CASCADE, related_name="connections", db_index=False)
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="connections")
    provider_app = models.ForeignKey(ProviderApp, on_delete=models.PROTECT, related_name="connections", db_index=False)
    # Denormalised from provider_app so lists, filters and the breaker need no join.
    provider = models.CharField(max_length=20, choices=Provider.choices)
    platform = models.CharField(max_length=50, help_text="Source platform, such as coinbase or gemini.")
    label = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=30, choices=Reason.choices, blank=True, default="")
    # The provider's id for the source account (Turnqey identity+platform,
    # Coinify user, Bloquo client id, Dapi connectionID). A reconnect must
    # return the same one, or it is refused.
    external_account_id = models.CharField(max_length=200, blank=True)
    # Provider-side grouping and identity this connection lives under, as the
    # grant returned it (Turnqey {"collection", "identity"}; Dapi's connection
    # id). Not secret; handed back to the client as ConnectionState.grouping.
    grouping = models.JSONField(default=dict, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    # When the sweep should next look at this connection; NULL means never
    # (needs_reconnect, disconnected): no retries until the client reconnects.
    next_check_at = models.DateTimeField(null=True, blank=True)
    # Deadline after which only the client can restore access (a refresh
    # token's end of life, Dapi's unexchanged access code).
    reconnect_by = models.DateTimeField(null=True, blank=True)
    # True when reconnect_by moves forward by itself at every renewal (a
    # rotating refresh token): it needs the client only if renewals stop.
    reconnect_by_rolls = models.BooleanField(default=False)
    consecutive_failures = models.PositiveIntegerField(default=0)
    # Fingerprint of the account list last stored (lifecycle.accounts_digest): a
    # check that reads the same list again neither reads nor writes account rows.
    accounts_digest = models.CharField(max_length=64, blank=True, default="", db_default="", editable=False)
    degraded_since = models.DateTimeField(null=True, blank=True)
    # A claim by one worker: nobody else checks this connection until it passes.
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    disconnected_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["household", "platform"]
        indexes = [
            # The sweep's index: `WHERE next_check_at <= now ORDER BY next_check_at`.
            # Partial, so it holds only connections that are scheduled at all and
            # the sweep's cost follows the due set, not the table.
            models.Index(
                fields=["next_check_at"],
                name="connection_due_idx",
                condition=Q(next_check_at__isnull=False),
            ),
            # Dashboard counts per household (index-only) and household lookups.
            models.Index(fields=["household", "status"], name="connection_household_status"),
            # "Needs attention": only the few connections that can qualify, so
            # the dashboard reads a handful of rows instead of every connection
            # of the adviser's households. The query repeats this condition
            # (ATTENTION_CANDIDATES in selectors) so the planner can use it.
            models.Index(
                fields=["household"],
                name="connection_attention_idx",
                condition=Q(status__in=["needs_reconnect", "degraded"]) | Q(reconnect_by__isnull=False),
            ),
            models.Index(fields=["provider_app", "status"], name="connection_app_status"),
            # Deadline warnings (connections.tasks.housekeeping): `WHERE reconnect_by <= soon`.
            # Partial, so connections without a hard deadline cost nothing.
            models.Index(
                fields=["reconnect_by"],
                name="connection_deadline_idx",
                condition=Q(reconnect_by__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="needs_reconnect") | ~Q(reason=""),
                name="connection_needs_reconnect_has_reason",
            ),
            # One live connection per source account and client.
            models.UniqueConstraint(
                fields=["client", "provider_app", "platform", "external_account_id"],
                condition=~Q(status="disconnected") & ~Q(external_account_id=""),
                name="connection_unique_live_source",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source_display} ({self.get_status_display()})"

    @property
    def platform_display(self) -> str:
        return wording.platform_name(self.platform)

    @property
    def source_display(self) -> str:
        """ "Coinbase via Turnqey"; just "Coinify" where platform and provider are one."""
        return wording.source_name(provider=self.provider, platform=self.platform)

    @property
    def status_message(self) -> str:
        """The status and reason in plain words, naming provider and platform."""
        return wording.status_message(
            provider=self.provider, platform=self.platform, status=self.status, reason=self.reason
        )


class Credential(models.Model):
    """A secret held for a connection or a provider app. Never a password."""

    class Kind(models.TextChoices):
        ACCESS = "access", "Access token"
        REFRESH = "refresh", "Refresh token"
        OFFLINE = "offline", "Offline token"
        PERMANENT = "permanent", "Permanent token"
        APP = "app", "App token"
        API_KEY = "api_key", "API key"
        USER_SECRET = "user_secret", "User secret"

    connection = models.ForeignKey(
        Connection, null=True, blank=True, on_delete=models.CASCADE, related_name="credentials"
    )
    provider_app = models.ForeignKey(
        ProviderApp, null=True, blank=True, on_delete=models.CASCADE, related_name="credentials"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    value = EncryptedTextField()
    issued_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(connection__isnull=False) & Q(provider_app__isnull=True))
                | (Q(connection__isnull=True) & Q(provider_app__isnull=False)),
                name="credential_has_exactly_one_owner",
            ),
            models.UniqueConstraint(
                fields=["connection", "kind"],
                condition=Q(connection__isnull=False),
                name="credential_one_per_connection_kind",
            ),
            models.UniqueConstraint(
                fields=["provider_app", "kind"],
                condition=Q(provider_app__isnull=False),
                name="credential_one_per_app_kind",
            ),
        ]

    def __str__(self) -> str:
        # Never the value.
        expires = wording.date_words(self.expires_at) if self.expires_at else "never"
        return f"{self.get_kind_display()}, expires {expires}"

    def is_expired(self, at: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (at or timezone.now())


class Account(models.Model):
    """What a healthy connection yields: an account and its balance."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="accounts")
    external_id = models.CharField(max_length=200)
    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=20)
    balance = models.DecimalField(max_digits=38, decimal_places=18)
    status = models.CharField(max_length=20, default="active")
    # When the provider last reported a change to this row (a routine check of
    # an unchanged account writes nothing); the connection's last_success_at
    # says when the whole list was last confirmed.
    as_of = models.DateTimeField(default=timezone.now, help_text="When the provider last reported a change.")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["connection", "external_id"], name="account_unique_per_connection"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.currency})"


class AuthorizationRequest(models.Model):
    """A pending connect or reconnect.

    The ``state`` handed to the provider is never stored: only its SHA-256, so a
    database reader cannot complete someone else's authorization.
    """

    class Purpose(models.TextChoices):
        CONNECT = "connect", "Connect"
        RECONNECT = "reconnect", "Reconnect"

    class Outcome(models.TextChoices):
        PENDING = "", "Pending"
        APPROVED = "approved", "Approved"
        DENIED = "denied", "Denied"
        ERROR = "error", "Provider error"
        EXPIRED = "expired", "Expired"
        MISMATCH = "mismatch", "Different source account"

    state_hash = models.CharField(max_length=64, unique=True)
    provider_app = models.ForeignKey(ProviderApp, on_delete=models.CASCADE, related_name="+")
    provider = models.CharField(max_length=20, choices=Provider.choices)
    platform = models.CharField(max_length=50)
    purpose = models.CharField(max_length=20, choices=Purpose.choices, default=Purpose.CONNECT)
    household = models.ForeignKey(Household, on_delete=models.CASCADE, related_name="authorization_requests")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="+")
    connection = models.ForeignKey(
        Connection, null=True, blank=True, on_delete=models.CASCADE, related_name="authorization_requests"
    )
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    client_link = models.ForeignKey(
        "ClientLink", null=True, blank=True, on_delete=models.SET_NULL, related_name="authorization_requests"
    )
    checksum = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, blank=True, default="")
    outcome_message = models.CharField(max_length=500, blank=True)

    class Meta:
        indexes = [
            # Housekeeping: expire unused requests past their window.
            models.Index(fields=["expires_at"], name="authreq_open_idx", condition=Q(used_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.get_purpose_display()} {self.platform} via {self.provider}"


class ClientLink(models.Model):
    """A signed, expiring link that lets a client connect or reconnect without a login.

    The URL carries a signed token; only its SHA-256 is stored.
    """

    class LinkStatus(models.TextChoices):
        SENT = "sent", "Sent"
        OPENED = "opened", "Opened"
        COMPLETED = "completed", "Completed"
        EXPIRED = "expired", "Expired"
        CANCELLED = "cancelled", "Cancelled"
        SUPERSEDED = "superseded", "Replaced by a newer link"
        # Too many wrong credentials were typed through it (services.client_links).
        LOCKED = "locked", "Locked"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    token_hash = models.CharField(max_length=64, unique=True)
    household = models.ForeignKey(Household, on_delete=models.CASCADE, related_name="client_links")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="links")
    # Set for a reconnect; for a new connection, provider_app + platform say what.
    connection = models.ForeignKey(
        Connection, null=True, blank=True, on_delete=models.CASCADE, related_name="client_links"
    )
    provider_app = models.ForeignKey(ProviderApp, on_delete=models.CASCADE, related_name="+")
    platform = models.CharField(max_length=50)
    status = models.CharField(max_length=20, choices=LinkStatus.choices, default=LinkStatus.SENT)
    sent_to = models.EmailField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # Credential attempts sent to the provider through this link (taken before
    # each is sent, so concurrent posts cannot pass the limit); at the limit the
    # link is locked, so a link is never a way to guess a client's password.
    credential_attempts = models.PositiveSmallIntegerField(default=0)
    locked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["expires_at"],
                name="clientlink_open_idx",
                condition=Q(status__in=["sent", "opened"]),
            ),
        ]

    def __str__(self) -> str:
        return f"Link for {self.client} ({self.get_status_display()})"


def _events_announce(events: list[ConnectionEvent], using: str | None) -> None:
    """Tell ``signals.events_committed`` receivers once these rows are committed (see that module)."""
    if events:
        send = partial(signals.events_committed.send_robust, sender=ConnectionEvent, events=events)
        transaction.on_commit(send, using=using, robust=True)


class ConnectionEventQuerySet(models.QuerySet["ConnectionEvent"]):
    def bulk_create(
        self,
        objs: Iterable[ConnectionEvent],
        batch_size: int | None = None,
        ignore_conflicts: bool = False,
        update_conflicts: bool = False,
        update_fields: Collection[str] | None = None,
        unique_fields: Collection[str] | None = None,
    ) -> list[ConnectionEvent]:
        created = super().bulk_create(
            objs,
            batch_size=batch_size,
            ignore_conflicts=ignore_conflicts,
            update_conflicts=update_conflicts,
            update_fields=update_fields,
            unique_fields=unique_fields,
        )
        _events_announce(created, self.db)
        return created


class ConnectionEvent(models.Model):
    """Permanent history of a connection. Never contains a secret.

    The outbox (DESIGN.md): every write of new rows is announced to
    :data:`signals.events_committed` after its transaction commits.
    """

    class Kind(models.TextChoices):
        CREATED = "created", "Authorization started"
        CONNECTED = "connected", "Connected"
        RECONNECTED = "reconnected", "Reconnected"
        RECONNECT_REFUSED = "reconnect_refused", "Reconnect refused"
        STATUS_CHANGED = "status_changed", "Status changed"
        RENEWED = "renewed", "Credentials renewed"
        CHECK_FAILED = "check_failed", "Check failed"
        RECOVERED = "recovered", "Recovered"
        LINK_SENT = "link_sent", "Client link sent"
        LINK_OPENED = "link_opened", "Client link opened"
        LINK_COMPLETED = "link_completed", "Client link completed"
        LINK_EXPIRED = "link_expired", "Client link expired"
        LINK_LOCKED = "link_locked", "Client link locked"
        DEADLINE_WARNING = "deadline_warning", "Deadline approaching"
        DISCONNECTED = "disconnected", "Disconnected"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=30, choices=Kind.choices)
    from_status = models.CharField(max_length=20, choices=Status.choices, blank=True)
    to_status = models.CharField(max_length=20, choices=Status.choices, blank=True)
    reason = models.CharField(max_length=30, choices=Reason.choices, blank=True)
    message = models.CharField(max_length=500, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Who or what did it when not a user, as a code (wording.actor_words says it in words).
    actor_label = models.CharField(max_length=100, blank=True)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = ConnectionEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["connection", "-created_at"], name="event_connection_recent")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} at {self.created_at:%Y-%m-%d %H:%M}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        adding = self._state.adding
        super().save(*args, **kwargs)
        if adding:
            _events_announce([self], kwargs.get("using") or self._state.db)


class AttemptWindow(models.Model):
    """The recent attempts of one subject under one limit: the database store of :mod:`connections.attempts`.

    ``key`` is a keyed hash of the limit's name and the subject (a user id, a
    client address, an email address), so addresses and emails are not kept
    here in clear. ``hits`` holds ``[time, id]`` pairs still inside the window,
    oldest first. ``expires_at`` is when the newest hit leaves the window:
    after it the row says nothing and may be deleted.
    """

    key = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=40)
    hits = models.JSONField(default=list)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.name}: {len(self.hits)} recent attempts"


class PeriodicJobRun(models.Model):
    """One run of a periodic job in one time slot.

    The row is the lock: a job inserts (job, slot_start) before doing any work,
    and the unique constraint makes a second insert for the same slot fail, so
    two beats (or a beat and a manual run) never do one slot's work twice.
    """

    job = models.CharField(max_length=50)
    slot_start = models.DateTimeField()
    owner = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-slot_start"]
        constraints = [
            models.UniqueConstraint(fields=["job", "slot_start"], name="periodicjobrun_unique_slot"),
        ]

    def __str__(self) -> str:
        return f"{self.job} at {self.slot_start:%Y-%m-%d %H:%M:%S}"


# Reconnect requests and notification hygiene live in their own module (this one
# is past a reader's size); importing them here registers them with the app.
from .request_models import (  # noqa: E402, F401
    BulkReconnectSend,
    ConnectionProblem,
    FirmNotificationPolicy,
    NotificationSettings,
    ReconnectRequest,
    ReconnectRequestEmail,
    ReconnectRequestItem,
)
