"""Rows of the integration surface: API keys, idempotency records, webhook endpoints, events and deliveries.

Secrets: an API key is stored only as its SHA-256 (the key is 256 random
bits, so a plain hash is as good as a slow one and lets every request be
checked in one index lookup); a webhook signing secret must be read back to
sign, so it is encrypted at rest (:class:`~connections.fields.EncryptedTextField`,
re-encrypted by ``rotate_encryption_keys`` like every other secret), and so is
a stored idempotent reply (a client link's URL carries its token).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from connections.fields import EncryptedTextField
from connections.models import ClientLink, Connection, ConnectionEvent, Firm


class EventType(models.TextChoices):
    """The webhook event types (``connection.*`` and ``client_link.*``), and of ``GET /api/v1/events``."""

    CONNECTION_NEEDS_RECONNECT = "connection.needs_reconnect", "Connection needs reconnect"
    CONNECTION_DEGRADED = "connection.degraded", "Connection degraded"
    CONNECTION_RECOVERED = "connection.recovered", "Connection recovered"
    CONNECTION_DISCONNECTED = "connection.disconnected", "Connection disconnected"
    CONNECTION_DEADLINE_APPROACHING = "connection.deadline_approaching", "Connection deadline approaching"
    CLIENT_LINK_SENT = "client_link.sent", "Client link sent"
    CLIENT_LINK_OPENED = "client_link.opened", "Client link opened"
    CLIENT_LINK_COMPLETED = "client_link.completed", "Client link completed"
    CLIENT_LINK_EXPIRED = "client_link.expired", "Client link expired"


# --- API keys -----------------------------------------------------------------------------------


class ApiKey(models.Model):
    """A firm's key to ``/api/v1/``. The key itself is shown once, when it is made; only its hash is kept."""

    class Scope(models.TextChoices):
        READ = "read", "Read"
        WRITE = "write", "Read and write"

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, help_text="What the key is for, such as 'CRM sync'.")
    # The public part of the key, shown in lists so a person can tell keys apart.
    prefix = models.CharField(max_length=20, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.READ)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    # The rate limit's fixed window (keys.api_key_rate_take): kept on the row so
    # every web process counts against the same limit.
    rate_window_start = models.DateTimeField(null=True, blank=True, editable=False)
    rate_count = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["firm", "-created_at"], name="apikey_firm_recent")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        """A write key also reads."""
        return scope == self.Scope.READ or self.scope == self.Scope.WRITE


class IdempotencyRecord(models.Model):
    """One write made with an ``Idempotency-Key``: its request's fingerprint, then its reply.

    ``status_code`` is NULL while the write is in flight. A retry with the same
    key and the same request gets the stored reply instead of a second write;
    with a different request it is refused. Kept ``API_IDEMPOTENCY_TTL_SECONDS``.
    """

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="idempotency_records")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=300)
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # Encrypted: the reply to a client-link write carries the link's URL, and so its token.
    response_body = EncryptedTextField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_unique_key")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.status_code or 'in flight'})"


# --- Webhooks -----------------------------------------------------------------------------------


class WebhookEndpoint(models.Model):
    """Where a firm wants its events: a URL, the event types, and the secret deliveries are signed with.

    Rotation keeps the previous secret valid until ``previous_secret_expires_at``:
    meanwhile every delivery carries a signature under each, so a receiver can
    switch secrets whenever it likes within the window.
    """

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    event_types = models.JSONField(default=list, help_text="The event types this endpoint receives.")
    secret = EncryptedTextField()
    previous_secret = EncryptedTextField(null=True, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    is_enabled = models.BooleanField(default=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    # Start of the current run of failed attempts (NULL after any success):
    # an endpoint failing continuously for WEBHOOK_DISABLE_AFTER_SECONDS is disabled.
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["firm", "created_at"]
        indexes = [models.Index(fields=["firm", "is_enabled"], name="endpoint_firm_enabled")]

    def __str__(self) -> str:
        return self.url

    def receives(self, event_type: str) -> bool:
        return event_type in (self.event_types or [])

    def signing_secrets(self, *, now: datetime) -> list[str]:
        """The current secret, then the previous one while its overlap lasts."""
        secrets = [self.secret]
        if self.previous_secret and self.previous_secret_expires_at and self.previous_secret_expires_at > now:
            secrets.append(self.previous_secret)
        return secrets


def _event_public_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


class WebhookEvent(models.Model):
    """One event of a firm's feed, made from one ConnectionEvent that the rules reported.

    Written only by the dispatcher (:mod:`api.webhooks.dispatch`) while it holds
    its cursor's lock, so ids are committed in order and ``GET /api/v1/events?after=``
    never skips one that commits late.
    """

    public_id = models.CharField(max_length=40, unique=True, default=_event_public_id, editable=False)
    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="webhook_events")
    type = models.CharField(max_length=50, choices=EventType.choices)
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="+")
    client_link = models.ForeignKey(ClientLink, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    source_event = models.OneToOneField(ConnectionEvent, on_delete=models.CASCADE, related_name="+")
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["firm", "id"], name="webhookevent_firm_feed")]

    def __str__(self) -> str:
        return f"{self.type} {self.public_id}"


class WebhookDelivery(models.Model):
    """One event to one endpoint, attempted on the retry schedule until it succeeds or runs out."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Delivered"
        FAILED = "failed", "Failed"

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    # A resend made by a person (the automatic delivery of an event is unique per endpoint).
    manual = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # An attempt's claim (a conditional UPDATE): no two workers post the same delivery at once.
    lease_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["event", "endpoint"], condition=Q(manual=False), name="delivery_once_per_endpoint"
            ),
        ]
        indexes = [
            # The due sweep: `WHERE status = 'pending' AND next_attempt_at <= now`.
            models.Index(fields=["next_attempt_at"], name="delivery_due_idx", condition=Q(status="pending")),
            # The delivery log of one endpoint, newest first.
            models.Index(fields=["endpoint", "-created_at"], name="delivery_endpoint_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.endpoint} ({self.get_status_display()})"


class WebhookAttempt(models.Model):
    """One POST of a delivery: what came back and how long it took. Never a secret or a signature."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    # The start of the receiver's reply, cut and masked; the rest is never read.
    response_excerpt = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self) -> str:
        return f"Attempt {self.number} of {self.delivery_id}: {self.status_code or self.error}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class DispatchCursor(models.Model):
    """Where the dispatcher is in the ConnectionEvent table (one row).

    Every event at or below ``last_event_id`` has been looked at. Events above it
    are looked at again on each pass until they are surely committed: ids are
    handed out at INSERT and a transaction may commit after a later one, so an
    id seen only after a higher one must not be skipped. ``pending_high`` is the
    highest id seen at ``pending_seen_at``; once ``WEBHOOK_DISPATCH_SETTLE_SECONDS``
    have passed since, every event up to it has committed (or never will), and
    ``last_event_id`` moves there. Events already made into a WebhookEvent are
    recognised by ``WebhookEvent.source_event`` and never made twice.
    """

    last_event_id = models.BigIntegerField(default=0)
    pending_high = models.BigIntegerField(default=0)
    pending_seen_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Dispatched up to event {self.last_event_id}"
