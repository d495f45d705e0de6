"""What each CSV export contains: a header and rows, read in chunks, scoped like the pages.

Every export starts from ``selectors.household_queryset_for(user=...)`` (the
audit trail and the access review from the user's firm, for firm admins
only), so an export can never hold a row its reader could not open as a page.
Rows are tuples read with ``values_list(...).iterator()``: no model instance
is built per row, and nothing is held beyond one chunk.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User as AuthUser
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from connections import selectors, wording
from connections.models import (
    Connection,
    ConnectionEvent,
    Credential,
    Firm,
    Household,
)

from . import access, freshness
from .models import AuditEntry, FreshnessSnapshot

# Rows fetched per round trip (a server-side cursor on PostgreSQL). The chunk is
# what an export holds in memory at once, so it bounds the peak: 500 rows keep
# a 100,000-row export within the memory of a 1,000-row one (make bench, exports).
CHUNK = 500


@dataclass(frozen=True)
class Export:
    name: str  # file name without extension
    header: Sequence[str]
    rows: Iterator[Sequence[Any]]


@dataclass(frozen=True)
class _Person:
    """Enough of a user for ``wording.actor_words``, from a values row (no instance per row)."""

    pk: int
    first_name: str
    last_name: str
    username: str

    def get_full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def get_username(self) -> str:
        return self.username


def _actor_words(actor_id: int | None, first: str, last: str, username: str, label: str) -> str:
    person = _Person(actor_id, first or "", last or "", username or "") if actor_id is not None else None
    return wording.actor_words(actor=person, actor_label=label or "")


def day_range(start: dt.date | None, end: dt.date | None) -> dict[str, dt.datetime]:
    """Lookups for ``start`` to ``end`` inclusive, in the portal's time zone."""
    tz = timezone.get_current_timezone()
    bounds: dict[str, dt.datetime] = {}
    if start is not None:
        bounds["gte"] = dt.datetime.combine(start, dt.time.min, tzinfo=tz)
    if end is not None:
        bounds["lt"] = dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=tz)
    return bounds


def _in_range(field: str, start: dt.date | None, end: dt.date | None) -> dict[str, dt.datetime]:
    return {f"{field}__{op}": moment for op, moment in day_range(start, end).items()}


# --- Connections --------------------------------------------------------------------------------

CONNECTION_HEADER = (
    "Connection ID",
    "Household ID",
    "Household",
    "Household reference",
    "Client",
    "Source",
    "Provider",
    "Environment",
    "Status",
    "Reason",
    "In words",
    "Data as of",
    "Fresh",
    "Last checked",
    "Next check",
    "Access token expires",
    "Refresh token valid until",
    "Reconnect by",
    "Connected",
)


def connections_queryset(*, households: QuerySet[Household]) -> QuerySet[Connection]:
    def expiry(kind: str) -> Subquery:
        return Subquery(
            Credential.objects.filter(connection=OuterRef("pk"), kind=kind).order_by().values("expires_at")[:1]
        )

    return (
        Connection.objects.filter(household__in=households)
        .annotate(access_expires=expiry(Credential.Kind.ACCESS), refresh_expires=expiry(Credential.Kind.REFRESH))
        .order_by("household__name", "household_id", "client__name", "platform", "id")
    )


def connections_export(*, user: Any, now: dt.datetime | None = None) -> Export:
    membership = selectors.membership_for(user=user)
    households = selectors.household_queryset_for(user=user)
    cutoff = freshness.cutoff_for(firm=membership.firm, now=now) if membership is not None else timezone.now()
    # The two expiries are annotations (connections_queryset), named like fields.
    columns = [
        "pk",
        "household_id",
        "household__name",
        "household__reference",
        "client__name",
        "provider",
        "platform",
        "provider_app__environment",
        "status",
        "reason",
        "last_success_at",
        "last_checked_at",
        "next_check_at",
        "access_expires",
        "refresh_expires",
        "reconnect_by",
        "connected_at",
    ]
    rows = connections_queryset(households=households).values_list(*columns)

    def produce() -> Iterator[Sequence[Any]]:
        for (pk, hh_id, hh, ref, client, provider, platform, env, status, reason, as_of, checked, next_check,
             access_exp, refresh_exp, reconnect_by, connected) in rows.iterator(chunk_size=CHUNK):  # fmt: skip
            live = status in freshness.LIVE
            yield (
                pk,
                hh_id,
                hh,
                ref,
                client,
                wording.source_name(provider=provider, platform=platform),
                wording.provider_name(provider),
                wording.ENVIRONMENT_NAMES.get(env, env),
                wording.status_name(status),
                reason,
                wording.status_message(provider=provider, platform=platform, status=status, reason=reason),
                as_of,
                (as_of is not None and as_of >= cutoff) if live else None,
                checked,
                next_check,
                access_exp,
                refresh_exp,
                reconnect_by,
                connected,
            )

    return Export(name="connections", header=CONNECTION_HEADER, rows=produce())


