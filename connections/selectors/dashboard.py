"""Reads for the dashboard and the household table: status counts, what needs attention, roll-ups."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
    Window,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from .. import lifecycle
from ..lifecycle import rules
from ..models import (
    Client,
    Connection,
    ConnectionProblem,
    Household,
    ProviderApp,
    Status,
)
from .prebuilt import STAND_IN_MOMENT, PrebuiltStatement, prebuilt_statement, stand_in_user
from .scoping import (
    LIVE_STATUSES,
    NO_SECRETS,
    STATUS_SEVERITY,
    User,
    connection_queryset_for,
    household_queryset_for,
    membership_for,
)

# --- Dashboard --------------------------------------------------------------------


def connection_status_counts(*, user: User) -> dict[str, int]:
    """Number of connections per status (every status present, zero when none). One query.

    ``COUNT(*)`` over (household, status) only, so PostgreSQL answers from the
    ``connection_household_status`` index without visiting the rows. Read from
    the user's households joined to their connections rather than as connections
    ``IN`` those households: a household appears once in the scope (see
    :func:`household_queryset_for`), so the join needs no de-duplication first.
    A household without connections gives one row of no status, left out.
    """
    counts = {status: 0 for status in Status.values}
    membership = membership_for(user=user)
    if membership is None:
        return counts

    def build() -> QuerySet[Any]:
        marker = stand_in_user(is_firm_admin=membership.is_firm_admin)
        return household_queryset_for(user=marker).order_by().values_list("connections__status").annotate(n=Count("*"))

    # Built once per process (:class:`PrebuiltStatement`).
    statement = prebuilt_statement(("status_counts", membership.is_firm_admin), build)
    for status, n in statement.rows(now=timezone.now(), user=membership.user_id, firm=membership.firm_id):
        if status is not None:
            counts[status] = n
    return counts


def deadline_is_near(*, deadline: dt.datetime, basis: dt.datetime, now: dt.datetime, rolls: bool = False) -> bool:
    """:func:`lifecycle.rules.deadline_is_near` with the current settings."""
    return rules.deadline_is_near(deadline=deadline, basis=basis, now=now, tunables=lifecycle.tunables(), rolls=rolls)


# Every connection that can need attention matches this; it is the condition of
# the partial index ``connection_attention_idx``, repeated in the query so the
# planner may use the index (it reads a few rows, not every connection).
ATTENTION_CANDIDATES = Q(status__in=[Status.NEEDS_RECONNECT, Status.DEGRADED]) | Q(reconnect_by__isnull=False)


def needs_attention_queryset(
    *, user: User, now: dt.datetime | None = None, quiet: bool = False
) -> QuerySet[Connection]:
    """Connections that need a person, most urgent first.

    Muted connections and snoozed ones (an open ``ConnectionProblem`` snoozed
    until later) are left out; ``quiet=True`` lists those instead: the
    snoozed that would need attention, and every live muted connection,
    healthy or not (a mute is set on the connection, not on a problem).

    Included: ``needs_reconnect`` (broken now), a ``reconnect_by`` deadline that
    is near (:func:`deadline_is_near`: breaks soon unless someone acts), and
    ``degraded`` for more than an hour (the provider is not recovering by
    itself). Ordered by that rank, then by the earliest moment within it
    (oldest good data, nearest deadline, longest degraded). Each row carries
    ``attention_total``: how many connections qualify in all, whatever slice
    of the queryset is fetched (a window count, so no second query).
    """
    now = now or timezone.now()
    tunables = lifecycle.tunables()
    muted = Q(muted_at__isnull=False) & ~Q(status=Status.DISCONNECTED)
    connections, near = lifecycle.deadline_is_near_q(
        connection_queryset_for(user=user).filter(ATTENTION_CANDIDATES | muted if quiet else ATTENTION_CANDIDATES),
        now=now,
        tunables=tunables,
    )
    deadline_near = near & Q(status__in=[Status.PENDING, Status.ACTIVE, Status.DEGRADED])
    degraded_for = dt.timedelta(seconds=tunables.degraded_attention_seconds)
    attention = (
        Q(status=Status.NEEDS_RECONNECT)
        | deadline_near
        | Q(status=Status.DEGRADED, degraded_since__lte=now - degraded_for)
    )
    snoozed = Exists(
        ConnectionProblem.objects.filter(snoozed_until__gt=now, connection=OuterRef("pk"), closed_at__isnull=True)
    )
    shown = (muted | (attention & Q(snoozed))) if quiet else (attention & Q(muted_at__isnull=True) & ~Q(snoozed))
    return (
        connections.filter(shown)
        .annotate(
            urgency=Case(
                When(status=Status.NEEDS_RECONNECT, then=Value(0)),
                When(deadline_near, then=Value(1)),
                default=Value(2),
                output_field=IntegerField(),
            ),
            urgent_at=Case(
                When(status=Status.NEEDS_RECONNECT, then=F("last_success_at")),
                When(deadline_near, then=F("reconnect_by")),
                default=F("degraded_since"),
            ),
            attention_total=Window(Count("id")),
        )
        .select_related("household", "client", "provider_app")
        .defer(*NO_SECRETS)
        .order_by("urgency", F("urgent_at").asc(nulls_first=True), "id")
    )


def connections_by_status(*, user: User, status: str = "") -> QuerySet[Connection]:
    """The user's connections of ``status`` (all when empty), oldest data first: what the count cards count."""
    connections = connection_queryset_for(user=user)
    if status:
        connections = connections.filter(status=status)
    return (
        connections.select_related("household", "client", "provider_app")
        .defer(*NO_SECRETS)
        .order_by(F("last_success_at").asc(nulls_first=True), "id")
    )


