"""Rows of firm oversight: the audit trail, daily freshness snapshots, provider health per day."""

from __future__ import annotations

from typing import Any, NoReturn

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from connections.models import ConnectionEvent, Firm, Household, ProviderApp


class AppendOnly(Exception):
    """Raised by any attempt to change or delete an audit row from the application."""


class AuditQuerySet(models.QuerySet["AuditEntry"]):
    # Examiners rely on the trail being complete: nothing in the application
    # may rewrite or remove it. (A database superuser still can; that is
    # outside what the application can promise.)
    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnly("The audit trail is append-only.")

    def delete(self) -> NoReturn:
        raise AppendOnly("The audit trail is append-only.")

    def bulk_update(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnly("The audit trail is append-only.")


class AuditEntry(models.Model):
    """Who did what, when, from which address, on which object. Append-only. Never a secret."""

    class Action(models.TextChoices):
        SIGN_IN = "sign_in", "Signed in"
        SIGN_IN_FAILED = "sign_in_failed", "Sign-in failed"
        SECOND_FACTOR_PASSED = "second_factor_passed", "Second factor accepted"
        SECOND_FACTOR_FAILED = "second_factor_failed", "Second factor refused"
        SECOND_FACTOR_LOCKED = "second_factor_locked", "Second factor locked"
        MFA_ENABLED = "mfa_enabled", "Second factor set up"
        MFA_REMOVED = "mfa_removed", "Second factor removed"
        RECOVERY_CODES_REPLACED = "recovery_codes_replaced", "Recovery codes replaced"
        MEMBER_ADDED = "member_added", "Member added"
        ROLE_CHANGED = "role_changed", "Role changed"
        MEMBER_REMOVED = "member_removed", "Member removed"
        ASSIGNMENT_ADDED = "assignment_added", "Household assigned"
        ASSIGNMENT_REMOVED = "assignment_removed", "Household unassigned"
        LINK_SENT = "link_sent", "Client link sent"
        REQUEST_SENT = "request_sent", "Reconnect request sent"
        REQUEST_EXTENDED = "request_extended", "Reconnect request extended"
        REMINDER_SENT = "reminder_sent", "Reconnect reminder sent"
        CONNECTED = "connected", "Connected"
        RECONNECTED = "reconnected", "Reconnected"
        DISCONNECTED = "disconnected", "Disconnected"
        EXPORTED = "exported", "Exported"
        FIRM_SETTINGS_CHANGED = "firm_settings_changed", "Firm settings changed"
        INTEGRATION_CHANGED = "integration_changed", "Integration changed"
        WEBHOOK_RESENT = "webhook_resent", "Webhook delivery resent"
        ADMIN_EDIT = "admin_edit", "Admin edit"
        VIEWED = "viewed", "Client data viewed"

    at = models.DateTimeField(default=timezone.now, db_index=True, editable=False)
    # Whose records this belongs to: the actor's firm, or the object's. Empty for
    # what belongs to no firm (a failed sign-in for an unknown user name).
    firm = models.ForeignKey(Firm, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Who, in words, kept as written: it still reads after the user is deleted.
    actor_name = models.CharField(max_length=200, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=40, choices=Action.choices)
    household = models.ForeignKey(Household, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    household_name = models.CharField(max_length=200, blank=True)
    object_type = models.CharField(max_length=60, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=300, blank=True)
    message = models.CharField(max_length=500)
    details = models.JSONField(default=dict, blank=True)
    # Where the row came from, so a source is folded in once and can be followed back.
    connection_event = models.OneToOneField(
        ConnectionEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    admin_log = models.OneToOneField(
        "admin.LogEntry", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A read of client data (reports.reads): who saw which object in which window, hashed. Unique,
    # so a read seen again in its window is one INSERT that does nothing, never a lookup first.
    seen_key = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit trail"
        indexes = [
            # The firm admin's page and export: a firm's rows in a date range, newest first.
            models.Index(fields=["firm", "-at"], name="audit_firm_recent"),
            models.Index(fields=["household", "-at"], name="audit_household_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} by {self.actor_name or 'the portal'} at {self.at:%Y-%m-%d %H:%M}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnly("The audit trail is append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnly("The audit trail is append-only.")


class FreshnessSnapshot(models.Model):
    """One day's freshness figures for a firm (``adviser`` empty) or for one adviser's households.

    The snapshot job writes the day's row and, run again the same day, overwrites
    it with the later reading: one row per firm (and per adviser) per day.
    """

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="+")
    adviser = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    day = models.DateField()
    taken_at = models.DateTimeField(default=timezone.now)
    window_hours = models.PositiveSmallIntegerField()
    households = models.PositiveIntegerField(default=0)
    households_with_data = models.PositiveIntegerField(default=0)
    households_fresh = models.PositiveIntegerField(default=0)
    connections_live = models.PositiveIntegerField(default=0)
    connections_fresh = models.PositiveIntegerField(default=0)
    active = models.PositiveIntegerField(default=0)
    degraded = models.PositiveIntegerField(default=0)
    needs_reconnect = models.PositiveIntegerField(default=0)
    pending = models.PositiveIntegerField(default=0)
    disconnected = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["firm", "day"]
        constraints = [
            models.UniqueConstraint(
                fields=["firm", "day"], condition=Q(adviser__isnull=True), name="freshness_one_firm_row_per_day"
            ),
            models.UniqueConstraint(
                fields=["firm", "adviser", "day"],
                condition=Q(adviser__isnull=False),
                name="freshness_one_adviser_row_per_day",
            ),
        ]

    def __str__(self) -> str:
        return f"Freshness of {self.firm_id} on {self.day}"


class ProviderHealthDay(models.Model):
    """Checks and failures of one firm's connections through one provider app on one day.

    ``checks_succeeded`` is tallied every few minutes from ``Connection.last_success_at``
    (a successful check writes no event); failures come from ``check_failed`` events,
    by the error kind their details carry. See :mod:`reports.health`.
    """

    firm = models.ForeignKey(Firm, on_delete=models.CASCADE, related_name="+")
    provider_app = models.ForeignKey(ProviderApp, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    checks_succeeded = models.PositiveIntegerField(default=0)
    failures_transient = models.PositiveIntegerField(default=0)
    failures_reauth = models.PositiveIntegerField(default=0)
    failures_app = models.PositiveIntegerField(default=0)
    failures_other = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["day"]
        constraints = [
            models.UniqueConstraint(fields=["firm", "provider_app", "day"], name="providerhealth_one_row_per_day")
        ]

    def __str__(self) -> str:
        return f"{self.provider_app_id} on {self.day}"

    @property
    def failures(self) -> int:
        return self.failures_transient + self.failures_reauth + self.failures_app + self.failures_other

    @property
    def checks(self) -> int:
        return self.checks_succeeded + self.failures


class BreakerDay(models.Model):
    """How many tally slots of a day saw a provider app's circuit breaker open (app-wide, no firm data)."""

    provider_app = models.ForeignKey(ProviderApp, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    openings = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["day"]
        constraints = [models.UniqueConstraint(fields=["provider_app", "day"], name="breakerday_one_row_per_day")]

    def __str__(self) -> str:
        return f"{self.provider_app_id} on {self.day}: {self.openings}"
