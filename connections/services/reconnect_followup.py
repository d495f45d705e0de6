"""Following reconnect requests up: reminders, the ESP's delivery reports, and bulk sends within the hourly limit.

The requests themselves (planning, creating) are in :mod:`.reconnect_requests`,
the client's side in :mod:`.reconnect_client`, reading back what happened in
:mod:`.reconnect_sync`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from django.db import IntegrityError, transaction
from django.db.models import Prefetch, Q
from django.utils import timezone

from .. import lifecycle, problems, wording
from ..models import (
    BulkReconnectSend,
    ConnectionEvent,
    FirmNotificationPolicy,
    Household,
    ReconnectRequest,
    ReconnectRequestEmail,
    ReconnectRequestItem,
)
from .common import User, actor_user
from .reconnect_requests import (
    OPEN,
    UNDELIVERABLE,
    _deliver,
    _email_for,
    _new_token,
    firm_policy,
    reconnect_requests_create,
    reminder_days,
    requests_per_hour,
)
from .reconnect_sync import reconnect_requests_sync

logger = logging.getLogger("connections.requests")


def reconnect_reminders_send(*, now: dt.datetime | None = None) -> int:
    """Remind clients whose request is unopened or unfinished after each interval. Returns how many were sent.

    Follows up first (:func:`reconnect_requests_sync`), so a request whose
    connections all recovered is closed, not reminded, and a reminder lists
    only what still needs the client, leaving out connections whose problem is
    snoozed (a request with nothing else waits for the snooze to end; muted
    ones were withdrawn by the sync). Not reminded: stopped, bounced or
    complained-about requests, and those whose link the API caller sends
    itself. A reminder missed while the job was down is
    sent once, not once per missed interval.
    """
    now = now or timezone.now()
    reconnect_requests_sync(now=now)
    sent = 0
    policies: dict[int, FirmNotificationPolicy | None] = {}
    candidates = (
        # A request whose link the API caller sends itself is theirs to follow up.
        ReconnectRequest.objects.filter(status__in=OPEN, expires_at__gt=now, emailed_by_portal=True)
        .exclude(delivery__in=UNDELIVERABLE)
        .select_related("household", "client", "created_by")
        .prefetch_related(
            Prefetch(
                "items",
                queryset=ReconnectRequestItem.objects.filter(
                    status=ReconnectRequestItem.ItemStatus.OPEN
                ).select_related("connection"),
                to_attr="open_items",
            )
        )
    )
    requests = list(candidates)
    # A snoozed connection's item waits: it is left out of reminders until the snooze ends (muted ones were
    # withdrawn by the sync above).
    snoozed = problems.snoozed_connection_ids(
        connection_ids=[item.connection_id for request in requests for item in request.open_items], now=now
    )
    for request in requests:
        firm_id = request.household.firm_id
        if firm_id not in policies:
            policies[firm_id] = firm_policy(firm_id)
        due = [d for d in reminder_days(policies[firm_id]) if now >= request.created_at + dt.timedelta(days=d)]
        open_items: list[ReconnectRequestItem] = [i for i in request.open_items if i.connection_id not in snoozed]
        if len(due) <= request.reminders_sent or not open_items:
            continue
        # The claim: of two runs, exactly one moves the count and sends.
        if not ReconnectRequest.objects.filter(pk=request.pk, reminders_sent=request.reminders_sent).update(
            reminders_sent=len(due), last_reminder_at=now
        ):
            continue
        token, token_hash = _new_token()
        email_row = ReconnectRequestEmail.objects.create(
            request=request, kind=ReconnectRequestEmail.Kind.REMINDER, token_hash=token_hash, sent_at=now
        )
        sources = [item.connection.source_display for item in open_items]
        for item in open_items:
            lifecycle.event_record(
                connection=item.connection,
                kind=ConnectionEvent.Kind.LINK_SENT,
                message=wording.request_reminder_sent(email=request.sent_to, number=len(due)),
                actor_label=wording.REMINDERS,
                created_at=now,
            )
        if _deliver(
            email_row=email_row, email=_email_for(request=request, sources=sources, token=token, reminder=True)
        ):
            sent += 1
    return sent


# --- Delivery reports (django-anymail tracking webhooks) ---------------------------------------------

DELIVERY_BY_EVENT = {
    "delivered": ReconnectRequest.Delivery.DELIVERED,
    "bounced": ReconnectRequest.Delivery.BOUNCED,
    "rejected": ReconnectRequest.Delivery.BOUNCED,
    "complained": ReconnectRequest.Delivery.COMPLAINED,
}
# A later "delivered" must not hide an earlier bounce of the same request.
DELIVERY_RANK = {"": 0, "delivered": 1, "failed": 2, "bounced": 3, "complained": 4}


def reconnect_request_delivery_record(*, message_id: str, event_type: str, at: dt.datetime | None = None) -> bool:
    """Mark the request whose email ``message_id`` was with what the ESP reported. True when one matched."""
    delivery = DELIVERY_BY_EVENT.get(event_type)
    if delivery is None or not message_id:
        return False
    at = at or timezone.now()
    email = ReconnectRequestEmail.objects.select_related("request").filter(message_id=str(message_id)[:200]).first()
    if email is None:
        return False
    ReconnectRequestEmail.objects.filter(pk=email.pk).update(delivery=delivery, delivery_at=at)
    request = email.request
    if DELIVERY_RANK[delivery] > DELIVERY_RANK.get(request.delivery, 0):
        ReconnectRequest.objects.filter(pk=request.pk).update(delivery=delivery, delivery_at=at)
    return True


# --- Bulk sends ------------------------------------------------------------------------------------


def reconnect_bulk_start(
    *, user: User, households: Sequence[Household], now: dt.datetime | None = None
) -> BulkReconnectSend:
    """Queue asking ``households`` (already scoped to ``user``) in the background; the task starts on commit."""
    from .. import tasks  # tasks import services' neighbours

    now = now or timezone.now()
    if not households:
        raise ValueError("Choose at least one household.")
    firm_ids = {h.firm_id for h in households}
    if len(firm_ids) != 1:
        raise ValueError("A bulk request covers one firm's households.")
    bulk = BulkReconnectSend.objects.create(
        firm_id=firm_ids.pop(),
        created_by=actor_user(user),
        household_ids=[h.pk for h in households],
        created_at=now,
    )
    transaction.on_commit(lambda: tasks.send_reconnect_requests.delay(str(bulk.pk)))
    return bulk


BULK_LEASE = dt.timedelta(minutes=2)


def reconnect_bulk_process(*, bulk_id: str, now: dt.datetime | None = None) -> BulkReconnectSend | None:
    """Send what the firm's hourly limit allows now; when it runs out, wait (``resume_at``) and return.

    One worker at a time (a conditional UPDATE of ``lease_until``); each
    household is counted and sent in its own transaction under the firm's
    policy row lock, so two bulks of one firm never share out more than the
    limit between them. Returns the bulk as it stands (``None`` if another
    worker holds it).
    """
    now = now or timezone.now()
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    if (
        not BulkReconnectSend.objects.filter(free, pk=bulk_id)
        .exclude(status=BulkReconnectSend.BulkStatus.DONE)
        .update(lease_until=now + BULK_LEASE, status=BulkReconnectSend.BulkStatus.RUNNING)
    ):
        return None
    bulk = BulkReconnectSend.objects.select_related("created_by").get(pk=bulk_id)
    households = {
        h.pk: h
        for h in Household.objects.filter(pk__in=bulk.household_ids, firm_id=bulk.firm_id).select_related("firm")
    }
    try:
        while bulk.position < len(bulk.household_ids):
            household = households.get(bulk.household_ids[bulk.position])
            with transaction.atomic():
                policy = _policy_locked(bulk.firm_id)
                limit = requests_per_hour(policy)
                window = ReconnectRequestEmail.objects.filter(
                    kind=ReconnectRequestEmail.Kind.REQUEST,
                    request__household__firm_id=bulk.firm_id,
                    sent_at__gt=now - dt.timedelta(hours=1),
                )
                if window.count() >= limit:
                    oldest = window.order_by("sent_at").values_list("sent_at", flat=True).first() or now
                    bulk.status, bulk.resume_at = BulkReconnectSend.BulkStatus.THROTTLED, oldest + dt.timedelta(hours=1)
                    break
                if household is None:
                    bulk.skipped += 1
                    bulk.notes.append({"household": "", "note": "No longer in the firm."})
                else:
                    _bulk_one(bulk=bulk, household=household, now=now)
                bulk.position += 1
                bulk.lease_until = now + BULK_LEASE
                bulk.save(update_fields=["position", "sent", "skipped", "failed", "notes", "lease_until"])
        else:
            bulk.status, bulk.finished_at, bulk.resume_at = BulkReconnectSend.BulkStatus.DONE, now, None
    finally:
        bulk.lease_until = None
        bulk.save(update_fields=["status", "resume_at", "finished_at", "lease_until"])
    if bulk.status == BulkReconnectSend.BulkStatus.THROTTLED and bulk.resume_at is not None:
        _bulk_resume_later(bulk)
    return bulk


def _policy_locked(firm_id: int) -> FirmNotificationPolicy | None:
    """The firm's policy row, locked for the rest of the transaction (created with the defaults if missing)."""
    try:
        with transaction.atomic():
            FirmNotificationPolicy.objects.get_or_create(
                firm_id=firm_id,
                defaults={"requests_per_hour": requests_per_hour(None), "escalate_after_days": 7},
            )
    except IntegrityError:
        pass  # created by another worker just now
    return FirmNotificationPolicy.objects.select_for_update().filter(firm_id=firm_id).first()


