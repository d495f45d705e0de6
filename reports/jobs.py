"""The periodic work of firm oversight: the daily freshness snapshot and the provider-health tally.

Plain functions (``reports.tasks`` wraps them in Celery tasks and the slot lock).

Why the tally looks the way it does. A successful check writes no event (the
outbox would grow by a row per connection every 15 minutes), so checks cannot
be counted from ``ConnectionEvent`` alone. Every 5 minutes the tally counts
the connections whose ``last_success_at`` falls in the 5 minutes before its
slot (a success stamps it), and the ``check_failed`` events of the same
minutes by the error kind in their details, and adds both to that day's row.
Slots are disjoint and each runs once (the slot lock), so nothing is counted
twice. What it misses, by construction: a connection that succeeds twice
within one 5-minute slot counts once (routine checks are 15 minutes apart;
only repeated "Check now" clicks do that), and a connect that read accounts
counts as a successful check. A daily count from ``last_checked_at`` would
have counted connections checked that day, not checks: about 96 times fewer.

Breaker openings leave no event either: the same tally looks at each app's
breaker (``breaker_opened_at`` while open, and the "opened" error stamp the
breaker leaves behind after it closes) and counts the slots in which it
opened: at most one per app per 5 minutes.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from connections.models import Connection, ConnectionEvent, Firm, Household, Membership, ProviderApp

from . import freshness, receivers
from .models import BreakerDay, FreshnessSnapshot, ProviderHealthDay

logger = logging.getLogger("reports.jobs")

TALLY_SLOT_SECONDS = 300
# connections.throttling writes this into ProviderApp.last_error when the breaker opens.
BREAKER_OPENED_PREFIX = "Circuit breaker opened"
FAILURE_COLUMNS = {
    "transient": "failures_transient",
    "reauth_required": "failures_reauth",
    "app_credentials_invalid": "failures_app",
}


def _snapshot_row(
    *, firm: Firm, day: dt.date, now: dt.datetime, figures: freshness.Figures, adviser_id: int | None = None
) -> FreshnessSnapshot:
    return FreshnessSnapshot(
        firm=firm,
        adviser_id=adviser_id,
        day=day,
        taken_at=now,
        window_hours=firm.freshness_window_hours,
        households=figures.households,
        households_with_data=figures.households_with_data,
        households_fresh=figures.households_fresh,
        connections_live=figures.connections_live,
        connections_fresh=figures.connections_fresh,
        **{status: figures.by_status[status] for status in figures.by_status},
    )


def freshness_snapshot_take(*, now: dt.datetime | None = None) -> int:
    """Today's figures for every firm and each of its advisers. Returns the rows written.

    Idempotent per day: a second run the same day replaces the day's rows with
    its later reading (delete and insert in one transaction), so a firm has one
    row a day, and one per adviser.
    """
    now = now or timezone.now()
    day = timezone.localdate(now)
    written = 0
    # Per-adviser rows for the firm's own members only (an assignment cannot widen a scope).
    members = set(Membership.objects.values_list("user_id", "firm_id"))
    for firm in Firm.objects.order_by("pk"):
        households = Household.objects.filter(firm=firm)
        cutoff = freshness.cutoff_for(firm=firm, now=now)
        rows = [
            _snapshot_row(
                firm=firm, day=day, now=now, figures=freshness.figures_for(households=households, cutoff=cutoff)
            )
        ]
        for adviser_id, figures in freshness.figures_by_adviser(households=households, cutoff=cutoff).items():
            if (adviser_id, firm.pk) in members:
                rows.append(_snapshot_row(firm=firm, day=day, now=now, figures=figures, adviser_id=adviser_id))
        with transaction.atomic():
            FreshnessSnapshot.objects.filter(firm=firm, day=day).delete()
            FreshnessSnapshot.objects.bulk_create(rows)
        written += len(rows)
    return written


def _add(model: Any, keys: dict[str, Any], **amounts: int) -> None:
    # One writer per slot (the slot lock), but F() keeps a late overlapping run correct too.
    model.objects.get_or_create(**keys)
    model.objects.filter(**keys).update(**{name: F(name) + n for name, n in amounts.items()})


def provider_health_tally(*, slot_start: dt.datetime, slot_seconds: int = TALLY_SLOT_SECONDS) -> dict[str, int]:
    """Add the checks, failures and breaker openings of ``[slot_start - slot, slot_start)`` to their days."""
    start, end = slot_start - dt.timedelta(seconds=slot_seconds), slot_start
    day = timezone.localdate(start)
    tallied = {"succeeded": 0, "failed": 0, "breaker_openings": 0}
    successes = (
        Connection.objects.filter(last_success_at__gte=start, last_success_at__lt=end)
        .order_by()
        .values_list("household__firm_id", "provider_app_id")
        .annotate(n=Count("id"))
    )
    with transaction.atomic():
        for firm_id, app_id, n in successes:
            _add(ProviderHealthDay, {"firm_id": firm_id, "provider_app_id": app_id, "day": day}, checks_succeeded=n)
            tallied["succeeded"] += n
        failures = (
            ConnectionEvent.objects.filter(
                kind=ConnectionEvent.Kind.CHECK_FAILED, created_at__gte=start, created_at__lt=end
            )
            .order_by()
            .values_list("connection__household__firm_id", "connection__provider_app_id", "details__error_kind")
            .annotate(n=Count("id"))
        )
        for firm_id, app_id, kind, n in failures:
            column = FAILURE_COLUMNS.get(str(kind), "failures_other")
            _add(ProviderHealthDay, {"firm_id": firm_id, "provider_app_id": app_id, "day": day}, **{column: n})
            tallied["failed"] += n
        opened = ProviderApp.objects.filter(
            Q(breaker_state=ProviderApp.BreakerState.OPEN, breaker_opened_at__gte=start, breaker_opened_at__lt=end)
            | Q(last_error__startswith=BREAKER_OPENED_PREFIX, last_error_at__gte=start, last_error_at__lt=end)
        ).values_list("pk", flat=True)
        for app_id in opened:
            _add(BreakerDay, {"provider_app_id": app_id, "day": day}, openings=1)
            tallied["breaker_openings"] += 1
    return tallied


def oversight_tally(*, now: dt.datetime | None = None, slot_start: dt.datetime | None = None) -> dict[str, int]:
    """The 5-minute job: the provider-health tally, then the audit trail's catch-up from the outbox."""
    now = now or timezone.now()
    if slot_start is None:
        epoch = int(now.timestamp())
        slot_start = dt.datetime.fromtimestamp(epoch - epoch % TALLY_SLOT_SECONDS, tz=dt.UTC)
    tallied = provider_health_tally(slot_start=slot_start)
    tallied["audit_folded"] = receivers.events_fold_recent(now=now)
    return tallied
