"""Household reconnect requests: one email and one link per client, covering every connection that needs them.

A request holds one item per connection; each item carries a
:class:`~connections.models.ClientLink` that is never emailed on its own: the
request's pages run that link's flow (the existing per-provider flows), and
:func:`client_link_claim` makes the item complete exactly once. Which items
are done, and which connections recovered without the client, is read back
from the links and the connections (:func:`.reconnect_sync.reconnect_requests_sync`), so
nothing in the lifecycle calls into requests.

Tokens: each email (the request and every reminder) carries its own signed
256-bit token; only the SHA-256 of its random part is stored
(:class:`~connections.models.ReconnectRequestEmail`). A token is shown to
nobody but the client, in that email.

The client's side (the emailed link, opening, stopping) is in
:mod:`.reconnect_client`; reading back what happened in :mod:`.reconnect_sync`;
reminders, delivery reports and bulk sends in :mod:`.reconnect_followup`.

Settings: ``RECONNECT_REQUEST_MAX_AGE_DAYS`` (7), ``RECONNECT_REMINDER_DAYS``
([2, 5]) and ``RECONNECT_REQUESTS_PER_FIRM_PER_HOUR`` (100), each overridden
per firm by :class:`~connections.models.FirmNotificationPolicy`.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from .. import lifecycle, notifications, wording
from ..models import (
    BulkReconnectSend,
    Client,
    ClientLink,
    Connection,
    ConnectionEvent,
    Firm,
    Household,
    ReconnectRequest,
    ReconnectRequestEmail,
    ReconnectRequestItem,
)
from .common import User, actor_user, sha256_hex
from .reconnect_plans import DEFAULT_MAX_AGE_DAYS as DEFAULT_MAX_AGE_DAYS
from .reconnect_plans import DEFAULT_REMINDER_DAYS as DEFAULT_REMINDER_DAYS
from .reconnect_plans import DEFAULT_REQUESTS_PER_FIRM_PER_HOUR as DEFAULT_REQUESTS_PER_FIRM_PER_HOUR
from .reconnect_plans import OPEN as OPEN
from .reconnect_plans import REQUEST_SALT as REQUEST_SALT
from .reconnect_plans import TRACKED as TRACKED
from .reconnect_plans import UNDELIVERABLE as UNDELIVERABLE
from .reconnect_plans import ReconnectRequestError as ReconnectRequestError
from .reconnect_plans import RequestPlan as RequestPlan
from .reconnect_plans import firm_policy as firm_policy
from .reconnect_plans import needing_client as needing_client
from .reconnect_plans import quiet_words as quiet_words
from .reconnect_plans import reconnect_request_plans as reconnect_request_plans
from .reconnect_plans import reconnect_request_preview as reconnect_request_preview
from .reconnect_plans import reminder_days as reminder_days
from .reconnect_plans import request_max_age as request_max_age
from .reconnect_plans import requests_per_hour as requests_per_hour

logger = logging.getLogger("connections.requests")

# --- Creating and sending --------------------------------------------------------------------------


@dataclass(frozen=True)
class ReconnectRequestResult:
    """What asking one client did: ``outcome`` is "sent", "updated" (an open request took new items) or "skipped"."""

    household: Household
    client: Client
    outcome: str
    note: str = ""
    request: ReconnectRequest | None = None
    url: str = ""

    def __repr__(self) -> str:  # the URL carries the token
        return f"ReconnectRequestResult(client={self.client.pk}, outcome={self.outcome!r})"

    @property
    def message(self) -> str:
        """The note as a line on its own: named after the client, unless it already starts with their name."""
        if not self.note or self.note.startswith(self.client.name):
            return self.note
        return f"{self.client.name}: {self.note}"


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=REQUEST_SALT)


def _absolute(path: str) -> str:
    # Always the portal's configured origin, never a request's Host header.
    return urljoin(settings.PORTAL_BASE_URL.rstrip("/") + "/", path.lstrip("/"))


def _new_token() -> tuple[str, str]:
    """(the token for the URL, the hash to store)."""
    raw = secrets.token_urlsafe(32)
    return _signer().sign(raw), sha256_hex(raw)


def reconnect_requests_create(
    *,
    households: Sequence[Household],
    user: User | None = None,
    actor_label: str = "",
    bulk: BulkReconnectSend | None = None,
    send_email: bool = True,
    send_despite_stop: Collection[int] = (),
    now: dt.datetime | None = None,
) -> list[ReconnectRequestResult]:
    """Ask every client of ``households`` whose connections need them to reconnect: one request and email each.

    Covers each connection that needs reconnecting or has a hard deadline
    within the warning window. A client with an open request gets the new
    connections added to it (the next reminder lists them) and no second
    email; a client without an email address is skipped, with the reason.
    An open request whose email bounced, failed or was marked as spam is
    never reminded, so asking again replaces it: it closes as superseded
    (its links cancelled) and a new one goes to the client's current
    address, unless that is the very address that bounced or complained.
    A client who said "not me" or "stop" to an earlier request is skipped
    with what they said and when, unless their id is in
    ``send_despite_stop`` (the adviser confirmed it on the household page).
    The rows are written in one transaction per client and the email goes
    out when it commits (``send_email=False`` leaves the sending to the
    caller, who gets the link in ``url``; the portal then sends no reminder
    either). ``user`` is who asks (``None`` for
    the API, with ``actor_label``). The caller has checked that ``user`` may
    act on these households.
    """
    now = now or timezone.now()
    results: list[ReconnectRequestResult] = []
    for plan in reconnect_request_plans(households=households, now=now, send_despite_stop=send_despite_stop):
        if not plan.connections or not plan.client.email:
            results.append(ReconnectRequestResult(plan.household, plan.client, "skipped", plan.blocker))
            continue
        if (plan.replaces is not None or plan.existing is None) and plan.blocker:
            results.append(ReconnectRequestResult(plan.household, plan.client, "skipped", plan.blocker))
            continue
        if plan.existing is not None and plan.replaces is None:
            added = _items_add(request=plan.existing, connections=plan.connections, user=user, now=now)
            note = plan.blocker if not added else f"Added {added} to the open request; the next reminder lists them."
            outcome = "updated" if added else "skipped"
            results.append(ReconnectRequestResult(plan.household, plan.client, outcome, note, plan.existing))
            continue
        try:
            results.append(
                _request_create(
                    plan=plan, user=user, actor_label=actor_label, bulk=bulk, send_email=send_email, now=now
                )
            )
        except IntegrityError:
            # Another request for this client was created meanwhile (a double click, two tabs).
            results.append(ReconnectRequestResult(plan.household, plan.client, "skipped", "Already asked just now."))
    return results


def _request_create(
    *,
    plan: RequestPlan,
    user: User | None,
    actor_label: str,
    bulk: BulkReconnectSend | None,
    send_email: bool,
    now: dt.datetime,
) -> ReconnectRequestResult:
    token, token_hash = _new_token()
    with transaction.atomic():
        if plan.replaces is not None and not _supersede(plan.replaces, now=now):
            # Someone else replaced it (or the client opened it) meanwhile; the unique open request stands.
            raise IntegrityError("the request to replace is no longer open and undeliverable")
        request = ReconnectRequest.objects.create(
            household=plan.household,
            client=plan.client,
            created_by=actor_user(user),
            actor_label=actor_label,
            bulk=bulk,
            sent_to=plan.client.email,
            created_at=now,
            status_changed_at=now,
            expires_at=now + request_max_age(),
            emailed_by_portal=send_email,
        )
        _items_add(request=request, connections=plan.connections, user=user, now=now)
        email_row = ReconnectRequestEmail.objects.create(request=request, token_hash=token_hash, sent_at=now)
        url = _absolute(reverse("reconnect_request_open", args=[token]))
        if send_email:
            email = _email_for(request=request, sources=plan.sources, token=token, reminder=False)
            transaction.on_commit(lambda: _deliver(email_row=email_row, email=email))
    return ReconnectRequestResult(plan.household, plan.client, "sent", plan.note, request=request, url=url)


def _supersede(request: ReconnectRequest, *, now: dt.datetime) -> bool:
    """Close an undeliverable open request before its replacement is made, and withdraw its links."""
    closed = ReconnectRequest.objects.filter(pk=request.pk, status__in=OPEN, delivery__in=UNDELIVERABLE).update(
        status=ReconnectRequest.RequestStatus.SUPERSEDED, status_changed_at=now, closed_at=now
    )
    if not closed:
        return False
    # An old email may still reach someone later (a greylisted bounce): its link must not lead anywhere.
    ClientLink.objects.filter(
        reconnect_item__request_id=request.pk, status__in=[ClientLink.LinkStatus.SENT, ClientLink.LinkStatus.OPENED]
    ).update(status=ClientLink.LinkStatus.CANCELLED)
    return True


def _items_add(
    *, request: ReconnectRequest, connections: Iterable[Connection], user: User | None, now: dt.datetime
) -> int:
    """Add the connections not yet in ``request`` (each with its own never-emailed link). Returns how many."""
    covered = set(request.items.values_list("connection_id", flat=True))
    position = len(covered)
    added = 0
    for connection in connections:
        if connection.pk in covered:
            continue
        link = ClientLink.objects.create(
            # The random part of a token nobody is ever given: the link is reached only through the request.
            token_hash=sha256_hex(secrets.token_urlsafe(32)),
            household_id=request.household_id,
            client_id=request.client_id,
            connection=connection,
            provider_app_id=connection.provider_app_id,
            platform=connection.platform,
            sent_to=request.sent_to,
            created_by=actor_user(user),
            created_at=now,
            sent_at=now,
            expires_at=request.expires_at,
        )
        ReconnectRequestItem.objects.create(request=request, connection=connection, client_link=link, position=position)
        lifecycle.event_record(
            connection=connection,
            kind=ConnectionEvent.Kind.LINK_SENT,
            message=wording.request_included(email=request.sent_to, expires_at=request.expires_at),
            actor=actor_user(user),
            actor_label=request.actor_label,
            created_at=now,
            # Which link and request: the webhook's ``client_link`` and the audit trail read these.
            details={"client_link_id": str(link.pk), "reconnect_request_id": str(request.pk)},
        )
        position += 1
        added += 1
    return added


def _email_for(
    *, request: ReconnectRequest, sources: list[str], token: str, reminder: bool
) -> notifications.RequestEmail:
    firm = Firm.objects.only("name").get(pk=request.household.firm_id)
    adviser = request.created_by
    return notifications.reconnect_request_email_build(
        firm_name=firm.name,
        client_name=request.client.name,
        to=request.sent_to,
        sources=sources,
        url=_absolute(reverse("reconnect_request_open", args=[token])),
        stop_url=_absolute(reverse("reconnect_request_open", args=[token]) + "?then=stop"),
        expires_at=request.expires_at,
        adviser_name=wording.person_name(adviser) if adviser is not None else "",
        reminder=reminder,
    )


def _deliver(*, email_row: ReconnectRequestEmail, email: notifications.RequestEmail) -> bool:
    """Send one request email; remember the ESP's id, or mark the request undeliverable."""
    try:
        message_id = notifications.reconnect_request_email_send(email=email)
    except Exception:
        logger.exception("Reconnect request %s: the email could not be sent.", email_row.request_id)
        now = timezone.now()
        ReconnectRequestEmail.objects.filter(pk=email_row.pk).update(
            delivery=ReconnectRequest.Delivery.FAILED, delivery_at=now
        )
        ReconnectRequest.objects.filter(pk=email_row.request_id).update(
            delivery=ReconnectRequest.Delivery.FAILED, delivery_at=now
        )
        return False
    if message_id:
        ReconnectRequestEmail.objects.filter(pk=email_row.pk).update(message_id=message_id)
    return True
