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
from dataclasses import dataclass, field
from urllib.parse import urljoin

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.db.models import F, Max, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from .. import lifecycle, notifications, problems, wording
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
from ..wording import requests as request_words
from .common import User, actor_user, sha256_hex

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
# Followed up by sync (items drop out as connections recover). A request the client stopped is not: it
# closes when they stop it (:func:`.reconnect_client.reconnect_request_stop`), since nothing it holds can be
# used any more; their wish stays on the row (``paused_at``, ``pause_reason``) for the next ask to honour.
TRACKED = OPEN
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


def needing_client(
    connections: QuerySet[Connection], *, now: dt.datetime, include_quiet: bool = False
) -> QuerySet[Connection]:
    """Of ``connections``, those only the client can fix now: needs reconnect, or a hard deadline the rules call near.

    The same conditions as the attention list's first two ranks
    (``selectors.needs_attention_queryset``); a provider that is merely failing
    is not the client's to fix. A muted connection, or one whose problem is
    snoozed, is left out, as it is left out of the attention list: the adviser
    asked not to hear of it, so the client is not asked about it either.
    ``include_quiet=True`` keeps them, annotated with ``quiet_muted_since``
    and ``quiet_snoozed_until`` (NULL when not), for a preview to say why
    they are skipped and for the follow-up to tell the two apart.
    """
    tunables = lifecycle.tunables()
    refresh_issued = Credential.objects.filter(connection=OuterRef("pk"), kind=Credential.Kind.REFRESH).values(
        "issued_at"
    )[:1]
    aliases, near = deadline_near_q(now=now, tunables=tunables)
    needing = (
        connections.filter(Q(status=Status.NEEDS_RECONNECT) | Q(reconnect_by__isnull=False))
        .alias(deadline_basis=Coalesce(Subquery(refresh_issued), F("connected_at"), F("created_at")))
        .alias(**aliases)
        .filter(Q(status=Status.NEEDS_RECONNECT) | (near & Q(status__in=[Status.ACTIVE, Status.DEGRADED])))
    )
    if include_quiet:
        return needing.annotate(
            quiet_muted_since=F("muted_at"),
            quiet_snoozed_until=problems.snoozed_until_subquery(now),
        )
    return needing.exclude(problems.quiet_connection_q(now))


def quiet_words(connection: Connection) -> str:
    """Why a connection annotated by ``needing_client(include_quiet=True)`` is not asked ("" when it is)."""
    muted: dt.datetime | None = getattr(connection, "quiet_muted_since", None)
    snoozed: dt.datetime | None = getattr(connection, "quiet_snoozed_until", None)
    if muted is not None:
        return f"muted since {timezone.localtime(muted):%d %b %Y}"
    if snoozed is not None:
        return f"snoozed until {timezone.localtime(snoozed):%d %b %Y, %H:%M}"
    return ""


# --- Planning and preview ------------------------------------------------------------------------


@dataclass
class RequestPlan:
    """What asking one client would do: which connections, to which address, or why not."""

    household: Household
    client: Client
    connections: list[Connection] = field(default_factory=list)
    existing: ReconnectRequest | None = None
    # The client's last "not me" or "stop" that no later request was sent past, and whether the adviser
    # confirmed sending anyway (from the household page only; a bulk send never does).
    stopped: ReconnectRequest | None = None
    send_despite_stop: bool = False
    # Connections that need the client but are muted or snoozed: not asked, each with why.
    quiet: list[tuple[Connection, str]] = field(default_factory=list)

    @property
    def sources(self) -> list[str]:
        return [c.source_display for c in self.connections]

    @property
    def replaces(self) -> ReconnectRequest | None:
        """The open request a new one would replace: its email never reached the client, so nothing follows it up."""
        if self.existing is not None and self.existing.delivery in UNDELIVERABLE:
            return self.existing
        return None

    @property
    def blocker(self) -> str:
        """Why no email would go to this client ("" when one would)."""
        if not self.connections:
            left_out = "; ".join(f"{c.source_display} is {words}" for c, words in self.quiet)
            return f"Nothing to ask: {left_out}."
        if not self.client.email:
            return f"{self.client.name} has no email address; add one first."
        if self.replaces is not None:
            return _undeliverable_blocker(self.client, self.replaces)
        if self.existing is not None:
            return (
                f"Already asked on {timezone.localtime(self.existing.created_at):%d %b %Y}; "
                "reminders follow by themselves."
            )
        if self.stop_words and not self.send_despite_stop:
            return self.stop_words
        return ""

    @property
    def stop_words(self) -> str:
        """What the client said when they stopped a request ("" when nothing stands in the way)."""
        if self.stopped is None or self.stopped.paused_at is None:
            return ""
        return request_words.request_stopped_before(
            client=self.client.name,
            at=self.stopped.paused_at,
            reason=self.stopped.pause_reason,
            sent_to=self.stopped.sent_to,
        )

    @property
    def note(self) -> str:
        """What the adviser should know about an email that would go ("" when nothing)."""
        if self.replaces is not None and not self.blocker:
            return request_words.request_replacing(
                delivery=self.replaces.delivery, sent_to=self.replaces.sent_to, asked_at=self.replaces.created_at
            )
        return ""


