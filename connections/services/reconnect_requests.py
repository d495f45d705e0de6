"""Household reconnect requests: one email and one link per client, covering every connection that needs them.

A request holds one item per connection; each item carries a
:class:`~connections.models.ClientLink` that is never emailed on its own: the
request's pages run that link's flow (the existing per-provider flows), and
:func:`client_link_claim` makes the item complete exactly once. Which items
are done, and which connections recovered without the client, is read back
from the links and the connections (:func:`reconnect_requests_sync`), so
nothing in the lifecycle calls into requests.

Tokens: each email (the request and every reminder) carries its own signed
256-bit token; only the SHA-256 of its random part is stored
(:class:`~connections.models.ReconnectRequestEmail`). A token is shown to
nobody but the client, in that email.

Settings: ``RECONNECT_REQUEST_MAX_AGE_DAYS`` (7), ``RECONNECT_REMINDER_DAYS``
([2, 5]) and ``RECONNECT_REQUESTS_PER_FIRM_PER_HOUR`` (100), each overridden
per firm by :class:`~connections.models.FirmNotificationPolicy`.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urljoin

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.db.models import F, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from .. import lifecycle, notifications, wording
from ..lifecycle.claims import deadline_near_q
from ..models import (
    BulkReconnectSend,
    Client,
    ClientLink,
    Connection,
    ConnectionEvent,
    Credential,
    Firm,
    FirmNotificationPolicy,
    Household,
    ReconnectRequest,
    ReconnectRequestEmail,
    ReconnectRequestItem,
    Status,
)
from .common import CLIENT_LINK_ACTOR, User, actor_user, sha256_hex

logger = logging.getLogger("connections.requests")

REQUEST_SALT = "connections.reconnect-request"
DEFAULT_MAX_AGE_DAYS = 7
DEFAULT_REMINDER_DAYS = (2, 5)
DEFAULT_REQUESTS_PER_FIRM_PER_HOUR = 100
OPEN = (
    ReconnectRequest.RequestStatus.SENT,
    ReconnectRequest.RequestStatus.OPENED,
    ReconnectRequest.RequestStatus.PARTLY_DONE,
)
# Still followed up by sync (items drop out as connections recover), but not reminded.
TRACKED = (*OPEN, ReconnectRequest.RequestStatus.PAUSED)
UNDELIVERABLE = (
    ReconnectRequest.Delivery.BOUNCED,
    ReconnectRequest.Delivery.COMPLAINED,
    ReconnectRequest.Delivery.FAILED,
)


class ReconnectRequestError(Exception):
    """A request link that cannot be used. ``gone`` is true for one that was valid once (410)."""

    def __init__(self, message: str, *, gone: bool = False, request: ReconnectRequest | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.gone = gone
        self.request = request


# --- Settings ---------------------------------------------------------------------------------


def request_max_age() -> dt.timedelta:
    return dt.timedelta(days=float(getattr(settings, "RECONNECT_REQUEST_MAX_AGE_DAYS", DEFAULT_MAX_AGE_DAYS)))


def firm_policy(firm_id: int) -> FirmNotificationPolicy | None:
    return FirmNotificationPolicy.objects.filter(firm_id=firm_id).first()


def reminder_days(policy: FirmNotificationPolicy | None) -> list[float]:
    days = list(policy.reminder_days) if policy is not None and policy.reminder_days else []
    configured: list[float] = list(getattr(settings, "RECONNECT_REMINDER_DAYS", DEFAULT_REMINDER_DAYS))
    return sorted(float(d) for d in (days or configured))


def requests_per_hour(policy: FirmNotificationPolicy | None) -> int:
    if policy is not None:
        return policy.requests_per_hour
    return int(getattr(settings, "RECONNECT_REQUESTS_PER_FIRM_PER_HOUR", DEFAULT_REQUESTS_PER_FIRM_PER_HOUR))


# --- Which connections need the client --------------------------------------------------------------


def needing_client(connections: QuerySet[Connection], *, now: dt.datetime) -> QuerySet[Connection]:
    """Of ``connections``, those only the client can fix now: needs reconnect, or a hard deadline the rules call near.

    The same conditions as the attention list's first two ranks
    (``selectors.needs_attention_queryset``); a provider that is merely failing
    is not the client's to fix.
    """
    tunables = lifecycle.tunables()
    refresh_issued = Credential.objects.filter(connection=OuterRef("pk"), kind=Credential.Kind.REFRESH).values(
        "issued_at"
    )[:1]
    aliases, near = deadline_near_q(now=now, tunables=tunables)
    return (
        connections.filter(Q(status=Status.NEEDS_RECONNECT) | Q(reconnect_by__isnull=False))
        .alias(deadline_basis=Coalesce(Subquery(refresh_issued), F("connected_at"), F("created_at")))
        .alias(**aliases)
        .filter(Q(status=Status.NEEDS_RECONNECT) | (near & Q(status__in=[Status.ACTIVE, Status.DEGRADED])))
    )


# --- Planning and preview ------------------------------------------------------------------------


@dataclass
class RequestPlan:
    """What asking one client would do: which connections, to which address, or why not."""

    household: Household
    client: Client
    connections: list[Connection] = field(default_factory=list)
    existing: ReconnectRequest | None = None

    @property
    def sources(self) -> list[str]:
        return [c.source_display for c in self.connections]

    @property
    def blocker(self) -> str:
        """Why no email would go to this client ("" when one would)."""
        if not self.client.email:
            return f"{self.client.name} has no email address; add one first."
        if self.existing is not None:
            return (
                f"Already asked on {timezone.localtime(self.existing.created_at):%d %b %Y}; "
                "reminders follow by themselves."
            )
        return ""


def reconnect_request_plans(*, households: Sequence[Household], now: dt.datetime | None = None) -> list[RequestPlan]:
    """One plan per client of ``households`` with a connection that needs them. A fixed number of queries."""
    now = now or timezone.now()
    household_ids = [h.pk for h in households]
    by_pk = {h.pk: h for h in households}
    connections = list(
        needing_client(Connection.objects.filter(household_id__in=household_ids), now=now)
        .select_related("client", "provider_app")
        .defer("provider_app__client_secret")
        .order_by("household_id", "client__name", "client_id", "platform", "id")
    )
    existing = {
        r.client_id: r
        for r in ReconnectRequest.objects.filter(household_id__in=household_ids, status__in=OPEN).only(
            "id", "client_id", "created_at", "household_id", "status"
        )
    }
    plans: dict[int, RequestPlan] = {}
    for connection in connections:
        plan = plans.get(connection.client_id)
        if plan is None:
            plan = plans[connection.client_id] = RequestPlan(
                household=by_pk[connection.household_id],
                client=connection.client,
                existing=existing.get(connection.client_id),
            )
        plan.connections.append(connection)
    return list(plans.values())


def reconnect_request_preview(
    *, plan: RequestPlan, user: User | None, now: dt.datetime | None = None
) -> notifications.RequestEmail:
    """The exact email ``plan`` would send, with a placeholder where the client's own link goes."""
    now = now or timezone.now()
    return notifications.reconnect_request_email_build(
        firm_name=plan.household.firm.name,
        client_name=plan.client.name,
        to=plan.client.email,
        sources=plan.sources,
        url=notifications.PREVIEW_URL,
        stop_url=notifications.PREVIEW_URL,
        expires_at=now + request_max_age(),
        adviser_name=wording.person_name(user) if actor_user(user) is not None else "",
    )


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
    now: dt.datetime | None = None,
) -> list[ReconnectRequestResult]:
    """Ask every client of ``households`` whose connections need them to reconnect: one request and email each.

    Covers each connection that needs reconnecting or has a hard deadline
    within the warning window. A client with an open request gets the new
    connections added to it (the next reminder lists them) and no second
    email; a client without an email address is skipped, with the reason.
    The rows are written in one transaction per client and the email goes
    out when it commits (``send_email=False`` leaves the sending to the
    caller, who gets the link in ``url``). ``user`` is who asks (``None`` for
    the API, with ``actor_label``). The caller has checked that ``user`` may
    act on these households.
    """
    now = now or timezone.now()
    results: list[ReconnectRequestResult] = []
    for plan in reconnect_request_plans(households=households, now=now):
        if not plan.client.email:
            results.append(ReconnectRequestResult(plan.household, plan.client, "skipped", plan.blocker))
            continue
        if plan.existing is not None:
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
        )
        _items_add(request=request, connections=plan.connections, user=user, now=now)
        email_row = ReconnectRequestEmail.objects.create(request=request, token_hash=token_hash, sent_at=now)
        url = _absolute(reverse("reconnect_request_open", args=[token]))
        if send_email:
            email = _email_for(request=request, sources=plan.sources, token=token, reminder=False)
            transaction.on_commit(lambda: _deliver(email_row=email_row, email=email))
    return ReconnectRequestResult(plan.household, plan.client, "sent", request=request, url=url)


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