# What a row of the attention table shows (``_attention_table.html``): the rest of each row is not read.
ATTENTION_ROW_FIELDS = (
    "id",
    "household_id",
    "client_id",
    "provider_app_id",
    "provider",
    "platform",
    "status",
    "reason",
    "last_success_at",
    "reconnect_by",
    "degraded_since",
    "household__id",
    "household__name",
    "client__id",
    "client__name",
    "provider_app__id",
    "provider_app__provider",
)


def needs_attention_list(*, user: User, now: dt.datetime | None = None, limit: int = 50) -> list[Connection]:
    """The ``limit`` most urgent of :func:`needs_attention_queryset`, with what the table shows. One query.

    Only :data:`ATTENTION_ROW_FIELDS` are read (a tenth of the columns: the
    timestamps the page never shows cost as much to load as the query to run),
    by SQL built once per process (:class:`_AttentionStatement`): the same rows
    as ``needs_attention_queryset(...).only(*ATTENTION_ROW_FIELDS)[:limit]``.
    """
    now = now or timezone.now()
    membership = membership_for(user=user)
    if membership is None:
        return []
    statement = _attention_statement(is_firm_admin=membership.is_firm_admin, limit=limit)
    rows: list[Connection] = statement.rows(now=now, user=membership.user_id, firm=membership.firm_id)
    for row in rows:
        for alias, (relation, field, _) in _ATTENTION_RELATED.items():
            related_id = getattr(row, f"{relation}_id")
            if related_id is not None:
                model = Connection._meta.get_field(relation).related_model
                # As select_related would have left it: the one field read, the rest deferred.
                setattr(row, relation, model.from_db(statement.db, ["id", field], [related_id, getattr(row, alias)]))  # type: ignore[union-attr]
    return rows


# The related names a row shows, read by subqueries PostgreSQL runs for the ten rows kept only (joins
# to three more tables made planning the statement cost as much as running it).
_ATTENTION_RELATED: dict[str, tuple[str, str, QuerySet[Any]]] = {
    "row_household_name": ("household", "name", Household.objects.filter(pk=OuterRef("household_id")).values("name")),
    "row_client_name": ("client", "name", Client.objects.filter(pk=OuterRef("client_id")).values("name")),
    "row_provider_app_provider": (
        "provider_app",
        "provider",
        ProviderApp.objects.filter(pk=OuterRef("provider_app_id")).values("provider"),
    ),
}


def _attention_statement(*, is_firm_admin: bool, limit: int) -> PrebuiltStatement:
    # The tunables shape the statement (its offsets), and tests and deployments may change them.
    def build() -> QuerySet[Connection]:
        marker = stand_in_user(is_firm_admin=is_firm_admin)
        return (
            needs_attention_queryset(user=marker, now=STAND_IN_MOMENT)
            .select_related(None)
            .only(*(name for name in ATTENTION_ROW_FIELDS if "__" not in name))
            .annotate(**{alias: Subquery(read[:1]) for alias, (_, _, read) in _ATTENTION_RELATED.items()})[:limit]
        )

    return prebuilt_statement(("attention", is_firm_admin, limit, lifecycle.tunables()), build)


def _severity_case() -> Case:
    return Case(
        *(When(status=status, then=Value(rank)) for status, rank in STATUS_SEVERITY.items()),
        output_field=IntegerField(),
    )


def households_with_rollups(households: QuerySet[Household]) -> QuerySet[Household]:
    """``households`` annotated with ``worst_severity``, ``data_as_of`` and ``connection_count``.

    See :func:`household_table` for what each means; a page of them costs one
    query whatever the number of connections (:func:`_household_rollups`).
    """
    return households.annotate(**_household_rollups())


