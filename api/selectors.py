"""Reads for the API and the webhooks, scoped to one firm through ``connections.selectors``.

A key acts for its firm: everything starts from
:func:`connections.selectors.firm_household_queryset`, so another firm's
object is simply not in the queryset (a 404). Lists have a stable order and
are paged by keyset (the rows after the cursor's): stable while rows are
added, and each page costs the same few queries however far in it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import connection as db_connection
from django.db.models import OuterRef, Prefetch, Q, QuerySet, Subquery

from connections import selectors
from connections.models import (
    Account,
    Client,
    Connection,
    ConnectionEvent,
    Credential,
    Household,
    ReconnectRequest,
    ReconnectRequestItem,
)

from .models import WebhookEvent

# The order of the firm's connections and clients. By household first: the query then
# starts from the firm's households (its own index) and reads each one's rows from
# `connection_household_status`, stopping after a page, however the firm's rows
# are spread through the table. Ordered by id alone, PostgreSQL walks the primary
# key and filters by firm, which reads most of the table when a firm's rows are
# few or far along it (`make bench`, "api": the first page's query took 149 ms
# that way, 14 ms this way, and the whole first page 269 ms against 60 ms).
BY_HOUSEHOLD = ("household_id", "id")


def households_for_api(*, firm_id: int) -> QuerySet[Household]:
    """The firm's households with their roll-ups (health, oldest data-as-of, count), by id."""
    return selectors.households_with_rollups(selectors.firm_household_queryset(firm_id=firm_id)).order_by("id")


def clients_for_api(*, firm_id: int, household_id: int | None = None) -> QuerySet[Client]:
    clients = Client.objects.filter(household__in=selectors.firm_household_queryset(firm_id=firm_id))
    if household_id is not None:
        clients = clients.filter(household_id=household_id)
    return clients.order_by(*BY_HOUSEHOLD)


# What api.schemas.connection_out reads; deferring the rest spares converting it on every row.
CONNECTION_FIELDS = (
    "id",
    "household_id",
    "client_id",
    "provider_app_id",
    "provider",
    "platform",
    "label",
    "status",
    "reason",
    "last_success_at",
    "last_checked_at",
    "next_check_at",
    "reconnect_by",
    "reconnect_by_rolls",
    "connected_at",
    "disconnected_at",
    "created_at",
    "updated_at",
    "household__id",
    "household__name",
    "household__reference",
    "client__id",
    "client__name",
    "provider_app__id",
    "provider_app__environment",
)

# A list item's columns, the keys of the rows :func:`connection_rows_for_api` gives and
# :func:`api.schemas.connection_items` reads: CONNECTION_FIELDS (no secret among them) without the
# related rows' own ids (the connection's foreign keys say them), and the newest event's time.
CONNECTION_ROW = (
    *(field for field in CONNECTION_FIELDS if not field.endswith("__id") and field != "provider_app_id"),
    "last_event_at",
)


def _firm_connections(
    *,
    firm_id: int,
    status: str | None,
    household_id: int | None,
    provider: str | None,
    changed_since: datetime | None,
) -> QuerySet[Connection]:
    """The firm's connections after the filters, each with ``last_event_at``, by household then id.

    Scoped by the household the rows join anyway (``household.firm_id``, as
    :func:`connections.selectors.firm_connection_queryset` scopes): PostgreSQL
    plans the join in a third of the time of ``household_id IN (the firm's
    households)`` and reads a page as the bench's floor does (``make bench``, "api").
    """
    connections = Connection.objects.filter(household__firm_id=firm_id)
    if status is not None:
        connections = connections.filter(status=status)
    if household_id is not None:
        connections = connections.filter(household_id=household_id)
    if provider is not None:
        connections = connections.filter(provider=provider)
    if changed_since is not None:
        recent = ConnectionEvent.objects.filter(created_at__gte=changed_since).values("connection_id")
        connections = connections.filter(Q(updated_at__gte=changed_since) | Q(pk__in=recent))
    newest_event = (
        ConnectionEvent.objects.filter(connection=OuterRef("pk")).order_by("-created_at").values("created_at")[:1]
    )
    return connections.annotate(last_event_at=Subquery(newest_event)).order_by(*BY_HOUSEHOLD)


