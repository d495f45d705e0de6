"""Checks and disconnects a person asks for."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from functools import partial

from django.db import transaction

from .. import attempts, lifecycle, wording
from ..models import (
    Connection,
)
from .common import (
    User,
    actor_user,
    person_throttle,
)

# --- Checks and disconnects ------------------------------------------------------------


@dataclass(frozen=True)
class CheckNow:
    """What "Check now" did: the check's outcome (``lifecycle.Outcome``) and plain words for the person."""

    outcome: str
    ok: bool
    message: str


def connection_check_now(*, connection: Connection, user: User) -> CheckNow:
    """Check one connection right away (renew when due, probe), as ``user``, and say what happened.

    The lifecycle decides what the outcome means for the status; a check
    already running elsewhere comes back as not checked. Raises
    :class:`Throttled`, without calling the provider, once ``user`` has asked
    for ``CHECK_NOW_PER_MINUTE`` checks in the last minute: every firm shares
    the provider's rate limit, and one person's clicking must not spend it.
    """
    person = actor_user(user)
    if person is not None:
        person_throttle(name=attempts.LimitName.CHECK_NOW_PER_USER, person=person, words=wording.check_now_throttled)
    result = lifecycle.connection_check(connection_id=connection.pk, actor=actor_user(user), actor_label="", force=True)
    connection.refresh_from_db(fields=["status", "reason"])
    message = wording.check_now_words(
        outcome=result.outcome,
        source=connection.source_display,
        provider=connection.provider,
        status_message=connection.status_message,
        error=result.message if result.outcome == lifecycle.Outcome.TRANSIENT else "",
    )
    return CheckNow(outcome=result.outcome, ok=result.outcome == lifecycle.Outcome.OK, message=message)


def connections_check_enqueue(
    *, connection_ids: Collection[int], actor: User | None = None, actor_label: str = wording.ADMIN
) -> int:
    """Queue an immediate check of each connection (one task each, ids only, sent once committed).

    Pending and disconnected connections are left out: there is nothing to
    check. ``actor`` and ``actor_label`` (admin, API) are recorded on the
    events the checks write. Returns how many were queued.
    """
    actor_id = actor.pk if actor is not None and actor.is_authenticated else None
    from ..tasks import check_connection  # tasks import services' neighbours; imported at call time

    ids = list(
        Connection.objects.filter(pk__in=list(connection_ids), status__in=sorted(lifecycle.rules.CHECKABLE))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for connection_id in ids:
        transaction.on_commit(
            partial(check_connection.delay, connection_id, force=True, actor_id=actor_id, actor_label=actor_label)
        )
    return len(ids)


def connection_disconnect_now(*, connection: Connection, user: User, actor_label: str = "") -> Connection:
    """Disconnect on purpose: the lifecycle revokes at the provider and deletes secrets.

    ``actor_label`` says through what a non-person asked (``wording.API``...).
    """
    return lifecycle.connection_disconnect(connection=connection, actor=actor_user(user), actor_label=actor_label)
