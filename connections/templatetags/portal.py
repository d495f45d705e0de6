"""Template helpers of the adviser web UI: statuses, deadlines in words, amounts, the health strip.

Presentation only: no queries beyond what the objects passed in already hold.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from connections import selectors, wording
from connections.forms import provider_client_class
from connections.models import ClientLink, Connection, ProviderApp, Status

register = template.Library()

STATUS_LABELS: dict[str, str] = {**dict(Status.choices), "": "No data", "none": "No connections"}
STATUS_HINTS: dict[str, str] = {
    Status.ACTIVE: "working",
    Status.DEGRADED: "retrying",
    Status.NEEDS_RECONNECT: "action needed",
    Status.PENDING: "not finished",
    Status.DISCONNECTED: "removed",
}


@register.filter
def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status)


@register.simple_tag
def status_badge(status: str | None, *, small: bool = False) -> SafeString:
    """A status pill. Built in Python rather than an inclusion template: lists draw one per row."""
    key = status or "none"
    return format_html(
        '<span class="badge badge--{}{}"><span class="badge__dot" aria-hidden="true"></span>{}</span>',
        key,
        " badge--small" if small else "",
        STATUS_LABELS.get(key, key),
    )


@register.filter
def get_item(mapping: dict[str, Any], key: str) -> Any:
    return mapping.get(key)


@register.filter
def duration_words(span: dt.timedelta | float | None) -> str:
    """A span in words ("about 15 minutes"), never a clock reading like "0:15:00"."""
    if span is None:
        return ""
    seconds = span.total_seconds() if isinstance(span, dt.timedelta) else float(span)
    return wording.duration(seconds)


@register.filter
def rollup_status(severity: int | None) -> str:
    """A household's roll-up status from its annotated worst severity ("none" without connections)."""
    if severity is None:
        return "none"
    return selectors.SEVERITY_STATUS.get(severity, "none")


@register.filter
def provider_flow(app: ProviderApp) -> str:
    """ "redirect", "form", or "" when the provider is not available."""
    cls = provider_client_class(app)
    return cls.flow if cls is not None else ""


def _now(now: dt.datetime | None) -> dt.datetime:
    return now or timezone.now()


@register.simple_tag
def relative(when: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """ "in 12 minutes", "3 hours ago", "just now"."""
    return wording.relative(when, _now(now))


@register.simple_tag
def clock(when: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """A wall-clock time: "14:30" today, "tomorrow 14:30", "yesterday 09:10", else "14 Mar 2025, 14:30"."""
    return wording.clock(when, _now(now))


@register.simple_tag
def connection_deadlines(connection: Connection, now: dt.datetime | None = None) -> list[selectors.Deadline]:
    return selectors.connection_deadlines(connection=connection, now=now)


@register.simple_tag
def deadline_words(deadline: selectors.Deadline, connection: Connection, now: dt.datetime | None = None) -> str:
    """One deadline in plain words (see ``wording.deadline_words``)."""
    return wording.deadline_words(
        kind=deadline.kind,
        at=deadline.at,
        now=_now(now),
        status=connection.status,
        past=deadline.past,
        urgent=deadline.urgent,
        span=deadline.span,
        rolls=deadline.rolls,
    )


@register.filter
def deadline_label(deadline: selectors.Deadline) -> str:
    return wording.deadline_label(deadline.kind)


@register.filter
def amount(value: Decimal | str | None, currency: str = "") -> str:
    """A balance with its currency's sensible precision (``wording.amount``)."""
    return wording.amount(value, currency)


@register.filter
def pending_lapsed(connection: Connection) -> bool:
    """A pending connection whose authorization ran out (abandoned, or no request still open)."""
    if connection.status != Status.PENDING:
        return False
    return connection.reason == "authorization_abandoned" or getattr(connection, "authorization_open", True) is False


@register.simple_tag
def connection_message(connection: Connection) -> str:
    """The status message, with a pending connection past its window said as lapsed."""
    reason = "authorization_abandoned" if pending_lapsed(connection) else connection.reason
    return wording.status_message(
        provider=connection.provider, platform=connection.platform, status=connection.status, reason=reason
    )


@register.simple_tag(takes_context=True)
def actor(context: Any, event: Any) -> str:
    """Who did it, in plain words, "you" for the person reading."""
    request = context.get("request")
    viewer = getattr(request, "user", None)
    return wording.actor_words(actor=event.actor, actor_label=event.actor_label, viewer=viewer)


@register.simple_tag
def link_status(link: ClientLink, now: dt.datetime | None = None) -> str:
    return selectors.client_link_effective_status(link=link, now=now)


# Geometry of the 30-day strip (SVG user units).
CELL_WIDTH = 16
CELL_GAP = 3
CELL_HEIGHT = 28


@register.inclusion_tag("connections/_health_strip.html")
def health_strip(days: list[selectors.HealthDay], title_id: str = "health-strip") -> dict[str, Any]:
    """The health strip as inline SVG: one cell per day, coloured by that day's worst status."""
    cells = [
        {
            "x": i * (CELL_WIDTH + CELL_GAP),
            "status": day.status or "nodata",
            "label": f"{day.day.day} {day.day:%b}: {STATUS_LABELS.get(day.status, day.status)}",
        }
        for i, day in enumerate(days)
    ]
    counts: dict[str, int] = {}
    for day in days:
        counts[day.status] = counts.get(day.status, 0) + 1
    summary = ", ".join(
        f"{n} day{'s' if n != 1 else ''} {STATUS_LABELS.get(status, status).lower()}"
        for status, n in sorted(counts.items(), key=lambda kv: -selectors.STATUS_SEVERITY.get(kv[0], -1))
    )
    width = len(days) * (CELL_WIDTH + CELL_GAP) - CELL_GAP if days else 0
    first = days[0].day if days else None
    last = days[-1].day if days else None
    return {
        "cells": cells,
        "width": width,
        "height": CELL_HEIGHT,
        "cell_width": CELL_WIDTH,
        "title_id": title_id,
        "summary": summary,
        "first": first,
        "last": last,
        "day_count": len(days),
        "legend": [
            (s, STATUS_LABELS[s])
            for s in (Status.ACTIVE, Status.DEGRADED, Status.NEEDS_RECONNECT, Status.PENDING, Status.DISCONNECTED)
        ],
    }


@register.filter
def platform_name(platform: str) -> str:
    return wording.platform_name(platform)


@register.simple_tag
def source_words(platform: str, provider_app: ProviderApp) -> str:
    """ "Coinbase via Turnqey", or just "Coinify" where platform and provider are one."""
    return wording.source_name(provider=provider_app.provider, platform=platform)