def connections_for_api(
    *,
    firm_id: int,
    status: str | None = None,
    household_id: int | None = None,
    provider: str | None = None,
    changed_since: datetime | None = None,
) -> QuerySet[Connection]:
    """The firm's connections with what :func:`api.schemas.connection_out` reads, by household then id.

    ``changed_since``: connections whose row changed (``updated_at``) or that
    have an event since then. A check writes its transition as an event and
    does not touch ``updated_at``, so the events are what says a status moved;
    the subquery reads the events index by time (only the recent ones). Each
    row carries ``last_event_at`` (one index probe per row of the page).
    """
    return (
        _firm_connections(
            firm_id=firm_id, status=status, household_id=household_id, provider=provider, changed_since=changed_since
        )
        .select_related("household", "client", "provider_app")
        # Of the related rows, only what a representation shows (never the app's secret): fewer
        # columns to convert per row of a page.
        .only(*CONNECTION_FIELDS)
        .prefetch_related(selectors.credentials_without_values())
    )


def connection_rows_for_api(
    *,
    firm_id: int,
    status: str | None = None,
    household_id: int | None = None,
    provider: str | None = None,
    changed_since: datetime | None = None,
) -> QuerySet[Connection, dict[str, Any]]:
    """:func:`connections_for_api` as plain rows (dicts of ``CONNECTION_ROW``), for a list: one query, no models.

    A page of a hundred model instances, each with its household, client,
    app and a prefetched credentials queryset, cost more than the rows' SQL
    (``make bench``, "api"); a list item needs only these columns. The
    credentials come from :func:`connection_credentials_for_api`.
    """
    return _firm_connections(
        firm_id=firm_id, status=status, household_id=household_id, provider=provider, changed_since=changed_since
    ).values(*CONNECTION_ROW)


def connection_credentials_for_api(*, connection_ids: list[int]) -> dict[int, list[tuple[str, Any, Any]]]:
    """Each connection's credentials as ``(kind, issued_at, expires_at)``: what deadlines read, never the value.

    One query (none for no ids), like the prefetch of :func:`connections_for_api`.
    On PostgreSQL the ids go as one array (``= ANY(%s)``), not a hundred
    parameters of an ``IN`` list: 1.1 ms for a page's credentials against 1.9 ms.
    """
    credentials: dict[int, list[tuple[str, Any, Any]]] = {}
    if not connection_ids:
        return credentials
    columns = ("connection_id", "kind", "issued_at", "expires_at")
    rows: Iterable[tuple[int, str, Any, Any]]
    if db_connection.vendor == "postgresql":
        with db_connection.cursor() as cursor:
            table = db_connection.ops.quote_name(Credential._meta.db_table)
            cursor.execute(
                f"SELECT {', '.join(columns)} FROM {table} WHERE connection_id = ANY(%s)",  # noqa: S608 (names only)
                [connection_ids],
            )
            rows = cursor.fetchall()
    else:
        rows = Credential.objects.filter(connection_id__in=connection_ids).values_list(*columns)
    for connection_id, kind, issued_at, expires_at in rows:
        credentials.setdefault(connection_id, []).append((kind, issued_at, expires_at))
    return credentials


def connection_for_write(*, firm_id: int, connection_id: int) -> Connection | None:
    """The whole connection row (its app without the secret), for a service to act on; None outside the firm."""
    return (
        selectors.firm_connection_queryset(firm_id=firm_id)
        .select_related("household__firm", "client", "provider_app")
        .defer(*selectors.NO_SECRETS)
        .filter(pk=connection_id)
        .first()
    )


def firm_household_queryset_for_api(*, firm_id: int) -> QuerySet[Household]:
    """The firm's households, plain (no roll-ups): for looking one up."""
    return selectors.firm_household_queryset(firm_id=firm_id)


def household_for_write(*, firm_id: int, household_id: int) -> Household | None:
    """The household (with its firm) for a service to act on; None outside the firm."""
    return selectors.firm_household_queryset(firm_id=firm_id).select_related("firm").filter(pk=household_id).first()


def reconnect_requests_for_api(*, household: Household) -> QuerySet[ReconnectRequest]:
    """The household's reconnect requests, newest first, with what the representation reads (three queries)."""
    items = ReconnectRequestItem.objects.select_related("connection").order_by("position", "id")
    return (
        ReconnectRequest.objects.filter(household=household)
        .select_related("client", "created_by")
        .prefetch_related(Prefetch("items", queryset=items))
        .order_by("-created_at", "-id")
    )


def connection_events_for_api(*, connection: Connection) -> QuerySet[ConnectionEvent]:
    """The connection's history, newest first (by id: the order rows were written)."""
    return ConnectionEvent.objects.filter(connection=connection).select_related("actor").order_by("-id")


def connection_accounts_for_api(*, connection: Connection) -> QuerySet[Account]:
    return Account.objects.filter(connection=connection).order_by("name", "id")


def feed_for_api(*, firm_id: int) -> QuerySet[WebhookEvent]:
    """The firm's event feed in the order it was made (ids commit in order; see WebhookEvent)."""
    return WebhookEvent.objects.filter(firm_id=firm_id).select_related("source_event", "client_link").order_by("id")