# --- The client's side ------------------------------------------------------------------------------


def reconnect_request_resolve(*, token: str, now: dt.datetime | None = None) -> ReconnectRequest:
    """The request an emailed token names, if it may still be used.

    Raises :class:`ReconnectRequestError`: tampered or unknown is not ``gone``
    (400); expired, finished or stopped is ``gone`` (410).
    """
    now = now or timezone.now()
    try:
        raw = _signer().unsign(token, max_age=request_max_age())
    except signing.SignatureExpired:
        raise ReconnectRequestError("This link has expired. Ask your adviser to send a new one.", gone=True) from None
    except signing.BadSignature:
        raise ReconnectRequestError("This link is not valid. Check that you copied all of it.") from None
    email = (
        ReconnectRequestEmail.objects.select_related("request__household__firm", "request__client")
        .filter(token_hash=sha256_hex(raw))
        .first()
    )
    if email is None:
        raise ReconnectRequestError("This link is not valid. Check that you copied all of it.")
    request = email.request
    reconnect_requests_sync(requests=[request], now=now)
    if request.status in (ReconnectRequest.RequestStatus.DONE, ReconnectRequest.RequestStatus.RESOLVED):
        raise ReconnectRequestError(
            "Everything this link was for is working now. Thank you, there is nothing left to do.",
            gone=True,
            request=request,
        )
    if request.status == ReconnectRequest.RequestStatus.EXPIRED:
        raise ReconnectRequestError(
            "This link has expired. Ask your adviser to send a new one.", gone=True, request=request
        )
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
    """The client asked to stop ("not_me" or "stop"): pause the request, withdraw its links, tell the adviser."""
    now = now or timezone.now()
    if reason not in ReconnectRequest.PauseReason.values or not reason:
        raise ValueError(f"unknown reason {reason!r}")
    paused = ReconnectRequest.objects.filter(pk=request.pk, status__in=OPEN).update(
        status=ReconnectRequest.RequestStatus.PAUSED, paused_at=now, pause_reason=reason, status_changed_at=now
    )
    if not paused:
        return False
    request.status, request.paused_at, request.pause_reason = ReconnectRequest.RequestStatus.PAUSED, now, reason
    ClientLink.objects.filter(
        reconnect_item__request=request, status__in=[ClientLink.LinkStatus.SENT, ClientLink.LinkStatus.OPENED]
    ).update(status=ClientLink.LinkStatus.CANCELLED)
    recipients = sorted(
        {u.email for u in request.household.advisers.filter(is_active=True).exclude(email="")}
        | ({request.created_by.email} if request.created_by is not None and request.created_by.email else set())
    )
    transaction.on_commit(lambda: notifications.reconnect_request_stopped_send(request=request, recipients=recipients))
    return True


