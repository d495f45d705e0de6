"""A demo connection's past, lived through the lifecycle's own rules on a simulated clock.

A :class:`Story` says when things happen in one connection's life (when it
was connected, a short outage that recovered, the outage it is in now, the
check that found it broken, the day it was disconnected), drawn once from
the connection's own seed. :func:`checks_replay` then lives that life the
way the sweep would have: each check happens when the previous transition
scheduled it, renews what the provider's client says is due, reports what
the story says happened (a success, or the failure the caller obtained from
the provider's client), and :func:`rules.decide` answers. What it answers is
stored as the lifecycle stores a check: the transition's fields, and its
events through :func:`store.events_for` under ``wording.SCHEDULED_CHECK``
(a renewal's through :func:`store.renewal_event`), dated by the simulated
clock. A routine success writes no event, as in the engine.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from connections import lifecycle, wording
from connections.lifecycle import CheckFailure, events_for, renewal_event, rules
from connections.models import Connection, ConnectionEvent, Credential
from connections.providers import registry
from connections.providers.base import ConnectionState, Grant, IssuedCredential
from connections.services import AUTHORIZATION_REQUEST_TTL

# Transient troubles, as the sandbox's fault rules (its control API): each
# outage in a demo story is one of them, met by the provider's real client.
OUTAGES: tuple[dict[str, Any], ...] = (
    {"kind": "status", "status": 503, "retry_after": 120},
    {"kind": "status", "status": 429, "retry_after": 60},
    {"kind": "status", "status": 502},
    {"kind": "truncated_json"},
    {"kind": "html"},
)


def _between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    return start + (end - start) * rng.random()


@dataclass(frozen=True)
class Story:
    """When things happen in one demo connection's life; every moment lies before ``now``."""

    started_at: datetime  # the connection row is created (authorization started)
    connected_at: datetime | None = None  # the first grant (None: still pending)
    blip_at: datetime | None = None  # a short outage that recovered
    blip_failures: int = 0
    outage_from: datetime | None = None  # failing from here on (degraded now)
    outage: Mapping[str, Any] = field(default_factory=dict)  # the fault both outages are made of
    flagged_at: datetime | None = None  # the check that finds the problem (needs_reconnect)
    disconnected_at: datetime | None = None
    abandoned_at: datetime | None = None  # housekeeping gives up on a pending authorization
    link_sent_at: datetime | None = None  # a reconnect link to the client (revoked)
    link_opened_at: datetime | None = None
    labelled: bool = False  # the adviser named the source

    @classmethod
    def draw(cls, key: str, *, status: str, reason: str, now: datetime, degraded_after: int) -> Story:
        """The story of a connection in ``status`` (``reason``) today, from the seed ``key``."""
        rng = random.Random(f"story/{key}")
        day, hour, minute = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1)
        labelled = rng.random() < 0.4
        if status == rules.PENDING:
            if reason == rules.AUTHORIZATION_ABANDONED:
                started = now - 2 * day - hour * rng.uniform(1, 9)
                # Housekeeping runs every few minutes after the request's window closed.
                abandoned = started + AUTHORIZATION_REQUEST_TTL + minute * rng.uniform(1, 5)
                return cls(started_at=started, abandoned_at=abandoned, labelled=labelled)
            return cls(started_at=now - minute * rng.uniform(1, 6), labelled=labelled)
        # Most connections are older than the month the history shows; some are recent.
        recent = status == rules.ACTIVE and rng.random() < 0.3
        connected = now - (day * rng.uniform(5, 25) if recent else day * rng.uniform(30, 31.5))
        story = cls(
            started_at=connected - minute * rng.uniform(1, 10),
            connected_at=connected,
            outage=OUTAGES[random.Random(f"outage/{key}").randrange(len(OUTAGES))],
            labelled=labelled,
        )
        end = now
        if status == rules.DEGRADED:
            end = now - hour * rng.uniform(2, 7)
            story = replace(story, outage_from=end)
        elif status == rules.NEEDS_RECONNECT:
            end = now - day * rng.uniform(1, 5)
            story = replace(story, flagged_at=end)
            if reason == rules.REVOKED:
                sent = end + 2 * hour
                opened = sent + hour * rng.uniform(1, 8) if rng.random() < 0.5 else None
                story = replace(story, link_sent_at=sent, link_opened_at=opened)
        elif status == rules.DISCONNECTED:
            end = now - day * rng.uniform(3, 20)
            story = replace(story, disconnected_at=end)
        if rng.random() < 1 / 3 and end - connected > 2 * day:
            blip = _between(rng, connected + day, end - day)
            story = replace(story, blip_at=blip, blip_failures=degraded_after + rng.randrange(2))
        return story


@dataclass
class Replayed:
    """What a replayed stretch of checks leaves: the row's fields, its events, and whether the credentials died."""

    fields: dict[str, Any]
    events: list[ConnectionEvent]
    forget_credentials: bool = False
    flagging_events: list[ConnectionEvent] = field(default_factory=list)


