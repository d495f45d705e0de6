"""The connection status table as code.

PURE: no ORM, no HTTP, no clock of its own (``now`` and the random source are
passed in). Every status, reason and failure count a connection ever gets is
decided here, by :func:`decide`; the rest of the lifecycle gathers what
happened, asks, and stores the :class:`Transition` it gets back. Read this
file to answer "when does a connection become degraded?"; what each outcome
then says is ``connections.wording.event_sentence`` and ``status_message``.

The table (rows: what happened; columns: the status now; NR = needs_reconnect)::

  what happened              pending         active               degraded          NR (forced checks)  disconnected
  check succeeded            -               active               active +RECOVERED active +RECOVERED   -
  transient failure          -               active; degraded     degraded          NR                  -
                                             after N in a row
  permanent failure (r)      -               NR (r)               NR (r)            NR (r)              -
  app credentials rejected   -               unchanged            unchanged         unchanged           -
  deferred (no call made)    -               unchanged, looks     unchanged, looks  unchanged           -
                                             again at `until`     again at `until`
  interrupted (portal error) -               unchanged, looks     unchanged, looks  unchanged           -
                                             again after a delay  again after a delay
  grant (connect/reconnect)  active          active               active +RECOVERED active +RECOVERED   REFUSED
  disconnect                 disconnected    disconnected         disconnected      disconnected        -
  authorization abandoned    pending (r)     -                    -                 -                   -
  hard deadline passed       -               NR (expired)         NR (expired)      -                   -
  credentials unreadable     -               NR (unreadable)      NR (unreadable)   NR (unreadable)     -

"-": nothing happens (such a connection is never checked, or the event does
not apply). N is ``Tunables.degraded_after``. Only a permanent failure
(expired, revoked, credentials invalid) or a lapsed deadline flags a
connection; a transient one never does, and a rejected app flags the
ProviderApp, never the clients' connections. Disconnected is final: only a new
connect brings the source back, as a new row.

Scheduling: only active and degraded connections are scheduled, so nothing
retries what only the client can fix. After a success the next look is the
earlier of the renewal point (minus jitter) and the probe interval; after a
transient failure, capped exponential backoff with full jitter, never sooner
than the provider's ``Retry-After``. Events come back as :class:`EventSpec`,
written by the store in the same transaction as the row; a routine success
that changes nothing writes none.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

PENDING, ACTIVE, DEGRADED, NEEDS_RECONNECT = "pending", "active", "degraded", "needs_reconnect"
DISCONNECTED, TRANSIENT, AUTHORIZATION_ABANDONED = "disconnected", "transient", "authorization_abandoned"
EXPIRED, REVOKED, CREDENTIALS_INVALID = "expired", "revoked", "credentials_invalid"
CREDENTIALS_UNREADABLE = "credentials_unreadable"
PERMANENT_REASONS = frozenset({EXPIRED, REVOKED, CREDENTIALS_INVALID, CREDENTIALS_UNREADABLE})
SCHEDULED = frozenset({ACTIVE, DEGRADED})  # the sweep looks at these by itself
CHECKABLE = frozenset({ACTIVE, DEGRADED, NEEDS_RECONNECT})  # a person may force a check of these
RECOVERING = frozenset({DEGRADED, NEEDS_RECONNECT})  # back to active from here is a recovery
# Event kinds (connections.models.ConnectionEvent.Kind values).
CREATED, CONNECTED, RECONNECTED, RECOVERED = "created", "connected", "reconnected", "recovered"
CHECK_FAILED, STATUS_CHANGED, DISCONNECT = "check_failed", "status_changed", "disconnected"


class Random(Protocol):
    """A source of randomness for jitter (the ``random`` module itself, or a seeded ``random.Random``)."""

    def uniform(self, a: float, b: float) -> float: ...


@dataclass(frozen=True)
class Tunables:
    """Every lifecycle setting, in seconds unless named otherwise; ``config.py`` reads ``LIFECYCLE_<NAME>``."""

    probe_interval_seconds: float = 15 * 60  # routine look at a healthy connection
    probe_jitter_fraction: float = 0.1  # ... give or take this share
    min_recheck_seconds: float = 30  # never sooner (a token shorter-lived than its margin)
    renew_jitter_seconds: float = 120  # renew up to this much before the client's point, at random
    backoff_base_seconds: float = 30  # transient failure n: uniform(0, min(cap, base * 2**(n-1)))
    backoff_cap_seconds: float = 6 * 3600
    degraded_after: int = 3  # transient failures in a row before "degraded"
    check_lease_seconds: float = 120  # how long one check may hold its claim
    sweep_lease_seconds: float = 600  # how long the sweep's claim lasts (a lost task comes back after it)
    error_delay_seconds: float = 30 * 60  # an unexpected error pushes the next check this far
    app_rejected_retry_seconds: float = 15 * 60  # while the provider rejects the app itself
    app_disabled_retry_seconds: float = 30 * 60  # a disabled ProviderApp
    deadline_warning_seconds: float = 48 * 3600  # a hard deadline this close is "near" (see deadline_is_near)
    degraded_attention_seconds: float = 3600  # degraded this long needs a person's eye
    store_retry_total_seconds: float = 90  # renewed tokens arrived: keep trying to store them this long
    store_retry_seconds: float = 0.25  # first pause between store attempts (doubles, capped at 5 s)


# --- What the rules decide on: the row's state, and what happened --------------------------------


@dataclass(frozen=True)
class State:
    """The part of a connection row the rules read."""

    status: str
    reason: str = ""
    consecutive_failures: int = 0
    degraded_since: datetime | None = None


@dataclass(frozen=True)
class Succeeded:  # a check renewed what was due and the provider listed the accounts
    renewal_due_at: datetime | None = None


@dataclass(frozen=True)
class FailedTransiently:  # timeout, 5xx, 429, malformed reply: the provider may well answer next time
    retry_after: float | None = None
    error: str = ""


@dataclass(frozen=True)
class FailedPermanently:
    """Only the client can fix it: ``reason`` is expired, revoked or credentials_invalid.

    ``from_provider`` is False when the portal found nothing usable to send (no
    call was made): that confirms a flagged connection is still broken but does
    not rewrite why it broke.
    """

    reason: str
    error: str = ""
    from_provider: bool = True


@dataclass(frozen=True)
class AppRejected:  # the provider rejected the portal's own app credentials (not the client's)
    error: str = ""


@dataclass(frozen=True)
class Deferred:  # no call was made (breaker open, rate limit, app disabled): look again at ``until``
    until: datetime


@dataclass(frozen=True)
class Interrupted:  # the portal's own code failed unexpectedly mid-check
    pass


@dataclass(frozen=True)
class Granted:  # a connect or reconnect completed and its credentials were stored
    reconnect: bool
    renewal_due_at: datetime | None = None
    accounts_read: bool = True
    by_client: bool = False
    deadline: datetime | None = None
    deadline_rolls: bool = False


@dataclass(frozen=True)
class Disconnected:  # removed on purpose (revoked at the provider where it can be, secrets deleted)
    revoke_error: str = ""


@dataclass(frozen=True)
class Abandoned:  # every authorization of a pending connection ran out of time unfinished
    pass


@dataclass(frozen=True)
class DeadlinePassed:  # the hard deadline (reconnect_by) went by: only the client can restore access
    deadline: datetime


@dataclass(frozen=True)
class CredentialsUnreadable:  # a stored credential can no longer be decrypted by any configured key
    pass


CHECK_OUTCOMES = (Succeeded, FailedTransiently, FailedPermanently, AppRejected, Deferred, Interrupted)
Happened = (
    Succeeded | FailedTransiently | FailedPermanently | AppRejected | Deferred | Interrupted
    | Granted | Disconnected | Abandoned | DeadlinePassed | CredentialsUnreadable
)  # fmt: skip


@dataclass(frozen=True)
class EventSpec:
    """An event to record with the transition (``facts`` feed the wording and the event's details)."""

    kind: str
    from_status: str
    to_status: str
    reason: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Transition:
    """What to store: the row's new status fields, its next check, and the events to write."""

    status: str
    reason: str
    consecutive_failures: int
    degraded_since: datetime | None
    next_check_at: datetime | None
    events: tuple[EventSpec, ...] = ()
    succeeded: bool = False  # a successful check or grant: last_success_at is now, last_error cleared
    error: str | None = None  # last_error to store (None: leave it)

    def fields(self) -> dict[str, Any]:
        """The Connection fields this transition writes."""
        values: dict[str, Any] = {
            "status": self.status,
            "reason": self.reason,
            "consecutive_failures": self.consecutive_failures,
            "degraded_since": self.degraded_since,
            "next_check_at": self.next_check_at,
        }
        if self.error is not None:
            values["last_error"] = self.error[:500]
        return values


class GrantRefused(Exception):
    """A grant for a connection that was disconnected: disconnected is final."""


# --- The table ---------------------------------------------------------------------------------


def decide(state: State, happened: Happened, *, now: datetime, tunables: Tunables, rng: Random = random) -> Transition:
    """The transition for ``happened`` to a connection in ``state`` at ``now`` (see the table above)."""
    status, scheduled = state.status, state.status in SCHEDULED
    if isinstance(happened, CHECK_OUTCOMES) and status not in CHECKABLE:
        return _no_change(state)  # pending and disconnected connections are never checked

    if isinstance(happened, Succeeded | Granted):
        granted = happened if isinstance(happened, Granted) else None
        if granted is not None and status == DISCONNECTED:
            raise GrantRefused("a disconnected connection is never brought back; connect the source anew")
        if granted is not None and not granted.accounts_read:
            next_check = now + timedelta(seconds=tunables.min_recheck_seconds)  # look soon, to show balances
        else:
            next_check = next_check_after_success(
                renewal_due_at=happened.renewal_due_at, now=now, tunables=tunables, rng=rng
            )
        events: list[EventSpec] = []
        if granted is not None:
            connected = {"deadline": granted.deadline, "deadline_rolls": granted.deadline_rolls}
            events.append(EventSpec(RECONNECTED if granted.reconnect else CONNECTED, status, ACTIVE, facts=connected))
        if status in RECOVERING:
            facts = {
                "by_reconnect": granted is not None,
                "by_client": granted is not None and granted.by_client,
                "previous_reason": state.reason,
                "failures": state.consecutive_failures,
            }
            reason = state.reason if granted is not None else ""
            events.append(EventSpec(RECOVERED, status, ACTIVE, reason=reason, facts=facts))
        return Transition(ACTIVE, "", 0, None, next_check, tuple(events), succeeded=True, error="")

    if isinstance(happened, FailedTransiently):
        failures = state.consecutive_failures + 1
        retry_at: datetime | None = None
        after, reason, since = status, state.reason, state.degraded_since
        if scheduled:
            retry_at = now + timedelta(seconds=backoff_delay(failures, happened.retry_after, tunables, rng))
            if failures >= tunables.degraded_after:
                after, reason, since = DEGRADED, TRANSIENT, state.degraded_since or now
        failed = {"error": happened.error, "next_check_at": retry_at, "failures": failures}
        event = EventSpec(CHECK_FAILED, status, after, TRANSIENT, {**failed, "retry_after": happened.retry_after})
        return Transition(after, reason, failures, since, retry_at, (event,), error=happened.error)

    if isinstance(happened, FailedPermanently):
        if happened.reason not in PERMANENT_REASONS:
            raise ValueError(f"not a permanent reason: {happened.reason!r}")
        keep = status == NEEDS_RECONNECT and not happened.from_provider and state.reason
        reason = state.reason if keep else happened.reason
        event = EventSpec(CHECK_FAILED, status, NEEDS_RECONNECT, reason, {"error": happened.error})
        return Transition(NEEDS_RECONNECT, reason, 0, None, None, (event,), error=happened.error)

    if isinstance(happened, AppRejected):
        retry = tunables.app_rejected_retry_seconds * rng.uniform(1.0, 1.5)
        later = now + timedelta(seconds=retry) if scheduled else None
        rejected = {"app_rejected": True, "error": happened.error, "next_check_at": later}
        return _kept(state, later, (EventSpec(CHECK_FAILED, status, status, "", rejected),), error=happened.error)

    if isinstance(happened, Deferred):
        return _kept(state, happened.until if scheduled else None, ())

    if isinstance(happened, Interrupted):
        until = now + timedelta(seconds=tunables.error_delay_seconds)
        interrupted = EventSpec(CHECK_FAILED, status, status, "", {"interrupted": True, "next_check_at": until})
        return _kept(state, until if scheduled else None, (interrupted,))

    if isinstance(happened, Disconnected):
        event = EventSpec(DISCONNECT, status, DISCONNECTED, "", {"revoke_error": happened.revoke_error})
        return Transition(DISCONNECTED, "", 0, None, None, (event,))

    if isinstance(happened, Abandoned):
        if status != PENDING or state.reason == AUTHORIZATION_ABANDONED:
            return _no_change(state)
        event = EventSpec(STATUS_CHANGED, PENDING, PENDING, AUTHORIZATION_ABANDONED)
        return Transition(PENDING, AUTHORIZATION_ABANDONED, 0, None, None, (event,))

    if isinstance(happened, DeadlinePassed):
        if not scheduled:
            return _no_change(state)
        event = EventSpec(STATUS_CHANGED, status, NEEDS_RECONNECT, EXPIRED, {"deadline": happened.deadline})
        return Transition(NEEDS_RECONNECT, EXPIRED, 0, None, None, (event,))

    if isinstance(happened, CredentialsUnreadable):
        if status not in CHECKABLE or state.reason == CREDENTIALS_UNREADABLE:
            return _no_change(state)
        event = EventSpec(STATUS_CHANGED, status, NEEDS_RECONNECT, CREDENTIALS_UNREADABLE)
        return Transition(NEEDS_RECONNECT, CREDENTIALS_UNREADABLE, 0, None, None, (event,))

    raise TypeError(f"unknown happening {happened!r}")


def _kept(
    state: State, next_check: datetime | None, events: tuple[EventSpec, ...], error: str | None = None
) -> Transition:
    """Status, reason and counts as they are; only the schedule (and maybe the last error) moves."""
    return Transition(
        state.status, state.reason, state.consecutive_failures, state.degraded_since, next_check, events, error=error
    )


def _no_change(state: State) -> Transition:
    return _kept(state, None, ())


def started() -> Transition:
    """A brand-new connection row: pending until its first authorization completes."""
    return Transition(PENDING, "", 0, None, None, (EventSpec(CREATED, "", PENDING),))


# --- Timing rules ---------------------------------------------------------------------------------


def backoff_delay(failures: int, retry_after: float | None, tunables: Tunables, rng: Random = random) -> float:
    """Seconds until the next attempt after ``failures`` transient failures in a row.

    Full jitter, uniform(0, min(cap, base * 2**(failures-1))), so an outage does
    not bring every connection back in the same second; a provider's
    ``Retry-After`` is a floor.
    """
    exponent = min(max(failures, 1) - 1, 62)
    delay = rng.uniform(0, min(tunables.backoff_cap_seconds, tunables.backoff_base_seconds * (2**exponent)))
    return max(delay, float(retry_after)) if retry_after is not None and retry_after > 0 else delay


def next_check_after_success(
    *, renewal_due_at: datetime | None, now: datetime, tunables: Tunables, rng: Random = random
) -> datetime:
    """The earlier of the renewal point (moved earlier by up to ``renew_jitter``, at most half the
    time left) and the probe interval (± its jitter); never sooner than ``min_recheck``."""
    spread = tunables.probe_jitter_fraction
    candidate = now + timedelta(seconds=tunables.probe_interval_seconds * rng.uniform(1 - spread, 1 + spread))
    if renewal_due_at is not None:
        room = max((renewal_due_at - now).total_seconds() / 2, 0.0)
        early = rng.uniform(0, min(tunables.renew_jitter_seconds, room))
        candidate = min(candidate, renewal_due_at - timedelta(seconds=early))
    return max(candidate, now + timedelta(seconds=tunables.min_recheck_seconds))


def renewal_is_due(*, renewal_due_at: datetime | None, now: datetime, tunables: Tunables) -> bool:
    """A check at ``now`` renews when the client's renewal point is within the renewal jitter."""
    return renewal_due_at is not None and renewal_due_at <= now + timedelta(seconds=tunables.renew_jitter_seconds)


def deadline_is_near(
    *, deadline: datetime, basis: datetime, now: datetime, tunables: Tunables, rolls: bool = False
) -> bool:
    """A deadline deserves a person's attention.

    A hard one (Dapi's 30-minute code, a sign-in that will not renew) once it
    is within the warning window. A rolling one (a rotating refresh token's end
    of life, moved on at every renewal) only once it has stopped rolling: within
    the window AND with half its own life gone since ``basis`` (the refresh
    token's last issue), which a sign-in the portal keeps renewing never reaches.
    Pages and housekeeping query this as SQL (``lifecycle.deadline_is_near_q``), tested against this rule.
    """
    left = deadline - now
    return left <= timedelta(seconds=tunables.deadline_warning_seconds) and (
        not rolls or left <= (deadline - basis) / 2
    )


def degraded_needs_attention(*, degraded_since: datetime | None, now: datetime, tunables: Tunables) -> bool:
    """Degraded for longer than ``degraded_attention`` (the provider is not recovering by itself)."""
    threshold = timedelta(seconds=tunables.degraded_attention_seconds)
    return degraded_since is not None and now - degraded_since >= threshold
