"""Audit rows for client links, reconnect requests and the connection outbox (see :mod:`.receivers`)."""

import datetime as dt
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.http import HttpRequest
from django.utils import timezone

from connections import wording
from connections.models import (
    ClientLink,
    Connection,
    ConnectionEvent,
    Household,
    ReconnectRequest,
    ReconnectRequestEmail,
    ReconnectRequestItem,
)

from . import audit
from .models import AuditEntry

Action = AuditEntry.Action

# Events of the outbox that are a person's (or a client's) action.
FOLDED_EVENT_KINDS: dict[str, str] = {
    ConnectionEvent.Kind.CONNECTED: Action.CONNECTED,
    ConnectionEvent.Kind.RECONNECTED: Action.RECONNECTED,
    ConnectionEvent.Kind.DISCONNECTED: Action.DISCONNECTED,
}
# A fold after commit looks this far back; older stragglers are the job's.
FOLD_LOOKBACK = dt.timedelta(hours=1)
FOLD_CATCH_UP = dt.timedelta(days=2)


# --- Client links and the connection outbox -------------------------------------------------


def _request_of_link(link: ClientLink) -> ReconnectRequest | None:
    """The reconnect request whose item ``link`` is, or ``None`` for a link sent on its own.

    The item row is written just after its link, so the link is matched to
    the request it was made for: the same client, the same address and the
    very same expiry (an item's link expires with its request; a link sent
    on its own expires its own max age after it was made).
    """
    if link.connection_id is None:
        return None  # requests cover existing connections only
    return (
        ReconnectRequest.objects.filter(client_id=link.client_id, sent_to=link.sent_to, expires_at=link.expires_at)
        .select_related("household__firm")
        .order_by("-created_at")
        .first()
    )


def _client_link_saved(
    sender: Any, instance: ClientLink, created: bool, update_fields: Any = None, **kwargs: Any
) -> None:
    # A link is on the record once it was sent: when made with its ``sent_at``,
    # or when that is set after its email went (services.client_link_create).
    if instance.sent_at is None:
        return
    if not created and "sent_at" not in (update_fields or ()):
        return
    request = _request_of_link(instance)
    if request is not None:
        _request_extended(request, instance)
        return
    household = Household.objects.select_related("firm").get(pk=instance.household_id)
    source = wording.source_name(provider=instance.provider_app.provider, platform=instance.platform)
    what = "reconnect" if instance.connection_id else "connect"
    audit.record(
        Action.LINK_SENT,
        actor=instance.created_by,
        household=household,
        obj=instance,
        object_type="client link",
        message=f"A link to {what} {source} was sent to {instance.sent_to}.",
        details={"connection_id": instance.connection_id, "client_id": instance.client_id},
    )


def _request_extended(request: ReconnectRequest, link: ClientLink) -> None:
    """A request item's link: nothing of its own while the request is being made (its first email says it all);
    a connection added to a request already sent is one row naming the request."""
    if not ReconnectRequestEmail.objects.filter(request=request).exists():
        return
    source = wording.source_name(provider=link.provider_app.provider, platform=link.platform)
    audit.record(
        Action.REQUEST_EXTENDED,
        actor=link.created_by,
        household=request.household,
        obj=request,
        object_type="reconnect request",
        message=f"{source} was added to the open reconnect request to {request.sent_to}; the next reminder lists it.",
        details={
            "request_id": str(request.pk),
            "client_id": request.client_id,
            "connection_ids": [link.connection_id],
        },
    )


