"""A chunk of scheduled checks: the same check for each connection, sharing the chunk's statements.

The sweep hands a worker its connections in chunks (``connections.tasks.check_connections``).
Each gets exactly the check :func:`.check.connection_check` would give it
(:class:`.check.Check`); what the chunk shares is its owner, one claim of all
its rows, one read of their apps and one of their credentials, and the
routine releases written together.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from .. import wording
from ..crypto import DecryptionError
from ..models import Connection, Credential, ProviderApp
from ..providers.http import total_timeout
from . import rules
from .check import RENEWAL_LEASE_SLACK_SECONDS, Check
from .claims import connections_claim, connections_release, lease_extend, lease_owner_new, rows_in
from .config import tunables
from .outcomes import CheckResult, Outcome

logger = logging.getLogger("connections.lifecycle")


def connections_check(*, connection_ids: Sequence[int]) -> list[CheckResult]:
    """Scheduled checks of many connections (the sweep's chunk), sharing what they can; one result per id.

    Each connection gets exactly the check :func:`connection_check` would give
    it, and the same guarantee: only a connection this call claims is checked,
    and its claim is released only if it is still ours. What the chunk shares
    is statements: the claims are one ``UPDATE ... RETURNING`` under one owner,
    the apps' rows and the credentials are read in one query each, and the
    routine releases (a success or a deferral with nothing else to store) are
    written together, at the end or when the oldest has waited a quarter of a
    claim. Anything else a check stores (renewed tokens first of all) is
    written at once, as alone. A claim that might run out before a check could
    finish is extended first; one that changed hands meanwhile is skipped.
    """
    ids = list(dict.fromkeys(int(connection_id) for connection_id in connection_ids))
    settings_now = tunables()
    chunk = Chunk(owner=lease_owner_new(), tunables=settings_now)
    claimed = chunk.claim(ids)
    results: dict[int, CheckResult] = {}
    try:
        _chunk_run(chunk, ids, claimed, results)
    finally:
        chunk.releases_write(results)
    return [results[connection_id] for connection_id in ids]


def _chunk_run(chunk: Chunk, ids: list[int], claimed: dict[int, Connection], results: dict[int, CheckResult]) -> None:
    for connection_id in ids:
        connection = claimed.get(connection_id)
        if connection is None:
            results[connection_id] = CheckResult(
                connection_id=connection_id, outcome=Outcome.SKIPPED, message="not claimed"
            )
            continue
        now = timezone.now()
        if not chunk.claim_holds(connection_id, now=now):
            results[connection_id] = CheckResult(
                connection_id=connection_id, outcome=Outcome.SKIPPED, message="claim lost"
            )
            continue
        check = Check(
            connection,
            owner=chunk.owner,
            now=now,
            actor=None,
            actor_label=wording.SCHEDULED_CHECK,
            tunables=chunk.tunables,
            chunk=chunk,
        )
        results[connection_id] = result = check.result()
        if result.outcome != Outcome.OK:
            # This check may have changed the app's row (its breaker, its flag), or another
            # worker may have: the next check of the app reads it again.
            chunk.app_forget(connection.provider_app_id)
        if chunk.releases_waited_too_long():
            chunk.releases_write(results)


class Chunk:
    """What a chunk of scheduled checks shares: its owner, the rows read together, the routine releases."""

    # Another worker's change to an app's row (a breaker it opened, an admin's
    # switch) reaches a chunk's checks at most this late.
    APP_ROW_MAX_AGE_SECONDS = 5.0

    def __init__(self, *, owner: str, tunables: rules.Tunables) -> None:
        self.owner = owner
        self.tunables = tunables
        self.lease = timedelta(seconds=tunables.check_lease_seconds)
        self.claimed_until: dict[int, datetime] = {}
        self.apps: dict[int, tuple[ProviderApp, float]] = {}
        self.credentials: dict[int, list[Credential]] | None = None
        self.releases: list[tuple[int, dict[str, Any]]] = []
        self.first_release_at = 0.0

    def claim(self, ids: list[int]) -> dict[int, Connection]:
        now = timezone.now()
        claimed = connections_claim(connection_ids=ids, owner=self.owner, now=now, lease=self.lease)
        self.claimed_until = {connection_id: now + self.lease for connection_id in claimed}
        if not claimed:
            return claimed
        read_at = time.monotonic()
        try:
            app_ids = sorted({connection.provider_app_id for connection in claimed.values()})
            self.apps = {app.pk: (app, read_at) for app in rows_in(ProviderApp, "id", app_ids)}
        except DecryptionError:
            self.apps = {}  # each check reads its app alone; the unreadable one is flagged there
        try:
            credentials: dict[int, list[Credential]] = {connection_id: [] for connection_id in claimed}
            for credential in rows_in(Credential, "connection_id", list(claimed)):
                credentials[credential.connection_id].append(credential)
            self.credentials = credentials
        except DecryptionError:
            self.credentials = None  # each check reads its own; the unreadable ones fail there
        return claimed

    def claim_holds(self, connection_id: int, *, now: datetime) -> bool:
        """Is the claim ours for longer than a check can take? Extended when not; False if it changed hands."""
        worst = timedelta(seconds=2 * total_timeout() + RENEWAL_LEASE_SLACK_SECONDS)
        if self.claimed_until[connection_id] - now >= worst:
            return True
        until = now + max(self.lease, worst)
        if not lease_extend(connection_id=connection_id, owner=self.owner, until=until):
            logger.info("Check of connection %s skipped: its claim changed hands meanwhile.", connection_id)
            return False
        self.claimed_until[connection_id] = until
        return True

    def app(self, app_id: int) -> ProviderApp | None:
        kept = self.apps.get(app_id)
        if kept is None or time.monotonic() - kept[1] > self.APP_ROW_MAX_AGE_SECONDS:
            return None
        return kept[0]

    def app_keep(self, app: ProviderApp) -> None:
        self.apps[app.pk] = (app, time.monotonic())

    def app_forget(self, app_id: int) -> None:
        self.apps.pop(app_id, None)

    def credentials_of(self, connection_id: int) -> list[Credential] | None:
        return None if self.credentials is None else self.credentials.get(connection_id)

    def release_later(self, connection_id: int, values: dict[str, Any]) -> None:
        if not self.releases:
            self.first_release_at = time.monotonic()
        self.releases.append((connection_id, values))

    def releases_waited_too_long(self) -> bool:
        return bool(self.releases) and time.monotonic() - self.first_release_at > self.lease.total_seconds() / 4

    def releases_write(self, results: dict[int, CheckResult]) -> None:
        """Write the routine releases; a check whose claim changed hands meanwhile counts as skipped."""
        if not self.releases:
            return
        pending, self.releases = self.releases, []
        released = connections_release(owner=self.owner, releases=pending)
        for connection_id, _values in pending:
            if connection_id not in released:
                logger.info("Check of connection %s discarded: the connection changed meanwhile.", connection_id)
                results[connection_id] = CheckResult(
                    connection_id=connection_id, outcome=Outcome.SKIPPED, message="claim lost"
                )
