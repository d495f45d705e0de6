"""Reads for the household and connection pages: cards, links, deadlines, events, health days, connect forms."""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.db.models import (
    Exists,
    Max,
    OuterRef,
    Prefetch,
    QuerySet,
    Subquery,
)
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from .. import lifecycle
from ..models import (
    Account,
    AuthorizationRequest,
    Client,
    ClientLink,
    Connection,
    ConnectionEvent,
    ConnectionProblem,
    Credential,
    Household,
    ProviderApp,
    Status,
)
from ..providers.base import CredentialForm
from .dashboard import deadline_is_near
from .prebuilt import STAND_IN_HOUSEHOLD_ID, STAND_IN_MOMENT, prebuilt_statement, prefetched, stand_in_user
from .scoping import (
    NO_SECRETS,
    STATUS_SEVERITY,
    User,
    client_link_queryset_for,
    connection_queryset_for,
    membership_for,
)

# --- Household page ---------------------------------------------------------------


def credentials_without_values() -> Prefetch:
    """A connection's ``credentials`` prefetch for deadlines: kind and times, never the value.

    Deadlines need kind and expiry only; deferring the value means no secret is
    decrypted just to draw a page (or an API response).
    """
    return Prefetch(
        "credentials",
        queryset=Credential.objects.only("id", "connection_id", "kind", "issued_at", "expires_at"),
    )


def card_prefetches() -> tuple[Prefetch | str, ...]:
    """What a card reads beside its row: credential expiries (never the values) and accounts."""
    return (credentials_without_values(), "accounts")


def connection_cards_queryset(*, user: User, now: dt.datetime | None = None) -> QuerySet[Connection]:
    """Connections with what a card shows (app, client, credential expiries, accounts).

    ``authorization_open``: whether a pending connection still has an
    authorization inside its window (otherwise it has lapsed, even before
    housekeeping says so).
    """
    open_request = AuthorizationRequest.objects.filter(
        connection=OuterRef("pk"), used_at__isnull=True, outcome="", expires_at__gt=now or timezone.now()
    )
    return (
        connection_queryset_for(user=user)
        .select_related("provider_app", "client", "household")
        .defer(*NO_SECRETS)
        .annotate(authorization_open=Exists(open_request))
        .prefetch_related(*card_prefetches())
    )


def _household_cards_queryset(*, user: User, household: Household, now: dt.datetime) -> QuerySet[Connection]:
    """The household's cards (:func:`connection_cards_queryset`) with their open problems' state."""
    open_problems = ConnectionProblem.objects.filter(connection=OuterRef("pk"), closed_at__isnull=True)
    snoozed_ahead = (
        open_problems.filter(snoozed_until__gt=now)
        .order_by()
        .values("connection")
        .annotate(latest=Max("snoozed_until"))
    )
    return (
        connection_cards_queryset(user=user, now=now)
        .filter(household=household)
        .annotate(has_open_problem=Exists(open_problems), snoozed_ahead=Subquery(snoozed_ahead.values("latest")))
        .order_by("client__name", "platform", "id")
    )


def _household_links_queryset(*, user: User, household: Household) -> QuerySet[ClientLink]:
    """The household's client links, newest first (a reconnect request's per-connection links are shown
    with the request, not here)."""
    return (
        client_link_queryset_for(user=user)
        .filter(household=household, reconnect_item__isnull=True)
        .select_related("client", "connection", "provider_app")
        .defer(*NO_SECRETS)
        .order_by("-created_at")
    )


@dataclass(frozen=True)
class HouseholdPage:
    household: Household
    clients: list[Client]
    connections: list[Connection]
    disconnected: list[Connection]
    links: list[ClientLink]


def household_page(
    *, user: User, household: Household, link_limit: int = 20, now: dt.datetime | None = None
) -> HouseholdPage:
    """Everything the household page shows, in a fixed number of queries.

    Each connection also carries what its quiet state needs, read in the same
    statement: ``has_open_problem`` and ``snoozed_ahead`` (the latest snooze of
    an open problem still after ``now``, or None). The cards' statement is
    built once per process (:class:`PrebuiltStatement`): the same rows as
    ``_household_cards_queryset`` for this user, household and moment.
    """
    now = now or timezone.now()
    membership = membership_for(user=user)
    connections: list[Connection] = []
    links: list[ClientLink] = []
    if membership is not None:
        # Built once per process (the same statements for every household but for its ids and moment).
        is_firm_admin = membership.is_firm_admin
        values = {"user": membership.user_id, "firm": membership.firm_id, "household": household.pk}
        cards = prebuilt_statement(
            ("household_cards", is_firm_admin),
            lambda: _household_cards_queryset(
                user=stand_in_user(is_firm_admin=is_firm_admin),
                household=Household(pk=STAND_IN_HOUSEHOLD_ID),
                now=STAND_IN_MOMENT,
            ),
        )
        connections = cards.rows(now=now, **values)
        _card_relations_read(connections, is_firm_admin=is_firm_admin, now=now, values=values)
        latest_links = prebuilt_statement(
            ("household_links", is_firm_admin, link_limit),
            lambda: _household_links_queryset(
                user=stand_in_user(is_firm_admin=is_firm_admin), household=Household(pk=STAND_IN_HOUSEHOLD_ID)
            )[:link_limit],
        )
        links = latest_links.rows(now=now, **values)
    clients: list[Client] = prebuilt_statement(
        ("household_clients",), lambda: Client.objects.filter(household_id=STAND_IN_HOUSEHOLD_ID)
    ).rows(now=now, household=household.pk)
    return HouseholdPage(
        household=household,
        clients=clients,
        connections=[c for c in connections if c.status != Status.DISCONNECTED],
        disconnected=[c for c in connections if c.status == Status.DISCONNECTED],
        links=links,
    )


