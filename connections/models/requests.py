"""Rows of household reconnect requests and of notification hygiene.

The same app's models as the rest of :mod:`connections.models` (app label
``connections``), which imports them, so ``from connections.models import
ReconnectRequest`` works.

Nothing here is a connection status. A *problem* is a notification concept
derived from a connection's status and events (see
:mod:`connections.problems`); snoozing a problem and muting a connection
(``Connection.muted_at``) are the adviser's wishes about notifications,
never a connection status.
"""

from __future__ import annotations

import datetime as dt
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .. import wording

# --- Per-user and per-firm notification settings ---------------------------------------


class NotificationSettings(models.Model):
    """One user's digest preferences. No row means the defaults (hourly, UTC)."""

    class Digest(models.TextChoices):
        HOURLY = "hourly", "Every hour, when something changed"
        DAILY = "daily", "Once a day, when something changed"
        OFF = "off", "Never"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_settings"
    )
    digest = models.CharField(max_length=10, choices=Digest.choices, default=Digest.HOURLY)
    # Local time of the daily digest, in ``time_zone``.
    daily_at = models.TimeField(default=dt.time(8, 0))
    # An IANA zone name ("Europe/London"); validated by the form against zoneinfo.
    time_zone = models.CharField(max_length=64, default="UTC")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "notification settings"

    def __str__(self) -> str:
        return f"Digest {self.get_digest_display().lower()} for {self.user}"


class FirmNotificationPolicy(models.Model):
    """A firm's own limits for reminders, escalation and bulk sends. No row means the defaults."""

    firm = models.OneToOneField("connections.Firm", on_delete=models.CASCADE, related_name="notification_policy")
    # Days after the first email when a reminder goes out, while the request is unfinished.
    reminder_days = models.JSONField(default=list, blank=True, help_text="For example [2, 5]. Empty: the default.")
    # A problem open this long goes to the firm admins' digest, naming the adviser.
    escalate_after_days = models.PositiveIntegerField(default=7)
    # New reconnect requests a bulk send may email per hour for this firm.
    requests_per_hour = models.PositiveIntegerField(default=100)

    class Meta:
        verbose_name_plural = "firm notification policies"

    def __str__(self) -> str:
        return f"Notification policy of {self.firm}"


# --- Problems ----------------------------------------------------------------------------


