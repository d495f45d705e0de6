"""What the API and the webhooks say about the portal's objects: one schema each, built in one place.

The API's replies and the webhooks' ``data`` use the same representations, so
a consumer parses a connection the same way wherever it comes from. Builders
read only what their querysets selected or prefetched (no query per row), take
``now`` for deadlines, and never touch a secret: no credential value, no
external account id, no link token.

Plain pydantic models rather than ninja's ``Schema``: the builders pass every
field explicitly, and ``Schema``'s validator (which reads attributes off ORM
objects) was most of the CPU of a page of 100 connections (``make bench``, "api").
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from pydantic import BaseModel, Field

from connections import selectors, wording
from connections.models import (
    Account,
    Client,
    ClientLink,
    Connection,
    ConnectionEvent,
    Environment,
    Household,
    Provider,
    Reason,
    ReconnectRequest,
    ReconnectRequestItem,
    Status,
)

from .models import EventType, WebhookEvent

DeadlineKind = Literal["renews", "token_expires", "refresh_valid_until", "reconnect_by", "next_check"]


class HouseholdRef(BaseModel):
    id: int
    name: str
    reference: str = Field(description="The firm's own reference for the household.")


class ClientRef(BaseModel):
    id: int
    name: str


class DeadlineOut(BaseModel):
    kind: DeadlineKind = Field(
        description="renews: the access token is renewed by then; token_expires: it lapses then and cannot be "
        "renewed; refresh_valid_until: the refresh token's end of life; reconnect_by: a hard limit after which "
        "only the client can restore access; next_check: the portal's next look."
    )
    at: datetime
    urgent: bool = Field(description="A hard deadline close enough that someone should act.")


class HouseholdOut(BaseModel):
    id: int
    name: str
    reference: str
    health: Status | None = Field(
        description="Roll-up: the worst status among the household's connections that are not disconnected; "
        "null when it has none."
    )
    data_as_of: datetime | None = Field(description="The oldest 'data as of' among its live connections.")
    connection_count: int = Field(description="Connections that are not disconnected.")
    created_at: datetime
    updated_at: datetime


class ClientOut(BaseModel):
    id: int
    household_id: int
    name: str
    email: str
    created_at: datetime
    updated_at: datetime


class ConnectionOut(BaseModel):
    id: int
    household: HouseholdRef
    client: ClientRef
    provider: Provider
    provider_name: str
    platform: str
    platform_name: str
    source: str = Field(description="How the portal names the source, such as 'Coinbase via Turnqey'.")
    environment: Environment
    label: str
    status: Status
    reason: Reason = Field(description="Why it is not simply active; empty when it is.")
    message: str = Field(description="Status and reason in plain words, naming provider and platform.")
    data_as_of: datetime | None = Field(description="When the accounts were last read successfully.")
    last_checked_at: datetime | None
    next_check_at: datetime | None
    reconnect_by: datetime | None
    deadlines: list[DeadlineOut] = Field(description="Every deadline the connection has, soonest first.")
    connected_at: datetime | None
    disconnected_at: datetime | None
    created_at: datetime
    updated_at: datetime
    changed_at: datetime = Field(
        description="The latest of updated_at and the connection's newest event: what changed_since filters on."
    )


class EventOut(BaseModel):
    id: int
    kind: ConnectionEvent.Kind
    from_status: Status | Literal[""]
    to_status: Status | Literal[""]
    reason: Reason
    message: str
    actor: str = Field(description="Who or what did it, in words.")
    created_at: datetime


class AccountOut(BaseModel):
    id: int
    name: str
    currency: str
    balance: str = Field(description="A decimal number, as a string so no precision is lost.")
    status: str
    as_of: datetime = Field(description="When the provider last reported a change to this account.")


class ReconnectRequestItemOut(BaseModel):
    connection_id: int
    source: str
    status: ReconnectRequestItem.ItemStatus = Field(
        description="open: still to fix; done: the client fixed it; dropped: it recovered without the client."
    )


class ReconnectRequestOut(BaseModel):
    id: uuid.UUID
    household_id: int
    client: ClientRef
    status: ReconnectRequest.RequestStatus
    status_words: str = Field(description="Where the request stands, as the adviser reads it on the household page.")
    delivery: ReconnectRequest.Delivery = Field(
        description="What the mail provider reported about the email; empty when it reported nothing."
    )
    sent_to: str
    actor: str = Field(description="Who asked, in words.")
    created_at: datetime
    expires_at: datetime
    opened_at: datetime | None
    closed_at: datetime | None
    reminders_sent: int
    done: int = Field(description="Items the client fixed.")
    items: list[ReconnectRequestItemOut] = Field(description="Each connection the client is asked to fix.")


class ClientLinkOut(BaseModel):
    id: uuid.UUID
    status: ClientLink.LinkStatus
    sent_to: str
    created_at: datetime
    expires_at: datetime
    opened_at: datetime | None
    completed_at: datetime | None


class EventFacts(BaseModel):
    kind: ConnectionEvent.Kind = Field(description="The connection event this was made from.")
    from_status: Status | Literal[""]
    to_status: Status | Literal[""]
    reason: Reason
    message: str
    deadline: datetime | None = Field(default=None, description="For connection.deadline_approaching.")


class EventData(BaseModel):
    connection: ConnectionOut = Field(
        description="The connection as it is now (when sent or read), not as it was: events may arrive out of order."
    )
    event: EventFacts
    client_link: ClientLinkOut | None = Field(default=None, description="For client_link.* events.")


class EventEnvelope(BaseModel):
    """A webhook's body, and an item of ``GET /api/v1/events``."""

    type: EventType
    id: str = Field(description="Unique per event; the webhook-id header carries the same value.")
    timestamp: datetime = Field(description="When it happened.")
    data: EventData


