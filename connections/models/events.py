"""A connection's permanent history, the outbox: every new row is announced after its transaction commits."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from functools import partial
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from .. import signals
from .base import Reason, Status
from .connection import Connection


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

    The outbox (docs/architecture.md, "The outbox"): every write of new rows is announced to
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
