"""How fresh a firm's data is: the one definition the page, the CSV and the daily snapshot share.

A connection is *live* when the adviser relies on its data (active, degraded,
needs reconnect: ``selectors.LIVE_STATUSES``) and *fresh* when it is live and
its data is at most the firm's window old (``Firm.freshness_window_hours``,
24 by default). A household is fresh when it has live connections and every
one of them is fresh; households without any live connection have no data
and count in neither share.

Every function takes a households queryset that comes from
``selectors.household_queryset_for`` (or, for the job, a whole firm), so
nothing here widens anyone's scope. Each is a fixed number of queries.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from connections import selectors, wording
from connections.models import Connection, Firm, Household, Status

LIVE = [str(s) for s in selectors.LIVE_STATUSES]
STATUSES = [Status.NEEDS_RECONNECT, Status.DEGRADED, Status.PENDING, Status.ACTIVE, Status.DISCONNECTED]
OLDEST_STALE = 10


def cutoff_for(*, firm: Firm, now: dt.datetime | None = None) -> dt.datetime:
    return (now or timezone.now()) - dt.timedelta(hours=firm.freshness_window_hours)


def _stale(cutoff: dt.datetime) -> Q:
    return Q(last_success_at__isnull=True) | Q(last_success_at__lt=cutoff)


def share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass
class Figures:
    households: int = 0
    households_with_data: int = 0
    households_fresh: int = 0
    connections_live: int = 0
    connections_fresh: int = 0
    by_status: dict[str, int] = field(default_factory=lambda: {str(s): 0 for s in STATUSES})

    @property
    def fresh_share(self) -> float | None:
        """Share of households with data whose every connection is fresh."""
        return share(self.households_fresh, self.households_with_data)

    @property
    def connections_total(self) -> int:
        return sum(self.by_status.values())

    def status_shares(self) -> list[tuple[str, str, int, float | None]]:
        """(status, words, count, share of all connections) in order of severity."""
        total = self.connections_total
        return [(s, wording.status_name(s), self.by_status[s], share(self.by_status[s], total)) for s in self.by_status]


def _household_counts(households: QuerySet[Household], cutoff: dt.datetime) -> QuerySet[Household]:
    live = Connection.objects.filter(household=OuterRef("pk"), status__in=LIVE).order_by().values("household")

    def counted(rows: QuerySet[Connection, Any]) -> Coalesce:
        return Coalesce(Subquery(rows.annotate(n=Count("*")).values("n")), Value(0), output_field=IntegerField())

    return households.order_by().annotate(live_n=counted(live), stale_n=counted(live.filter(_stale(cutoff))))


def _household_totals() -> dict[str, Count]:
    return {
        "total": Count("id"),
        "with_data": Count("id", filter=Q(live_n__gt=0)),
        "fresh": Count("id", filter=Q(live_n__gt=0, stale_n=0)),
    }


def _connection_counts(connections: QuerySet[Connection], cutoff: dt.datetime) -> dict[str, Count]:
    return {"n": Count("id"), "fresh": Count("id", filter=Q(status__in=LIVE, last_success_at__gte=cutoff))}


def figures_for(*, households: QuerySet[Household], cutoff: dt.datetime) -> Figures:
    """Today's figures over ``households``. Two queries."""
    totals = _household_counts(households, cutoff).aggregate(**_household_totals())
    figures = Figures(
        households=totals["total"], households_with_data=totals["with_data"], households_fresh=totals["fresh"]
    )
    connections = Connection.objects.filter(household__in=households)
    for status, n, fresh in (
        connections.order_by().values_list("status").annotate(**_connection_counts(connections, cutoff))
    ):
        figures.by_status[status] = n
        if status in LIVE:
            figures.connections_live += n
            figures.connections_fresh += fresh
    return figures


def figures_by_adviser(*, households: QuerySet[Household], cutoff: dt.datetime) -> dict[int, Figures]:
    """The same figures per assigned adviser (a household shared by two counts for both). Two queries."""
    result: dict[int, Figures] = {}
    rows = _household_counts(households, cutoff).values("advisers").annotate(**_household_totals())
    for row in rows:
        if row["advisers"] is None:
            continue
        result[row["advisers"]] = Figures(
            households=row["total"], households_with_data=row["with_data"], households_fresh=row["fresh"]
        )
    connections = Connection.objects.filter(household__in=households)
    for adviser_id, status, n, fresh in (
        connections.order_by()
        .values_list("household__advisers", "status")
        .annotate(**_connection_counts(connections, cutoff))
    ):
        if adviser_id is None:
            continue
        figures = result.setdefault(adviser_id, Figures())
        figures.by_status[status] = n
        if status in LIVE:
            figures.connections_live += n
            figures.connections_fresh += fresh
    return result


@dataclass
class ProviderRow:
    provider: str
    environment: str
    name: str
    by_status: dict[str, int] = field(default_factory=lambda: {str(s): 0 for s in STATUSES})
    live: int = 0
    fresh: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def fresh_share(self) -> float | None:
        return share(self.fresh, self.live)


def provider_rows(*, households: QuerySet[Household], cutoff: dt.datetime) -> list[ProviderRow]:
    """Connections per provider and environment, by status, with the share of live ones that are fresh. One query."""
    connections = Connection.objects.filter(household__in=households)
    rows: dict[tuple[str, str], ProviderRow] = {}
    for provider, environment, status, n, fresh in (
        connections.order_by()
        .values_list("provider", "provider_app__environment", "status")
        .annotate(**_connection_counts(connections, cutoff))
    ):
        row = rows.setdefault(
            (provider, environment),
            ProviderRow(
                provider=provider,
                environment=environment,
                name=wording.app_name(provider=provider, environment=environment),
            ),
        )
        row.by_status[status] = n
        if status in LIVE:
            row.live += n
            row.fresh += fresh
    return sorted(rows.values(), key=lambda r: (r.provider, r.environment))


def oldest_stale(
    *, households: QuerySet[Household], cutoff: dt.datetime, limit: int = OLDEST_STALE
) -> list[Connection]:
    """Live connections outside the window, oldest data first (one that never succeeded dates from its creation).

    One query.
    """
    return list(
        Connection.objects.filter(household__in=households, status__in=LIVE)
        .filter(_stale(cutoff))
        .select_related("household", "client", "provider_app")
        .defer(*selectors.NO_SECRETS)
        .order_by(Coalesce("last_success_at", "created_at"), "id")[:limit]
    )