def _household_rollups() -> dict[str, Any]:
    """Per-household roll-ups as correlated subqueries, each on ``connection_household_status``.

    Subqueries rather than a join + GROUP BY: PostgreSQL evaluates a select
    list's subqueries after ORDER BY ... LIMIT, so a page of 25 households
    costs 25 small index scans whatever the adviser's number of households,
    and the paginator's COUNT leaves them out altogether.
    """
    of_household = Connection.objects.filter(household=OuterRef("pk")).order_by().values("household")
    shown = of_household.exclude(status=Status.DISCONNECTED)
    return {
        "worst_severity": Subquery(shown.annotate(worst=Max(_severity_case())).values("worst")),
        "data_as_of": Subquery(
            of_household.filter(status__in=LIVE_STATUSES).annotate(oldest=Min("last_success_at")).values("oldest")
        ),
        "connection_count": Coalesce(Subquery(shown.annotate(n=Count("*")).values("n")), Value(0)),
    }


HOUSEHOLD_TABLE_ORDER = ("name", "id")


def household_table_first_page(*, user: User, per_page: int) -> list[Household]:
    """The first ``per_page`` of ``household_table(user=user).order_by(*HOUSEHOLD_TABLE_ORDER)``, each with
    its ``client_list``: the dashboard as it opens, by SQL built once per process (:class:`PrebuiltStatement`).

    The clients are read for the page's own households, by their ids: those rows came from the scoped
    statement, and a prefetch would build 25 related managers on every request. (Picking the page again
    in the clients' statement cost as much as the page itself: the adviser's households sorted by name
    once more.)
    """
    membership = membership_for(user=user)
    if membership is None:
        return []
    is_firm_admin = membership.is_firm_admin

    def build() -> QuerySet[Household]:
        marker = stand_in_user(is_firm_admin=is_firm_admin)
        return household_table(user=marker).order_by(*HOUSEHOLD_TABLE_ORDER)[:per_page]

    rows: list[Household] = prebuilt_statement(("household_table", is_firm_admin, per_page), build).rows(
        now=timezone.now(), user=membership.user_id, firm=membership.firm_id
    )
    clients: dict[int, list[Client]] = {row.pk: [] for row in rows}
    if clients:
        listed = Client.objects.filter(household_id__in=clients).order_by("household_id", "name", "id")
        for household_id, client_id, name in listed.values_list("household_id", "id", "name"):
            clients[household_id].append(Client(id=client_id, name=name, household_id=household_id))
    for row in rows:
        row.client_list = clients[row.pk]  # type: ignore[attr-defined]
    return rows


def household_table_page(
    *, user: User, search: str = "", status: str = "", page_number: str | None = None, per_page: int
) -> Page:
    """One page of :func:`household_table` in ``HOUSEHOLD_TABLE_ORDER``, as the dashboard shows it.

    The dashboard as it opens (no search, no filter, the first page) reads its
    rows by :func:`household_table_first_page` and counts the user's households
    without the roll-ups (they neither add households nor leave any out); any
    other page is the paginator's over the whole queryset.
    """
    if not search and not status and page_number in (None, "1"):
        paginator = Paginator(household_queryset_for(user=user).order_by(*HOUSEHOLD_TABLE_ORDER), per_page)
        return Page(household_table_first_page(user=user, per_page=per_page), 1, paginator)
    table = household_table(user=user, search=search, status=status).order_by(*HOUSEHOLD_TABLE_ORDER)
    return Paginator(table, per_page).get_page(page_number)


def _clients_prefetch() -> Prefetch:
    """Each household's clients as ``client_list``, in their own order (by name)."""
    return Prefetch("clients", queryset=Client.objects.only("id", "name", "household_id"), to_attr="client_list")


def household_table(*, user: User, search: str = "", status: str = "") -> QuerySet[Household]:
    """Households for the dashboard table, annotated so a page costs a fixed number of queries.

    Annotations: ``worst_severity`` (roll-up health: the worst status of its
    non-disconnected connections, ``None`` without any), ``data_as_of`` (the
    oldest ``last_success_at`` among its live connections), ``connection_count``.
    ``search`` matches household name, reference or a client's name; ``status``
    filters on the roll-up status.
    """
    households = household_queryset_for(user=user)
    search = search.strip()
    if search:
        client_match = Client.objects.filter(household=OuterRef("pk"), name__icontains=search)
        households = households.filter(
            Q(name__icontains=search) | Q(reference__icontains=search) | Q(Exists(client_match))
        )
    households = households_with_rollups(households)
    # Filtered through Q: the roll-up is an annotation the type checker cannot see on the model.
    if status in STATUS_SEVERITY and status != Status.DISCONNECTED:
        households = households.filter(Q(worst_severity=STATUS_SEVERITY[status]))
    elif status == "none":
        households = households.filter(Q(worst_severity__isnull=True))
    return households.prefetch_related(_clients_prefetch())
