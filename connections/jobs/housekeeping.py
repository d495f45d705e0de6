"""Housekeeping: expire what ran out of time, announce deadlines that are near, flag those that passed.

Settings: ``LIFECYCLE_DEADLINE_WARNING_SECONDS`` (see ``rules.Tunables``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .. import lifecycle, wording
from ..lifecycle import event_row, events_for, rules
from ..models import AuthorizationRequest, ClientLink, Connection, ConnectionEvent, Credential, PeriodicJobRun

JOB_RUN_RETENTION = timedelta(days=7)
HOUSEKEEPING_BATCH = 1000


def deadline_warnings_record(*, now: datetime | None = None) -> int:
    """A DEADLINE_WARNING event, once per deadline, for each connection whose hard limit is near.

    Hard limits are ``reconnect_by``: a refresh token's end of life with no
    offline token, an access code not yet exchanged. "Near" is
    :func:`rules.deadline_is_near`. Returns how many warnings were written.
    """
    now = now or timezone.now()
    tunables = lifecycle.tunables()
    window = timedelta(seconds=tunables.deadline_warning_seconds)
    candidates = list(
        Connection.objects.filter(
            reconnect_by__isnull=False,
            reconnect_by__gt=now,
            reconnect_by__lte=now + window,
            status__in=[rules.PENDING, rules.ACTIVE, rules.DEGRADED],
        ).only(
            "pk", "reconnect_by", "reconnect_by_rolls", "connected_at", "created_at", "provider", "platform", "status"
        )
    )
    written = 0
    for start in range(0, len(candidates), HOUSEKEEPING_BATCH):
        chunk = candidates[start : start + HOUSEKEEPING_BATCH]
        ids = [row.pk for row in chunk]
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
            deadline = row.reconnect_by
            assert deadline is not None  # filtered above
            basis = refresh_issued.get(row.pk) or row.connected_at or row.created_at
            near = rules.deadline_is_near(
                deadline=deadline, basis=basis, now=now, tunables=tunables, rolls=row.reconnect_by_rolls
            )
            if not near or (row.pk, deadline.isoformat()) in warned:
                continue
            source = wording.source_name(provider=row.provider, platform=row.platform)
            events.append(
                event_row(
                    connection_id=row.pk,
                    kind=ConnectionEvent.Kind.DEADLINE_WARNING,
                    message=wording.deadline_warning(
                        source=source, deadline=deadline, pending=row.status == rules.PENDING
                    ),
                    from_status=row.status,
                    to_status=row.status,
                    actor_label=wording.HOUSEKEEPING,
                    details={"deadline": deadline.isoformat()},
                )
            )
        ConnectionEvent.objects.bulk_create(events)
        written += len(events)
    return written


def deadlines_passed_flag(*, now: datetime | None = None) -> int:
    """Active or degraded connections whose hard deadline went by: ``needs_reconnect`` (expired).

    Normally a check notices first (its renewal is refused); this catches a
    connection whose checks were backing off through an outage meanwhile.
    Rows a check holds are left to that check. Returns how many were flagged.
    """
    now = now or timezone.now()
    tunables = lifecycle.tunables()
    lease_free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    rows = list(
        Connection.objects.filter(lease_free, reconnect_by__lt=now, status__in=sorted(rules.SCHEDULED))[
            :HOUSEKEEPING_BATCH
        ]
    )
    flagged = 0
    for row in rows:
        assert row.reconnect_by is not None
        state = rules.State(row.status, row.reason, row.consecutive_failures, row.degraded_since)
        transition = rules.decide(state, rules.DeadlinePassed(deadline=row.reconnect_by), now=now, tunables=tunables)
        with transaction.atomic():
            changed = Connection.objects.filter(lease_free, pk=row.pk, status=row.status).update(**transition.fields())
            if changed:
                ConnectionEvent.objects.bulk_create(
                    events_for(row, transition.events, actor_label=wording.HOUSEKEEPING)
                )
                flagged += 1
    return flagged


def authorization_requests_expire(*, now: datetime | None = None) -> int:
    """Unused AuthorizationRequests past their window become ``expired``.

    A pending connection left with no open request is abandoned
    (:func:`lifecycle.connections_abandon`). Returns how many requests expired.
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
                outcome_message=wording.authorization_not_finished(),
            )
            connection_ids = {cid for _, cid in rows if cid is not None}
            still_open = set(
                AuthorizationRequest.objects.filter(
                    connection_id__in=connection_ids, used_at__isnull=True, outcome="", expires_at__gte=now
                ).values_list("connection_id", flat=True)
            )
            lifecycle.connections_abandon(connection_ids=sorted(connection_ids - still_open), now=now)
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
            events = [
                event_row(
                    connection_id=connection_id,
                    kind=ConnectionEvent.Kind.LINK_EXPIRED,
                    message=wording.link_expired(source=wording.source_name(provider=provider, platform=platform)),
                    actor_label=wording.HOUSEKEEPING,
                    details={"client_link_id": str(link_id)},
                )
                for link_id, connection_id, provider, platform in rows
                # A link for a new connection that never happened has nothing to attach it to.
                if connection_id is not None
            ]
            ConnectionEvent.objects.bulk_create(events)
            expired += len(rows)
    return expired


def housekeeping_run(*, now: datetime | None = None) -> dict[str, int]:
    """Expire stale requests and links, record deadline warnings, flag lapsed deadlines, prune old job runs."""
    now = now or timezone.now()
    summary = {
        "authorization_requests_expired": authorization_requests_expire(now=now),
        "client_links_expired": client_links_expire(now=now),
        "deadline_warnings": deadline_warnings_record(now=now),
        "deadlines_passed": deadlines_passed_flag(now=now),
    }
    summary["job_runs_pruned"] = PeriodicJobRun.objects.filter(started_at__lt=now - JOB_RUN_RETENTION).delete()[0]
    return summary
