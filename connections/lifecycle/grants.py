"""Connect, reconnect, disconnect and abandon: the lifecycle's transitions that people start.

A grant is applied under the connection's row lock; any check in flight loses
its claim and stores nothing. A reconnect must prove the same source account
(the provider's answer, never the browser's, names it); a different one is
refused with an event and changes nothing. A disconnected connection is final
(:class:`rules.GrantRefused`). Disconnect revokes at the provider where it can,
outside any transaction, and deletes every secret whatever the provider said.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import wording
from ..logging import redact
from ..models import Client, Connection, ConnectionEvent, Credential, Household, ProviderApp
from ..providers.base import Grant
from ..providers.errors import ProviderError
from ..throttling import rate_limit_acquire
from . import clients, rules
from .config import tunables
from .store import (
    accounts_digest,
    accounts_replace,
    credentials_keep_only,
    credentials_upsert,
    event_record,
    events_for,
)

logger = logging.getLogger("connections.lifecycle")


class ReconnectMismatch(Exception):
    """A reconnect signed in to a different source account than the one stored.

    ``message`` is plain words naming the provider and platform, safe to show.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


GrantRefused = rules.GrantRefused


class ConnectedMeanwhile(Exception):
    """A connect finished on a row another authorization already connected to a different account.

    Two tabs connecting the same client and platform share one pending row;
    the second must not swap its account onto the first. The caller gives the
    second account a connection of its own.
    """


def _state(connection: Connection) -> rules.State:
    return rules.State(
        status=connection.status,
        reason=connection.reason,
        consecutive_failures=connection.consecutive_failures,
        degraded_since=connection.degraded_since,
    )


def connection_start(
    *,
    household: Household,
    client: Client,
    provider_app: ProviderApp,
    platform: str,
    actor: Any,
    actor_label: str,
    now: datetime | None = None,
) -> Connection:
    """A new pending connection row with its CREATED event (the rules' starting point).

    ``now`` (default: the current time) is when it happened, as for every entry
    point of the lifecycle: it dates the row and its event.
    """
    now = now or timezone.now()
    transition = rules.started()
    connection = Connection.objects.create(
        household=household,
        client=client,
        provider_app=provider_app,
        provider=provider_app.provider,
        platform=platform,
        created_by=actor,
        created_at=now,
        **transition.fields(),
    )
    events_for(connection, transition.events, actor=actor, actor_label=actor_label, at=now)[0].save()
    return connection


def grant_apply(
    *,
    connection: Connection,
    grant: Grant,
    purpose: str,
    actor: Any = None,
    actor_label: str = "",
    now: datetime | None = None,
) -> Connection:
    """Store a completed authorization and make the connection active (at ``now``, default the current time).

    ``purpose`` is ``"connect"`` or ``"reconnect"`` (AuthorizationRequest.Purpose).
    On a reconnect the grant must name the stored ``external_account_id``; a
    different one raises :class:`ReconnectMismatch` after recording a
    RECONNECT_REFUSED event and changes nothing else. A disconnected
    connection raises :class:`GrantRefused`. Call it outside an outer
    ``atomic`` block (or catch the exception inside it), or the refusal event
    is rolled back with it.

    Otherwise: credentials upserted per kind (other kinds deleted when the grant
    carries ``replace_credentials``), accounts stored when the grant has them,
    the grouping remembered (and the household's shared grouping when it has
    none), ``reconnect_by`` from the client, and the rules' transition (CONNECTED
    or RECONNECTED, plus RECOVERED from degraded or needs_reconnect).
    """
    now = now or timezone.now()
    reconnect = str(purpose) == "reconnect"
    # Only the client's own link is the client's doing ("after the client's reconnect").
    by_client = actor is None and actor_label == wording.CLIENT_LINK
    refused: Connection | None = None
    with transaction.atomic():
        locked = (
            Connection.objects.select_for_update(of=("self",))
            .select_related("provider_app", "household", "client")
            .get(pk=connection.pk)
        )
        if locked.status == rules.DISCONNECTED:
            raise GrantRefused(f"connection {locked.pk} was disconnected")
        stored_id = locked.external_account_id
        if not reconnect and stored_id and str(grant.external_account_id) != stored_id:
            raise ConnectedMeanwhile(f"connection {locked.pk} holds another account")
        if reconnect and stored_id and str(grant.external_account_id) != stored_id:
            refused = locked
        else:
            _grant_store(
                locked, grant, now=now, reconnect=reconnect, actor=actor, actor_label=actor_label, by_client=by_client
            )
    if refused is not None:
        source = wording.source_name(provider=refused.provider, platform=refused.platform)
        message = wording.reconnect_refused(source=source, platform=refused.platform)
        event_record(
            connection=refused,
            kind=ConnectionEvent.Kind.RECONNECT_REFUSED,
            message=message,
            from_status=refused.status,
            to_status=refused.status,
            actor=actor,
            actor_label=actor_label,
            details={
                "expected_account": refused.external_account_id,
                "returned_account": str(grant.external_account_id),
            },
            created_at=now,
        )
        raise ReconnectMismatch(message)
    connection.refresh_from_db()
    return connection