def _request_email_saved(sender: Any, instance: ReconnectRequestEmail, created: bool, **kwargs: Any) -> None:
    """The first email of a request (written after its items) or a reminder: one row each."""
    if not created:
        return
    request = (
        ReconnectRequest.objects.select_related("household__firm", "client", "created_by")
        .filter(pk=instance.request_id)
        .first()
    )
    if request is None:
        return
    reminder = instance.kind == ReconnectRequestEmail.Kind.REMINDER
    items = ReconnectRequestItem.objects.filter(request=request).order_by("position", "id")
    if reminder:
        # A reminder lists only what still needs the client.
        items = items.filter(status=ReconnectRequestItem.ItemStatus.OPEN)
    covered = list(items.values_list("connection_id", "connection__provider", "connection__platform"))
    sources = ", ".join(wording.source_name(provider=p, platform=pl) for _, p, pl in covered) or "nothing"
    details = {
        "request_id": str(request.pk),
        "client_id": request.client_id,
        "connection_ids": [pk for pk, _, _ in covered],
    }
    if reminder:
        number = ReconnectRequestEmail.objects.filter(
            request=request, kind=ReconnectRequestEmail.Kind.REMINDER, pk__lte=instance.pk
        ).count()
        audit.record(
            Action.REMINDER_SENT,
            ambient=False,  # the reminders job's doing, whoever's request it runs in
            actor_name=wording.actor_words(actor_label=wording.REMINDERS),
            household=request.household,
            obj=request,
            object_type="reconnect request",
            message=f"Reminder {number} of the reconnect request to {request.sent_to} ({request.client.name}) "
            f"was sent, for {sources}.",
            details={**details, "reminder": number},
        )
        return
    audit.record(
        Action.REQUEST_SENT,
        actor=request.created_by,
        actor_name=wording.actor_words(actor=request.created_by, actor_label=request.actor_label),
        household=request.household,
        obj=request,
        object_type="reconnect request",
        message=f"A reconnect request was sent to {request.sent_to} ({request.client.name}) for {sources}.",
        details={**details, "bulk_id": str(request.bulk_id) if request.bulk_id else ""},
    )


def _schedule_fold(connection_id: int) -> None:
    request = audit.current_request()
    since = timezone.now() - FOLD_LOOKBACK
    transaction.on_commit(lambda: connection_events_fold(connection_id=connection_id, since=since, request=request))


def _connection_saved(sender: Any, instance: Connection, created: bool, **kwargs: Any) -> None:
    # Only the grant path saves an existing connection (checks write through
    # UPDATE statements), so this costs nothing on the hot path.
    if not created:
        _schedule_fold(instance.pk)


def _event_saved(sender: Any, instance: ConnectionEvent, created: bool, **kwargs: Any) -> None:
    if created and instance.kind in FOLDED_EVENT_KINDS:
        _schedule_fold(instance.connection_id)


def _unfolded(events: Any) -> Any:
    return events.filter(kind__in=list(FOLDED_EVENT_KINDS)).exclude(
        Exists(AuditEntry.objects.filter(connection_event=OuterRef("pk")))
    )


def connection_events_fold(*, connection_id: int, since: dt.datetime, request: HttpRequest | None = None) -> int:
    """Audit rows for this connection's person-made events since ``since`` not yet in the trail."""
    events = _unfolded(ConnectionEvent.objects.filter(connection_id=connection_id, created_at__gte=since))
    return _fold(events, request=request)


def events_fold_recent(*, now: dt.datetime | None = None) -> int:
    """The catch-up: every such event of the last two days not yet in the trail (no address known)."""
    now = now or timezone.now()
    return _fold(_unfolded(ConnectionEvent.objects.filter(created_at__gte=now - FOLD_CATCH_UP)), request=None)


def _fold(events: Any, *, request: HttpRequest | None) -> int:
    folded = 0
    requester = audit.request_user(request)
    rows = events.select_related("actor", "connection__household__firm").order_by("id")
    for event in rows:
        connection = event.connection
        # The address is the request's only when the request is the event's doer.
        by_requester = (event.actor_id is not None and requester is not None and event.actor_id == requester.pk) or (
            event.actor_id is None and event.actor_label == wording.CLIENT_LINK and requester is None
        )
        try:
            with transaction.atomic():
                audit.record(
                    FOLDED_EVENT_KINDS[event.kind],
                    request=request if by_requester else None,
                    ambient=False,
                    actor=event.actor,
                    actor_name=wording.actor_words(actor=event.actor, actor_label=event.actor_label),
                    household=connection.household,
                    obj=connection,
                    object_type="connection",
                    message=event.message or event.get_kind_display(),
                    details={"event_id": event.pk, "actor_label": event.actor_label},
                    connection_event=event,
                )
        except IntegrityError:
            continue  # folded meanwhile by another process
        folded += 1
    return folded
