"""Read operations: households, clients, connections (their events and accounts), and the event feed.

Every list is ``{"items": [...], "next_cursor": ...}``, keyset-paged in a
stable order (connections and clients by household, then id; households and
the feed by id; a connection's history newest first), and costs the same few
queries whatever the page. Every object is looked up inside the key's firm, so
another firm's id is a 404 exactly like one that does not exist.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import BooleanField, F, Func, Q, QuerySet, Value
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from ninja import Field, Router, Schema
from ninja.params import P, QueryEx

from connections import wording
from connections.models import Connection, Provider, Status

from .. import schemas as s
from .. import selectors
from ..models import EventType
from .auth import firm_of
from .pagination import DEFAULT_LIMIT, MAX_LIMIT, cursor_decode, cursor_encode
from .problems import ApiProblem, FieldProblem, Problem

router = Router()

READ_ERRORS: dict[int, type[Problem]] = {400: Problem, 401: Problem, 422: Problem, 429: Problem, 500: Problem}
ONE_ERRORS: dict[int, type[Problem]] = {401: Problem, 404: Problem, 422: Problem, 429: Problem, 500: Problem}

Cursor = QueryEx[
    str | None,
    P(
        description="The next_cursor of the previous page, exactly as received (opaque: build none); "
        "leave out for the first page."
    ),
]
Limit = QueryEx[int, P(ge=1, le=MAX_LIMIT, description=f"Items per page (at most {MAX_LIMIT}).")]


class HouseholdPage(Schema):
    items: list[s.HouseholdOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")


class ClientPage(Schema):
    items: list[s.ClientOut]
    next_cursor: str | None


class ConnectionPage(Schema):
    items: list[s.ConnectionOut]
    next_cursor: str | None
    next_changed_since: datetime = Field(
        description="Pass as changed_since in the next incremental sync: the moment this listing began, "
        "less a margin for changes still being committed."
    )


class EventPage(Schema):
    items: list[s.EventOut]
    next_cursor: str | None


class AccountList(Schema):
    items: list[s.AccountOut]


class FeedPage(Schema):
    items: list[s.EventEnvelope]
    next_after: str | None = Field(
        description="The id of the last event on this page: pass it as after to read on. Null when there are none."
    )


# Changes written this close to the start of a listing may still be committing.
SYNC_MARGIN_SECONDS = 120


def _page(
    queryset: QuerySet, cursor: str | None, limit: int, *, keys: tuple[str, ...] = ("id",), descending: bool = False
) -> tuple[list, str | None]:
    """One keyset page of ``queryset`` (ordered by ``keys``, the last of them unique) and the next page's cursor."""
    rows, more = _rows(queryset, cursor, limit, keys=keys, descending=descending)
    return rows, (cursor_encode(**{key: getattr(rows[-1], key) for key in keys}) if more else None)


def _rows(
    queryset: QuerySet, cursor: str | None, limit: int, *, keys: tuple[str, ...], descending: bool = False
) -> tuple[list, bool]:
    """The rows of one keyset page of ``queryset``, and whether more follow."""
    after = cursor_decode(cursor, keys=keys)
    if after is not None:
        queryset = queryset.filter(_after(keys, after, descending=descending))
    rows = list(queryset[: limit + 1])
    return rows[:limit], len(rows) > limit


def _after(keys: tuple[str, ...], values: dict[str, Any], *, descending: bool) -> Q | Func:
    """Rows after ``values`` in ``keys`` order.

    For two keys or more, the row comparison ``(a, b) > (x, y)`` rather than
    ``a > x OR (a = x AND b > y)``: PostgreSQL bounds an index scan by the
    leading column (``a >= x``) where the OR form filters every row before the
    position (a connections page from the middle of a firm: 9.4 ms against
    7.1 ms, ``make bench``, "api"). SQLite reads row values too.
    """
    if len(keys) == 1:
        return Q(**{f"{keys[0]}__{'lt' if descending else 'gt'}": values[keys[0]]})
    row = Func(*(F(key) for key in keys), template="(%(expressions)s)")
    position = Func(*(Value(values[key]) for key in keys), template="(%(expressions)s)")
    operator = " < " if descending else " > "
    return Func(row, position, template="%(expressions)s", arg_joiner=operator, output_field=BooleanField())


