"""One demo connection's life, from its start to today, through the lifecycle's own entry points.

:func:`connection_live` plays it as the people and jobs of the portal would
have: the adviser starts it (``lifecycle.connection_start``), the client
grants access (a real Grant, ``lifecycle.grant_apply``), the sweep checks it
for weeks (:mod:`.history`), the adviser disconnects it
(``lifecycle.connection_disconnect``) or sends a reconnect link, housekeeping
gives up on an authorization nobody finished (``lifecycle.connections_abandon``).
Each step is dated by the story's clock. :func:`subject_restore` gives a
connection a new sandbox subject after a sandbox reset (or in place of a
placeholder) without living its story again.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from connections import lifecycle, wording
from connections import models as m
from connections.lifecycle import credentials_keep_only, credentials_upsert, event_row, household_grouping_adopt
from connections.services import AUTHORIZATION_REQUEST_TTL

from . import history
from .sources import Source


def _random_hash() -> str:
    return hashlib.sha256(secrets.token_bytes(32)).hexdigest()


def connection_live(
    *,
    household: m.Household,
    client: m.Client,
    app: m.ProviderApp,
    platform: str,
    reason: str,
    key: str,
    story: history.Story,
    adviser: Any,
    source: Source,
    now: datetime,
) -> m.Connection:
    """The connection ``story`` tells of, lived up to ``now``; ``reason`` is what breaks it, if anything."""
    connection = lifecycle.connection_start(
        household=household,
        client=client,
        provider_app=app,
        platform=platform,
        actor=adviser,
        actor_label="",
        now=story.started_at,
    )
    if story.labelled:
        label = f"{client.name.split()[0]}'s {wording.platform_name(platform)}"
        m.Connection.objects.filter(pk=connection.pk).update(label=label)
    if story.connected_at is None:
        authorization_waiting(connection, story, adviser=adviser)
        return connection
    grant = source.grant(connection)
    # The grant's tokens were issued just now, its connect happened long ago:
    # the connect sees them as issued then (its deadlines are of that day),
    # and the connection keeps the real ones, as the latest renewal's.
    connection = lifecycle.grant_apply(
        connection=connection,
        grant=history.issued_back_then(grant, at=story.connected_at),
        purpose=m.AuthorizationRequest.Purpose.CONNECT,
        actor=adviser,
        now=story.connected_at,
    )
    credentials_upsert(grant.credentials, connection_id=connection.pk)
    outage = source.outage(connection, story.outage) if story.blip_at or story.outage_from else None
    breakage = source.breakage(connection, reason) if story.flagged_at else None
    replayed = history.checks_replay(
        connection,
        key=key,
        story=story,
        credentials=grant.credentials,
        until=story.disconnected_at or now,
        transient=outage,
        permanent=breakage,
    )
    history.replayed_store(connection, replayed)
    if story.disconnected_at is not None:
        connection = lifecycle.connection_disconnect(connection=connection, actor=adviser, now=story.disconnected_at)
    if story.link_sent_at is not None:
        reconnect_link(connection, story, adviser=adviser)
    return connection


def authorization_waiting(connection: m.Connection, story: history.Story, *, adviser: Any) -> None:
    """The authorization a pending connection waits on; housekeeping gave up on an abandoned one."""
    request = m.AuthorizationRequest.objects.create(
        state_hash=_random_hash(),
        provider_app=connection.provider_app,
        provider=connection.provider,
        platform=connection.platform,
        purpose=m.AuthorizationRequest.Purpose.CONNECT,
        household=connection.household,
        client=connection.client,
        connection=connection,
        started_by=adviser,
        created_at=story.started_at,
        expires_at=story.started_at + AUTHORIZATION_REQUEST_TTL,
    )
    if story.abandoned_at is not None:
        # What housekeeping does to a request whose window closed (jobs.authorization_requests_expire).
        m.AuthorizationRequest.objects.filter(pk=request.pk).update(
            outcome=m.AuthorizationRequest.Outcome.EXPIRED, outcome_message=wording.authorization_not_finished()
        )
        lifecycle.connections_abandon(connection_ids=[connection.pk], now=story.abandoned_at)


def reconnect_link(connection: m.Connection, story: history.Story, *, adviser: Any) -> None:
    """The reconnect link the adviser sent the client, and its opening, as the link services record them.

    The link's token is random and never shown: the demo sends no email.
    """
    assert story.link_sent_at is not None
    sent_at, opened_at = story.link_sent_at, story.link_opened_at
    expires_at = sent_at + timedelta(days=getattr(settings, "CLIENT_LINK_MAX_AGE_DAYS", 7))
    client = connection.client
    m.ClientLink.objects.create(
        token_hash=_random_hash(),
        household=connection.household,
        client=client,
        connection=connection,
        provider_app=connection.provider_app,
        platform=connection.platform,
        status=m.ClientLink.LinkStatus.OPENED if opened_at else m.ClientLink.LinkStatus.SENT,
        sent_to=client.email,
        created_by=adviser,
        created_at=sent_at,
        expires_at=expires_at,
        sent_at=sent_at,
        opened_at=opened_at,
    )
    events = [
        event_row(
            connection_id=connection.pk,
            kind=m.ConnectionEvent.Kind.LINK_SENT,
            message=wording.link_sent(email=client.email, expires_at=expires_at),
            actor=adviser,
            created_at=sent_at,
        )
    ]
    if opened_at is not None:
        events.append(
            event_row(
                connection_id=connection.pk,
                kind=m.ConnectionEvent.Kind.LINK_OPENED,
                message=wording.link_opened(email=client.email),
                actor_label=wording.CLIENT_LINK,
                created_at=opened_at,
            )
        )
    m.ConnectionEvent.objects.bulk_create(events)


def subject_restore(row: m.Connection, *, seeded_working: bool, source: Source, actor_label: str) -> bool:
    """A new subject for ``row``; True when that reconnected it.

    A connection seeded working that has been flagged since (a sandbox reset,
    or placeholders a worker checked) is reconnected through
    :func:`lifecycle.grant_apply`, as a client's connect would. Any other gets
    the new grant's credentials and ids where its own were, its status and
    history untouched; a needs-reconnect one is broken again the way its
    reason says, and keeps no credentials where a check would have deleted them.
    """
    grant = source.grant(row)
    if seeded_working and row.status == m.Status.NEEDS_RECONNECT:
        # The reset sandbox knows the same person under a new subject id: the row
        # takes it first, so the grant is a reconnect of the same source account.
        m.Connection.objects.filter(pk=row.pk).update(external_account_id=str(grant.external_account_id))
        lifecycle.grant_apply(
            connection=row, grant=grant, purpose=m.AuthorizationRequest.Purpose.RECONNECT, actor_label=actor_label
        )
        return True
    credentials_upsert(grant.credentials, connection_id=row.pk)
    credentials_keep_only(connection_id=row.pk, kinds=[c.kind for c in grant.credentials])
    grouping = {**(row.grouping or {}), **{str(k): str(v) for k, v in grant.grouping.items() if v}}
    household_grouping_adopt(household_id=row.household_id, grouping=grouping)
    row.external_account_id, row.grouping = str(grant.external_account_id), grouping
    row.save(update_fields=["external_account_id", "grouping", "updated_at"])
    if row.status == m.Status.NEEDS_RECONNECT and source.breakage(row, row.reason).forget_credentials:
        m.Credential.objects.filter(connection=row).delete()
    return False
