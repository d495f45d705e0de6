"""Reads for the adviser web UI: keyword-only, typed, ``<noun>_<verb>`` names.

Scoping contract
----------------
:func:`household_queryset_for` is the ONE place that decides what a user may
see: an adviser sees the households assigned to them, a firm admin every
household of their firm, a user without a membership nothing. Every other
selector (connections, clients, links, events) derives from it, and every view
fetches objects through these querysets, so anything outside them is a 404.
Its firm-wide half, :func:`firm_household_queryset`, is what a firm admin
sees and what the firm's API keys see (the API acts for a firm, not a person).

Query counts: list selectors annotate or prefetch, so the number of queries a
page makes does not grow with the number of rows on it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.models import User as AuthUser
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

from . import lifecycle
from .lifecycle import rules
from .lifecycle.claims import deadline_near_q
from .models import (
    AuthorizationRequest,
    Client,
    ClientLink,
    Connection,
    ConnectionEvent,
    ConnectionProblem,
    Credential,
    Household,
    Membership,
    ProviderApp,
    Status,
)
from .providers.base import CredentialForm

# How bad each status is, for roll-ups and "worst status of the day".
# Disconnected is deliberate, not a fault, so it never makes a household look worse.
STATUS_SEVERITY: dict[str, int] = {
    Status.DISCONNECTED: 0,
    Status.ACTIVE: 1,
    Status.PENDING: 2,
    Status.DEGRADED: 3,
    Status.NEEDS_RECONNECT: 4,
}
SEVERITY_STATUS: dict[int, str] = {v: k for k, v in STATUS_SEVERITY.items()}

# Statuses whose data the adviser still relies on ("data as of").
LIVE_STATUSES = (Status.ACTIVE, Status.DEGRADED, Status.NEEDS_RECONNECT)

User = AuthUser | AnonymousUser


# Pages never decrypt a secret: related provider apps are read without theirs
# (one secret no key decrypts must not take down every page that names the app).
NO_SECRETS = ("provider_app__client_secret",)


# --- Scoping ----------------------------------------------------------------------


def membership_for(*, user: User) -> Membership | None:
    """The user's membership, or ``None`` (anonymous, or not attached to a firm).

    Uses the one-to-one accessor, so the row is cached on the user object for the
    rest of the request.
    """
    if not isinstance(user, AuthUser) or not user.is_authenticated:
        return None
    try:
        return user.membership
    except Membership.DoesNotExist:
        return None


def household_queryset_for(*, user: User) -> QuerySet[Household]:
    """Every household ``user`` may see. THE scoping rule; everything derives from it."""
    membership = membership_for(user=user)
    if membership is None:
        return Household.objects.none()
    households = firm_household_queryset(firm_id=membership.firm_id)
    if not membership.is_firm_admin:
        # An adviser appears at most once per household in the M2M table, so
        # this join never duplicates rows.
        households = households.filter(advisers=user.pk)
    return households


def firm_household_queryset(*, firm_id: int) -> QuerySet[Household]:
    """Every household of one firm: what its firm admins see, and what the firm's API keys see.

    The firm-wide half of :func:`household_queryset_for`, for callers that act
    for a whole firm rather than for a person (the API authenticates a firm's
    key, not a user).
    """
    return Household.objects.filter(firm_id=firm_id)


def firm_connection_queryset(*, firm_id: int) -> QuerySet[Connection]:
    """Connections of one firm's households (see :func:`firm_household_queryset`)."""
    return Connection.objects.filter(household__in=firm_household_queryset(firm_id=firm_id))


def connection_queryset_for(*, user: User) -> QuerySet[Connection]:
    """Connections of the households ``user`` may see."""
    return Connection.objects.filter(household__in=household_queryset_for(user=user))


def client_queryset_for(*, user: User) -> QuerySet[Client]:
    return Client.objects.filter(household__in=household_queryset_for(user=user))


def client_link_queryset_for(*, user: User) -> QuerySet[ClientLink]:
    return ClientLink.objects.filter(household__in=household_queryset_for(user=user))


# --- Dashboard --------------------------------------------------------------------


