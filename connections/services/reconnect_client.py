"""The client's side of a reconnect request: the emailed link, opening it, and asking to stop.

The token in the emailed URL is checked here (signature, age, the stored
hash of its random part); the pages after it are named by the request's id
and served only to the browser session that opened the token
(:mod:`connections.views.client_request`).
"""

from __future__ import annotations

import datetime as dt

from django.core import signing
from django.db import transaction
from django.utils import timezone

from .. import lifecycle, notifications, wording
from ..models import ClientLink, ConnectionEvent, ReconnectRequest, ReconnectRequestEmail, ReconnectRequestItem
from .client_links import LINK_EXPIRED, LINK_INVALID
from .common import CLIENT_LINK_ACTOR, sha256_hex
from .reconnect_requests import OPEN, ReconnectRequestError, _signer, request_max_age
from .reconnect_sync import reconnect_requests_sync

LINK_REPLACED = "This link has been replaced by a newer email from your adviser. Please use the link in the latest one."
# The adviser muted what was left (an account the client closed, say): the client has nothing to do, but
# nothing was reconnected either, so the page must not thank them for it.
LINK_NOT_NEEDED = (
    "Your adviser no longer needs anything from this link, so there is nothing to do. You can close this window."
)

# --- The client's side ------------------------------------------------------------------------------


def reconnect_request_resolve(*, token: str, now: dt.datetime | None = None) -> ReconnectRequest:
    """The request an emailed token names, if it may still be used.

    Raises :class:`ReconnectRequestError`: tampered or unknown is not ``gone``
    (400); expired, finished or replaced by a newer request is ``gone`` (410).
    """
    now = now or timezone.now()
    try:
        raw = _signer().unsign(token, max_age=request_max_age())
    except signing.SignatureExpired:
        raise ReconnectRequestError(LINK_EXPIRED, gone=True) from None
    except signing.BadSignature:
        raise ReconnectRequestError(LINK_INVALID) from None
    email = (
        ReconnectRequestEmail.objects.select_related("request__household__firm", "request__client")
        .filter(token_hash=sha256_hex(raw))
        .first()
    )
    if email is None:
        raise ReconnectRequestError(LINK_INVALID)
    request = email.request
    reconnect_requests_sync(requests=[request], now=now)
    if request.status in (ReconnectRequest.RequestStatus.DONE, ReconnectRequest.RequestStatus.RESOLVED):
        raise ReconnectRequestError(
            "Everything this link was for is working now. Thank you, there is nothing left to do.",
            gone=True,
            request=request,
        )
    if request.status == ReconnectRequest.RequestStatus.MUTED:
        raise ReconnectRequestError(LINK_NOT_NEEDED, gone=True, request=request)
    if request.status == ReconnectRequest.RequestStatus.EXPIRED:
        raise ReconnectRequestError(LINK_EXPIRED, gone=True, request=request)
    if request.status == ReconnectRequest.RequestStatus.SUPERSEDED:
        raise ReconnectRequestError(LINK_REPLACED, gone=True, request=request)
    return request


def reconnect_request_open(*, request: ReconnectRequest, now: dt.datetime | None = None) -> None:
    """Record that the client opened the request (first time only: a conditional UPDATE)."""
    now = now or timezone.now()
    opened = ReconnectRequest.objects.filter(pk=request.pk, status=ReconnectRequest.RequestStatus.SENT).update(
        status=ReconnectRequest.RequestStatus.OPENED, opened_at=now, status_changed_at=now
    )
    if not opened:
        return
    request.status, request.opened_at, request.status_changed_at = ReconnectRequest.RequestStatus.OPENED, now, now
    for item in request.items.select_related("connection").filter(status=ReconnectRequestItem.ItemStatus.OPEN):
        lifecycle.event_record(
            connection=item.connection,
            kind=ConnectionEvent.Kind.LINK_OPENED,
            message=wording.request_opened(email=request.sent_to),
            actor_label=CLIENT_LINK_ACTOR,
            created_at=now,
        )


def reconnect_request_stop(*, request: ReconnectRequest, reason: str, now: dt.datetime | None = None) -> bool:
    """The client asked to stop ("not_me" or "stop"): close the request, withdraw its links, tell the adviser.

    The request closes rather than waiting: nothing it holds can be used again
    (its links are cancelled, no reminder goes), and following it up would
    only keep it in every sync. What the client said stays on the row, and
    the next ask for them is refused by default (``RequestPlan.stop_words``).
    """
    now = now or timezone.now()
    if reason not in ReconnectRequest.PauseReason.values or not reason:
        raise ValueError(f"unknown reason {reason!r}")
    paused = ReconnectRequest.objects.filter(pk=request.pk, status__in=OPEN).update(
        status=ReconnectRequest.RequestStatus.PAUSED,
        paused_at=now,
        pause_reason=reason,
        status_changed_at=now,
        closed_at=now,
    )
    if not paused:
        return False
    request.status, request.paused_at, request.pause_reason = ReconnectRequest.RequestStatus.PAUSED, now, reason
    request.closed_at = now
    ClientLink.objects.filter(
        reconnect_item__request=request, status__in=[ClientLink.LinkStatus.SENT, ClientLink.LinkStatus.OPENED]
    ).update(status=ClientLink.LinkStatus.CANCELLED)
    recipients = sorted(
        {u.email for u in request.household.advisers.filter(is_active=True).exclude(email="")}
        | ({request.created_by.email} if request.created_by is not None and request.created_by.email else set())
    )
    transaction.on_commit(lambda: notifications.reconnect_request_stopped_send(request=request, recipients=recipients))
    return True
