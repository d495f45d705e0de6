"""Problems: what a connection's trouble means for notifications, derived from its row and its events.

A *problem* is one open row per connection and cause (broken, provider
failing, will lapse soon). It is a reaction to the lifecycle, never part of
it: :func:`problems_update` reads connection rows and ``ConnectionEvent``
rows after they are committed, and the lifecycle never calls it. The rules
still decide everything they decide; this module only asks two of their
questions (:func:`rules.degraded_needs_attention`, and the SQL form of
:func:`rules.deadline_is_near`) about a problem instead of a row.

* Repeated failures update the open problem (``occurrences``); they never
  make a second one.
* A problem is announced once, when the rules first make it actionable:
  broken at once, a near hard deadline at once, a failing provider after
  ``LIFECYCLE_DEGRADED_ATTENTION_SECONDS`` counted from the problem's opening
  (so a link that flaps keeps one opening time and is announced once).
* A recovery is told only after it has held: two successful checks, or
  ``NOTIFICATIONS_RECOVERY_HOLD_SECONDS`` (one hour) without trouble. A
  relapse meanwhile keeps the same problem open and silent. A problem that
  was never announced closes without a word.
* Muting belongs to the connection (``Connection.muted_at``), healthy or
  not: every problem of a muted connection is quiet. It lasts until a break
  that began after the mute has recovered and the recovery held (that
  recovery is not news either, ``RECOVERED_MUTED``); the next break is told.
  So a connection muted because the client closed the account stays quiet
  for as long as it stays broken, and one muted while healthy stays quiet
  through its first break and recovery. Unmuting ends it at once.
* A snooze belongs to a problem and ends at its time. It carries over when
  the problem changes cause within the snooze (a failing provider that
  starts refusing the token is still the trouble that was snoozed), but not
  to a second problem beside it (a deadline coming near is new).
  Either way the problem is still tracked, only kept out of the attention
  list and digests.
* A problem open past the firm's ``escalate_after_days`` (7 by default) is
  escalated once, for the firm admins' digest.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from . import lifecycle
from .lifecycle import rules
from .models import Connection, ConnectionEvent, ConnectionProblem, FirmNotificationPolicy, Status

Cause = ConnectionProblem.Cause
Resolution = ConnectionProblem.Resolution

DEFAULT_RECOVERY_HOLD_SECONDS = 3600
DEFAULT_ESCALATE_AFTER_DAYS = 7
# Moves into trouble: what a relapse during a recovery hold looks like in the events.
TROUBLE_STATUSES = (Status.DEGRADED, Status.NEEDS_RECONNECT)
FAILURE_KINDS = (ConnectionEvent.Kind.CHECK_FAILED, ConnectionEvent.Kind.STATUS_CHANGED)
# Which moves undo a recovery from each cause (a lapse has none: a deadline coming near again is seen directly).
RELAPSES: dict[str, tuple[str, ...]] = {
    Cause.BROKEN: (Status.NEEDS_RECONNECT,),
    Cause.DEGRADED: (Status.DEGRADED,),
    Cause.LAPSING: (),
}
# What a problem turns into when its trouble changes shape: a failing provider that starts refusing the
# token is now broken (and back), a lapsing deadline that passed is broken. A near deadline beside a
# failing provider is a second problem, not a successor: the degraded one still recovers on its own.
SUCCESSORS: dict[str, frozenset[str]] = {
    Cause.BROKEN: frozenset({Cause.DEGRADED}),
    Cause.DEGRADED: frozenset({Cause.BROKEN}),
    Cause.LAPSING: frozenset({Cause.BROKEN}),
}


def recovery_hold() -> dt.timedelta:
    return dt.timedelta(
        seconds=float(getattr(settings, "NOTIFICATIONS_RECOVERY_HOLD_SECONDS", DEFAULT_RECOVERY_HOLD_SECONDS))
    )


def escalate_after(policy: FirmNotificationPolicy | None) -> dt.timedelta:
    days = policy.escalate_after_days if policy is not None else DEFAULT_ESCALATE_AFTER_DAYS
    return dt.timedelta(days=days)


def snoozed_q(now: dt.datetime, prefix: str = "") -> Q:
    """Over problems: snoozed until later (``prefix`` reaches a problem through a relation)."""
    return Q(**{f"{prefix}snoozed_until__gt": now})


def snoozed_until_subquery(now: dt.datetime) -> Subquery:
    """Over connections: the latest end of a snooze still running on one of its open problems (else NULL)."""
    return Subquery(
        ConnectionProblem.objects.filter(connection=OuterRef("pk"), closed_at__isnull=True, snoozed_until__gt=now)
        .order_by("-snoozed_until")
        .values("snoozed_until")[:1]
    )


def snoozed_exists(now: dt.datetime) -> Exists:
    """Over connections: an open problem of it is snoozed until later."""
    return Exists(ConnectionProblem.objects.filter(snoozed_q(now), connection=OuterRef("pk"), closed_at__isnull=True))


def quiet_connection_q(now: dt.datetime) -> Q:
    """Over connections: muted, or with a problem snoozed until later (for ``filter`` or ``exclude``)."""
    return Q(muted_at__isnull=False) | Q(snoozed_exists(now))


def snoozed_connection_ids(*, connection_ids: Iterable[int], now: dt.datetime) -> set[int]:
    """Of ``connection_ids``, those with an open problem snoozed until later. One query."""
    return set(
        ConnectionProblem.objects.filter(
            connection_id__in=list(connection_ids), closed_at__isnull=True, snoozed_until__gt=now
        ).values_list("connection_id", flat=True)
    )


def quiet_connection_ids(*, connection_ids: Iterable[int], now: dt.datetime) -> set[int]:
    """Of ``connection_ids``, those muted or with an open problem snoozed until later. One query."""
    return set(
        Connection.objects.filter(quiet_connection_q(now), pk__in=list(connection_ids)).values_list("pk", flat=True)
    )


# --- What trouble a connection is in now --------------------------------------------------


def _trouble_queryset(*, now: dt.datetime, tunables: rules.Tunables) -> QuerySet[Connection]:
    # The same candidates as the attention list's partial index (connection_attention_idx).
    candidates = Q(status__in=[Status.NEEDS_RECONNECT, Status.DEGRADED]) | Q(reconnect_by__isnull=False)
    troubled, near = lifecycle.deadline_is_near_q(
        Connection.objects.filter(candidates).exclude(status=Status.DISCONNECTED), now=now, tunables=tunables
    )
    return (
        troubled.filter(Q(status__in=[Status.NEEDS_RECONNECT, Status.DEGRADED]) | (near & Q(status=Status.ACTIVE)))
        .annotate(
            broke_at=Subquery(
                ConnectionEvent.objects.filter(connection=OuterRef("pk"), to_status=Status.NEEDS_RECONNECT)
                .exclude(from_status=Status.NEEDS_RECONNECT)
                .order_by("-created_at")
                .values("created_at")[:1]
            )
        )
        .only(
            "id", "status", "reason", "provider", "platform", "degraded_since", "reconnect_by", "household", "muted_at"
        )
    )


def causes_of(connection: Connection, *, deadline_near: bool) -> set[str]:
    """The causes a connection is in trouble for: broken alone, else a near deadline and/or a failing provider."""
    if connection.status == Status.NEEDS_RECONNECT:
        return {Cause.BROKEN}
    causes: set[str] = set()
    if deadline_near and connection.status in (Status.ACTIVE, Status.DEGRADED):
        causes.add(Cause.LAPSING)
    if connection.status == Status.DEGRADED:
        causes.add(Cause.DEGRADED)
    return causes


def _near_deadline_ids(*, ids: list[int], now: dt.datetime, tunables: rules.Tunables) -> set[int]:
    connections, near = lifecycle.deadline_is_near_q(Connection.objects.filter(pk__in=ids), now=now, tunables=tunables)
    return set(connections.filter(near).values_list("pk", flat=True))


# --- The reconciler -------------------------------------------------------------------------


@dataclass
class ProblemsUpdated:
    opened: int = 0
    announced: int = 0
    recovered: int = 0
    closed_quietly: int = 0
    escalated: int = 0


def problems_update(*, now: dt.datetime | None = None, connection_ids: Iterable[int] | None = None) -> ProblemsUpdated:
    """Bring the problem rows in line with the connections and their events (idempotent).

    ``connection_ids`` limits the work to those connections (an adviser
    snoozing one); by default every connection in trouble or with an open
    problem is looked at. Returns what changed.
    """
    now = now or timezone.now()
    tunables = lifecycle.tunables()
    only = list(connection_ids) if connection_ids is not None else None
    troubled = _trouble_queryset(now=now, tunables=tunables)
    open_problems = ConnectionProblem.objects.filter(closed_at__isnull=True).select_related("connection")
    if only is not None:
        troubled = troubled.filter(pk__in=only)
        open_problems = open_problems.filter(connection_id__in=only)
    troubled_rows = {row.pk: row for row in troubled}
    near = _near_deadline_ids(ids=list(troubled_rows), now=now, tunables=tunables) if troubled_rows else set()
    wanted: dict[int, set[str]] = {pk: causes_of(row, deadline_near=pk in near) for pk, row in troubled_rows.items()}
    problems: dict[tuple[int, str], ConnectionProblem] = {(p.connection_id, p.cause): p for p in open_problems}

    watched = sorted(set(wanted) | {cid for cid, _ in problems})
    start = min(
        [now - recovery_hold()]
        + [p.last_seen_at for p in problems.values()]
        + [p.recovering_since for p in problems.values() if p.recovering_since is not None]
    )
    failures: dict[int, list[tuple[dt.datetime, str]]] = defaultdict(list)
    recoveries: dict[int, list[dt.datetime]] = defaultdict(list)
    if watched:
        for connection_id, kind, to_status, at in ConnectionEvent.objects.filter(
            Q(kind__in=FAILURE_KINDS, to_status__in=TROUBLE_STATUSES) | Q(kind=ConnectionEvent.Kind.RECOVERED),
            connection_id__in=watched,
            created_at__gte=start,
            created_at__lte=now,
        ).values_list("connection_id", "kind", "to_status", "created_at"):
            if kind == ConnectionEvent.Kind.RECOVERED:
                recoveries[connection_id].append(at)
            else:
                failures[connection_id].append((at, to_status))

    result = ProblemsUpdated()
    changed: dict[int, ConnectionProblem] = {}
    for connection_id, causes in wanted.items():
        row = troubled_rows[connection_id]
        for cause in sorted(causes):
            problem = problems.get((connection_id, cause))
            if problem is None:
                # The snoozed problem this one succeeds (the same trouble, changed cause) hands its snooze on.
                snoozed = next(
                    (
                        p
                        for (cid, old_cause), p in problems.items()
                        if cid == connection_id
                        and cause in SUCCESSORS[old_cause]
                        and p.snoozed_until is not None
                        and p.snoozed_until > now
                    ),
                    None,
                )
                problem = _open(row, cause=cause, now=now, snoozed=snoozed)
                if problem is None:
                    continue  # opened meanwhile by another run
                problems[(connection_id, cause)] = problem
                result.opened += 1
            else:
                new_failures = sum(1 for at, status in failures[connection_id] if at > problem.last_seen_at)
                if new_failures or problem.recovering_since is not None:
                    # Repeated failures, or a relapse before the recovery held: the same problem, counted.
                    problem.occurrences += max(new_failures, 1)
                    problem.recovering_since = None
                    problem.last_seen_at = now
                    changed[problem.pk] = problem
            message = row.status_message[:500]
            deadline = row.reconnect_by if cause == Cause.LAPSING else None
            if (problem.message, problem.deadline) != (message, deadline):
                problem.message, problem.deadline = message, deadline
                changed[problem.pk] = problem
            if problem.announced_at is None and _actionable(problem, now=now, tunables=tunables):
                problem.announced_at = now
                result.announced += 1
                changed[problem.pk] = problem

    settling = [cid for (cid, cause) in problems if cause not in wanted.get(cid, ())]
    connections_now = {
        c.pk: c for c in Connection.objects.filter(pk__in=settling).only("id", "status", "last_success_at", "muted_at")
    }
    unmute: dict[int, dt.datetime] = {}
    for (connection_id, cause), problem in problems.items():
        if cause in wanted.get(connection_id, ()):
            continue
        changed[problem.pk] = problem
        connection = connections_now.get(connection_id)
        if connection is None or connection.status == Status.DISCONNECTED:
            _close(problem, now=now, resolution=Resolution.DISCONNECTED)
        elif wanted.get(connection_id, set()) & SUCCESSORS[problem.cause]:
            _close(problem, now=now, resolution=Resolution.SUPERSEDED)  # the trouble is now another cause
        elif _recovery_held(
            problem,
            connection=connection,
            relapses=[at for at, status in failures[connection_id] if status in RELAPSES[problem.cause]],
            recoveries=recoveries[connection_id],
            now=now,
        ):
            told = problem.announced_at is not None
            muted_at = connection.muted_at
            if muted_at is not None:
                _close(problem, now=now, resolution=Resolution.RECOVERED_MUTED)
                result.closed_quietly += 1
                # It works again after a break that began while muted: the mute has done its job. A mute
                # set during the break stands for the break it was set in; one set during the recovery
                # hold waits for the next break.
                started_muted = problem.recovering_since is not None and muted_at <= problem.recovering_since
                if started_muted and not wanted.get(connection_id):
                    unmute[connection_id] = muted_at
                continue
            _close(problem, now=now, resolution=Resolution.RECOVERED if told else Resolution.CLEARED)
            if told:
                result.recovered += 1
            else:
                result.closed_quietly += 1

    result.escalated = _escalate([p for p in problems.values() if p.closed_at is None], now=now)
    fields = [
        "occurrences", "recovering_since", "last_seen_at", "message", "deadline",
        "announced_at", "closed_at", "resolution",
    ]  # fmt: skip
    ConnectionProblem.objects.bulk_update(list(changed.values()), fields, batch_size=500)
    for connection_id, muted_at in unmute.items():
        # Conditional: an adviser who muted it again meanwhile keeps their new mute.
        Connection.objects.filter(pk=connection_id, muted_at=muted_at).update(muted_at=None, muted_by=None)
    return result


def _open(
    row: Connection, *, cause: str, now: dt.datetime, snoozed: ConnectionProblem | None
) -> ConnectionProblem | None:
    opened_at = now
    if cause == Cause.DEGRADED and row.degraded_since is not None:
        opened_at = row.degraded_since
    elif cause == Cause.BROKEN and getattr(row, "broke_at", None) is not None:
        opened_at = row.broke_at  # type: ignore[attr-defined]  # annotation
    try:
        with transaction.atomic():
            problem = ConnectionProblem.objects.create(
                connection_id=row.pk,
                cause=cause,
                opened_at=min(opened_at, now),
                last_seen_at=now,
                message=row.status_message[:500],
                deadline=row.reconnect_by if cause == Cause.LAPSING else None,
                snoozed_until=snoozed.snoozed_until if snoozed is not None else None,
                snoozed_by_id=snoozed.snoozed_by_id if snoozed is not None else None,
            )
    except IntegrityError:
        return None
    problem.connection = row  # is_quiet reads its mute; the row is at hand
    return problem


def _actionable(problem: ConnectionProblem, *, now: dt.datetime, tunables: rules.Tunables) -> bool:
    if problem.cause == Cause.DEGRADED:
        # Counted from the problem's opening, not the row's degraded_since, which a flap resets.
        return rules.degraded_needs_attention(degraded_since=problem.opened_at, now=now, tunables=tunables)
    return True  # broken: only the client can fix it; lapsing: the rules already call the deadline near


def _recovery_held(
    problem: ConnectionProblem,
    *,
    connection: Connection,
    relapses: list[dt.datetime],
    recoveries: list[dt.datetime],
    now: dt.datetime,
) -> bool:
    """Healthy for this cause since ``recovering_since`` (set here on first sight), and for long enough."""
    if problem.recovering_since is None:
        after = [at for at in recoveries if at >= problem.last_seen_at]
        problem.recovering_since = min(after) if after else now
    relapses = [at for at in relapses if at >= problem.recovering_since]
    if relapses:
        # Broke again after it recovered (between two runs): the hold starts at its latest recovery.
        last_relapse = max(relapses)
        problem.occurrences += len(relapses)
        later = [at for at in recoveries if at > last_relapse]
        problem.recovering_since = min(later) if later else now
        problem.last_seen_at = now
    if now - problem.recovering_since >= recovery_hold():
        return True
    # Two successful checks: the one that recovered it, and another one after it.
    return connection.last_success_at is not None and connection.last_success_at > problem.recovering_since


def _close(problem: ConnectionProblem, *, now: dt.datetime, resolution: str) -> None:
    problem.closed_at = now
    problem.resolution = resolution


def _escalate(open_problems: list[ConnectionProblem], *, now: dt.datetime) -> int:
    """Mark problems open past their firm's age, once; they go to the firm admins' digest."""
    due = [
        p
        for p in open_problems
        if p.announced_at is not None and p.escalated_at is None and not (p.snoozed_until and p.snoozed_until > now)
    ]
    if not due:
        return 0
    # Read afresh: whether the connection is muted (it may have been muted since it was loaded), and its firm.
    firms = dict(
        Connection.objects.filter(pk__in=[p.connection_id for p in due], muted_at__isnull=True).values_list(
            "pk", "household__firm_id"
        )
    )
    due = [p for p in due if p.connection_id in firms]
    policies = {p.firm_id: p for p in FirmNotificationPolicy.objects.filter(firm_id__in=set(firms.values()))}
    escalated = 0
    for problem in due:
        if now - problem.opened_at >= escalate_after(policies.get(firms.get(problem.connection_id, 0))):
            problem.escalated_at = now
            ConnectionProblem.objects.filter(pk=problem.pk, escalated_at__isnull=True).update(escalated_at=now)
            escalated += 1
    return escalated


# --- What an adviser does to a problem -------------------------------------------------------


def _open_problems_for(*, connection: Connection, now: dt.datetime) -> list[ConnectionProblem]:
    problems_update(now=now, connection_ids=[connection.pk])
    return list(ConnectionProblem.objects.filter(connection=connection, closed_at__isnull=True))


def problem_snooze(*, connection: Connection, until: dt.datetime, user: object, now: dt.datetime | None = None) -> int:
    """Snooze the connection's open problems until ``until``. Returns how many (0: nothing is wrong)."""
    now = now or timezone.now()
    problems = _open_problems_for(connection=connection, now=now)
    by = user if getattr(user, "is_authenticated", False) else None
    ConnectionProblem.objects.filter(pk__in=[p.pk for p in problems]).update(snoozed_until=until, snoozed_by=by)
    return len(problems)


def connection_mute(*, connection: Connection, user: object, now: dt.datetime | None = None) -> bool:
    """Mute the connection, healthy or not, until a break that starts after now has recovered and held.

    Returns False when it was muted already (the first mute's time stands).
    """
    now = now or timezone.now()
    by = user if getattr(user, "is_authenticated", False) else None
    muted = Connection.objects.filter(pk=connection.pk, muted_at__isnull=True).update(muted_at=now, muted_by=by)
    if muted:
        connection.muted_at = now
    return bool(muted)


def connection_unmute(*, connection: Connection) -> bool:
    """End a mute now. Returns False when it was not muted."""
    unmuted = Connection.objects.filter(pk=connection.pk, muted_at__isnull=False).update(muted_at=None, muted_by=None)
    connection.muted_at = None
    return bool(unmuted)


def connection_wake(*, connection: Connection) -> int:
    """End a snooze and a mute now. Returns how many things woke (snoozed problems, and the mute)."""
    woke = ConnectionProblem.objects.filter(
        connection=connection, closed_at__isnull=True, snoozed_until__isnull=False
    ).update(snoozed_until=None, snoozed_by=None)
    return woke + int(connection_unmute(connection=connection))