def connection_status_counts(*, user: User) -> dict[str, int]:
    """Number of connections per status (every status present, zero when none). One query.

    ``COUNT(*)`` over (household, status) only, so PostgreSQL answers from the
    ``connection_household_status`` index without visiting the rows.
    """
    counts = {status: 0 for status in Status.values}
    rows = connection_queryset_for(user=user).order_by().values_list("status").annotate(n=Count("*"))
    for status, n in rows:
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

    Snoozed and muted ones (an open ``ConnectionProblem`` muted, or snoozed
    until later) are left out; ``quiet=True`` lists only those instead.

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
    refresh_issued = Credential.objects.filter(connection=OuterRef("pk"), kind=Credential.Kind.REFRESH).values(
        "issued_at"
    )[:1]
    aliases, near = deadline_near_q(now=now, tunables=tunables)
    connections = (
        connection_queryset_for(user=user)
        .filter(ATTENTION_CANDIDATES)
        .alias(deadline_basis=Coalesce(Subquery(refresh_issued), F("connected_at"), F("created_at")))
        .alias(**aliases)
    )
    deadline_near = near & Q(status__in=[Status.PENDING, Status.ACTIVE, Status.DEGRADED])
    degraded_for = dt.timedelta(seconds=tunables.degraded_attention_seconds)
    attention = (
        Q(status=Status.NEEDS_RECONNECT)
        | deadline_near
        | Q(status=Status.DEGRADED, degraded_since__lte=now - degraded_for)
    )
    hushed = Exists(
        ConnectionProblem.objects.filter(
            Q(muted_at__isnull=False) | Q(snoozed_until__gt=now), connection=OuterRef("pk"), closed_at__isnull=True
        )
    )
    return (
        connections.filter(attention)
        .filter(hushed if quiet else ~hushed)
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


def needs_attention_list(*, user: User, now: dt.datetime | None = None, limit: int = 50) -> list[Connection]:
    """The ``limit`` most urgent of :func:`needs_attention_queryset`. One query."""
    return list(needs_attention_queryset(user=user, now=now)[:limit])


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
    return households.prefetch_related(Prefetch("clients", queryset=Client.objects.only("id", "name", "household_id")))


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
        .prefetch_related(credentials_without_values(), "accounts")
    )


@dataclass(frozen=True)
class HouseholdPage:
    household: Household
    clients: list[Client]
    connections: list[Connection]
    disconnected: list[Connection]
    links: list[ClientLink]


def household_page(*, user: User, household: Household, link_limit: int = 20) -> HouseholdPage:
    """Everything the household page shows, in a fixed number of queries."""
    connections = list(
        connection_cards_queryset(user=user).filter(household=household).order_by("client__name", "platform", "id")
    )
    links = list(
        client_link_queryset_for(user=user)
        # A reconnect request's per-connection links are shown with the request, not here.
        .filter(household=household, reconnect_item__isnull=True)
        .select_related("client", "connection", "provider_app")
        .defer(*NO_SECRETS)
        .order_by("-created_at")[:link_limit]
    )
    return HouseholdPage(
        household=household,
        clients=list(household.clients.all()),
        connections=[c for c in connections if c.status != Status.DISCONNECTED],
        disconnected=[c for c in connections if c.status == Status.DISCONNECTED],
        links=links,
    )


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
    return lifecycle.clients.client_describing(app=app).credential_form()


def provider_app_options() -> QuerySet[ProviderApp]:
    """Provider apps an adviser may connect through (enabled ones)."""
    return ProviderApp.objects.filter(is_enabled=True).order_by("provider", "environment", "name")


def provider_form_action_origins() -> list[str]:
    """Origins of the enabled apps' browser-facing URLs.

    A form that starts a redirect flow posts to the portal, which redirects to
    the provider; browsers apply the page's CSP ``form-action`` to that redirect,
    so pages with such forms allow these origins. One query.
    """
    origins: set[str] = set()
    for base_url, connect_url in provider_app_options().values_list("base_url", "connect_url"):
        for url in (connect_url, base_url):
            parts = urlsplit(url or "")
            if parts.scheme in {"http", "https"} and parts.netloc:
                origins.add(f"{parts.scheme}://{parts.netloc}")
    return sorted(origins)