# --- Builders -----------------------------------------------------------------------------------


def household_out(household: Household) -> HouseholdOut:
    """From a household annotated by ``selectors.households_with_rollups``."""
    worst = getattr(household, "worst_severity", None)
    return HouseholdOut(
        id=household.pk,
        name=household.name,
        reference=household.reference,
        health=Status(selectors.SEVERITY_STATUS[worst]) if worst is not None else None,
        data_as_of=getattr(household, "data_as_of", None),
        connection_count=getattr(household, "connection_count", 0) or 0,
        created_at=household.created_at,
        updated_at=household.updated_at,
    )


def client_out(client: Client) -> ClientOut:
    return ClientOut(
        id=client.pk,
        household_id=client.household_id,
        name=client.name,
        email=client.email,
        created_at=client.created_at,
        updated_at=client.updated_at,
    )


def connection_out(connection: Connection, *, now: datetime) -> ConnectionOut:
    """From a connection of ``api.selectors.connections_for_api`` (household, client, app, credentials loaded).

    Built without validation (``model_construct``): every value below is
    already of its field's type, and a page builds a hundred of these, which
    validation made the largest cost of a page after the queries. The tests
    read the JSON the API sends, so a wrong type would still show.
    """
    last_event_at: datetime | None = getattr(connection, "last_event_at", None)
    changed_at = max(connection.updated_at, last_event_at) if last_event_at else connection.updated_at
    deadlines = selectors.connection_deadlines(connection=connection, now=now)
    household = connection.household
    return ConnectionOut.model_construct(
        id=connection.pk,
        household=HouseholdRef.model_construct(id=household.pk, name=household.name, reference=household.reference),
        client=ClientRef.model_construct(id=connection.client.pk, name=connection.client.name),
        provider=Provider(connection.provider),
        provider_name=wording.provider_name(connection.provider),
        platform=connection.platform,
        platform_name=wording.platform_name(connection.platform),
        source=connection.source_display,
        environment=Environment(connection.provider_app.environment),
        label=connection.label,
        status=Status(connection.status),
        reason=Reason(connection.reason),
        message=connection.status_message,
        data_as_of=connection.last_success_at,
        last_checked_at=connection.last_checked_at,
        next_check_at=connection.next_check_at,
        reconnect_by=connection.reconnect_by,
        deadlines=[DeadlineOut.model_construct(kind=d.kind, at=d.at, urgent=d.urgent) for d in deadlines],
        connected_at=connection.connected_at,
        disconnected_at=connection.disconnected_at,
        created_at=connection.created_at,
        updated_at=connection.updated_at,
        changed_at=changed_at,
    )


