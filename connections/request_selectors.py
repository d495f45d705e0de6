"""Reads for reconnect requests, bulk sends and quiet problems, scoped like every other page.

Everything derives from :func:`selectors.household_queryset_for`, so another
firm's request or bulk send is a 404. List reads prefetch, so a page's query
count does not grow with its rows.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from django.db.models import Prefetch, Q, QuerySet, prefetch_related_objects
from django.utils import timezone

from .models import (
    BulkReconnectSend,
    Connection,
    ConnectionProblem,
    Household,
    ReconnectRequest,
    ReconnectRequestItem,
)
from .selectors import NO_SECRETS, User, household_queryset_for, membership_for
from .selectors.prebuilt import STAND_IN_HOUSEHOLD_ID, prebuilt_statement, stand_in_user
from .services.reconnect_requests import TRACKED, UNDELIVERABLE, needing_client


@dataclass(frozen=True)
class RequestRow:
    """One request as the adviser reads it."""

    request: ReconnectRequest
    items: list[ReconnectRequestItem]
    done: int
    words: str

    @property
    def bounced(self) -> bool:
        return self.request.delivery in (ReconnectRequest.Delivery.BOUNCED, ReconnectRequest.Delivery.COMPLAINED)

    @property
    def can_ask_again(self) -> bool:
        """Open, but its email never reached the client: nothing follows it up, so the adviser may replace it."""
        return self.request.is_open and self.request.delivery in UNDELIVERABLE

    @property
    def address_unchanged(self) -> bool:
        """The client's address is still the one that bounced or complained: it must be corrected first."""
        return self.bounced and self.request.client.email.strip().casefold() == self.request.sent_to.casefold()


def request_rows(requests: list[ReconnectRequest]) -> list[RequestRow]:
    rows = []
    for request in requests:
        items, done, words = request.progress()
        rows.append(RequestRow(request=request, items=items, done=done, words=words))
    return rows


def _items_prefetch() -> Prefetch:
    return Prefetch(
        "items", queryset=ReconnectRequestItem.objects.select_related("connection").order_by("position", "id")
    )


def household_requests(*, user: User, household: Household, limit: int = 10) -> list[RequestRow]:
    """The household's latest reconnect requests with their items. Two queries (one without any)."""
    return household_request_rows(household_requests_read(user=user, household=household, limit=limit).latest)


@dataclass(frozen=True)
class HouseholdRequests:
    """A household's requests as its page needs them: ``latest`` (newest first) and every ``tracked`` one."""

    latest: list[ReconnectRequest]
    tracked: list[ReconnectRequest]


def household_requests_read(*, user: User, household: Household, limit: int = 10) -> HouseholdRequests:
    """The household's ``limit`` latest requests and every one sync still follows up, in one query.

    Without their items: sync them first (it may close some, and moves items on), then
    :func:`household_request_rows` reads the items of the latest.
    """
    membership = membership_for(user=user)
    if membership is None:
        return HouseholdRequests(latest=[], tracked=[])
    is_firm_admin = membership.is_firm_admin
    # Built once per process (:class:`selectors.prebuilt.PrebuiltStatement`): the same for every household.
    statement = prebuilt_statement(
        ("household_requests", is_firm_admin, limit),
        lambda: _household_requests_queryset(
            user=stand_in_user(is_firm_admin=is_firm_admin), household=Household(pk=STAND_IN_HOUSEHOLD_ID), limit=limit
        ),
    )
    rows: list[ReconnectRequest] = statement.rows(
        now=timezone.now(), user=membership.user_id, firm=membership.firm_id, household=household.pk
    )
    # The same total order inside and out: the first ``limit`` of these are exactly the latest.
    return HouseholdRequests(latest=rows[:limit], tracked=[r for r in rows if r.status in TRACKED])


def _household_requests_queryset(*, user: User, household: Household, limit: int) -> QuerySet[ReconnectRequest]:
    """The household's ``limit`` latest requests and every tracked one, newest first."""
    of_household = ReconnectRequest.objects.filter(household=household)
    newest_first = ("-created_at", "-id")
    # Scoped once, outside: the inner read only picks which of the household's requests are the latest.
    latest_ids = of_household.order_by(*newest_first).values("pk")[:limit]
    return (
        of_household.filter(household__in=household_queryset_for(user=user))
        .filter(Q(status__in=TRACKED) | Q(pk__in=latest_ids))
        .select_related("client", "created_by")
        .order_by(*newest_first)
    )


def household_request_rows(requests: list[ReconnectRequest]) -> list[RequestRow]:
    """``requests`` with their items (one query), as the page shows them."""
    prefetch_related_objects(requests, _items_prefetch())
    return request_rows(requests)


def households_needing_client(
    *, user: User, now: dt.datetime | None = None, include_quiet: bool = False
) -> QuerySet[Household]:
    """The user's households with a connection only the client can fix (the attention list's first two ranks).

    Muted and snoozed connections do not count, so a household whose only broken connections are quiet
    is not asked; ``include_quiet=True`` counts them too (to show them as skipped).
    """
    now = now or timezone.now()
    connections = needing_client(
        Connection.objects.filter(household__in=household_queryset_for(user=user)), now=now, include_quiet=include_quiet
    )
    return household_queryset_for(user=user).filter(pk__in=connections.values("household_id")).select_related("firm")


def bulk_for(*, user: User, pk: uuid.UUID | str) -> BulkReconnectSend | None:
    """A bulk send the user may watch: their own, or any of their firm's for a firm admin."""
    membership = membership_for(user=user)
    if membership is None:
        return None
    bulks = BulkReconnectSend.objects.filter(firm_id=membership.firm_id)
    if not membership.is_firm_admin:
        bulks = bulks.filter(created_by_id=user.pk)
    return bulks.filter(pk=pk).first()


def open_problems_prefetch() -> Prefetch:
    """Each connection's open problems (``open_problems``), for showing why it is quiet."""
    return Prefetch(
        "problems", queryset=ConnectionProblem.objects.filter(closed_at__isnull=True), to_attr="open_problems"
    )


__all__ = [
    "NO_SECRETS",
    "HouseholdRequests",
    "RequestRow",
    "bulk_for",
    "household_request_rows",
    "household_requests",
    "household_requests_read",
    "households_needing_client",
    "open_problems_prefetch",
    "request_rows",
]