class ConnectionProblem(models.Model):
    """One open problem per connection and cause; repeated failures update it.

    Opened when a check or housekeeping left the connection in trouble,
    ``announced_at`` when the rules first make it actionable (broken at once,
    degraded after ``LIFECYCLE_DEGRADED_ATTENTION_SECONDS`` counted from the
    problem's opening, a hard deadline inside the warning window), closed
    when a recovery has held. Digests read these rows, never raw flaps.
    """

    class Cause(models.TextChoices):
        BROKEN = "broken", "Needs reconnecting"
        DEGRADED = "degraded", "Provider failing"
        LAPSING = "lapsing", "Will lapse soon"

    class Resolution(models.TextChoices):
        OPEN = "", "Open"
        RECOVERED = "recovered", "Recovered"
        # Its recovery held while the connection was muted: not news, and the mute ends with it.
        RECOVERED_MUTED = "recovered_muted", "Recovered while muted"
        CLEARED = "cleared", "Cleared before anyone was told"
        SUPERSEDED = "superseded", "Became another problem"
        DISCONNECTED = "disconnected", "Connection removed"

    connection = models.ForeignKey("connections.Connection", on_delete=models.CASCADE, related_name="problems")
    cause = models.CharField(max_length=20, choices=Cause.choices)
    opened_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    # Failure events seen while open (a repeated failure counts here, it does not notify).
    occurrences = models.PositiveIntegerField(default=1)
    message = models.CharField(max_length=500, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    announced_at = models.DateTimeField(null=True, blank=True)
    # Healthy again since then; closed (and, if announced, the recovery told) once it has held.
    recovering_since = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=20, choices=Resolution.choices, blank=True, default="")
    escalated_at = models.DateTimeField(null=True, blank=True)
    snoozed_until = models.DateTimeField(null=True, blank=True)
    snoozed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Muting belongs to the connection (Connection.muted_at), not to one problem of it.

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "cause"],
                condition=Q(closed_at__isnull=True),
                name="problem_one_open_per_cause",
            ),
        ]
        indexes = [
            # The attention list's "quiet" test and the reconciler: open problems of a connection.
            models.Index(fields=["connection"], name="problem_open_idx", condition=Q(closed_at__isnull=True)),
            # Digests: what was announced or recovered in a window.
            models.Index(fields=["announced_at"], name="problem_announced_idx"),
            models.Index(fields=["closed_at"], name="problem_closed_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_cause_display()} since {self.opened_at:%Y-%m-%d %H:%M}"

    def is_quiet(self, now: dt.datetime) -> bool:
        """Its connection muted, or itself snoozed until a moment still ahead (select_related the connection)."""
        return self.connection.muted_at is not None or (self.snoozed_until is not None and self.snoozed_until > now)


# --- Reconnect requests --------------------------------------------------------------------


class BulkReconnectSend(models.Model):
    """Many households asked at once: sent in the background within the firm's hourly limit."""

    class BulkStatus(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Sending"
        THROTTLED = "throttled", "Waiting for the hourly limit"
        DONE = "done", "Done"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    firm = models.ForeignKey("connections.Firm", on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    household_ids = models.JSONField(default=list)
    position = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    notes = models.JSONField(default=list, blank=True)  # [{"household": name, "note": words}], skips and failures
    status = models.CharField(max_length=20, choices=BulkStatus.choices, default=BulkStatus.QUEUED)
    created_at = models.DateTimeField(default=timezone.now)
    resume_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # One worker at a time sends a bulk (a conditional UPDATE takes it).
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["resume_at"], name="bulk_waiting_idx", condition=~Q(status="done")),
        ]

    def __str__(self) -> str:
        return f"Bulk request of {len(self.household_ids)} households ({self.get_status_display()})"

    @property
    def total(self) -> int:
        return len(self.household_ids)


OPEN_REQUEST_STATUSES = ("sent", "opened", "partly_done")


class ReconnectRequest(models.Model):
    """One client asked to reconnect every connection of theirs that needs them: one email, one link.

    The link's token is never stored; each email carries its own
    (:class:`ReconnectRequestEmail`, only the SHA-256 kept), so a reminder
    does not invalidate the first email.
    """

    class RequestStatus(models.TextChoices):
        SENT = "sent", "Sent"
        OPENED = "opened", "Opened"
        PARTLY_DONE = "partly_done", "Partly done"
        DONE = "done", "Done"
        RESOLVED = "resolved", "Nothing left to fix"
        # Nothing left open and nothing fixed by the client, and the adviser muted some of it: closed, not solved.
        MUTED = "muted", "Closed: its connections were muted"
        EXPIRED = "expired", "Expired"
        PAUSED = "paused", "Stopped by the client"
        # Its email bounced, failed or was marked as spam, and the adviser asked again: a new request replaced it.
        SUPERSEDED = "superseded", "Replaced by a new request"

    class Delivery(models.TextChoices):
        UNKNOWN = "", "Not reported"
        DELIVERED = "delivered", "Delivered"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Marked as spam"
        FAILED = "failed", "Could not be sent"

    class PauseReason(models.TextChoices):
        NONE = "", "—"
        NOT_ME = "not_me", "This is not me"
        STOP = "stop", "Please stop"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    household = models.ForeignKey("connections.Household", on_delete=models.CASCADE, related_name="reconnect_requests")
    client = models.ForeignKey("connections.Client", on_delete=models.CASCADE, related_name="reconnect_requests")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=100, blank=True)
    bulk = models.ForeignKey(
        BulkReconnectSend, null=True, blank=True, on_delete=models.SET_NULL, related_name="requests"
    )
    status = models.CharField(max_length=20, choices=RequestStatus.choices, default=RequestStatus.SENT)
    sent_to = models.EmailField()
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # When the status last changed: digests report what changed since their last run.
    status_changed_at = models.DateTimeField(default=timezone.now)
    paused_at = models.DateTimeField(null=True, blank=True)
    pause_reason = models.CharField(max_length=10, choices=PauseReason.choices, blank=True, default="")
    reminders_sent = models.PositiveIntegerField(default=0)
    last_reminder_at = models.DateTimeField(null=True, blank=True)
    delivery = models.CharField(max_length=20, choices=Delivery.choices, blank=True, default="")
    delivery_at = models.DateTimeField(null=True, blank=True)
    # False: made through the API with send_email=false; the caller sends the link itself, so the portal
    # emails neither the request nor its reminders.
    emailed_by_portal = models.BooleanField(default=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["client"],
                condition=Q(status__in=OPEN_REQUEST_STATUSES),
                name="reconnectrequest_one_open_per_client",
            ),
        ]
        indexes = [
            # The reminders job: open requests only.
            models.Index(fields=["created_at"], name="request_open_idx", condition=Q(status__in=OPEN_REQUEST_STATUSES)),
            models.Index(fields=["household", "-created_at"], name="request_household_recent"),
            models.Index(fields=["status_changed_at"], name="request_changed_idx"),
        ]

    def __str__(self) -> str:
        return f"Reconnect request to {self.sent_to} ({self.get_status_display()})"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_REQUEST_STATUSES

    def progress(self) -> tuple[list[ReconnectRequestItem], int, str]:
        """Its items (prefetch them when listing many), how many are done, and its status as the adviser reads it."""
        items = list(self.items.all())
        done = sum(1 for item in items if item.status == ReconnectRequestItem.ItemStatus.DONE)
        muted = sum(1 for item in items if item.status == ReconnectRequestItem.ItemStatus.WITHDRAWN)
        words = wording.request_status_words(
            status=self.status,
            delivery=self.delivery,
            done=done,
            total=len(items),
            pause_reason=self.pause_reason,
            muted=muted,
        )
        return items, done, words