def _card_relations_read(
    connections: list[Connection], *, is_firm_admin: bool, now: dt.datetime, values: dict[str, int]
) -> None:
    """The cards' :func:`card_prefetches` (credential expiries, accounts), each by a statement built once per
    process over the household's connections in the user's scope: what the prefetch reads for these cards
    (a connection added in between has no card, and its rows are left out)."""

    def of_household() -> QuerySet[Any]:
        marker = stand_in_user(is_firm_admin=is_firm_admin)
        return connection_queryset_for(user=marker).filter(household_id=STAND_IN_HOUSEHOLD_ID).values("pk")

    by_id = {connection.pk: connection for connection in connections}
    for name, related in (("credentials", credentials_without_values().queryset), ("accounts", Account.objects.all())):
        statement = prebuilt_statement(
            ("household_card_" + name, is_firm_admin),
            lambda related=related: related.filter(connection__in=of_household()),
        )
        grouped: dict[int, list[Any]] = {pk: [] for pk in by_id}
        for row in statement.rows(now=now, **values):
            if row.connection_id in grouped:
                grouped[row.connection_id].append(row)
        for pk, rows in grouped.items():
            prefetched(by_id[pk], name, rows, back="connection")


def client_link_effective_status(*, link: ClientLink, now: dt.datetime | None = None) -> str:
    """The link's status as the adviser should read it: an open link past its expiry is expired."""
    now = now or timezone.now()
    if link.status in (ClientLink.LinkStatus.SENT, ClientLink.LinkStatus.OPENED) and link.expires_at <= now:
        return ClientLink.LinkStatus.EXPIRED
    return link.status


# --- Deadlines --------------------------------------------------------------------


@dataclass(frozen=True)
class Deadline:
    """One deadline of a connection, for the page to put into words.

    ``kind``: ``renews`` (the access token, renewed by the portal),
    ``token_expires`` (an access token nothing can renew), ``rolling`` (a
    sign-in that keeps renewing itself; ``span`` is how long renewals may stop
    before it lapses), ``reconnect_by`` (a hard limit, or a rolling one that
    stopped rolling), ``next_check``. ``past`` when the moment has gone by;
    ``urgent`` when a person should act now.
    """

    kind: str
    at: dt.datetime
    urgent: bool = False
    past: bool = False
    span: dt.timedelta | None = None
    rolls: bool = False


def connection_deadlines(*, connection: Connection, now: dt.datetime | None = None) -> list[Deadline]:
    """Every deadline the connection has, soonest first.

    Reads the prefetched ``credentials`` (see :func:`connection_cards_queryset`),
    so it adds no query. An access token that can be renewed without the client
    (there is a refresh, offline or API-key credential) "renews"; one that cannot
    just "expires". A rolling sign-in is not a deadline to warn about while it
    keeps renewing (``rules.deadline_is_near``); once renewals stop it becomes one.
    """
    now = now or timezone.now()
    if connection.status == Status.DISCONNECTED:
        return []
    by_kind = {c.kind: c for c in connection.credentials.all()}
    renewable = any(k in by_kind for k in (Credential.Kind.REFRESH, Credential.Kind.OFFLINE, Credential.Kind.API_KEY))
    deadlines: list[Deadline] = []
    access = by_kind.get(Credential.Kind.ACCESS)
    live = connection.status in (Status.ACTIVE, Status.DEGRADED)
    if access is not None and access.expires_at is not None and live:
        kind = "renews" if renewable else "token_expires"
        deadlines.append(Deadline(kind=kind, at=access.expires_at, past=access.expires_at <= now))
    if connection.reconnect_by is not None:
        at, rolls = connection.reconnect_by, connection.reconnect_by_rolls
        refresh = by_kind.get(Credential.Kind.REFRESH)
        basis = (refresh.issued_at if refresh is not None else None) or connection.connected_at or connection.created_at
        near = deadline_is_near(deadline=at, basis=basis, now=now, rolls=rolls)
        past = at <= now
        if rolls and not near and not past and live:
            deadlines.append(Deadline(kind="rolling", at=at, span=at - basis))
        else:
            deadlines.append(Deadline(kind="reconnect_by", at=at, urgent=near or past, past=past, rolls=rolls))
    if connection.next_check_at is not None:
        deadlines.append(Deadline(kind="next_check", at=connection.next_check_at, past=connection.next_check_at <= now))
    return sorted(deadlines, key=lambda d: d.at)


