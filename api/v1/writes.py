"""Write operations (a key with the ``write`` scope): a client reconnect link, a check now, a disconnect.

Each goes through :mod:`connections.services`, exactly as the adviser's
buttons do, with the key named as who did it (``api:<prefix>`` in the
connection's history). Each takes an optional ``Idempotency-Key``; see
:mod:`.idempotency`. A service that refuses (a client without an email
address) answers a problem and writes nothing. A link whose email the mail
server refuses is a 503 ``email_failed`` and is not kept either.

A key is held to the same limits as a person (``CLIENT_LINK_SENDS_PER_HOUR``,
``CHECK_NOW_PER_MINUTE``), counted per key: over them it gets a 429 with
``Retry-After`` before anything is emailed or a provider is called, since
every firm shares what those limits protect.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from datetime import datetime

from django.contrib.auth.models import AnonymousUser
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Field, Router, Schema
from ninja.params import HeaderEx, P
from pydantic import BaseModel

from connections import attempts, services, wording
from connections.lifecycle import rules
from connections.models import ClientLink, Connection, Status
from connections.services.client_links import LinkEmailFailed
from connections.wording.api import api_key_limit_reached, api_link_email_failed

from .. import schemas as s
from .. import selectors
from ..models import ApiKey
from .auth import firm_of, key_of, write_key
from .idempotency import HEADER, idempotent
from .problems import ApiProblem, Problem

router = Router(auth=write_key)

WRITE_ERRORS: dict[int, type[Problem]] = {
    400: Problem,
    401: Problem,
    403: Problem,
    404: Problem,
    409: Problem,
    422: Problem,
    429: Problem,
    500: Problem,
    503: Problem,
}

IdempotencyKey = HeaderEx[
    str | None,
    P(
        alias=HEADER,
        description="Any unique string (a UUID, say). A retry with the same key and request gets the first reply "
        "instead of doing the write again.",
    ),
]


def key_actor(api_key: ApiKey) -> str:
    return wording.api_actor(key_prefix=api_key.prefix)


# --- The per-person limits, per key ---------------------------------------------------------------


def _limit_for_keys(name: attempts.LimitName) -> attempts.Limit:
    """The person's limit ``name`` with its own count for keys, so a key and a person never share one."""
    person = attempts.limit(name)
    return attempts.Limit(name=f"api-key:{person.name}", attempts=person.attempts, window_seconds=person.window_seconds)


def key_limit_take(api_key: ApiKey, name: attempts.LimitName, *, what: str, count: int = 1) -> Callable[[], None]:
    """Take ``count`` of the key's attempts under ``name``, or answer 429; returns what gives them back.

    Taken before the write, all or none, so concurrent requests cannot pass
    the limit together; the caller gives them back when nothing went out.
    """
    limit = _limit_for_keys(name)
    taken: list[attempts.Taken] = []

    def give_back() -> None:
        for one in taken:
            attempts.attempts_give_back(taken=one)

    try:
        for _ in range(count):
            taken.append(attempts.attempts_take(subjects=[(limit, str(api_key.pk))]))
    except attempts.LimitReached as exc:
        give_back()
        retry_after = max(math.ceil(exc.retry_after), 1)
        raise ApiProblem(
            429,
            "rate_limited",
            api_key_limit_reached(
                what=what, limit=limit.attempts, window_seconds=limit.window_seconds, retry_after=exc.retry_after
            ),
            headers={"Retry-After": str(retry_after)},
        ) from None
    return give_back


# Seconds a client should wait before retrying after the mail server refused.
EMAIL_RETRY_AFTER = 60


def _connection(request: HttpRequest, connection_id: int) -> Connection:
    """The whole connection, for a service to act on; another firm's is a 404 like a missing one."""
    connection = selectors.connection_for_write(firm_id=firm_of(request), connection_id=connection_id)
    if connection is None:
        raise Http404
    return connection


class ClientLinkIn(Schema):
    send_email: bool = Field(
        default=True,
        description="Email the link to the client (the default). False: only return it, for your own system to send.",
    )