def _lapsing_like(credential: IssuedCredential, *, at: datetime) -> IssuedCredential:
    """``credential`` as if issued at ``at``, with the lifetime it really has."""
    if credential.expires_at is None:
        return replace(credential, issued_at=at)
    return replace(credential, issued_at=at, expires_at=at + (credential.expires_at - credential.issued_at))


def issued_back_then(grant: Grant, *, at: datetime) -> Grant:
    """``grant`` as it would have been at ``at``: its credentials issued then, with their real lifetimes."""
    return replace(grant, credentials=[_lapsing_like(c, at=at) for c in grant.credentials])


def checks_replay(
    connection: Connection,
    *,
    key: str,
    story: Story,
    credentials: Sequence[IssuedCredential],
    until: datetime,
    transient: CheckFailure | None,
    permanent: CheckFailure | None,
) -> Replayed:
    """Every check from the grant's first scheduled one up to ``until``, as the sweep would have run them.

    ``connection`` is the row as :func:`lifecycle.grant_apply` left it at
    ``story.connected_at``; ``credentials`` what the grant issued (their
    lifetimes are lived again on the simulated clock, so renewals come when
    the provider's client says they are due). ``transient`` and ``permanent``
    are what a failing check reports, as the provider's client answered them.
    ``key`` seeds the checks' jitter.
    """
    assert story.connected_at is not None
    clock = story.connected_at
    client = registry.client_class(connection.provider)(
        lifecycle.app_config(connection.provider_app), clock=lambda: clock
    )
    held = {c.kind: _lapsing_like(c, at=clock) for c in credentials}
    tunables = lifecycle.tunables()
    rng = random.Random(f"checks/{key}")
    state = rules.State(
        connection.status, connection.reason, connection.consecutive_failures, connection.degraded_since
    )
    at = connection.next_check_at
    replayed = Replayed(fields={}, events=[])
    blip_left = story.blip_failures
    snapshot = ConnectionState(
        platform=connection.platform,
        external_account_id=connection.external_account_id,
        credentials=held,
        grouping=connection.grouping,
    )
    while at is not None and at <= until:
        clock = at
        failure: CheckFailure | None = None
        if story.flagged_at is not None and at >= story.flagged_at:
            failure = permanent
        elif story.outage_from is not None and at >= story.outage_from:
            failure = transient
        elif story.blip_at is not None and at >= story.blip_at and blip_left > 0:
            failure, blip_left = transient, blip_left - 1
        if failure is None:
            due = client.renewal_due_at(snapshot)
            if rules.renewal_is_due(renewal_due_at=due, now=at, tunables=tunables):
                # A renewal replaces what lapses (access and refresh tokens), each
                # with the lifetime the provider really gives it.
                issued = [_lapsing_like(c, at=at) for c in held.values() if c.expires_at is not None]
                held = {**held, **{c.kind: c for c in issued}}
                snapshot = replace(snapshot, credentials=held)
                replayed.fields.update(lifecycle.deadline_fields(client, snapshot))
                replayed.events.append(
                    renewal_event(
                        connection,
                        status=state.status,
                        issued=issued,
                        held=held,
                        reconnect_by=replayed.fields["reconnect_by"],
                        actor_label=wording.SCHEDULED_CHECK,
                        at=at,
                    )
                )
                due = client.renewal_due_at(snapshot)
            happened: rules.Happened = rules.Succeeded(renewal_due_at=due)
            details: dict[str, Any] = {}
        else:
            happened, details = failure.happened, failure.details
        transition = rules.decide(state, happened, now=at, tunables=tunables, rng=rng)
        events = []
        if transition.events:  # a routine success has none
            events = events_for(
                connection, transition.events, actor_label=wording.SCHEDULED_CHECK, at=at, details=details or None
            )
            replayed.events += events
        replayed.fields = {**replayed.fields, **transition.fields(), "last_checked_at": at}
        if transition.succeeded:
            replayed.fields["last_success_at"] = at
        if failure is permanent and permanent is not None:
            replayed.forget_credentials = permanent.forget_credentials
            replayed.flagging_events = events
        state = rules.State(
            transition.status, transition.reason, transition.consecutive_failures, transition.degraded_since
        )
        at = transition.next_check_at
    return replayed


def replayed_store(connection: Connection, replayed: Replayed) -> None:
    """Store a replay as a check stores its outcome: the row's fields, the events, and (a renewal refused for
    good) no credentials left.

    A connection still checked holds the credentials it was really granted
    (they are the latest a renewal brought): its hard deadline is read from
    those, as a check reads it after storing a renewal.
    """
    fields = dict(replayed.fields)
    if fields.get("status") in rules.SCHEDULED:
        row = Connection.objects.select_related("provider_app").get(pk=connection.pk)
        client = lifecycle.client_for_app(app=row.provider_app)
        fields.update(lifecycle.deadline_fields(client, lifecycle.connection_state(connection=row)))
    if fields:
        Connection.objects.filter(pk=connection.pk).update(**fields)
    if replayed.forget_credentials:
        deleted, _ = Credential.objects.filter(connection_id=connection.pk).delete()
        for event in replayed.flagging_events:
            event.details["credentials_deleted"] = deleted
    ConnectionEvent.objects.bulk_create(replayed.events, batch_size=1000)
