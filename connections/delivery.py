"""Delivery reports from the email provider: django-anymail's tracking webhooks, mounted under ``/anymail/``.

Anymail authenticates each webhook POST (``ANYMAIL["WEBHOOK_SECRET"]``, HTTP
basic auth; the URLs are mounted only when a secret is set) and normalises
every ESP's payload into one ``tracking`` signal. This receiver marks the
reconnect request whose email the event names; other messages are ignored.
"""

from __future__ import annotations

import logging
from typing import Any

from anymail.signals import AnymailTrackingEvent, tracking
from django.dispatch import receiver

from .services import reconnect_request_delivery_record

logger = logging.getLogger("connections.delivery")


@receiver(tracking, dispatch_uid="connections.delivery.tracking")
def delivery_reported(sender: Any, event: AnymailTrackingEvent, esp_name: str, **kwargs: Any) -> None:
    matched = reconnect_request_delivery_record(
        message_id=str(event.message_id or ""), event_type=str(event.event_type or ""), at=event.timestamp
    )
    if matched:
        logger.info("Delivery report from %s: %s for a reconnect request email.", esp_name, event.event_type)
