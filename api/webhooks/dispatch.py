"""The outbox reader: committed ConnectionEvents in, the firm's webhook events and deliveries out.

Runs as ``api.webhooks_dispatch`` right after a commit that wrote a reported
event (:func:`on_events_committed`, through ``connections.signals``) and every
few seconds from the beat (``api.webhooks_tick``), so a lost signal only
delays an event. One pass at a time: each takes the :class:`DispatchCursor`
row's lock, reads the events after the cursor (reported kinds only), makes
one :class:`WebhookEvent` per reported event that has none yet, and one
:class:`WebhookDelivery` per enabled endpoint of the firm that subscribes to
the type; the deliveries are sent once that commits. See DispatchCursor for
why events just above the cursor are read more than once, and why none is
ever made twice.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from connections.models import ClientLink, ConnectionEvent

from .. import conf
from ..models import DispatchCursor, WebhookDelivery, WebhookEndpoint, WebhookEvent
from .events import REPORTED_KINDS, webhook_type_for

logger = logging.getLogger("api.webhooks")

BATCH = 500
CURSOR_PK = 1


def on_events_committed(sender: Any, events: Sequence[ConnectionEvent], **kwargs: Any) -> None:
    """``connections.signals.events_committed`` receiver: dispatch now when any event is one a firm hears about.

    Routine history (renewals, successful checks) sends nothing, so the check
    path pays nothing for webhooks. Failures are logged only: the beat's pass
    picks the events up anyway.
    """
    if not any(webhook_type_for(kind=e.kind, from_status=e.from_status, to_status=e.to_status) for e in events):
        return
    try:
        from ..tasks import webhooks_dispatch

        webhooks_dispatch.delay()
    except Exception:
        logger.exception("Could not enqueue a webhook dispatch; the next periodic pass will pick the events up.")


def _cursor() -> None:
    """Make sure the cursor row exists (a race to create it is harmless)."""
    if not DispatchCursor.objects.filter(pk=CURSOR_PK).exists():
        try:
            with transaction.atomic():
                DispatchCursor.objects.create(pk=CURSOR_PK)
        except IntegrityError:
            pass


def events_dispatch(*, now: datetime | None = None, passes: int = 10) -> int:
    """Make webhook events and deliveries of every reported event committed so far. Returns how many events.

    One pass reads, in batches, every reported event above the cursor up to
    the highest id visible when it starts; each batch is its own transaction
    under the cursor's lock (so the firm's feed ids commit in order). When a
    pass is through, the cursor moves as DispatchCursor explains, and another
    pass runs if events arrived meanwhile (up to ``passes``; the beat's next
    tick carries on after that).

    A dispatch that finds the cursor locked returns at once: the pass holding
    it looks for newer events when it ends, and this caller's were committed
    before it tried. (Between that last look and the release, a commit can
    slip through; the beat's tick, every few seconds, picks it up.)
    """
    _cursor()
    made = 0
    for _ in range(passes):
        started = now or timezone.now()
        high = _highest_event_id()
        result = _pass(started=started, high=high)
        if result is None:
            return made
        made += result
        if _highest_event_id() == high:
            return made
    return made


def _highest_event_id() -> int:
    return ConnectionEvent.objects.aggregate(high=Max("id"))["high"] or 0


def _pass(*, started: datetime, high: int) -> int | None:
    """Read every reported event up to ``high``; None when another dispatcher holds the cursor."""
    made, after = 0, 0
    while True:
        batch = _dispatch_batch(started=started, high=high, after=after)
        if batch is None:
            return None if after == 0 else made
        count, after, more = batch
        made += count
        if not more:
            return made


def _dispatch_batch(*, started: datetime, high: int, after: int) -> tuple[int, int, bool] | None:
    """Up to BATCH reported events in (cursor or ``after``, ``high``]: (events made, read up to, more), or None."""
    with transaction.atomic():
        cursor = DispatchCursor.objects.select_for_update(skip_locked=True).filter(pk=CURSOR_PK).first()
        if cursor is None:
            return None
        start = max(cursor.last_event_id, after)
        rows = list(
            ConnectionEvent.objects.filter(id__gt=start, id__lte=high, kind__in=sorted(REPORTED_KINDS))
            .order_by("id")
            .values(
                "id",
                "kind",
                "from_status",
                "to_status",
                "details",
                "created_at",
                "connection_id",
                "connection__household__firm_id",
            )[:BATCH]
        )
        more = len(rows) == BATCH
        made = _events_make(rows, now=started)
        if not more:
            _cursor_move(cursor, started=started, high=high)
    return made, (rows[-1]["id"] if more else high), more


def _cursor_move(cursor: DispatchCursor, *, started: datetime, high: int) -> None:
    """After a pass that read everything up to ``high`` (visible at ``started``), move the cursor.

    Every id up to ``pending_high`` was handed out before ``pending_seen_at``;
    if that is a settle time before this pass began, all of them had
    committed (or never will) when this pass read them, so the cursor may
    pass them. The ids visible at this pass's start become the pending ones.
    """
    settled = cursor.pending_seen_at is not None and cursor.pending_seen_at <= started - conf.dispatch_settle()
    if settled and high >= cursor.pending_high:
        cursor.last_event_id = max(cursor.last_event_id, cursor.pending_high)
    if cursor.pending_seen_at is None or settled:
        cursor.pending_high, cursor.pending_seen_at = high, started
    cursor.save(update_fields=["last_event_id", "pending_high", "pending_seen_at", "updated_at"])


def _events_make(rows: Sequence[Mapping[str, Any]], *, now: datetime) -> int:
    """WebhookEvents for the reported rows that have none yet, and their deliveries (sent after commit)."""
    typed = [
        (row, kind)
        for row in rows
        if (kind := webhook_type_for(kind=row["kind"], from_status=row["from_status"], to_status=row["to_status"]))
    ]
    if not typed:
        return 0
    done = set(
        WebhookEvent.objects.filter(source_event_id__in=[row["id"] for row, _ in typed]).values_list(
            "source_event_id", flat=True
        )
    )
    typed = [(row, kind) for row, kind in typed if row["id"] not in done]
    if not typed:
        return 0
    links = _client_links([row for row, _ in typed])
    events = WebhookEvent.objects.bulk_create(
        [
            WebhookEvent(
                firm_id=row["connection__household__firm_id"],
                type=kind,
                connection_id=row["connection_id"],
                client_link_id=links.get(row["id"]),
                source_event_id=row["id"],
                occurred_at=row["created_at"],
                created_at=now,
            )
            for row, kind in typed
        ]
    )
    endpoints: dict[int, list[WebhookEndpoint]] = defaultdict(list)
    for endpoint in WebhookEndpoint.objects.filter(firm_id__in={e.firm_id for e in events}, is_enabled=True).only(
        "id", "firm_id", "event_types"
    ):
        endpoints[endpoint.firm_id].append(endpoint)
    deliveries = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(event=event, endpoint=endpoint, next_attempt_at=now, created_at=now)
            for event in events
            for endpoint in endpoints.get(event.firm_id, [])
            if endpoint.receives(event.type)
        ]
    )
    if deliveries:
        ids = [delivery.pk for delivery in deliveries]
        transaction.on_commit(lambda: _publish(ids))
    return len(events)


def _client_links(rows: Sequence[Mapping[str, Any]]) -> dict[int, uuid.UUID]:
    """The client link each link event names (in its details), where that link still exists."""
    named: dict[int, uuid.UUID] = {}
    for row in rows:
        value = (row["details"] or {}).get("client_link_id")
        try:
            named[row["id"]] = uuid.UUID(str(value))
        except ValueError:
            continue
    existing = set(ClientLink.objects.filter(pk__in=set(named.values())).values_list("pk", flat=True))
    return {event_id: link_id for event_id, link_id in named.items() if link_id in existing}


def _publish(delivery_ids: list[int]) -> None:
    from ..tasks import deliveries_publish

    deliveries_publish(delivery_ids)