def _same_address(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def _undeliverable_blocker(client: Client, request: ReconnectRequest) -> str:
    """An address that bounced or complained is not written to again; one that merely failed to send is."""
    if request.delivery == ReconnectRequest.Delivery.FAILED or not _same_address(client.email, request.sent_to):
        return ""
    return request_words.request_undeliverable_again(
        client=client.name, delivery=request.delivery, sent_to=request.sent_to, at=request.delivery_at
    )


def _stops(client_ids: Collection[int]) -> dict[int, ReconnectRequest]:
    """Each client's standing "not me" or "stop": their latest, unless a request was sent to them after it.

    A request sent after a stop is the adviser's confirmed decision to write again, so it is not asked twice.
    A "not me" answers for one address only: once the client's address is corrected it no longer applies.
    """
    if not client_ids:
        return {}
    latest = dict(
        ReconnectRequest.objects.filter(client_id__in=list(client_ids))
        .order_by()
        .values_list("client_id")
        .annotate(last=Max("created_at"))
    )
    stops: dict[int, ReconnectRequest] = {}
    for request in (
        ReconnectRequest.objects.filter(client_id__in=list(client_ids), paused_at__isnull=False)
        .select_related("client")
        .only("id", "client_id", "client__email", "created_at", "paused_at", "pause_reason", "sent_to")
        .order_by("client_id", "-paused_at")
    ):
        if request.client_id in stops or latest.get(request.client_id, request.created_at) > request.created_at:
            continue
        if request.pause_reason == ReconnectRequest.PauseReason.NOT_ME and not _same_address(
            request.client.email, request.sent_to
        ):
            continue
        stops[request.client_id] = request
    return stops


def reconnect_request_plans(
    *,
    households: Sequence[Household],
    now: dt.datetime | None = None,
    send_despite_stop: Collection[int] = (),
) -> list[RequestPlan]:
    """One plan per client of ``households`` with a connection that needs them. A fixed number of queries.

    ``send_despite_stop``: ids of clients the adviser confirmed writing to although they stopped a request.
    """
    now = now or timezone.now()
    household_ids = [h.pk for h in households]
    by_pk = {h.pk: h for h in households}
    connections = list(
        needing_client(Connection.objects.filter(household_id__in=household_ids), now=now, include_quiet=True)
        .select_related("client", "provider_app")
        .defer("provider_app__client_secret")
        .order_by("household_id", "client__name", "client_id", "platform", "id")
    )
    existing = {
        r.client_id: r
        for r in ReconnectRequest.objects.filter(household_id__in=household_ids, status__in=OPEN).only(
            "id", "client_id", "created_at", "household_id", "status", "sent_to", "delivery", "delivery_at"
        )
    }
    stops = _stops({c.client_id for c in connections})
    plans: dict[int, RequestPlan] = {}
    for connection in connections:
        plan = plans.get(connection.client_id)
        if plan is None:
            plan = plans[connection.client_id] = RequestPlan(
                household=by_pk[connection.household_id],
                client=connection.client,
                existing=existing.get(connection.client_id),
                stopped=stops.get(connection.client_id),
                send_despite_stop=connection.client_id in send_despite_stop,
            )
        words = quiet_words(connection)
        if words:
            plan.quiet.append((connection, words))
        else:
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
    caller, who gets the link in ``url``). ``user`` is who asks (``None`` for
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
