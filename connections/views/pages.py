"""The adviser's pages: dashboard, attention list, household and connection pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.core.paginator import Paginator
from django.db.models import prefetch_related_objects
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from .. import request_selectors, selectors, services
from ..forms import (
    HouseholdFilterForm,
)
from ..models import Connection, ConnectionProblem, Status
from .common import (
    ATTENTION_ON_DASHBOARD,
    ATTENTION_PER_PAGE,
    EVENTS_PER_PAGE,
    HOUSEHOLDS_PER_PAGE,
    allow_provider_form_actions,
    member_required,
    scoped_connection,
    scoped_household,
)

# Snoozing from the attention list, and from the household page (where Mute is a button of its own).
ATTENTION_QUIET_ACTIONS = (("day", "1 day"), ("week", "1 week"), ("mute", "Mute until it works again"))
HOUSEHOLD_SNOOZE_CHOICES = (("day", "1 day"), ("week", "1 week"))
# A connection in these is snoozable even before its problem row is made (snoozing makes it first).
SNOOZABLE_STATUSES = (Status.NEEDS_RECONNECT, Status.DEGRADED)

# The dashboard's count cards, worst first; each links to that status's list.
STATUS_CARDS = (
    ("needs_reconnect", "Need reconnect"),
    ("degraded", "Degraded"),
    ("pending", "Pending"),
    ("active", "Active"),
    ("disconnected", "Disconnected"),
)

# --- Dashboard ---------------------------------------------------------------------------


@require_GET
@member_required
def dashboard(request: HttpRequest) -> HttpResponseBase:
    """Counts per status, what needs attention, and the households table."""
    user = request.user
    filter_form = HouseholdFilterForm(request.GET or None)
    search, status = filter_form.search_values()
    page = selectors.household_table_page(
        user=user, search=search, status=status, page_number=request.GET.get("page"), per_page=HOUSEHOLDS_PER_PAGE
    )
    context = {
        "membership": selectors.membership_for(user=user),
        "counts": selectors.connection_status_counts(user=user),
        "status_cards": STATUS_CARDS,
        "attention": selectors.needs_attention_list(user=user, limit=ATTENTION_ON_DASHBOARD),
        "filter_form": filter_form,
        "page": page,
        "search": search,
        "status_filter": status,
        "severity_status": selectors.SEVERITY_STATUS,
        "now": timezone.now(),
    }
    return allow_provider_form_actions(render(request, "connections/dashboard.html", context))


@require_GET
@member_required
def attention_list(request: HttpRequest) -> HttpResponseBase:
    """Every connection that needs attention, most urgent first, paginated; ``?show=quiet``: the snoozed and muted."""
    quiet = request.GET.get("show") == "quiet"
    rows = selectors.needs_attention_queryset(user=request.user, quiet=quiet).prefetch_related(
        request_selectors.open_problems_prefetch()
    )
    page = Paginator(rows, ATTENTION_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "now": timezone.now(),
        "quiet": quiet,
        "quiet_actions": ATTENTION_QUIET_ACTIONS,
        "needing_client": 0 if quiet else request_selectors.households_needing_client(user=request.user).count(),
    }
    return allow_provider_form_actions(render(request, "connections/attention_list.html", context))


@require_GET
@member_required
def connection_list(request: HttpRequest) -> HttpResponseBase:
    """Every connection of one status (the dashboard's count cards lead here), worst data first, paginated."""
    status = request.GET.get("status", "")
    if status not in selectors.STATUS_SEVERITY:
        status = ""
    page = Paginator(selectors.connections_by_status(user=request.user, status=status), ATTENTION_PER_PAGE).get_page(
        request.GET.get("page")
    )
    context = {"page": page, "status": status, "now": timezone.now()}
    return allow_provider_form_actions(render(request, "connections/connection_list.html", context))


# --- Household and connection pages ------------------------------------------------------


@require_GET
@member_required
def household_detail(request: HttpRequest, pk: int) -> HttpResponseBase:
    household = scoped_household(request, pk)
    # Read back what the client did (and what recovered meanwhile) before showing the requests: one read
    # serves both (the latest requests, and every one still followed up), the items are read after the sync.
    requests = request_selectors.household_requests_read(user=request.user, household=household)
    services.reconnect_requests_sync(requests=requests.tracked)
    now = timezone.now()
    page = selectors.household_page(user=request.user, household=household, now=now)
    mark_quiet(page.connections, now=now)
    context = {
        "household": household,
        "page": page,
        "now": now,
        "snooze_choices": HOUSEHOLD_SNOOZE_CHOICES,
        "requests": request_selectors.household_request_rows(requests.latest),
    }
    return allow_provider_form_actions(render(request, "connections/household_detail.html", context))


def mark_quiet(connections: Iterable[Connection], *, now: dt.datetime) -> None:
    """Set each card's ``snoozed_until`` (its latest snooze still ahead, or None) and ``snoozable``.

    Snoozable: not muted, not snoozed, and something to snooze (an open problem, or a status that makes one).
    Cards read by :func:`selectors.household_page` (with the same ``now``) carry their open problems'
    state already; any others cost one query for all of them.
    """
    rows = list(connections)
    annotated = all(hasattr(connection, "snoozed_ahead") for connection in rows)
    if not annotated:
        prefetch_related_objects(rows, request_selectors.open_problems_prefetch())
    for connection in rows:
        if annotated:
            snoozed_until = connection.snoozed_ahead  # type: ignore[attr-defined]
            has_problem = bool(connection.has_open_problem)  # type: ignore[attr-defined]
        else:
            problems: list[ConnectionProblem] = connection.open_problems  # type: ignore[attr-defined]
            ahead = [p.snoozed_until for p in problems if p.snoozed_until is not None and p.snoozed_until > now]
            snoozed_until = max(ahead, default=None)
            has_problem = bool(problems)
        connection.snoozed_until = snoozed_until  # type: ignore[attr-defined]
        connection.snoozable = (  # type: ignore[attr-defined]
            connection.muted_at is None
            and snoozed_until is None
            and (has_problem or connection.status in SNOOZABLE_STATUSES)
        )


def card_context(connection: Connection, **extra: Any) -> dict[str, Any]:
    """What ``_connection_card.html`` reads when one card is rendered on its own (an htmx swap after Check now)."""
    now = timezone.now()
    mark_quiet([connection], now=now)
    return {"connection": connection, "now": now, "snooze_choices": HOUSEHOLD_SNOOZE_CHOICES, **extra}


@require_GET
@member_required
def connection_detail(request: HttpRequest, pk: int) -> HttpResponseBase:
    connection = scoped_connection(request, pk)
    events = Paginator(selectors.connection_events(connection=connection), EVENTS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    context = {
        "connection": connection,
        "household": connection.household,
        "events": events,
        "health_days": selectors.connection_health_days(connection=connection),
        "links": selectors.client_link_queryset_for(user=request.user)
        .filter(connection=connection)
        .order_by("-created_at")[:10],
        "now": timezone.now(),
    }
    return allow_provider_form_actions(render(request, "connections/connection_detail.html", context))