class ClientLinkCreated(Schema):
    id: uuid.UUID
    connection_id: int
    url: str = Field(description="The link itself. Shown in this reply only; it is never readable again.")
    expires_at: datetime
    status: ClientLink.LinkStatus
    emailed: bool
    sent_to: str


class CheckQueued(Schema):
    connection_id: int
    queued: bool
    message: str


@router.post(
    "/connections/{connection_id}/client-links",
    response={201: ClientLinkCreated, **WRITE_ERRORS},
    tags=["Connections"],
)
def create_client_link(
    request: HttpRequest,
    connection_id: int,
    payload: ClientLinkIn | None = None,
    idempotency_key: IdempotencyKey = None,
) -> HttpResponse:
    """A reconnect link for the connection's client: returns its URL and expiry, and emails it unless told not to."""
    options = payload or ClientLinkIn()

    def write() -> tuple[int, BaseModel]:
        connection = _connection(request, connection_id)
        if connection.status == Status.DISCONNECTED:
            raise ApiProblem(409, "disconnected", wording.api_disconnected(source=connection.source_display))
        api_key = key_of(request)
        give_back = key_limit_take(api_key, attempts.LimitName.LINK_SENDS_PER_USER, what="sent client links")
        try:
            created = services.client_link_create(
                household=connection.household,
                client=connection.client,
                connection=connection,
                user=AnonymousUser(),
                actor_label=key_actor(api_key),
                send_email=options.send_email,
            )
        except ValueError as exc:
            give_back()
            raise ApiProblem(422, "not_possible", str(exc)) from None
        except LinkEmailFailed as exc:
            # The link was removed again and nothing was announced: the attempt does not count.
            give_back()
            raise ApiProblem(
                503,
                "email_failed",
                api_link_email_failed(detail=exc.message),
                headers={"Retry-After": str(EMAIL_RETRY_AFTER)},
            ) from None
        link = created.link
        return 201, ClientLinkCreated(
            id=link.pk,
            connection_id=connection.pk,
            url=created.url,
            expires_at=link.expires_at,
            status=ClientLink.LinkStatus(link.status),
            emailed=options.send_email,
            sent_to=link.sent_to if options.send_email else "",
        )

    return idempotent(request, key=idempotency_key, write=write)


@router.post("/connections/{connection_id}/check", response={202: CheckQueued, **WRITE_ERRORS}, tags=["Connections"])
def check_connection(request: HttpRequest, connection_id: int, idempotency_key: IdempotencyKey = None) -> HttpResponse:
    """Check the connection now (renew when due, read the accounts); the outcome shows in its status and events."""

    def write() -> tuple[int, BaseModel]:
        connection = _connection(request, connection_id)
        source = connection.source_display
        if connection.status not in rules.CHECKABLE:
            raise ApiProblem(409, "not_checkable", wording.api_check_refused(source=source, status=connection.status))
        api_key = key_of(request)
        key_limit_take(api_key, attempts.LimitName.CHECK_NOW_PER_USER, what="asked for a check")
        services.connections_check_enqueue(connection_ids=[connection.pk], actor=None, actor_label=key_actor(api_key))
        return 202, CheckQueued(
            connection_id=connection.pk, queued=True, message=wording.api_check_queued(source=source)
        )

    return idempotent(request, key=idempotency_key, write=write)


@router.post(
    "/connections/{connection_id}/disconnect",
    response={200: s.ConnectionOut, **WRITE_ERRORS},
    tags=["Connections"],
)
def disconnect_connection(
    request: HttpRequest, connection_id: int, idempotency_key: IdempotencyKey = None
) -> HttpResponse:
    """Disconnect on purpose: revoked at the provider where it can be, stored credentials deleted. Final."""

    def write() -> tuple[int, BaseModel]:
        connection = _connection(request, connection_id)
        services.connection_disconnect_now(
            connection=connection, user=AnonymousUser(), actor_label=key_actor(key_of(request))
        )
        fresh = selectors.connections_for_api(firm_id=firm_of(request)).get(pk=connection.pk)
        return 200, s.connection_out(fresh, now=timezone.now())

    return idempotent(request, key=idempotency_key, write=write)
