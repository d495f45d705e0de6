"""One delivery attempt: claim, sign, POST, record; then the retry, or the end, or disabling the endpoint.

Safe to call any number of times from any number of workers: an attempt
first claims the delivery with a conditional UPDATE (pending, due, not held),
so a countdown task and the beat's due sweep that both fire post it once.
The body is built at the moment of sending, with the connection as it is
then: events may arrive out of order (a retry of "degraded" after the
"recovered" that followed it), and each one says where the connection stands
now, so a consumer can always reconcile.

Retries follow ``WEBHOOK_RETRY_SCHEDULE_SECONDS`` (the delay before each
attempt, counted from the previous one); any 2xx is a success, anything else
(an error status, a redirect, no reply in time, a refused address) a failure.
An endpoint whose attempts have all failed for ``WEBHOOK_DISABLE_AFTER_SECONDS``
is disabled, its pending deliveries are dropped, and its firm admins are
emailed; the events stay in the feed (``GET /api/v1/events``) for catching up.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from connections import wording

from .. import conf, notifications
from ..models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from ..schemas import envelope_out
from ..selectors import connections_for_api
from . import addresses, signing, transport

logger = logging.getLogger("api.webhooks")

# A claim outlives the attempt's whole budget with room to spare.
LEASE_SLACK_SECONDS = 30.0
# A countdown task may fire a little early; it still counts as due.
DUE_SLACK = timedelta(seconds=1)
# Retries this soon are enqueued with a countdown; later ones wait for the beat's due sweep.
COUNTDOWN_MAX_SECONDS = 120.0


class Outcome:
    DELIVERED = "delivered"
    RETRY = "retry"  # failed; another attempt is scheduled
    FAILED = "failed"  # failed for the last time
    CANCELLED = "cancelled"  # the endpoint was disabled
    SKIPPED = "skipped"  # not claimed: not due, finished, or another worker has it


def envelope_body(event: WebhookEvent, *, now: datetime) -> str:
    """The JSON body of ``event``, with its connection as it is now (compact, as it is signed)."""
    connection = connections_for_api(firm_id=event.firm_id).get(pk=event.connection_id)
    envelope = envelope_out(event, connection=connection, now=now)
    return json.dumps(envelope.model_dump(), cls=DjangoJSONEncoder, separators=(",", ":"))


def _lease_free(now: datetime) -> Q:
    return Q(lease_until__isnull=True) | Q(lease_until__lt=now)


def delivery_attempt(*, delivery_id: int) -> str:
    """Make the next attempt of one delivery if it is due and nobody holds it. Returns an :class:`Outcome`."""
    now = timezone.now()
    lease_until = now + timedelta(seconds=conf.delivery_timeout() * 2 + LEASE_SLACK_SECONDS)
    claimed = (
        WebhookDelivery.objects.filter(
            pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now + DUE_SLACK
        )
        .filter(_lease_free(now))
        .update(lease_until=lease_until)
    )
    if not claimed:
        return Outcome.SKIPPED
    delivery = WebhookDelivery.objects.select_related("endpoint", "event__source_event", "event__client_link").get(
        pk=delivery_id
    )
    endpoint = delivery.endpoint
    if not endpoint.is_enabled:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=WebhookDelivery.Status.FAILED,
            next_attempt_at=None,
            lease_until=None,
            last_error=wording.webhook_delivery_dropped(),
            finished_at=now,
        )
        return Outcome.CANCELLED
    try:
        target = addresses.delivery_target(endpoint.url)
    except addresses.AddressRefused as exc:
        reply = transport.Reply(None, 0, error=exc.message)
    else:
        body = envelope_body(delivery.event, now=now)
        headers = signing.signature_headers(
            message_id=delivery.event.public_id, body=body, secrets_=endpoint.signing_secrets(now=now)
        )
        reply = transport.post(
            target,
            body=body.encode(),
            headers=headers,
            timeout=conf.delivery_timeout(),
            max_bytes=conf.response_max_bytes(),
        )
    return _record(delivery, reply, attempted_at=now)


def _record(delivery: WebhookDelivery, reply: transport.Reply, *, attempted_at: datetime) -> str:
    """Log the attempt and move the delivery (and maybe its endpoint) on, in one transaction."""
    schedule = conf.retry_schedule()
    number = delivery.attempts + 1
    fields: dict[str, object] = {
        "attempts": number,
        "last_attempt_at": attempted_at,
        "last_status_code": reply.status_code,
        "last_latency_ms": reply.latency_ms,
        "last_error": reply.error[:300],
        "lease_until": None,
    }
    retry_in: float | None = None
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=number,
            started_at=attempted_at,
            latency_ms=reply.latency_ms,
            status_code=reply.status_code,
            error=reply.error[:300],
            response_excerpt=reply.excerpt[:500],
        )
        endpoints = WebhookEndpoint.objects.filter(pk=delivery.endpoint_id)
        if reply.ok:
            outcome = Outcome.DELIVERED
            fields.update(status=WebhookDelivery.Status.SUCCEEDED, next_attempt_at=None, finished_at=attempted_at)
            endpoints.filter(failing_since__isnull=False).update(failing_since=None)
        else:
            if number < len(schedule):
                outcome, retry_in = Outcome.RETRY, schedule[number]
                fields["next_attempt_at"] = attempted_at + timedelta(seconds=retry_in)
            else:
                outcome = Outcome.FAILED
                fields.update(status=WebhookDelivery.Status.FAILED, next_attempt_at=None, finished_at=attempted_at)
            endpoints.filter(failing_since__isnull=True).update(failing_since=attempted_at)
            if _endpoint_disable_if_failing(delivery.endpoint_id, now=attempted_at):
                outcome, retry_in = Outcome.FAILED, None
                fields.update(status=WebhookDelivery.Status.FAILED, next_attempt_at=None, finished_at=attempted_at)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(**fields)
    logger.info(
        "Webhook delivery %s attempt %s: %s (%s, %s ms).",
        delivery.pk,
        number,
        outcome,
        reply.status_code or reply.error,
        reply.latency_ms,
    )
    if retry_in is not None and retry_in <= COUNTDOWN_MAX_SECONDS:
        from ..tasks import deliveries_publish

        deliveries_publish([delivery.pk], countdown=retry_in)
    return outcome


def _endpoint_disable_if_failing(endpoint_id: int, *, now: datetime) -> bool:
    """Disable the endpoint when its attempts have failed for the whole threshold; True when this call did.

    Its other pending deliveries are dropped (the feed keeps the events) and,
    once committed, its firm admins are emailed. A conditional UPDATE, so two
    workers failing at once disable and email once.
    """
    endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id).only("id", "url", "failing_since").first()
    if endpoint is None or endpoint.failing_since is None or endpoint.failing_since > now - conf.disable_after():
        return False
    reason = wording.webhook_endpoint_disabled(url=endpoint.url, failing_since=endpoint.failing_since)
    disabled = WebhookEndpoint.objects.filter(pk=endpoint_id, is_enabled=True).update(
        is_enabled=False, disabled_at=now, disabled_reason=reason[:500]
    )
    if not disabled:
        return False
    WebhookDelivery.objects.filter(endpoint_id=endpoint_id, status=WebhookDelivery.Status.PENDING).update(
        status=WebhookDelivery.Status.FAILED,
        next_attempt_at=None,
        last_error=wording.webhook_delivery_dropped(),
        finished_at=now,
    )
    logger.warning("Webhook endpoint %s disabled: every attempt failed since %s.", endpoint_id, endpoint.failing_since)
    transaction.on_commit(lambda: notifications.endpoint_disabled_email_send(endpoint_id=endpoint_id))
    return True


def deliveries_due(*, now: datetime | None = None, limit: int = 1000) -> list[int]:
    """Ids of pending deliveries whose next attempt is due and that nobody holds (the beat's due sweep).

    ``next_attempt_at`` on pending rows is the partial index ``delivery_due_idx``:
    the sweep's cost follows the due rows, not the log.
    """
    now = now or timezone.now()
    return list(
        WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
        .filter(_lease_free(now))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