# --- Following up ---------------------------------------------------------------------------------


def reconnect_requests_sync(
    *, requests: Iterable[ReconnectRequest] | None = None, now: dt.datetime | None = None
) -> int:
    """Read back what happened: items done (their link completed), dropped (the connection no longer needs
    the client: it recovered by itself or the adviser fixed it), and each request's status from them.

    ``requests`` default to every open or paused one. Returns how many requests changed status.
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
    needed = set(
        needing_client(Connection.objects.filter(pk__in=[i.connection_id for i in open_items]), now=now).values_list(
            "pk", flat=True
        )
    )
    for item in open_items:
        link = item.client_link
        if link.status == ClientLink.LinkStatus.COMPLETED:
            item.status, item.done_at = ReconnectRequestItem.ItemStatus.DONE, link.completed_at or now
        elif item.connection_id not in needed:
            item.status, item.done_at = ReconnectRequestItem.ItemStatus.DROPPED, now
            # The client must not be sent into a flow for a connection that works.
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
        return ReconnectRequest.RequestStatus.DONE if done else ReconnectRequest.RequestStatus.RESOLVED
    if request.status == ReconnectRequest.RequestStatus.PAUSED:
        return request.status
    if request.expires_at <= now:
        return ReconnectRequest.RequestStatus.EXPIRED
    if done:
        return ReconnectRequest.RequestStatus.PARTLY_DONE
    return request.status


def reconnect_reminders_send(*, now: dt.datetime | None = None) -> int:
    """Remind clients whose request is unopened or unfinished after each interval. Returns how many were sent.

    Follows up first (:func:`reconnect_requests_sync`), so a request whose
    connections all recovered is closed, not reminded, and a reminder lists
    only what still needs the client. Not reminded: stopped, bounced or
    complained-about requests. A reminder missed while the job was down is
    sent once, not once per missed interval.
    """
    now = now or timezone.now()
    reconnect_requests_sync(now=now)
    sent = 0
    policies: dict[int, FirmNotificationPolicy | None] = {}
    candidates = (
        ReconnectRequest.objects.filter(status__in=OPEN, expires_at__gt=now)
        .exclude(delivery__in=UNDELIVERABLE)
        .select_related("household", "client", "created_by")
        .prefetch_related(
            Prefetch(
                "items",
                queryset=ReconnectRequestItem.objects.filter(
                    status=ReconnectRequestItem.ItemStatus.OPEN
                ).select_related("connection"),
                to_attr="open_items",
            )
        )
    )
    for request in candidates:
        firm_id = request.household.firm_id
        if firm_id not in policies:
            policies[firm_id] = firm_policy(firm_id)
        due = [d for d in reminder_days(policies[firm_id]) if now >= request.created_at + dt.timedelta(days=d)]
        open_items: list[ReconnectRequestItem] = request.open_items
        if len(due) <= request.reminders_sent or not open_items:
            continue
        # The claim: of two runs, exactly one moves the count and sends.
        if not ReconnectRequest.objects.filter(pk=request.pk, reminders_sent=request.reminders_sent).update(
            reminders_sent=len(due), last_reminder_at=now
        ):
            continue
        token, token_hash = _new_token()
        email_row = ReconnectRequestEmail.objects.create(
            request=request, kind=ReconnectRequestEmail.Kind.REMINDER, token_hash=token_hash, sent_at=now
        )
        sources = [item.connection.source_display for item in open_items]
        for item in open_items:
            lifecycle.event_record(
                connection=item.connection,
                kind=ConnectionEvent.Kind.LINK_SENT,
                message=wording.request_reminder_sent(email=request.sent_to, number=len(due)),
                actor_label=wording.REMINDERS,
                created_at=now,
            )
        if _deliver(
            email_row=email_row, email=_email_for(request=request, sources=sources, token=token, reminder=True)
        ):
            sent += 1
    return sent


# --- Delivery reports (django-anymail tracking webhooks) ---------------------------------------------

DELIVERY_BY_EVENT = {
    "delivered": ReconnectRequest.Delivery.DELIVERED,
    "bounced": ReconnectRequest.Delivery.BOUNCED,
    "rejected": ReconnectRequest.Delivery.BOUNCED,
    "complained": ReconnectRequest.Delivery.COMPLAINED,
}
# A later "delivered" must not hide an earlier bounce of the same request.
DELIVERY_RANK = {"": 0, "delivered": 1, "failed": 2, "bounced": 3, "complained": 4}


def reconnect_request_delivery_record(*, message_id: str, event_type: str, at: dt.datetime | None = None) -> bool:
    """Mark the request whose email ``message_id`` was with what the ESP reported. True when one matched."""
    delivery = DELIVERY_BY_EVENT.get(event_type)
    if delivery is None or not message_id:
        return False
    at = at or timezone.now()
    email = ReconnectRequestEmail.objects.select_related("request").filter(message_id=str(message_id)[:200]).first()
    if email is None:
        return False
    ReconnectRequestEmail.objects.filter(pk=email.pk).update(delivery=delivery, delivery_at=at)
    request = email.request
    if DELIVERY_RANK[delivery] > DELIVERY_RANK.get(request.delivery, 0):
        ReconnectRequest.objects.filter(pk=request.pk).update(delivery=delivery, delivery_at=at)
    return True


# --- Bulk sends ------------------------------------------------------------------------------------


def reconnect_bulk_start(
    *, user: User, households: Sequence[Household], now: dt.datetime | None = None
) -> BulkReconnectSend:
    """Queue asking ``households`` (already scoped to ``user``) in the background; the task starts on commit."""
    from .. import tasks  # tasks import services' neighbours

    now = now or timezone.now()
    if not households:
        raise ValueError("Choose at least one household.")
    firm_ids = {h.firm_id for h in households}
    if len(firm_ids) != 1:
        raise ValueError("A bulk request covers one firm's households.")
    bulk = BulkReconnectSend.objects.create(
        firm_id=firm_ids.pop(),
        created_by=actor_user(user),
        household_ids=[h.pk for h in households],
        created_at=now,
    )
    transaction.on_commit(lambda: tasks.send_reconnect_requests.delay(str(bulk.pk)))
    return bulk


BULK_LEASE = dt.timedelta(minutes=2)


def reconnect_bulk_process(*, bulk_id: str, now: dt.datetime | None = None) -> BulkReconnectSend | None:
    """Send what the firm's hourly limit allows now; when it runs out, wait (``resume_at``) and return.

    One worker at a time (a conditional UPDATE of ``lease_until``); each
    household is counted and sent in its own transaction under the firm's
    policy row lock, so two bulks of one firm never share out more than the
    limit between them. Returns the bulk as it stands (``None`` if another
    worker holds it).
    """
    now = now or timezone.now()
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    if (
        not BulkReconnectSend.objects.filter(free, pk=bulk_id)
        .exclude(status=BulkReconnectSend.BulkStatus.DONE)
        .update(lease_until=now + BULK_LEASE, status=BulkReconnectSend.BulkStatus.RUNNING)
    ):
        return None
    bulk = BulkReconnectSend.objects.select_related("created_by").get(pk=bulk_id)
    households = {
        h.pk: h
        for h in Household.objects.filter(pk__in=bulk.household_ids, firm_id=bulk.firm_id).select_related("firm")
    }
    try:
        while bulk.position < len(bulk.household_ids):
            household = households.get(bulk.household_ids[bulk.position])
            with transaction.atomic():
                policy = _policy_locked(bulk.firm_id)
                limit = requests_per_hour(policy)
                window = ReconnectRequestEmail.objects.filter(
                    kind=ReconnectRequestEmail.Kind.REQUEST,
                    request__household__firm_id=bulk.firm_id,
                    sent_at__gt=now - dt.timedelta(hours=1),
                )
                if window.count() >= limit:
                    oldest = window.order_by("sent_at").values_list("sent_at", flat=True).first() or now
                    bulk.status, bulk.resume_at = BulkReconnectSend.BulkStatus.THROTTLED, oldest + dt.timedelta(hours=1)
                    break
                if household is None:
                    bulk.skipped += 1
                    bulk.notes.append({"household": "", "note": "No longer in the firm."})
                else:
                    _bulk_one(bulk=bulk, household=household, now=now)
                bulk.position += 1
                bulk.lease_until = now + BULK_LEASE
                bulk.save(update_fields=["position", "sent", "skipped", "failed", "notes", "lease_until"])
        else:
            bulk.status, bulk.finished_at, bulk.resume_at = BulkReconnectSend.BulkStatus.DONE, now, None
    finally:
        bulk.lease_until = None
        bulk.save(update_fields=["status", "resume_at", "finished_at", "lease_until"])
    if bulk.status == BulkReconnectSend.BulkStatus.THROTTLED and bulk.resume_at is not None:
        _bulk_resume_later(bulk)
    return bulk


def _policy_locked(firm_id: int) -> FirmNotificationPolicy | None:
    """The firm's policy row, locked for the rest of the transaction (created with the defaults if missing)."""
    try:
        with transaction.atomic():
            FirmNotificationPolicy.objects.get_or_create(
                firm_id=firm_id,
                defaults={"requests_per_hour": requests_per_hour(None), "escalate_after_days": 7},
            )
    except IntegrityError:
        pass  # created by another worker just now
    return FirmNotificationPolicy.objects.select_for_update().filter(firm_id=firm_id).first()