# --- Households and clients ---------------------------------------------------------------------


@router.get("/households", response={200: HouseholdPage, **READ_ERRORS}, tags=["Households"])
def list_households(request: HttpRequest, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT) -> HouseholdPage:
    """The firm's households with their roll-up health and the oldest 'data as of' of their connections."""
    rows, next_cursor = _page(selectors.households_for_api(firm_id=firm_of(request)), cursor, limit)
    return HouseholdPage(items=[s.household_out(h) for h in rows], next_cursor=next_cursor)


@router.get("/households/{household_id}", response={200: s.HouseholdOut, **ONE_ERRORS}, tags=["Households"])
def get_household(request: HttpRequest, household_id: int) -> s.HouseholdOut:
    return s.household_out(get_object_or_404(selectors.households_for_api(firm_id=firm_of(request)), pk=household_id))


@router.get("/clients", response={200: ClientPage, **READ_ERRORS}, tags=["Clients"])
def list_clients(
    request: HttpRequest,
    household: QueryEx[int | None, P(description="Only this household's clients.")] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> ClientPage:
    clients = selectors.clients_for_api(firm_id=firm_of(request), household_id=household)
    rows, next_cursor = _page(clients, cursor, limit, keys=selectors.BY_HOUSEHOLD)
    return ClientPage(items=[s.client_out(c) for c in rows], next_cursor=next_cursor)


@router.get("/clients/{client_id}", response={200: s.ClientOut, **ONE_ERRORS}, tags=["Clients"])
def get_client(request: HttpRequest, client_id: int) -> s.ClientOut:
    return s.client_out(get_object_or_404(selectors.clients_for_api(firm_id=firm_of(request)), pk=client_id))


# --- Connections ----------------------------------------------------------------------------------


def connection_in_firm(request: HttpRequest, connection_id: int) -> Connection:
    """The connection with this id among the key's firm's, or a 404."""
    return get_object_or_404(selectors.connections_for_api(firm_id=firm_of(request)), pk=connection_id)


@router.get("/connections", response={200: ConnectionPage, **READ_ERRORS}, tags=["Connections"])
def list_connections(
    request: HttpRequest,
    status: QueryEx[Status | None, P(description="Only connections with this status.")] = None,
    household: QueryEx[int | None, P(description="Only this household's connections.")] = None,
    provider: QueryEx[Provider | None, P(description="Only connections through this provider.")] = None,
    changed_since: QueryEx[
        datetime | None,
        P(description="Only connections whose status, deadlines or history changed since then (ISO 8601)."),
    ] = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> HttpResponse:
    """The firm's connections: status, reason and plain message, deadlines, data-as-of, provider and platform.

    For an incremental sync, read every page with ``changed_since`` and keep
    the ``next_changed_since`` of the first page for the next run.
    """
    now = timezone.now()
    # The listing's start travels in the cursor, so every page names the same next_changed_since.
    position = cursor_decode(cursor) or {}
    try:
        started = datetime.fromisoformat(position["since"]) if "since" in position else now
    except (TypeError, ValueError):
        message = wording.api_invalid_cursor(name="cursor")
        raise ApiProblem(
            400, "invalid_cursor", message, errors=[FieldProblem(field="query.cursor", message=message)]
        ) from None
    connections = selectors.connection_rows_for_api(
        firm_id=firm_of(request),
        status=status,
        household_id=household,
        provider=provider,
        changed_since=changed_since,
    )
    rows, more = _rows(connections, cursor, limit, keys=selectors.BY_HOUSEHOLD)
    next_cursor = None
    if more:
        last = rows[-1]
        next_cursor = cursor_encode(household_id=last["household_id"], id=last["id"], since=started.isoformat())
    credentials = selectors.connection_credentials_for_api(connection_ids=[row["id"] for row in rows])
    # The items as plain dicts, already in the JSON's types (see schemas.connection_items): a
    # ConnectionPage of a hundred models cost more than the page's queries. The body is the one
    # ConnectionPage would have had, and goes out through the API's own response (its ETag).
    page = {
        "items": s.connection_items(rows, credentials=credentials, now=now),
        "next_cursor": next_cursor,
        "next_changed_since": s.json_time(started - timedelta(seconds=SYNC_MARGIN_SECONDS)),
    }
    return _reply(request, page)


def _reply(request: HttpRequest, body: dict[str, Any]) -> HttpResponse:
    """A 200 of ``body`` (JSON-ready, already in its schema's shape) as the API sends any reply: ETag and all."""
    from .app import api  # the app imports this module

    return api.create_response(request, body, status=200)


@router.get("/connections/{connection_id}", response={200: s.ConnectionOut, **ONE_ERRORS}, tags=["Connections"])
def get_connection(request: HttpRequest, connection_id: int) -> s.ConnectionOut:
    return s.connection_out(connection_in_firm(request, connection_id), now=timezone.now())


@router.get(
    "/connections/{connection_id}/events", response={200: EventPage, **READ_ERRORS, 404: Problem}, tags=["Connections"]
)
def list_connection_events(
    request: HttpRequest, connection_id: int, cursor: Cursor = None, limit: Limit = DEFAULT_LIMIT
) -> EventPage:
    """The connection's history, newest first."""
    connection = connection_in_firm(request, connection_id)
    events = selectors.connection_events_for_api(connection=connection)
    rows, next_cursor = _page(events, cursor, limit, descending=True)
    return EventPage(items=[s.event_out(e) for e in rows], next_cursor=next_cursor)


@router.get("/connections/{connection_id}/accounts", response={200: AccountList, **ONE_ERRORS}, tags=["Connections"])
def list_connection_accounts(request: HttpRequest, connection_id: int) -> AccountList:
    """The accounts and balances the connection last read."""
    connection = connection_in_firm(request, connection_id)
    return AccountList(items=[s.account_out(a) for a in selectors.connection_accounts_for_api(connection=connection)])


# --- The event feed -----------------------------------------------------------------------------


@router.get("/events", response={200: FeedPage, **READ_ERRORS}, tags=["Events"])
def list_events(
    request: HttpRequest,
    after: QueryEx[
        str | None, P(description="The id of the last event you processed; leave out to start at the oldest kept.")
    ] = None,
    type: QueryEx[list[EventType] | None, P(description="Only these types (repeat the parameter).")] = None,
    limit: Limit = DEFAULT_LIMIT,
) -> FeedPage:
    """Every event the firm's webhooks carry, in the order they were made: catch up after downtime.

    The same envelopes as the webhooks (``type``, ``id``, ``timestamp``,
    ``data``), each with the connection as it is now. Kept for
    ``WEBHOOK_RETENTION_DAYS`` (30 by default).
    """
    firm_id = firm_of(request)
    feed = selectors.feed_for_api(firm_id=firm_id)
    if after:
        position = feed.filter(public_id=after).values_list("pk", flat=True).first()
        if position is None:
            message = wording.api_unknown_event(event_id=after[:60])
            raise ApiProblem(400, "unknown_event", message, errors=[FieldProblem(field="query.after", message=message)])
        feed = feed.filter(pk__gt=position)
    if type:
        feed = feed.filter(type__in=type)
    events = list(feed[:limit])
    now = timezone.now()
    connections = {
        c.pk: c for c in selectors.connections_for_api(firm_id=firm_id).filter(pk__in={e.connection_id for e in events})
    }
    return FeedPage(
        items=[s.envelope_out(e, connection=connections[e.connection_id], now=now) for e in events],
        next_after=events[-1].public_id if events else after,
    )
