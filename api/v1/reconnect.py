"""Household reconnect requests through the API: ask a household's clients to reconnect, and see where each stands.

``POST`` goes through :func:`connections.services.reconnect_requests_create`,
as the household page's "Ask the client to reconnect" does, with the key
named as who asked; it needs the ``write`` scope, takes an
``Idempotency-Key``, and each email counts against the key's
``CLIENT_LINK_SENDS_PER_HOUR``; with ``send_email: false`` (as for client
links) nothing is emailed, now or as a reminder, and the reply carries each
new request's link for the caller to send. ``GET`` reads the requests back
(after following them up, as the household page does) with a ``read`` key,
newest first, keyset-paged like every other list. Another firm's household
is a 404.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import AnonymousUser
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema
from ninja.params import P, QueryEx
from pydantic import BaseModel

from connections import attempts, services, wording
from connections.models import ReconnectRequest, ReconnectRequestItem

from .. import schemas as s
from .. import selectors
from .auth import firm_of, key_of, read_key, write_key
from .idempotency import idempotent
from .pagination import MAX_LIMIT, cursor_decode, cursor_encode
from .problems import ApiProblem, FieldProblem, Problem
from .reads import Cursor
from .writes import WRITE_ERRORS, IdempotencyKey, key_actor, key_limit_take

# Each operation names its own key: reading needs a read key, asking a write key.
router = Router()

# --- Household reconnect requests -------------------------------------------------------------


class ReconnectAsked(Schema):
    request_id: uuid.UUID
    client: s.ClientRef
    outcome: str = Field(
        description="sent: a new request, emailed now; updated: the client's open request took these connections "
        "(no second email: its next reminder lists them)."
    )
    connection_ids: list[int] = Field(description="Every connection the request now asks the client to fix.")
    emailed_to: str = Field(description="Where the email went; empty when none was sent now.")
    url: str | None = Field(
        default=None,
        description="With send_email false, a new request's link, for your own system to send: shown in this "
        "reply only, never readable again. Null otherwise.",
    )
    note: str


class ReconnectSkipped(Schema):
    client: s.ClientRef
    note: str = Field(description="Why this client was not asked, and what to do.")


class ReconnectRequestsCreated(Schema):
    household_id: int
    asked: list[ReconnectAsked]
    skipped: list[ReconnectSkipped]


class ReconnectRequestsIn(Schema):
    send_email: bool = Field(
        default=True,
        description="Email each client their request, and its reminders (the default). False: nothing is emailed, "
        "now or later; each new request's link is returned in url, for your own system to send.",
    )


class ReconnectRequestList(Schema):
    items: list[s.ReconnectRequestOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")


READ_ERRORS: dict[int, type[Problem]] = {
    400: Problem,
    401: Problem,
    404: Problem,
    422: Problem,
    429: Problem,
    500: Problem,
}


def _requests_page(
    rows: QuerySet[ReconnectRequest], cursor: str | None, limit: int
) -> tuple[list[ReconnectRequest], str | None]:
    """One keyset page, newest first (``created_at``, then ``id``, both descending, so ties keep one order).

    The cursor holds the last row's ``created_at`` in microseconds and its id; anything else is a 400.
    """
    after = cursor_decode(cursor, keys=("at",))
    if after is not None:
        try:
            last_id = uuid.UUID(str(after.get("id")))
        except ValueError:
            message = wording.api_invalid_cursor(name="cursor")
            raise ApiProblem(
                400, "invalid_cursor", message, errors=[FieldProblem(field="query.cursor", message=message)]
            ) from None
        at = datetime.fromtimestamp(0, tz=UTC) + timedelta(microseconds=after["at"])
        rows = rows.filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=last_id))
    page = list(rows[: limit + 1])
    if len(page) <= limit:
        return page, None
    last = page[limit - 1]
    micros = (last.created_at - datetime.fromtimestamp(0, tz=UTC)) // timedelta(microseconds=1)
    return page[:limit], cursor_encode(at=micros, id=str(last.pk))


@router.get(
    "/households/{household_id}/reconnect-requests",
    response={200: ReconnectRequestList, **READ_ERRORS},
    tags=["Households"],
    auth=read_key,
)
def list_reconnect_requests(
    request: HttpRequest,
    household_id: int,
    cursor: Cursor = None,
    limit: QueryEx[int, P(ge=1, le=MAX_LIMIT, description=f"Items per page, newest first (at most {MAX_LIMIT}).")] = 20,
) -> ReconnectRequestList:
    """The household's reconnect requests, newest first: who was asked, for what, and where each stands.

    Keyset-paged by when each was made, then id: follow ``next_cursor`` until it is null.
    """
    household = get_object_or_404(selectors.firm_household_queryset_for_api(firm_id=firm_of(request)), pk=household_id)
    # Read back what the clients did (and what recovered meanwhile) first, as the household page does.
    services.reconnect_requests_sync(
        requests=household.reconnect_requests.filter(status__in=services.reconnect_requests.TRACKED)
    )
    rows, next_cursor = _requests_page(selectors.reconnect_requests_for_api(household=household), cursor, limit)
    return ReconnectRequestList(items=[s.reconnect_request_out(r) for r in rows], next_cursor=next_cursor)


def nothing_to_ask_words(*, household: str) -> str:
    return (
        f"Nothing in {household} needs the client now: no connection needs reconnecting or has a hard deadline "
        "near, so no one was emailed."
    )


def already_asked_words(*, notes: list[str]) -> str:
    return f"No one was emailed: {' '.join(notes)}"


@router.post(
    "/households/{household_id}/reconnect-requests",
    response={201: ReconnectRequestsCreated, **WRITE_ERRORS},
    tags=["Households"],
    auth=write_key,
)
def create_reconnect_requests(
    request: HttpRequest,
    household_id: int,
    payload: ReconnectRequestsIn | None = None,
    idempotency_key: IdempotencyKey = None,
) -> HttpResponse:
    """Ask each client of the household to reconnect everything of theirs that needs them: one email and link each.

    Covers every connection that needs reconnecting or has a hard deadline
    within the warning window. A client already asked gets the new
    connections added to the open request and no second email. Nothing to
    ask is a 422; everyone already asked, a 409. Each email counts against
    the key's ``CLIENT_LINK_SENDS_PER_HOUR``. ``send_email: false``: nothing
    is emailed (and no email counts); each new request's ``url`` is in the
    reply, for your own system to send, and no reminder follows.
    """
    send_email = (payload or ReconnectRequestsIn()).send_email

    def write() -> tuple[int, BaseModel]:
        household = selectors.household_for_write(firm_id=firm_of(request), household_id=household_id)
        if household is None:
            raise Http404
        plans = services.reconnect_request_plans(households=[household])
        if not plans:
            raise ApiProblem(422, "nothing_to_ask", nothing_to_ask_words(household=household.name))
        api_key = key_of(request)
        emails = sum(1 for plan in plans if not plan.blocker) if send_email else 0
        give_back = (
            key_limit_take(api_key, attempts.LimitName.LINK_SENDS_PER_USER, what="sent client emails", count=emails)
            if emails
            else (lambda: None)
        )
        results = services.reconnect_requests_create(
            households=[household], user=AnonymousUser(), actor_label=key_actor(api_key), send_email=send_email
        )
        asked = [r for r in results if r.outcome != "skipped" and r.request is not None]
        if not any(r.outcome == "sent" for r in asked):
            give_back()
        if not asked:
            notes = [f"{r.client.name}: {r.note}" for r in results]
            if any(plan.existing is not None for plan in plans):
                raise ApiProblem(409, "already_asked", already_asked_words(notes=notes))
            raise ApiProblem(422, "not_possible", already_asked_words(notes=notes))
        covered: dict[uuid.UUID, list[int]] = {}
        for item in ReconnectRequestItem.objects.filter(request__in=[r.request for r in asked]).order_by(
            "position", "id"
        ):
            covered.setdefault(item.request_id, []).append(item.connection_id)
        return 201, ReconnectRequestsCreated(
            household_id=household.pk,
            asked=[
                ReconnectAsked(
                    request_id=r.request.pk,
                    client=s.ClientRef(id=r.client.pk, name=r.client.name),
                    outcome=r.outcome,
                    connection_ids=covered.get(r.request.pk, []),
                    emailed_to=r.request.sent_to if r.outcome == "sent" and send_email else "",
                    url=r.url if r.outcome == "sent" and not send_email else None,
                    note=r.note,
                )
                for r in asked
                if r.request is not None
            ],
            skipped=[
                ReconnectSkipped(client=s.ClientRef(id=r.client.pk, name=r.client.name), note=r.note)
                for r in results
                if r not in asked
            ],
        )

    return idempotent(request, key=idempotency_key, write=write)