def json_time(value: datetime | None) -> str | None:
    """A time as the API's JSON renderer writes it (``DjangoJSONEncoder``: milliseconds, ``Z`` for UTC)."""
    if value is None:
        return None
    text = value.isoformat()
    if value.microsecond:
        text = text[:23] + text[26:]
    if text.endswith("+00:00"):
        text = text[:-6] + "Z"
    return text


@dataclass(slots=True)
class _CredentialRow:
    kind: str
    issued_at: datetime | None
    expires_at: datetime | None


@dataclass(slots=True)
class _Credentials:
    rows: list[_CredentialRow]

    def all(self) -> list[_CredentialRow]:
        return self.rows


@dataclass(slots=True)
class _DeadlineFacts:
    """What ``connections.selectors.connection_deadlines`` reads of a connection, from a plain row."""

    status: str
    reconnect_by: datetime | None
    reconnect_by_rolls: bool
    connected_at: datetime | None
    created_at: datetime
    next_check_at: datetime | None
    credentials: _Credentials


def connection_items(
    rows: Iterable[dict[str, Any]], *, credentials: dict[int, list[tuple[str, Any, Any]]], now: datetime
) -> list[dict[str, Any]]:
    """A page of :class:`ConnectionOut` as JSON-ready dicts, from ``api.selectors.connection_rows_for_api``.

    The same items :func:`connection_out` makes, key for key and in the same
    order, with times already in the renderer's format: a list skips building
    models and ORM instances per row, which were most of a page's time after
    its queries (``make bench``, "api"). ``credentials``: each connection's
    ``(kind, issued_at, expires_at)`` (``api.selectors.connection_credentials_for_api``).
    ``tests/api/test_connection_items.py`` holds the two builders to one output.
    """
    words: dict[tuple[str, str, str, str], tuple[str, str, str, str]] = {}
    items = []
    for row in rows:
        provider, platform, status, reason = row["provider"], row["platform"], row["status"], row["reason"]
        said = words.get((provider, platform, status, reason))
        if said is None:
            said = words[(provider, platform, status, reason)] = (
                wording.provider_name(provider),
                wording.platform_name(platform),
                wording.source_name(provider=provider, platform=platform),
                wording.status_message(provider=provider, platform=platform, status=status, reason=reason),
            )
        provider_name, platform_name, source, message = said
        facts = _DeadlineFacts(
            status=status,
            reconnect_by=row["reconnect_by"],
            reconnect_by_rolls=row["reconnect_by_rolls"],
            connected_at=row["connected_at"],
            created_at=row["created_at"],
            next_check_at=row["next_check_at"],
            credentials=_Credentials([_CredentialRow(*c) for c in credentials.get(row["id"], ())]),
        )
        deadlines = selectors.connection_deadlines(connection=cast(Connection, facts), now=now)
        updated_at, last_event_at = row["updated_at"], row["last_event_at"]
        changed_at = max(updated_at, last_event_at) if last_event_at else updated_at
        items.append(
            {
                "id": row["id"],
                "household": {
                    "id": row["household_id"],
                    "name": row["household__name"],
                    "reference": row["household__reference"],
                },
                "client": {"id": row["client_id"], "name": row["client__name"]},
                "provider": provider,
                "provider_name": provider_name,
                "platform": platform,
                "platform_name": platform_name,
                "source": source,
                "environment": row["provider_app__environment"],
                "label": row["label"],
                "status": status,
                "reason": reason,
                "message": message,
                "data_as_of": json_time(row["last_success_at"]),
                "last_checked_at": json_time(row["last_checked_at"]),
                "next_check_at": json_time(row["next_check_at"]),
                "reconnect_by": json_time(row["reconnect_by"]),
                "deadlines": [{"kind": d.kind, "at": json_time(d.at), "urgent": d.urgent} for d in deadlines],
                "connected_at": json_time(row["connected_at"]),
                "disconnected_at": json_time(row["disconnected_at"]),
                "created_at": json_time(row["created_at"]),
                "updated_at": json_time(updated_at),
                "changed_at": json_time(changed_at),
            }
        )
    return items