# --- Connection page --------------------------------------------------------------


def connection_events(*, connection: Connection) -> QuerySet[ConnectionEvent]:
    """The connection's timeline, newest first (paginate it)."""
    return connection.events.select_related("actor").order_by("-created_at", "-id")


@dataclass(frozen=True)
class HealthDay:
    day: dt.date
    status: str  # a Status value, or "" for no data (before the connection existed)


def connection_health_days(
    *, connection: Connection, days: int = 30, now: dt.datetime | None = None
) -> list[HealthDay]:
    """One entry per day for the last ``days`` days (oldest first): the worst status held that day.

    Derived from events: the status at the start of the window is the
    ``to_status`` of the last transition before it (or the ``from_status`` of the
    first one inside it, or the current status when there is no transition at
    all); each day's worst is taken over the status it started with and every
    status it moved to. Days before the connection existed have no data. Two
    queries, whatever the number of events.
    """
    now = now or timezone.now()
    tz = timezone.get_current_timezone()
    today = timezone.localtime(now, tz).date()
    first_day = today - dt.timedelta(days=days - 1)
    window_start = dt.datetime.combine(first_day, dt.time.min, tzinfo=tz)

    transitions = connection.events.exclude(to_status="").order_by("created_at", "id")
    before = transitions.filter(created_at__lt=window_start).values_list("to_status", flat=True).last()
    inside = list(
        transitions.filter(created_at__gte=window_start).values_list("created_at", "from_status", "to_status")
    )

    if before:
        current = before
    elif inside and inside[0][1]:
        current = inside[0][1]
    elif inside:
        current = Status.PENDING
    else:
        current = connection.status
    created_day = timezone.localtime(connection.created_at, tz).date()

    per_day: dict[dt.date, list[str]] = {}
    for created_at, _from, to_status in inside:
        per_day.setdefault(timezone.localtime(created_at, tz).date(), []).append(to_status)

    result: list[HealthDay] = []
    for offset in range(days):
        day = first_day + dt.timedelta(days=offset)
        if day < created_day:
            result.append(HealthDay(day=day, status=""))
            continue
        seen = [current, *per_day.get(day, [])]
        worst = max(seen, key=lambda s: STATUS_SEVERITY.get(s, 0))
        result.append(HealthDay(day=day, status=worst))
        current = seen[-1]
    return result


# --- Connect forms ----------------------------------------------------------------


def provider_credential_form(*, app: ProviderApp) -> CredentialForm:
    """A form-flow provider's credential form (Coinify, Bloquo): its inputs, layout and advice."""
    return lifecycle.client_describing(app=app).credential_form()


def provider_app_options() -> QuerySet[ProviderApp]:
    """Provider apps an adviser may connect through (enabled ones)."""
    return ProviderApp.objects.filter(is_enabled=True).order_by("provider", "environment", "name")


# The form-action origins change only when an app is saved or deleted, and every page with a connect
# form asks for them: each process keeps them for two minutes, and forgets them at once when this
# process saves or deletes an app (another process's change is seen within the two minutes).
ORIGINS_LIFETIME_SECONDS = 120.0
_origins_lock = threading.Lock()
_origins_cached: tuple[float, list[str]] | None = None


def provider_form_action_origins() -> list[str]:
    """Origins of the enabled apps' browser-facing URLs.

    A form that starts a redirect flow posts to the portal, which redirects to
    the provider; browsers apply the page's CSP ``form-action`` to that redirect,
    so pages with such forms allow these origins. One query, then none for
    ``ORIGINS_LIFETIME_SECONDS`` in this process (or until an app is saved or
    deleted here).
    """
    global _origins_cached
    cached = _origins_cached
    if cached is not None and time.monotonic() < cached[0]:
        return list(cached[1])
    origins: set[str] = set()
    for base_url, connect_url in provider_app_options().values_list("base_url", "connect_url"):
        for url in (connect_url, base_url):
            parts = urlsplit(url or "")
            if parts.scheme in {"http", "https"} and parts.netloc:
                origins.add(f"{parts.scheme}://{parts.netloc}")
    found = sorted(origins)
    with _origins_lock:
        if _origins_cached is cached:
            _origins_cached = (time.monotonic() + ORIGINS_LIFETIME_SECONDS, found)
    return list(found)


def provider_form_action_origins_forget(**_kwargs: Any) -> None:
    """Drop this process's cached origins (an app was saved or deleted; tests that change apps in bulk)."""
    global _origins_cached
    with _origins_lock:
        _origins_cached = None


post_save.connect(provider_form_action_origins_forget, sender=ProviderApp, dispatch_uid="provider_origins_forget")
post_delete.connect(provider_form_action_origins_forget, sender=ProviderApp, dispatch_uid="provider_origins_forget")
