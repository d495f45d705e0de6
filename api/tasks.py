"""Celery tasks of the integration surface: thin wrappers over :mod:`api.webhooks` (ids only, never secrets).

* ``api.webhooks_dispatch``: read newly committed connection events (the
  outbox) into webhook events and deliveries; enqueued on commit of an event
  a firm hears about, and run by the tick;
* ``api.webhook_deliver(delivery_id)``: one attempt, if it is due;
* ``api.webhooks_tick`` (beat, every 15 s): dispatch, then enqueue due deliveries;
* ``api.housekeeping`` (beat, hourly): forget expired idempotency records,
  prune webhook events and their logs past ``WEBHOOK_RETENTION_DAYS``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from celery import shared_task
from django.utils import timezone

from . import conf
from .models import IdempotencyRecord, WebhookEvent
from .webhooks import delivery, dispatch

logger = logging.getLogger("api.tasks")

PRUNE_BATCH = 1000


def deliveries_publish(delivery_ids: Sequence[int], *, countdown: float | None = None) -> None:
    """Enqueue one attempt per delivery. A failure is logged, not raised: the due sweep sends them anyway."""
    try:
        for delivery_id in delivery_ids:
            if countdown is None:
                webhook_deliver.apply_async((delivery_id,))
            else:
                webhook_deliver.apply_async((delivery_id,), countdown=countdown)
    except Exception:
        logger.exception("Could not enqueue %s webhook deliveries; the due sweep will send them.", len(delivery_ids))


@shared_task(name="api.webhooks_dispatch", ignore_result=True)
def webhooks_dispatch() -> int:
    return dispatch.events_dispatch()


@shared_task(name="api.webhook_deliver", ignore_result=True)
def webhook_deliver(delivery_id: int) -> str:
    return delivery.delivery_attempt(delivery_id=int(delivery_id))


@shared_task(name="api.webhooks_tick", ignore_result=True)
def webhooks_tick() -> dict[str, int]:
    """Dispatch what the signal may have missed, then enqueue every due attempt (retries included)."""
    made = dispatch.events_dispatch()
    due = delivery.deliveries_due()
    deliveries_publish(due)
    return {"events": made, "deliveries": len(due)}


def housekeeping_run(*, now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    forgotten = IdempotencyRecord.objects.filter(created_at__lt=now - conf.idempotency_ttl()).delete()[0]
    pruned = 0
    while True:
        ids = list(
            WebhookEvent.objects.filter(created_at__lt=now - conf.retention()).values_list("pk", flat=True)[
                :PRUNE_BATCH
            ]
        )
        if not ids:
            break
        # Deliveries and their attempts go with their event.
        WebhookEvent.objects.filter(pk__in=ids).delete()
        pruned += len(ids)
    return {"idempotency_records_forgotten": forgotten, "webhook_events_pruned": pruned}


@shared_task(name="api.housekeeping", ignore_result=True)
def housekeeping() -> dict[str, int]:
    return housekeeping_run()
