"""Write operations (a key with the ``write`` scope): a client reconnect link, a check now, a disconnect.

Each goes through :mod:`connections.services`, exactly as the adviser's
buttons do, with the key named as who did it (``api:<prefix>`` in the
connection's history). Each takes an optional ``Idempotency-Key``; see
:mod:`.idempotency`. A service that refuses (a client without an email
address) answers a problem and writes nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.contrib.auth.models import AnonymousUser
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Field, Router, Schema
from ninja.params import HeaderEx, P
from pydantic import BaseModel

from connections import services, wording
from connections.lifecycle import rules
from connections.models import ClientLink, Connection, Status

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
}

IdempotencyKey = HeaderEx[
    str | None,
    P(
        alias=HEADER,
        description="Any unique string (a UUID, say). A retry with the same key and request gets the first reply "
        "instead of doing the write again.",
    ),
]


def _actor(api_key: ApiKey) -> str:
    return wording.api_actor(key_prefix=api_key.prefix)


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
        try:
            created = services.client_link_create(
                household=connection.household,
                client=connection.client,
                connection=connection,
                user=AnonymousUser(),
                actor_label=_actor(key_of(request)),
                send_email=options.send_email,
            )
        except ValueError as exc:
            raise ApiProblem(422, "not_possible", str(exc)) from None
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
        services.connections_check_enqueue(
            connection_ids=[connection.pk], actor=None, actor_label=_actor(key_of(request))
        )
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
            connection=connection, user=AnonymousUser(), actor_label=_actor(key_of(request))
        )
        fresh = selectors.connections_for_api(firm_id=firm_of(request)).get(pk=connection.pk)
        return 200, s.connection_out(fresh, now=timezone.now())

    return idempotent(request, key=idempotency_key, write=write)