# --- Events ---------------------------------------------------------------------------------------

EVENT_HEADER = (
    "Event ID",
    "When",
    "Household ID",
    "Household",
    "Client",
    "Source",
    "Event",
    "From status",
    "To status",
    "Reason",
    "What happened",
    "By",
)


def events_export(
    *, user: Any, household: Household | None = None, start: dt.date | None = None, end: dt.date | None = None
) -> Export:
    """The event history of one household (already fetched through the user's scope) or of all the user's."""
    households = selectors.household_queryset_for(user=user)
    events = ConnectionEvent.objects.filter(connection__household__in=households, **_in_range("created_at", start, end))
    if household is not None:
        events = events.filter(connection__household=household)
    kinds = dict(ConnectionEvent.Kind.choices)
    rows = events.order_by("created_at", "id").values_list(
        "pk",
        "created_at",
        "connection__household_id",
        "connection__household__name",
        "connection__client__name",
        "connection__provider",
        "connection__platform",
        "kind",
        "from_status",
        "to_status",
        "reason",
        "message",
        "actor_id",
        "actor__first_name",
        "actor__last_name",
        "actor__username",
        "actor_label",
    )

    def produce() -> Iterator[Sequence[Any]]:
        for (pk, at, hh_id, hh, client, provider, platform, kind, from_s, to_s, reason, message,
             actor_id, first, last, username, label) in rows.iterator(chunk_size=CHUNK):  # fmt: skip
            yield (
                pk,
                at,
                hh_id,
                hh,
                client,
                wording.source_name(provider=provider, platform=platform),
                kinds.get(kind, kind),
                wording.status_name(from_s) if from_s else "",
                wording.status_name(to_s) if to_s else "",
                reason,
                message,
                _actor_words(actor_id, first, last, username, label),
            )

    name = f"events-household-{household.pk}" if household is not None else "events"
    return Export(name=name, header=EVENT_HEADER, rows=produce())


# --- Client links -------------------------------------------------------------------------------

AUDIT_HEADER = ("Entry ID", "When", "Who", "Address", "Action", "Household", "Object", "Object ID", "What happened")


def audit_export(*, entries: QuerySet[AuditEntry]) -> Export:
    actions = dict(AuditEntry.Action.choices)
    rows = entries.order_by("at", "id").values_list(
        "pk", "at", "actor_name", "ip_address", "action", "household_name", "object_type", "object_id", "message"
    )

    def produce() -> Iterator[Sequence[Any]]:
        for pk, at, who, address, action, household, object_type, object_id, message in rows.iterator(chunk_size=CHUNK):
            yield (pk, at, who, address, actions.get(action, action), household, object_type, object_id, message)

    return Export(name="audit-trail", header=AUDIT_HEADER, rows=produce())


ACCESS_HEADER = (
    "User",
    "Name",
    "Email",
    "Role",
    "Active",
    "Households assigned",
    "Assigned households",
    "Last sign-in",
    "Second factor",
    "API keys",
)


def access_export(*, firm: Firm) -> Export:
    def produce() -> Iterator[Sequence[Any]]:
        for row in access.access_review(firm=firm):
            yield (
                row.username,
                row.name,
                row.email,
                row.role,
                row.is_active,
                len(row.households),
                "; ".join(row.households),
                row.last_login,
                "on" if row.mfa else "off",
                row.api_keys,
            )

    return Export(name="access-review", header=ACCESS_HEADER, rows=produce())


# --- Freshness trend ----------------------------------------------------------------------------

FRESHNESS_HEADER = (
    "Day",
    "Households",
    "Households with data",
    "Households fresh",
    "Share fresh",
    "Live connections",
    "Fresh connections",
    "Needs reconnect",
    "Degraded",
    "Pending",
    "Active",
    "Disconnected",
    "Window (hours)",
)


def freshness_export(*, snapshots: QuerySet[FreshnessSnapshot]) -> Export:
    def produce() -> Iterator[Sequence[Any]]:
        for s in snapshots.order_by("day").iterator(chunk_size=CHUNK):
            share = freshness.share(s.households_fresh, s.households_with_data)
            yield (
                s.day,
                s.households,
                s.households_with_data,
                s.households_fresh,
                round(share, 4) if share is not None else None,
                s.connections_live,
                s.connections_fresh,
                s.needs_reconnect,
                s.degraded,
                s.pending,
                s.active,
                s.disconnected,
                s.window_hours,
            )

    return Export(name="freshness", header=FRESHNESS_HEADER, rows=produce())


def firm_admin_firm(user: Any) -> Firm | None:
    """The firm a firm admin oversees; ``None`` for anyone else."""
    membership = selectors.membership_for(user=user)
    if membership is None or not membership.is_firm_admin or not isinstance(user, AuthUser):
        return None
    return membership.firm
