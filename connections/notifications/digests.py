"""Advisers' digests: what changed in their households' connections since their last one.

A digest reads problem rows (:mod:`connections.problems`, themselves derived
from committed events) and reconnect requests, never raw flaps:

* news: problems announced in the window (broken, will lapse soon, provider
  failing), recoveries that held of problems told before the window, snoozes
  that ran out, reconnect requests that changed (sent, opened, partly done,
  done, expired, bounced, stopped) and, for firm admins, problems escalated
  past the firm's age, naming the adviser;
* context, only when there is news: what is still broken and what will lapse
  within the warning window, told in an earlier digest and still so.

No news, no email. Snoozed and muted problems are left out. Each user
chooses hourly, daily at a local time in their own time zone, or off
(:class:`~connections.models.NotificationSettings`).
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone

from .. import wording
from ..models import (
    ConnectionProblem,
    Household,
    Membership,
    NotificationSettings,
    ReconnectRequest,
)
from .common import subject_from

logger = logging.getLogger("connections.notifications")

DEFAULT_DIGEST_FIRST_LOOKBACK_SECONDS = 24 * 3600
# Rows younger than this are left for the next digest: a transaction still open
# could otherwise commit a row dated before the moment the digest moved past.
DIGEST_SETTLE_SECONDS = 30

Cause = ConnectionProblem.Cause


@dataclass
class DigestItem:
    connection_id: int
    household: str
    household_id: int
    client: str
    source: str
    message: str
    at: dt.datetime
    deadline: dt.datetime | None = None


@dataclass
class Digest:
    """What one adviser is told in one run."""

    needs_reconnect: list[DigestItem] = field(default_factory=list)
    lapsing_soon: list[DigestItem] = field(default_factory=list)
    failing: list[DigestItem] = field(default_factory=list)
    recovered: list[DigestItem] = field(default_factory=list)
    woke: list[DigestItem] = field(default_factory=list)
    escalated: list[DigestItem] = field(default_factory=list)
    requests: list[DigestItem] = field(default_factory=list)
    still_broken: list[DigestItem] = field(default_factory=list)
    still_lapsing: list[DigestItem] = field(default_factory=list)

    def has_news(self) -> bool:
        return any(
            (
                self.needs_reconnect,
                self.lapsing_soon,
                self.failing,
                self.recovered,
                self.woke,
                self.escalated,
                self.requests,
            )
        )

    def __bool__(self) -> bool:
        return self.has_news()

    def summary(self) -> str:
        parts = [
            (self.needs_reconnect, "need reconnecting"),
            (self.lapsing_soon, "will lapse soon"),
            (self.failing, "provider failing"),
            (self.recovered, "recovered"),
            (self.woke, "back from snooze"),
            (self.escalated, "open too long"),
            (self.requests, "reconnect request updates"),
        ]
        return ", ".join(f"{len(items)} {words}" for items, words in parts if items)


# --- When each user is due ---------------------------------------------------------------------


def user_zone(prefs: NotificationSettings | None) -> dt.tzinfo:
    return zone_named(prefs.time_zone if prefs is not None else None)


def zone_named(name: str | None) -> dt.tzinfo:
    """The zone a user chose (``None``: they chose none, so the server's ``TIME_ZONE``); UTC if it is unknown."""
    try:
        return zoneinfo.ZoneInfo(name or settings.TIME_ZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def digest_due_since(*, prefs: NotificationSettings | None, sent_up_to: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether a user whose last digest covered up to ``sent_up_to`` gets one now (news permitting).

    Hourly: every run. Daily: the first run at or after their local ``daily_at``
    each day. Off: never.
    """
    digest = prefs.digest if prefs is not None else NotificationSettings.Digest.HOURLY
    if digest == NotificationSettings.Digest.OFF:
        return False
    if digest == NotificationSettings.Digest.HOURLY or prefs is None:
        return True
    zone = user_zone(prefs)
    local = now.astimezone(zone)
    today = dt.datetime.combine(local.date(), prefs.daily_at, tzinfo=zone)
    latest = today if today <= local else today - dt.timedelta(days=1)
    return sent_up_to is None or sent_up_to < latest


# --- What goes into a digest ------------------------------------------------------------------


@dataclass
class FirmNews:
    """Every row a firm's digests may draw on in one run (read once, sorted per user)."""

    problems: list[ConnectionProblem]
    requests: list[ReconnectRequest]
    advisers: dict[int, list[str]]


def _firm_news(*, firm_id: int, since: dt.datetime, upto: dt.datetime) -> FirmNews:
    in_window = (
        Q(announced_at__gt=since, announced_at__lte=upto)
        | Q(closed_at__gt=since, closed_at__lte=upto, resolution=ConnectionProblem.Resolution.RECOVERED)
        | Q(snoozed_until__gt=since, snoozed_until__lte=upto)
        | Q(escalated_at__gt=since, escalated_at__lte=upto)
    )
    still_open = Q(closed_at__isnull=True, announced_at__isnull=False)
    problems = list(
        ConnectionProblem.objects.filter(in_window | still_open, connection__household__firm_id=firm_id)
        .select_related("connection", "connection__household", "connection__client")
        .defer("connection__provider_app__client_secret")
        .order_by("connection__household__name", "connection__platform", "id")
    )
    requests = list(
        ReconnectRequest.objects.filter(
            Q(status_changed_at__gt=since, status_changed_at__lte=upto)
            | Q(delivery_at__gt=since, delivery_at__lte=upto),
            household__firm_id=firm_id,
        )
        .select_related("household", "client")
        .prefetch_related("items")
        .order_by("household__name", "client__name")
    )
    advisers: dict[int, list[str]] = defaultdict(list)
    household_ids = {p.connection.household_id for p in problems if p.escalated_at is not None}
    for household_id, first, last, username in Household.advisers.through.objects.filter(
        household_id__in=household_ids
    ).values_list("household_id", "user__first_name", "user__last_name", "user__username"):
        advisers[household_id].append(f"{first} {last}".strip() or username)
    return FirmNews(problems=problems, requests=requests, advisers=advisers)


def _item(problem: ConnectionProblem, *, at: dt.datetime, message: str = "") -> DigestItem:
    connection = problem.connection
    return DigestItem(
        connection_id=connection.pk,
        household=connection.household.name,
        household_id=connection.household_id,
        client=connection.client.name,
        source=connection.source_display,
        message=message or problem.message or connection.status_message,
        at=at,
        deadline=problem.deadline,
    )


def digest_for(
    news: FirmNews,
    *,
    households: set[int] | None,
    since: dt.datetime,
    upto: dt.datetime,
    now: dt.datetime,
    is_firm_admin: bool,
) -> Digest:
    """One user's digest for the window (since, upto]: news first; what is still wrong only beside news."""
    digest = Digest()
    for problem in news.problems:
        connection = problem.connection
        if households is not None and connection.household_id not in households:
            continue
        announced = problem.announced_at
        if problem.closed_at is not None:
            # Told before this window and held since: the recovery is news. Told and solved inside
            # the window: already solved, nothing to say.
            told_before = announced is not None and announced <= since
            if told_before and not problem.is_quiet(problem.closed_at):
                digest.recovered.append(
                    _item(
                        problem,
                        at=problem.closed_at,
                        message=wording.problem_recovered(source=connection.source_display),
                    )
                )
            continue
        if problem.is_quiet(now) or announced is None:
            continue
        if since < announced <= upto:
            # Told even if it is working again for now: a recovery counts only once it has held.
            sections: dict[str, list[DigestItem]] = {
                Cause.BROKEN: digest.needs_reconnect,
                Cause.LAPSING: digest.lapsing_soon,
            }
            section = sections.get(problem.cause, digest.failing)
            section.append(_item(problem, at=announced))
        elif problem.snoozed_until is not None and since < problem.snoozed_until <= upto:
            digest.woke.append(_item(problem, at=problem.snoozed_until))
        elif problem.recovering_since is not None:
            pass  # working again for now; its recovery is told once it has held
        elif problem.cause == Cause.BROKEN:
            digest.still_broken.append(_item(problem, at=announced))
        elif problem.cause == Cause.LAPSING and problem.deadline is not None and problem.deadline > now:
            digest.still_lapsing.append(_item(problem, at=announced))
        if is_firm_admin and problem.escalated_at is not None and since < problem.escalated_at <= upto:
            digest.escalated.append(
                _item(
                    problem,
                    at=problem.escalated_at,
                    message=wording.escalation_words(
                        source=connection.source_display,
                        household=connection.household.name,
                        advisers=news.advisers.get(connection.household_id, []),
                        opened_at=problem.opened_at,
                        now=now,
                    ),
                )
            )
    for request in news.requests:
        if households is not None and request.household_id not in households:
            continue
        _items, _done, words = request.progress()
        digest.requests.append(
            DigestItem(
                connection_id=0,
                household=request.household.name,
                household_id=request.household_id,
                client=request.client.name,
                source="",
                message=words,
                at=request.status_changed_at,
            )
        )
    return digest


# --- Sending -------------------------------------------------------------------------------------


def digests_send(*, now: dt.datetime | None = None) -> int:
    """One email per due user (firm admins: the whole firm) with the news since their last digest.

    Each membership's ``digest_sent_up_to`` then moves to the end of the
    window, whether or not there was news, so nothing is told twice; a failed
    send leaves it, so the next run tries again. Users who chose "off" move
    forward too, so turning digests back on does not bring old news. Returns
    how many emails were sent.
    """
    now = now or timezone.now()
    upto = now - dt.timedelta(seconds=DIGEST_SETTLE_SECONDS)
    lookback = getattr(settings, "DIGEST_FIRST_LOOKBACK_SECONDS", DEFAULT_DIGEST_FIRST_LOOKBACK_SECONDS)
    first = dt.timedelta(seconds=float(lookback))
    memberships = list(
        Membership.objects.select_related("user", "firm", "user__notification_settings")
        .filter(user__is_active=True)
        .exclude(user__email="")
        .order_by("firm_id", "pk")
    )
    by_firm: dict[int, list[Membership]] = defaultdict(list)
    for membership in memberships:
        by_firm[membership.firm_id].append(membership)

    sent = 0
    mail = get_connection()
    for firm_id, members in by_firm.items():
        windows = {m.pk: m.digest_sent_up_to or (upto - first) for m in members}
        moved: list[int] = []
        due: list[Membership] = []
        for member in members:
            if windows[member.pk] >= upto:
                continue
            prefs = _prefs(member)
            if digest_due_since(prefs=prefs, sent_up_to=member.digest_sent_up_to, now=now):
                due.append(member)
            elif prefs is not None and prefs.digest == NotificationSettings.Digest.OFF:
                moved.append(member.pk)
        if due:
            news = _firm_news(firm_id=firm_id, since=min(windows[m.pk] for m in due), upto=upto)
            assignments = _assignments(firm_id=firm_id, user_ids=[m.user_id for m in due])
            for membership in due:
                households = None if membership.is_firm_admin else assignments.get(membership.user_id, set())
                # Words made here ("valid until 3 Dec 2026 14:00") and the template's dates alike are in the
                # recipient's zone, not the server's.
                with timezone.override(user_zone(_prefs(membership))):
                    digest = digest_for(
                        news,
                        households=households,
                        since=windows[membership.pk],
                        upto=upto,
                        now=now,
                        is_firm_admin=membership.is_firm_admin,
                    )
                    if not digest.has_news():
                        moved.append(membership.pk)
                    elif _digest_mail(membership=membership, digest=digest, mail=mail):
                        moved.append(membership.pk)
                        sent += 1
        if moved:
            Membership.objects.filter(pk__in=moved).update(digest_sent_up_to=upto)
    return sent


def _prefs(membership: Membership) -> NotificationSettings | None:
    try:
        return membership.user.notification_settings
    except NotificationSettings.DoesNotExist:
        return None


def _assignments(*, firm_id: int, user_ids: Sequence[int]) -> dict[int, set[int]]:
    assignments: dict[int, set[int]] = defaultdict(set)
    for user_id, household_id in Household.advisers.through.objects.filter(
        household__firm_id=firm_id, user_id__in=list(user_ids)
    ).values_list("user_id", "household_id"):
        assignments[user_id].add(household_id)
    return assignments


def _digest_mail(*, membership: Membership, digest: Digest, mail: Any) -> bool:
    prefs = _prefs(membership)
    context = {
        "user": membership.user,
        "firm": membership.firm,
        "is_firm_admin": membership.is_firm_admin,
        "digest": digest,
        "summary": digest.summary(),
        "zone": user_zone(prefs),
        "portal_url": settings.PORTAL_BASE_URL,
        "daily": prefs is not None and prefs.digest == NotificationSettings.Digest.DAILY,
    }
    subject = subject_from("email/digest_subject.txt", context)
    body = render_to_string("email/digest.txt", context)
    message = EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [membership.user.email], connection=mail)
    try:
        return bool(message.send())
    except Exception:
        logger.exception("Digest for membership %s could not be sent; it will be retried next run.", membership.pk)
        return False