def _grant_store(
    locked: Connection, grant: Grant, *, now: datetime, reconnect: bool, actor: Any, actor_label: str, by_client: bool
) -> None:
    issued = list(grant.credentials)
    credentials_upsert(issued, connection_id=locked.pk)
    if grant.replace_credentials:
        credentials_keep_only(connection_id=locked.pk, kinds=[c.kind for c in issued])
    grouping = {**(locked.grouping or {}), **{str(k): str(v) for k, v in (grant.grouping or {}).items() if v}}
    clients.household_grouping_adopt(household_id=locked.household_id, grouping=grouping)
    locked.grouping = grouping
    locked.external_account_id = str(grant.external_account_id)[:200]

    # The client reads deadlines from the credentials as they are now stored.
    rows = list(Credential.objects.filter(connection_id=locked.pk))
    state = clients.connection_state(connection=locked, credentials=rows)
    state = replace(state, external_account_id=locked.external_account_id, grouping=grouping)
    client = clients.client_for_app(app=locked.provider_app)
    deadline = client.reconnect_deadline(state)
    happened = rules.Granted(
        reconnect=reconnect,
        renewal_due_at=client.renewal_due_at(state),
        accounts_read=grant.accounts is not None,
        by_client=by_client,
        deadline=deadline,
        deadline_rolls=deadline is not None and client.deadline_rolls(state),
    )
    transition = rules.decide(_state(locked), happened, now=now, tunables=tunables())
    for name, value in transition.fields().items():
        setattr(locked, name, value)
    locked.connected_at = now
    locked.disconnected_at = None
    locked.reconnect_by = deadline
    locked.reconnect_by_rolls = happened.deadline_rolls
    locked.lease_until = None
    locked.lease_owner = ""
    update_fields = [
        *transition.fields(),
        "connected_at",
        "disconnected_at",
        "reconnect_by",
        "reconnect_by_rolls",
        "lease_until",
        "lease_owner",
        "grouping",
        "external_account_id",
        "updated_at",
    ]
    if grant.accounts is not None:
        locked.last_success_at = now
        locked.last_checked_at = now
        locked.accounts_digest = accounts_digest(grant.accounts)
        update_fields += ["last_success_at", "last_checked_at", "accounts_digest"]
        accounts_replace(locked.pk, grant.accounts, now)
    events = events_for(
        locked,
        transition.events,
        actor=actor,
        actor_label=actor_label,
        at=now,
        details={"credential_kinds": sorted({c.kind for c in issued})},
    )
    locked.save(update_fields=update_fields)
    ConnectionEvent.objects.bulk_create(events)


def connection_disconnect(
    *, connection: Connection, actor: Any = None, actor_label: str = "", now: datetime | None = None
) -> Connection:
    """Revoke at the provider where it can be, delete every secret, status ``disconnected`` (as of ``now``).

    A provider failure while revoking (or the app's rate limit being spent)
    never blocks the disconnect: it is recorded in the event and the secrets
    are deleted anyway. The revoke call happens outside any transaction (no row
    lock held over HTTP); the local change is atomic and clears any check's
    claim, so a renewal finishing meanwhile stores nothing.
    """
    current = (
        Connection.objects.select_related("provider_app", "household", "client")
        .prefetch_related("credentials")
        .get(pk=connection.pk)
    )
    revoke_outcome, revoke_error = "nothing to revoke", ""
    if current.status != rules.DISCONNECTED and list(current.credentials.all()):
        revoke_outcome, revoke_error = _revoke(current)
    with transaction.atomic():
        locked = Connection.objects.select_for_update().get(pk=connection.pk)
        if locked.status == rules.DISCONNECTED:
            connection.refresh_from_db()
            return connection
        deleted, _ = Credential.objects.filter(connection_id=locked.pk).delete()
        now = now or timezone.now()
        transition = rules.decide(
            _state(locked), rules.Disconnected(revoke_error=revoke_error), now=now, tunables=tunables()
        )
        Connection.objects.filter(pk=locked.pk).update(
            **transition.fields(),
            lease_until=None,
            lease_owner="",
            reconnect_by=None,
            disconnected_at=now,
            updated_at=timezone.now(),
        )
        details = {"revoke": revoke_outcome, "credentials_deleted": deleted}
        events = events_for(locked, transition.events, actor=actor, actor_label=actor_label, at=now, details=details)
        for event in events:
            event.save()
    connection.refresh_from_db()
    return connection


def _revoke(connection: Connection) -> tuple[str, str]:
    """Ask the provider to revoke access, within the app's rate limit. Returns (outcome, error words)."""
    app = connection.provider_app
    if rate_limit_acquire(app=app) > 0:
        # A person is waiting: the limit is waited for briefly (the default
        # bound), never exceeded; the secrets are deleted anyway.
        return "not revoked: the provider's call budget was spent", "the portal's call limit was reached"
    try:
        client = clients.client_for_app(app=app)
        client.revoke(connection=clients.connection_state(connection=connection))
    except ProviderError as exc:
        logger.warning("Disconnect of connection %s: revoke failed (%s).", connection.pk, exc.kind)
        return "revoke failed; secrets deleted anyway", redact(exc.message or str(exc))[:300]
    except Exception as exc:
        logger.error("Disconnect of connection %s: revoke raised %s.", connection.pk, type(exc).__name__, exc_info=True)
        return "revoke failed; secrets deleted anyway", type(exc).__name__
    return "revoked at the provider (where it supports it)", ""


def connections_abandon(
    *, connection_ids: list[int], actor_label: str = wording.HOUSEKEEPING, now: datetime | None = None
) -> int:
    """Pending connections whose every authorization ran out: reason ``authorization_abandoned``, with an event.

    Returns how many changed. Call inside a transaction (housekeeping's batch).
    """
    changed = 0
    now = now or timezone.now()
    for connection in Connection.objects.select_for_update().filter(pk__in=connection_ids):
        transition = rules.decide(_state(connection), rules.Abandoned(), now=now, tunables=tunables())
        if not transition.events:
            continue
        Connection.objects.filter(pk=connection.pk).update(**transition.fields())
        for event in events_for(connection, transition.events, actor_label=actor_label, at=now):
            event.save()
        changed += 1
    return changed
