"""What was sent to clients, as CSV: client links and reconnect requests (the rest is in :mod:`.exports`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from connections import selectors, wording
from connections.models import (
    ClientLink,
    ReconnectRequest,
    ReconnectRequestItem,
)

# Rows fetched per round trip (a server-side cursor on PostgreSQL). The chunk is
# what an export holds in memory at once, so it bounds the peak: 500 rows keep
# a 100,000-row export within the memory of a 1,000-row one (make bench, exports).
from .exports import CHUNK, Export, _actor_words, _in_range

# What every sent thing's row starts with (its id, when it was sent, the household, the client and
# the address it went to), and then who sent it: both exports read them alike (:func:`_sent_rows`).
SENT_FIELDS = ("pk", "created_at", "household_id", "household__name", "client__name", "sent_to")
SENDER_FIELDS = ("created_by_id", "created_by__first_name", "created_by__last_name", "created_by__username")


def _sent_rows(rows: Any) -> Iterator[tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]]:
    """Each row of ``values_list(*SENT_FIELDS, *SENDER_FIELDS, ...)``: (sent columns, sender fields, the rest)."""
    sent, sender = len(SENT_FIELDS), len(SENT_FIELDS) + len(SENDER_FIELDS)
    for row in rows.iterator(chunk_size=CHUNK):
        yield row[:sent], row[sent:sender], row[sender:]


LINK_HEADER = (
    "Link ID",
    "Sent",
    "Household ID",
    "Household",
    "Client",
    "Sent to",
    "For",
    "Purpose",
    "Status",
    "Opened",
    "Completed",
    "Expires",
    "Sent by",
)


def client_links_export(*, user: Any, start: dt.date | None = None, end: dt.date | None = None) -> Export:
    now = timezone.now()
    links = selectors.client_link_queryset_for(user=user).filter(**_in_range("created_at", start, end))
    statuses = dict(ClientLink.LinkStatus.choices)
    rows = links.order_by("created_at", "id").values_list(
        *SENT_FIELDS,
        *SENDER_FIELDS,
        "provider_app__provider",
        "platform",
        "connection_id",
        "status",
        "opened_at",
        "completed_at",
        "expires_at",
    )

    def produce() -> Iterator[Sequence[Any]]:
        for sent, (by_id, first, last, username), rest in _sent_rows(rows):
            provider, platform, connection_id, status, opened, completed, expires = rest
            if status in (ClientLink.LinkStatus.SENT, ClientLink.LinkStatus.OPENED) and expires <= now:
                status = ClientLink.LinkStatus.EXPIRED
            yield (
                *sent,
                wording.source_name(provider=provider, platform=platform),
                "Reconnect" if connection_id else "Connect",
                statuses.get(status, status),
                opened,
                completed,
                expires,
                _actor_words(by_id, first, last, username, "") if by_id else "",
            )

    return Export(name="client-links", header=LINK_HEADER, rows=produce())


# --- Reconnect requests ---------------------------------------------------------------------------

REQUEST_HEADER = (
    "Request ID",
    "Sent",
    "Household ID",
    "Household",
    "Client",
    "Sent to",
    "Sent by",
    "Status",
    "In words",
    "Opened",
    "Delivery",
    "Delivery reported",
    "Reminders sent",
    "Last reminder",
    "Items",
    "Items done",
    "Client stopped it",
    "Stopped",
    "Closed",
    "Expires",
)


def reconnect_requests_export(*, user: Any, start: dt.date | None = None, end: dt.date | None = None) -> Export:
    """One row per request of the user's households sent in the range: its delivery, reminders and items."""
    households = selectors.household_queryset_for(user=user)
    requests = ReconnectRequest.objects.filter(household__in=households, **_in_range("created_at", start, end))
    statuses = dict(ReconnectRequest.RequestStatus.choices)
    deliveries = dict(ReconnectRequest.Delivery.choices)
    stops = dict(ReconnectRequest.PauseReason.choices)
    rows = (
        requests.annotate(
            items_total=Count("items"),
            items_done=Count("items", filter=Q(items__status=ReconnectRequestItem.ItemStatus.DONE)),
        )
        .order_by("created_at", "id")
        .values_list(
            *SENT_FIELDS,
            *SENDER_FIELDS,
            "actor_label",
            "status",
            "opened_at",
            "delivery",
            "delivery_at",
            "reminders_sent",
            "last_reminder_at",
            "items_total",
            "items_done",
            "pause_reason",
            "paused_at",
            "closed_at",
            "expires_at",
        )
    )

    def produce() -> Iterator[Sequence[Any]]:
        for sent, (by_id, first, last, username), rest in _sent_rows(rows):
            (label, status, opened, delivery, delivery_at, reminders, last_reminder, total, done, pause_reason,
             paused, closed, expires) = rest  # fmt: skip
            yield (
                *sent,
                _actor_words(by_id, first, last, username, label),
                statuses.get(status, status),
                wording.request_status_words(
                    status=status, delivery=delivery, done=done, total=total, pause_reason=pause_reason
                ),
                opened,
                deliveries.get(delivery, delivery) if delivery else "",
                delivery_at,
                reminders,
                last_reminder,
                total,
                done,
                stops.get(pause_reason, pause_reason) if pause_reason else "",
                paused,
                closed,
                expires,
            )

    return Export(name="reconnect-requests", header=REQUEST_HEADER, rows=produce())


# --- Audit trail and access review (firm admins) ------------------------------------------------
