"""What people do to webhook endpoints: create, change, rotate the secret, enable, disable, resend.

Keyword-only, ``<noun>_<verb>`` names; the admin and the firm admins' pages
call these. A signing secret is returned once, by the call that made it,
and is never logged, emailed or shown again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from connections.models import Firm

from .. import conf
from ..models import EventType, WebhookDelivery, WebhookEndpoint
from .addresses import webhook_url_problems
from .signing import secret_new


@dataclass(frozen=True)
class EndpointSecret:
    """An endpoint and the signing secret just made for it: shown once, never stored in the clear."""

    endpoint: WebhookEndpoint
    secret: str

    def __repr__(self) -> str:  # the secret stays out of logs and tracebacks
        return f"EndpointSecret(endpoint={self.endpoint.pk})"


def _event_types_clean(event_types: Iterable[str]) -> list[str]:
    chosen = sorted(set(event_types))
    unknown = [t for t in chosen if t not in EventType.values]
    if unknown:
        raise ValueError(f"Unknown event types: {', '.join(unknown)}.")
    if not chosen:
        raise ValueError("Choose at least one event to receive.")
    return chosen


def _url_clean(url: str) -> str:
    problems = webhook_url_problems(url)
    if problems:
        raise ValueError(problems[0])
    return url.strip()


def _actor(user: Any) -> Any:
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def endpoint_create(
    *, firm: Firm, url: str, event_types: Iterable[str], description: str = "", user: Any = None
) -> EndpointSecret:
    """A new endpoint with a new secret. Raises ``ValueError`` (plain words) for a URL or events the rules refuse."""
    secret = secret_new()
    endpoint = WebhookEndpoint.objects.create(
        firm=firm,
        url=_url_clean(url),
        description=description.strip()[:200],
        event_types=_event_types_clean(event_types),
        secret=secret,
        created_by=_actor(user),
    )
    return EndpointSecret(endpoint=endpoint, secret=secret)


def endpoint_update(*, endpoint: WebhookEndpoint, url: str, event_types: Iterable[str], description: str = "") -> None:
    """Change where and what an endpoint receives (the secret stays)."""
    endpoint.url = _url_clean(url)
    endpoint.event_types = _event_types_clean(event_types)
    endpoint.description = description.strip()[:200]
    endpoint.save(update_fields=["url", "event_types", "description", "updated_at"])


def endpoint_secret_rotate(*, endpoint: WebhookEndpoint, now: datetime | None = None) -> EndpointSecret:
    """A new secret; the current one keeps signing too until ``WEBHOOK_SECRET_OVERLAP_SECONDS`` from now.

    Rotating again within the overlap drops the oldest secret: at most two
    sign at any time.
    """
    now = now or timezone.now()
    secret = secret_new()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + conf.secret_overlap()
    endpoint.secret = secret
    endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at", "updated_at"])
    return EndpointSecret(endpoint=endpoint, secret=secret)


def _endpoint_set(endpoint: WebhookEndpoint, **values: Any) -> None:
    """Change some of the endpoint's state under its row lock, as a model save.

    A save rather than an UPDATE, so the audit trail hears of it through
    ``post_save`` (names of fields only, never the secret, which is not written).
    """
    with transaction.atomic():
        row = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        for name, value in values.items():
            setattr(row, name, value)
        row.save(update_fields=[*values, "updated_at"])
    for name in values:
        setattr(endpoint, name, getattr(row, name))
    endpoint.updated_at = row.updated_at


def endpoint_enable(*, endpoint: WebhookEndpoint) -> None:
    """Send to the endpoint again; its failure streak starts over."""
    _endpoint_set(endpoint, is_enabled=True, disabled_at=None, disabled_reason="", failing_since=None)


def endpoint_disable(*, endpoint: WebhookEndpoint, reason: str) -> None:
    """Stop sending to the endpoint (a person's choice); pending deliveries wait and are dropped when due."""
    _endpoint_set(endpoint, is_enabled=False, disabled_at=timezone.now(), disabled_reason=reason[:500])


def delivery_resend(*, delivery: WebhookDelivery, now: datetime | None = None) -> WebhookDelivery:
    """Send the delivery's event to its endpoint again, as a new delivery with a fresh retry schedule.

    The event keeps its id (the ``webhook-id`` header), so a receiver that
    already processed it can tell. Raises ``ValueError`` when the endpoint is
    disabled: enable it first.
    """
    now = now or timezone.now()
    if not WebhookEndpoint.objects.filter(pk=delivery.endpoint_id, is_enabled=True).exists():
        raise ValueError("The endpoint is disabled; enable it before resending.")
    again = WebhookDelivery.objects.create(
        event_id=delivery.event_id, endpoint_id=delivery.endpoint_id, manual=True, next_attempt_at=now, created_at=now
    )

    def publish() -> None:
        from ..tasks import deliveries_publish

        deliveries_publish([again.pk])

    transaction.on_commit(publish)
    return again
