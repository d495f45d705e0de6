"""The periodic jobs' work: sweep, digests, housekeeping, deadline warnings, app tokens.

:mod:`connections.tasks` wraps each of these in a Celery task and a
:func:`periodic_job` slot lock; they are plain functions so commands and tests
call them directly. Status decisions stay in :mod:`connections.lifecycle`.

Settings (all optional):

* ``LIFECYCLE_SWEEP_BATCH_SIZE`` (1000) and ``LIFECYCLE_SWEEP_MAX_PER_RUN``
  (100000): how many due connections one sweep claims per transaction and in all;
* ``LIFECYCLE_DEADLINE_WARNING_SECONDS`` (48 h): how far ahead a hard deadline
  is announced (at most half the deadline's own lifetime, so a daily-rotated
  refresh token is not "lapsing soon" all the time);
* ``DIGEST_FIRST_LOOKBACK_SECONDS`` (24 h): what a first digest covers;
* ``PERIODIC_JOB_SLOTS``: {job: seconds}, overriding :data:`JOB_SLOT_SECONDS`.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone

from . import lifecycle
from .logging import redact
from .models import (
    AuthorizationRequest,
    ClientLink,
    Connection,
    ConnectionEvent,
    Credential,
    Household,
    Membership,
    PeriodicJobRun,
    ProviderApp,
    Reason,
    Status,
)
from .providers.base import ErrorKind, ProviderError
from .throttling import rate_limit_acquire

logger = logging.getLogger("connections.jobs")

# How long one slot of each periodic job lasts: a job runs at most once per
# slot, whoever starts it. Keep each no longer than the job's schedule.
JOB_SLOT_SECONDS: dict[str, int] = {
    "sweep": 60,
    "housekeeping": 300,
    "refresh_app_tokens": 300,
    "send_digests": 3600,
}
DEFAULT_DEADLINE_WARNING_SECONDS = 48 * 3600
DEFAULT_DIGEST_FIRST_LOOKBACK_SECONDS = 24 * 3600
# Events younger than this are left for the next digest: a check's
# transaction that is still open could otherwise commit an event dated before
# the moment the digest moved past.
DIGEST_SETTLE_SECONDS = 30
JOB_RUN_RETENTION = timedelta(days=7)
# The refresh_app_tokens job may start this much late (a busy beat or queue);
# an app token must outlast the next run by at least this.
APP_TOKEN_SLACK_SECONDS = 60
HOUSEKEEPING_BATCH = 1000


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


# --- The periodic job lock ------------------------------------------------------------


def job_slot_seconds(job: str) -> int:
    overrides = _setting("PERIODIC_JOB_SLOTS", {}) or {}
    return int(overrides.get(job, JOB_SLOT_SECONDS.get(job, 60)))


def job_slot_start(job: str, now: datetime) -> datetime:
    """The start of the slot ``now`` falls in: slots are aligned on the epoch."""
    seconds = job_slot_seconds(job)
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=now.tzinfo or timezone.get_current_timezone())


@contextmanager
def periodic_job(job: str, *, now: datetime | None = None) -> Iterator[bool]:
    """Yield True to the one caller that claims ``job``'s current slot, False to any other.

    The claim is an INSERT of (job, slot_start) under a unique constraint, in
    its own transaction: two beats, or a beat and a person running the task by
    hand, never do one slot's work twice, on SQLite and PostgreSQL alike.
    """
    now = now or timezone.now()
    slot = job_slot_start(job, now)
    owner = f"{socket.gethostname()[:40]}:{os.getpid()}"
    try:
        with transaction.atomic():
            run = PeriodicJobRun.objects.create(job=job, slot_start=slot, owner=owner, started_at=now)
    except IntegrityError:
        logger.info("Periodic job %s: slot %s already taken; skipping.", job, slot.isoformat())
        yield False
        return
    try:
        yield True
    finally:
        PeriodicJobRun.objects.filter(pk=run.pk).update(finished_at=timezone.now())


# --- Sweep ---------------------------------------------------------------------------------


def sweep_run(*, publish: Callable[[list[int]], None], now: datetime | None = None) -> int:
    """Claim due connections in batches and hand each batch's ids to ``publish`` once committed.

    Returns how many were claimed. Each batch is one short transaction (claim
    by condition, see :func:`lifecycle.connections_claim_due`); ``publish``
    runs on commit, so a worker never sees an id whose claim might roll back.
    """
    batch = int(_setting("LIFECYCLE_SWEEP_BATCH_SIZE", 1000))
    limit = int(_setting("LIFECYCLE_SWEEP_MAX_PER_RUN", 100_000))
    owner = f"{lifecycle.SWEEP_OWNER_PREFIX}{uuid.uuid4().hex[:16]}"
    claimed = 0
    while claimed < limit:
        with transaction.atomic():
            ids = lifecycle.connections_claim_due(
                now=now or timezone.now(), limit=min(batch, limit - claimed), owner=owner
            )
            if ids:
                transaction.on_commit(lambda ids=ids: publish(ids))
        claimed += len(ids)
        if len(ids) < batch:
            break
    if claimed:
        logger.info("Sweep %s claimed %s due connection(s).", owner, claimed)
    return claimed


# --- Deadline warnings -------------------------------------------------------------------------


def deadline_warnings_record(*, now: datetime | None = None) -> int:
    """A DEADLINE_WARNING event, once per deadline, for each connection whose hard limit is near.

    Hard limits are ``reconnect_by``: a refresh token's end of life with no
    offline token, an access code not yet exchanged. "Near" is within
    ``LIFECYCLE_DEADLINE_WARNING_SECONDS`` and within half the deadline's own
    lifetime (counted from the refresh token's issue, else the connection's
    start), so a token that is routinely renewed is not announced. Returns
    how many warnings were written.
    """
    now = now or timezone.now()
    window = timedelta(seconds=float(_setting("LIFECYCLE_DEADLINE_WARNING_SECONDS", DEFAULT_DEADLINE_WARNING_SECONDS)))
    candidates = list(
        Connection.objects.filter(
            reconnect_by__isnull=False,
            reconnect_by__gt=now,
            reconnect_by__lte=now + window,
            status__in=[Status.PENDING, Status.ACTIVE, Status.DEGRADED],
        ).values("pk", "reconnect_by", "connected_at", "created_at", "provider", "platform", "status")
    )
    written = 0
    for start in range(0, len(candidates), HOUSEKEEPING_BATCH):
        chunk = candidates[start : start + HOUSEKEEPING_BATCH]
        ids = [row["pk"] for row in chunk]
        # Only the issue times: the encrypted values are never loaded here.
        refresh_issued = dict(
            Credential.objects.filter(connection_id__in=ids, kind=Credential.Kind.REFRESH).values_list(
                "connection_id", "issued_at"
            )
        )
        warned = {
            (connection_id, (details or {}).get("deadline"))
            for connection_id, details in ConnectionEvent.objects.filter(
                connection_id__in=ids, kind=ConnectionEvent.Kind.DEADLINE_WARNING
            ).values_list("connection_id", "details")
        }
        events = []
        for row in chunk:
            deadline: datetime = row["reconnect_by"]
            basis = refresh_issued.get(row["pk"]) or row["connected_at"] or row["created_at"]
            lifetime = max(deadline - basis, timedelta(0))
            threshold = min(window, lifetime / 2)
            if deadline - now > threshold or (row["pk"], deadline.isoformat()) in warned:
                continue
            source = f"{lifecycle.platform_display(row['platform'])} via {lifecycle._provider_label(row['provider'])}"
            if row["status"] == Status.PENDING:
                message = (
                    f"{source}: the authorization must be finished by {lifecycle._when(deadline)}; "
                    "after that the client has to start the connection again."
                )
            else:
                message = (
                    f"{source}: access lapses at {lifecycle._when(deadline)} unless it is renewed before then; "
                    "if it lapses, the client must reconnect."
                )
            events.append(
                ConnectionEvent(
                    **lifecycle._event_fields(
                        connection_id=row["pk"],
                        kind=ConnectionEvent.Kind.DEADLINE_WARNING,
                        message=message,
                        from_status=row["status"],
                        to_status=row["status"],
                        actor_label="job:housekeeping",
                        details={"deadline": deadline.isoformat()},
                    )
                )
            )
        ConnectionEvent.objects.bulk_create(events)
        written += len(events)
    return written


# --- Housekeeping ---------------------------------------------------------------------------------


def authorization_requests_expire(*, now: datetime | None = None) -> int:
    """Unused AuthorizationRequests past their window become ``expired``.

    A pending connection left with no open request gets reason
    ``authorization_abandoned``, no schedule, and an event. Returns how many
    requests expired.
    """
    now = now or timezone.now()
    expired = 0
    while True:
        with transaction.atomic():
            rows = list(
                AuthorizationRequest.objects.filter(used_at__isnull=True, outcome="", expires_at__lt=now)
                .select_for_update(skip_locked=True)
                .values_list("pk", "connection_id")[:HOUSEKEEPING_BATCH]
            )
            if not rows:
                break
            AuthorizationRequest.objects.filter(pk__in=[pk for pk, _ in rows], outcome="").update(
                outcome=AuthorizationRequest.Outcome.EXPIRED,
                outcome_message="The authorization was not finished in time.",
            )
            connection_ids = {cid for _, cid in rows if cid is not None}
            still_open = set(
                AuthorizationRequest.objects.filter(
                    connection_id__in=connection_ids, used_at__isnull=True, outcome="", expires_at__gte=now
                ).values_list("connection_id", flat=True)
            )
            abandoned = list(
                Connection.objects.filter(pk__in=connection_ids - still_open, status=Status.PENDING)
                .exclude(reason=Reason.AUTHORIZATION_ABANDONED)
                .only("pk", "provider", "platform", "reason")
            )
            if abandoned:
                Connection.objects.filter(pk__in=[c.pk for c in abandoned]).update(
                    reason=Reason.AUTHORIZATION_ABANDONED, next_check_at=None
                )
                ConnectionEvent.objects.bulk_create(
                    [
                        ConnectionEvent(
                            **lifecycle._event_fields(
                                connection_id=c.pk,
                                kind=ConnectionEvent.Kind.STATUS_CHANGED,
                                message=lifecycle._message_for(
                                    c, status=Status.PENDING, reason=Reason.AUTHORIZATION_ABANDONED
                                ),
                                from_status=Status.PENDING,
                                to_status=Status.PENDING,
                                reason=Reason.AUTHORIZATION_ABANDONED,
                                actor_label="job:housekeeping",
                            )
                        )
                        for c in abandoned
                    ]
                )
            expired += len(rows)
    return expired


def client_links_expire(*, now: datetime | None = None) -> int:
    """Sent or opened ClientLinks past their expiry become ``expired``, with a LINK_EXPIRED event."""
    now = now or timezone.now()
    expired = 0
    open_statuses = [ClientLink.LinkStatus.SENT, ClientLink.LinkStatus.OPENED]
    while True:
        with transaction.atomic():
            rows = list(
                ClientLink.objects.filter(status__in=open_statuses, expires_at__lt=now)
                .select_for_update(skip_locked=True, of=("self",))
                .values_list("pk", "connection_id", "connection__provider", "connection__platform")[:HOUSEKEEPING_BATCH]
            )
            if not rows:
                break
            ClientLink.objects.filter(pk__in=[r[0] for r in rows], status__in=open_statuses).update(
                status=ClientLink.LinkStatus.EXPIRED
            )
            events = []
            for _pk, connection_id, provider, platform in rows:
                if connection_id is None:
                    continue  # a link for a new connection that never happened: nothing to attach it to
                source = f"{lifecycle.platform_display(platform)} via {lifecycle._provider_label(provider)}"
                events.append(
                    ConnectionEvent(
                        **lifecycle._event_fields(
                            connection_id=connection_id,
                            kind=ConnectionEvent.Kind.LINK_EXPIRED,
                            message=f"{source}: the link sent to the client expired before it was used.",
                            actor_label="job:housekeeping",
                        )
                    )
                )
            ConnectionEvent.objects.bulk_create(events)
            expired += len(rows)
    return expired


def housekeeping_run(*, now: datetime | None = None) -> dict[str, int]:
    """Expire stale requests and links, record deadline warnings, prune old job runs."""
    now = now or timezone.now()
    summary = {
        "authorization_requests_expired": authorization_requests_expire(now=now),
        "client_links_expired": client_links_expire(now=now),
        "deadline_warnings": deadline_warnings_record(now=now),
    }
    summary["job_runs_pruned"] = PeriodicJobRun.objects.filter(started_at__lt=now - JOB_RUN_RETENTION).delete()[0]
    return summary


# --- App tokens --------------------------------------------------------------------------------------


def app_tokens_refresh(*, now: datetime | None = None) -> dict[str, str]:
    """Keep each enabled ProviderApp's app token fresh (``client.app_token()``), per app: ok/none/failed.

    "Fresh" means valid until after the next run: a token that would lapse
    before then (within this job's slot plus :data:`APP_TOKEN_SLACK_SECONDS`)
    is replaced now, through the client's ``fetch_app_token`` where it has
    one. The client's own margin (max(1 minute, 10 % of the lifetime)) is
    shorter than the five minutes between runs for any token living less than
    about fifty minutes, as shortened sandbox lifetimes do.

    A rejection of the app's own credentials flags the app and alerts admins
    (see :func:`lifecycle.app_credentials_rejected`); an accepted token clears
    the flag. A transient failure is recorded on the app and tried next run.
    """
    now = now or timezone.now()
    horizon = now + timedelta(seconds=job_slot_seconds("refresh_app_tokens") + APP_TOKEN_SLACK_SECONDS)
    outcome: dict[str, str] = {}
    for app in ProviderApp.objects.filter(is_enabled=True):
        label = f"{app.provider}/{app.environment}/{app.name}"
        try:
            client = lifecycle.client_for_app(app=app)
        except KeyError:
            outcome[label] = "no client"
            continue
        try:
            rate_limit_acquire(app=app, max_wait=5.0)
            token = client.app_token()
            fetch = getattr(client, "fetch_app_token", None)
            lapses_first = token is not None and token.expires_at is not None and token.expires_at <= horizon
            # Not twice in a run: a token fetched just now is the freshest there is.
            if lapses_first and token.issued_at < now and callable(fetch):
                # On failure the current token stays cached, usable until it lapses.
                rate_limit_acquire(app=app, max_wait=5.0)
                token = fetch()
        except ProviderError as exc:
            text = redact(exc.message or str(exc))[:500]
            if exc.kind == ErrorKind.APP_CREDENTIALS_INVALID:
                lifecycle.app_credentials_rejected(app=app, message=text, now=now)
            else:
                ProviderApp.objects.filter(pk=app.pk).update(last_error=text, last_error_at=now)
            outcome[label] = f"failed ({exc.kind})"
            continue
        except Exception as exc:
            logger.error("App token refresh for provider app %s raised %s.", app.pk, type(exc).__name__, exc_info=True)
            outcome[label] = "error"
            continue
        if token is None:
            outcome[label] = "none"
            continue
        lifecycle.app_credentials_accepted(app=app)
        outcome[label] = "ok"
    return outcome


# --- Digests -------------------------------------------------------------------------------------------


@dataclass
class DigestItem:
    connection_id: int
    household: str
    household_id: int
    client: str
    source: str
    message: str
    at: datetime
    deadline: datetime | None = None


@dataclass
class Digest:
    """What one adviser is told in one run."""

    needs_reconnect: list[DigestItem] = field(default_factory=list)
    lapsing_soon: list[DigestItem] = field(default_factory=list)
    recovered: list[DigestItem] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.needs_reconnect or self.lapsing_soon or self.recovered)


def _digest_events(*, firm_id: int, since: datetime, upto: datetime) -> list[ConnectionEvent]:
    newly_broken = (
        Q(to_status=Status.NEEDS_RECONNECT)
        & Q(kind__in=[ConnectionEvent.Kind.CHECK_FAILED, ConnectionEvent.Kind.STATUS_CHANGED])
        & ~Q(from_status=Status.NEEDS_RECONNECT)
    )
    kinds = Q(kind__in=[ConnectionEvent.Kind.RECOVERED, ConnectionEvent.Kind.DEADLINE_WARNING]) | newly_broken
    return list(
        ConnectionEvent.objects.filter(
            kinds, connection__household__firm_id=firm_id, created_at__gt=since, created_at__lte=upto
        )
        .select_related("connection", "connection__household", "connection__client")
        .order_by("created_at", "id")
    )


def _digest_for(events: Sequence[ConnectionEvent], *, households: set[int] | None, now: datetime) -> Digest:
    """Sort a window's events into the three sections, by each connection's state now.

    A connection appears at most once per section; one that broke and then
    recovered in the same window is only "recovered" (and the reverse only
    "needs reconnecting"), so nobody chases a problem that is gone.
    """
    digest = Digest()
    seen: dict[str, set[int]] = defaultdict(set)
    for event in reversed(events):  # newest first: the latest event of a kind describes the connection
        connection = event.connection
        if households is not None and connection.household_id not in households:
            continue
        item = DigestItem(
            connection_id=connection.pk,
            household=connection.household.name,
            household_id=connection.household_id,
            client=connection.client.name,
            source=f"{connection.platform_display} via {connection.get_provider_display()}",
            message=connection.status_message,
            at=event.created_at,
            deadline=connection.reconnect_by,
        )
        if event.kind == ConnectionEvent.Kind.RECOVERED:
            section, wanted = "recovered", connection.status == Status.ACTIVE
        elif event.kind == ConnectionEvent.Kind.DEADLINE_WARNING:
            section = "lapsing_soon"
            wanted = (
                connection.status not in (Status.NEEDS_RECONNECT, Status.DISCONNECTED)
                and connection.reconnect_by is not None
                and connection.reconnect_by > now
            )
            item.message = event.message
        else:
            section, wanted = "needs_reconnect", connection.status == Status.NEEDS_RECONNECT
        if wanted and connection.pk not in seen[section]:
            seen[section].add(connection.pk)
            getattr(digest, section).append(item)
    for items in (digest.needs_reconnect, digest.lapsing_soon, digest.recovered):
        items.sort(key=lambda i: (i.household, i.source))
    return digest


def digests_send(*, now: datetime | None = None) -> int:
    """One email per adviser (firm admins: the whole firm) with what changed since their last digest.

    Sections: connections that newly need reconnecting, that will lapse soon
    (a DEADLINE_WARNING), and that recovered. Nothing is sent when all three
    are empty. Each membership's ``digest_sent_up_to`` then moves to the end
    of the window, so nothing is sent twice; a failed send leaves it, so the
    next run tries again. Returns how many emails were sent.
    """
    now = now or timezone.now()
    # Usually housekeeping has recorded these already; warnings recorded here
    # are dated now and so go out with the next digest (see the settle time).
    deadline_warnings_record(now=now)
    upto = now - timedelta(seconds=DIGEST_SETTLE_SECONDS)
    first = timedelta(seconds=float(_setting("DIGEST_FIRST_LOOKBACK_SECONDS", DEFAULT_DIGEST_FIRST_LOOKBACK_SECONDS)))
    memberships = list(
        Membership.objects.select_related("user", "firm")
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
        due = [m for m in members if windows[m.pk] < upto]
        if not due:
            continue
        events = _digest_events(firm_id=firm_id, since=min(windows[m.pk] for m in due), upto=upto)
        assignments: dict[int, set[int]] = defaultdict(set)
        for user_id, household_id in Household.advisers.through.objects.filter(
            household__firm_id=firm_id, user_id__in=[m.user_id for m in due]
        ).values_list("user_id", "household_id"):
            assignments[user_id].add(household_id)
        nothing_to_say: list[int] = []
        for membership in due:
            window = [e for e in events if e.created_at > windows[membership.pk]]
            households = None if membership.is_firm_admin else assignments.get(membership.user_id, set())
            digest = _digest_for(window, households=households, now=now)
            if not digest:
                nothing_to_say.append(membership.pk)
                continue
            if _digest_mail(membership=membership, digest=digest, mail=mail):
                Membership.objects.filter(pk=membership.pk).update(digest_sent_up_to=upto)
                sent += 1
        if nothing_to_say:
            Membership.objects.filter(pk__in=nothing_to_say).update(digest_sent_up_to=upto)
    return sent


def _digest_mail(*, membership: Membership, digest: Digest, mail: Any) -> bool:
    counts = []
    if digest.needs_reconnect:
        counts.append(f"{len(digest.needs_reconnect)} need reconnecting")
    if digest.lapsing_soon:
        counts.append(f"{len(digest.lapsing_soon)} will lapse soon")
    if digest.recovered:
        counts.append(f"{len(digest.recovered)} recovered")
    context = {
        "user": membership.user,
        "firm": membership.firm,
        "is_firm_admin": membership.is_firm_admin,
        "digest": digest,
        "summary": ", ".join(counts),
        "portal_url": settings.PORTAL_BASE_URL,
    }
    subject = " ".join(render_to_string("email/digest_subject.txt", context).split())
    body = render_to_string("email/digest.txt", context)
    message = EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [membership.user.email], connection=mail)
    try:
        return bool(message.send())
    except Exception:
        logger.exception("Digest for membership %s could not be sent; it will be retried next run.", membership.pk)
        return False