def event_out(event: ConnectionEvent) -> EventOut:
    return EventOut(
        id=event.pk,
        kind=ConnectionEvent.Kind(event.kind),
        from_status=event.from_status,  # type: ignore[arg-type]
        to_status=event.to_status,  # type: ignore[arg-type]
        reason=Reason(event.reason),
        message=event.message,
        actor=wording.actor_words(actor=event.actor, actor_label=event.actor_label),
        created_at=event.created_at,
    )


def account_out(account: Account) -> AccountOut:
    return AccountOut(
        id=account.pk,
        name=account.name,
        currency=account.currency,
        balance=format(account.balance, "f"),
        status=account.status,
        as_of=account.as_of,
    )


def reconnect_request_out(request: ReconnectRequest) -> ReconnectRequestOut:
    """From a request with its client and its items' connections loaded."""
    items, done, words = request.progress()
    return ReconnectRequestOut(
        id=request.pk,
        household_id=request.household_id,
        client=ClientRef(id=request.client.pk, name=request.client.name),
        status=ReconnectRequest.RequestStatus(request.status),
        status_words=words,
        delivery=ReconnectRequest.Delivery(request.delivery),
        sent_to=request.sent_to,
        actor=wording.actor_words(actor=request.created_by, actor_label=request.actor_label),
        created_at=request.created_at,
        expires_at=request.expires_at,
        opened_at=request.opened_at,
        closed_at=request.closed_at,
        reminders_sent=request.reminders_sent,
        done=done,
        items=[
            ReconnectRequestItemOut(
                connection_id=item.connection_id,
                source=item.connection.source_display,
                status=ReconnectRequestItem.ItemStatus(item.status),
            )
            for item in items
        ],
    )


def client_link_out(link: ClientLink) -> ClientLinkOut:
    return ClientLinkOut(
        id=link.pk,
        status=ClientLink.LinkStatus(link.status),
        sent_to=link.sent_to,
        created_at=link.created_at,
        expires_at=link.expires_at,
        opened_at=link.opened_at,
        completed_at=link.completed_at,
    )


def envelope_out(event: WebhookEvent, *, connection: Connection, now: datetime) -> EventEnvelope:
    """The envelope of ``event`` (its source event and client link loaded) with ``connection`` as it is now."""
    source = event.source_event
    deadline = (
        (source.details or {}).get("deadline") if event.type == EventType.CONNECTION_DEADLINE_APPROACHING else None
    )
    return EventEnvelope(
        type=EventType(event.type),
        id=event.public_id,
        timestamp=event.occurred_at,
        data=EventData(
            connection=connection_out(connection, now=now),
            event=EventFacts(
                kind=ConnectionEvent.Kind(source.kind),
                from_status=source.from_status,  # type: ignore[arg-type]
                to_status=source.to_status,  # type: ignore[arg-type]
                reason=Reason(source.reason),
                message=source.message,
                deadline=deadline,
            ),
            client_link=client_link_out(event.client_link) if event.client_link is not None else None,
        ),
    )
