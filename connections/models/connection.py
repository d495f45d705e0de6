"""A connection and what it holds: its credentials and the accounts it yields."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .. import wording
from ..fields import EncryptedTextField
from .base import Provider, Reason, Status, TimeStamped
from .people import Client, Household
from .provider_apps import ProviderApp


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
    # The provider's id for the source account, as the provider's own answer
    # gives it (Turnqey's sourceAccountId of the holder at the platform,
    # Coinify's user id from /me, Bloquo's customer id, Dapi's user id from its
    # identity call; Dapi's connectionID goes into grouping). A reconnect must
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
    # The adviser's wish to hear nothing of this connection (a client who closed the account at the
    # exchange): left out of the attention list, digests and reconnect requests. Not a status, and the
    # lifecycle never reads it; connections.problems lifts it once a break that began after it has
    # recovered and held, so the next break is told.
    muted_at = models.DateTimeField(null=True, blank=True)
    muted_by = models.ForeignKey(
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