def _bulk_one(*, bulk: BulkReconnectSend, household: Household, now: dt.datetime) -> None:
    results = reconnect_requests_create(households=[household], user=bulk.created_by, bulk=bulk, now=now)
    if not results:
        bulk.skipped += 1
        bulk.notes.append({"household": household.name, "note": "Nothing needs the client any more."})
    for result in results:
        if result.outcome == "sent":
            bulk.sent += 1
        else:
            bulk.skipped += 1
            bulk.notes.append({"household": household.name, "note": f"{result.client.name}: {result.note}"})


def _bulk_resume_later(bulk: BulkReconnectSend) -> None:
    from .. import tasks

    if bulk.resume_at is None or tasks.send_reconnect_requests.app.conf.task_always_eager:
        return  # run inline, an ETA means nothing: the reminders job carries it on (reconnect_bulks_resume)
    try:
        tasks.send_reconnect_requests.apply_async((str(bulk.pk),), eta=bulk.resume_at)
    except Exception:
        # The reminders job resumes waiting bulks too (reconnect_bulks_resume).
        logger.exception("Could not schedule bulk request %s to resume.", bulk.pk)


def reconnect_bulks_resume(*, now: dt.datetime | None = None) -> int:
    """Carry on every bulk whose wait is over (or whose worker was lost). Returns how many were carried on."""
    now = now or timezone.now()
    waiting = BulkReconnectSend.objects.exclude(status=BulkReconnectSend.BulkStatus.DONE).filter(
        Q(resume_at__lte=now) | Q(resume_at__isnull=True, created_at__lt=now - BULK_LEASE),
        Q(lease_until__isnull=True) | Q(lease_until__lt=now),
    )
    resumed = 0
    for bulk_id in waiting.values_list("pk", flat=True):
        if reconnect_bulk_process(bulk_id=str(bulk_id), now=now) is not None:
            resumed += 1
    return resumed