class ReconnectRequestItem(models.Model):
    """One connection the request asks the client to fix, with the client link its flow completes once."""

    class ItemStatus(models.TextChoices):
        OPEN = "open", "To do"
        DONE = "done", "Done"
        DROPPED = "dropped", "Fixed without the client"
        # The adviser muted the connection: the client is not asked about it any more.
        WITHDRAWN = "withdrawn", "Muted, not asked any more"

    request = models.ForeignKey(ReconnectRequest, on_delete=models.CASCADE, related_name="items")
    connection = models.ForeignKey("connections.Connection", on_delete=models.CASCADE, related_name="reconnect_items")
    # A link never emailed on its own: the request's pages run its flow, and
    # client_link_claim makes the item complete exactly once.
    client_link = models.OneToOneField(
        "connections.ClientLink", on_delete=models.CASCADE, related_name="reconnect_item"
    )
    status = models.CharField(max_length=10, choices=ItemStatus.choices, default=ItemStatus.OPEN)
    position = models.PositiveSmallIntegerField(default=0)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["request", "connection"], name="requestitem_once_per_request"),
        ]

    def __str__(self) -> str:
        return f"{self.connection} in {self.request_id} ({self.get_status_display()})"


class ReconnectRequestEmail(models.Model):
    """One email of a request (the first one or a reminder): its token's hash and what the ESP reported."""

    class Kind(models.TextChoices):
        REQUEST = "request", "Request"
        REMINDER = "reminder", "Reminder"

    request = models.ForeignKey(ReconnectRequest, on_delete=models.CASCADE, related_name="emails")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.REQUEST)
    token_hash = models.CharField(max_length=64, unique=True)
    sent_at = models.DateTimeField(default=timezone.now)
    # The ESP's id for the message (django-anymail), to match its tracking webhooks.
    message_id = models.CharField(max_length=200, blank=True, db_index=True)
    delivery = models.CharField(max_length=20, choices=ReconnectRequest.Delivery.choices, blank=True, default="")
    delivery_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["sent_at", "id"]
        indexes = [
            # The firm's hourly limit counts first emails sent in the last hour.
            models.Index(fields=["kind", "sent_at"], name="requestemail_sent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} at {self.sent_at:%Y-%m-%d %H:%M}"
