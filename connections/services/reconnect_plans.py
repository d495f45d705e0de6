"""Who a reconnect request would ask, and what it would say.

Settings, the connections that need the client, plans and previews; sending
is in :mod:`.reconnect_requests`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import F, Max, Q, QuerySet
from django.utils import timezone

from .. import lifecycle, notifications, problems, wording
from ..models import (
    Client,
    Connection,
    FirmNotificationPolicy,
    Household,
    ReconnectRequest,
    Status,
)
from ..wording import requests as request_words
from .common import User, actor_user

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
    candidates, near = lifecycle.deadline_is_near_q(
        connections.filter(Q(status=Status.NEEDS_RECONNECT) | Q(reconnect_by__isnull=False)),
        now=now,
        tunables=lifecycle.tunables(),
    )
    needing = candidates.filter(
        Q(status=Status.NEEDS_RECONNECT) | (near & Q(status__in=[Status.ACTIVE, Status.DEGRADED]))
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