def _bulk_one(*, bulk: BulkReconnectSend, household: Household, now: dt.datetime) -> None:
    results = reconnect_requests_create(households=[household], user=bulk.created_by, bulk=bulk, now=now)
    if not results:
        bulk.skipped += 1
        bulk.notes.append({"household": household.name, "note": "Nothing needs the client any more."})
    for result in results:
        if result.outcome == "sent":
            bulk.sent += 1
        else:
            bulk.skipped += 1
            bulk.notes.append({"household": household.name, "note": result.message})


def _bulk_resume_later(bulk: BulkReconnectSend) -> None:
    from .. import tasks

    if bulk.resume_at is None or tasks.send_reconnect_requests.app.conf.task_always_eager:
        return  # run inline, an ETA means nothing: the reminders job carries it on (reconnect_bulks_resume)
    try:
        tasks.send_reconnect_requests.apply_async((str(bulk.pk),), eta=bulk.resume_at)
    except Exception:
        # The reminders job resumes waiting bulks too (reconnect_bulks_resume).
        logger.exception("Could not schedule bulk request %s to resume.", bulk.pk)


def reconnect_bulks_resume(*, now: dt.datetime | None = None) -> int:
    """Carry on every bulk whose wait is over (or whose worker was lost). Returns how many were carried on."""
    now = now or timezone.now()
    waiting = BulkReconnectSend.objects.exclude(status=BulkReconnectSend.BulkStatus.DONE).filter(
        Q(resume_at__lte=now) | Q(resume_at__isnull=True, created_at__lt=now - BULK_LEASE),
        Q(lease_until__isnull=True) | Q(lease_until__lt=now),
    )
    resumed = 0
    for bulk_id in waiting.values_list("pk", flat=True):
        if reconnect_bulk_process(bulk_id=str(bulk_id), now=now) is not None:
            resumed += 1
    return resumed
