"""Following a reconnect request through: which items are done, which dropped, and each request's status.

Read back from the links and the connections, never told: an item is done
when its link completed, dropped when its connection no longer needs the
client (it recovered by itself, or the adviser fixed it), so nothing in the
lifecycle calls into requests. Creating and sending them is
:mod:`.reconnect_requests`'.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable

from django.utils import timezone

from ..models import (
    ClientLink,
    Connection,
    ReconnectRequest,
    ReconnectRequestItem,
)
from .reconnect_requests import TRACKED, needing_client


def reconnect_requests_sync(
    *, requests: Iterable[ReconnectRequest] | None = None, now: dt.datetime | None = None
) -> int:
    """Read back what happened: items done (their link completed), dropped (the connection no longer needs
    the client: it recovered by itself or the adviser fixed it), withdrawn (the adviser muted the
    connection), and each request's status from them.

    ``requests`` default to every open one. Returns how many requests changed status.
    """
    now = now or timezone.now()
    if requests is None:
        rows = list(ReconnectRequest.objects.filter(status__in=TRACKED))
    else:
        rows = [r for r in requests if r.status in TRACKED]
    if not rows:
        return 0
    items = list(ReconnectRequestItem.objects.filter(request_id__in=[r.pk for r in rows]).select_related("client_link"))
    open_items = [i for i in items if i.status == ReconnectRequestItem.ItemStatus.OPEN]
    # Snoozed connections stay in the request (the reminders leave them out until the snooze ends);
    # muted ones are withdrawn, as the adviser asked to hear no more of them.
    needed: set[int] = set()
    muted: set[int] = set()
    for connection in needing_client(
        Connection.objects.filter(pk__in=[i.connection_id for i in open_items]), now=now, include_quiet=True
    ).only("id"):
        needed.add(connection.pk)
        if getattr(connection, "quiet_muted_since", None) is not None:
            muted.add(connection.pk)
    for item in open_items:
        link = item.client_link
        if link.status == ClientLink.LinkStatus.COMPLETED:
            item.status, item.done_at = ReconnectRequestItem.ItemStatus.DONE, link.completed_at or now
        elif item.connection_id not in needed or item.connection_id in muted:
            dropped = item.connection_id not in needed
            item.status = (
                ReconnectRequestItem.ItemStatus.DROPPED if dropped else ReconnectRequestItem.ItemStatus.WITHDRAWN
            )
            item.done_at = now
            # The client must not be sent into a flow for a connection that works, or that nobody asks about.
            ClientLink.objects.filter(
                pk=link.pk, status__in=[ClientLink.LinkStatus.SENT, ClientLink.LinkStatus.OPENED]
            ).update(status=ClientLink.LinkStatus.CANCELLED)
        else:
            continue
        ReconnectRequestItem.objects.filter(pk=item.pk, status=ReconnectRequestItem.ItemStatus.OPEN).update(
            status=item.status, done_at=item.done_at
        )
    by_request: dict[object, list[ReconnectRequestItem]] = defaultdict(list)
    for item in items:
        by_request[item.request_id].append(item)
    changed = 0
    for request in rows:
        status = _status_from(request, by_request[request.pk], now=now)
        if status == request.status:
            continue
        closing = status not in TRACKED
        updated = ReconnectRequest.objects.filter(pk=request.pk, status=request.status).update(
            status=status, status_changed_at=now, **({"closed_at": now} if closing else {})
        )
        if updated:
            request.status, request.status_changed_at = status, now
            if closing:
                request.closed_at = now
            changed += 1
    return changed


def _status_from(request: ReconnectRequest, items: list[ReconnectRequestItem], *, now: dt.datetime) -> str:
    statuses = {i.status for i in items}
    done = ReconnectRequestItem.ItemStatus.DONE in statuses
    if ReconnectRequestItem.ItemStatus.OPEN not in statuses:
        if done:
            return ReconnectRequest.RequestStatus.DONE
        # Emptied (at least in part) by the adviser's mutes: closed, but nothing was fixed, so never "resolved".
        if ReconnectRequestItem.ItemStatus.WITHDRAWN in statuses:
            return ReconnectRequest.RequestStatus.MUTED
        return ReconnectRequest.RequestStatus.RESOLVED
    if request.status == ReconnectRequest.RequestStatus.PAUSED:
        return request.status
    if request.expires_at <= now:
        return ReconnectRequest.RequestStatus.EXPIRED
    if done:
        return ReconnectRequest.RequestStatus.PARTLY_DONE
    return request.status
