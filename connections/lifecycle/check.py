"""One check of one connection: claim -> renew when due -> probe -> rules -> store.

A chunk of scheduled checks runs the same :class:`Check` for each of its
connections, sharing its statements (:mod:`.chunk`).

Safe to call any number of times from any number of workers: only the caller
that claims the connection (:mod:`.claims`) does anything, and every way out
releases the claim with one conditional UPDATE that also proves the claim was
still ours. What the outcome means for the status is :func:`rules.decide`'s
business; this module gathers what happened and stores the answer.

Renewed credentials are committed before anything else, in their own
transaction with a RENEWED event, fenced by the lease: the provider has
already rotated them, this process holds the only copy, so a database outage
is waited out (with backoff, extending the lease) rather than turned into a
lost chain. An unexpected error pushes the row's next check back
(``error_delay``), so one bad row cannot crash-loop a job.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import InterfaceError, OperationalError, transaction
from django.db import connection as db_connection
from django.utils import timezone

from .. import wording
from ..crypto import DecryptionError
from ..models import Account, Connection, ConnectionEvent, Credential, ProviderApp
from ..providers.base import AccountData, ConnectionState, IssuedCredential
from ..providers.errors import ErrorKind, ProviderError
from ..providers.http import total_timeout
from ..throttling import (
    Deferral,
    Permit,
    breaker_permit,
    breaker_record_failure,
    breaker_record_success,
    breaker_release,
    rate_limit_acquire,
)
from . import clients, rules
from .claims import (
    connection_claim,
    connection_release,
    lease_extend,
    lease_owner_new,
    rows_of,
)
from .config import tunables
from .outcomes import CheckResult, LeaseLost, Outcome, check_failure
from .provider_apps import app_credentials_accepted, app_credentials_rejected
from .store import (
    NO_ACCOUNTS_CHANGE,
    AccountsChange,
    accounts_change,
    accounts_digest,
    accounts_write,
    credentials_upsert,
    events_for,
    renewal_event,
)

if TYPE_CHECKING:
    from .chunk import Chunk

logger = logging.getLogger("connections.lifecycle")
T = TypeVar("T")
# Room left in a renewal's claim beyond its worst case (thread scheduling, the release itself).
RENEWAL_LEASE_SLACK_SECONDS = 15.0


def connection_check(
    *,
    connection_id: int,
    actor_label: str = wording.SCHEDULED_CHECK,
    force: bool = False,
    actor: Any = None,
    now: datetime | None = None,
) -> CheckResult:
    """Renew when due, probe, store accounts, apply the outcome. Never raises for a provider problem."""
    now = now or timezone.now()
    settings_now = tunables()
    owner = lease_owner_new()
    claimed = connection_claim(
        connection_id=connection_id,
        owner=owner,
        now=now,
        lease=timedelta(seconds=settings_now.check_lease_seconds),
        force=force,
    )
    if claimed is None:
        return CheckResult(connection_id=connection_id, outcome=Outcome.SKIPPED, message="not claimed")
    return Check(claimed, owner=owner, now=now, actor=actor, actor_label=actor_label, tunables=settings_now).result()


class Check:
    """One claimed check. Holds what the steps share; every exit releases the claim."""

    def __init__(
        self,
        connection: Connection,
        *,
        owner: str,
        now: datetime,
        actor: Any,
        actor_label: str,
        tunables: Any,
        chunk: Chunk | None = None,
    ) -> None:
        self.connection = connection
        self.connection_id = connection.pk
        self.owner = owner
        self.now = now
        self.actor = actor
        self.actor_label = actor_label
        self.tunables: rules.Tunables = tunables
        self.chunk = chunk
        self.permit: Permit | None = None
        self.renewed = False

    def result(self) -> CheckResult:
        """Run the check; a lost claim discards it, an unexpected error pushes the connection back."""
        try:
            return self.run()
        except LeaseLost:
            logger.info("Check of connection %s discarded: the connection changed meanwhile.", self.connection_id)
            return CheckResult(connection_id=self.connection_id, outcome=Outcome.SKIPPED, message="claim lost")
        except Exception as exc:
            logger.error(
                "Check of connection %s failed unexpectedly (%s); next check pushed back.",
                self.connection_id,
                type(exc).__name__,
                exc_info=True,
            )
            return self.interrupted(exc)

    # --- steps ---------------------------------------------------------------------------
    def run(self) -> CheckResult:
        shared_app = self.chunk.app(self.connection.provider_app_id) if self.chunk is not None else None
        if shared_app is not None:
            self.app = app = shared_app
        else:
            try:
                self.app = app = rows_of(ProviderApp, "id", self.connection.provider_app_id)[0]
            except DecryptionError:
                return self._app_secret_unreadable()
            if self.chunk is not None:
                self.chunk.app_keep(app)
        self.connection.provider_app = app
        if not app.is_enabled:
            return self._defer(self.now + timedelta(seconds=self.tunables.app_disabled_retry_seconds), "app disabled")
        if app.credentials_rejected_at is not None:
            retry = (app.last_error_at or app.credentials_rejected_at) + timedelta(
                seconds=self.tunables.app_rejected_retry_seconds
            )
            if retry > self.now:
                spread = random.uniform(0, self.tunables.app_rejected_retry_seconds / 2)
                return self._defer(retry + timedelta(seconds=spread), "provider rejects the app's credentials")
        decision = breaker_permit(app=app, now=self.now)
        if isinstance(decision, Deferral):
            return self._defer(decision.until, decision.reason)
        self.permit = decision
        self.client = clients.client_for_app(app=app)
        credentials = self.chunk.credentials_of(self.connection_id) if self.chunk is not None else None
        if credentials is None:
            try:
                credentials = rows_of(Credential, "connection_id", self.connection_id)
            except DecryptionError:
                return self._decided(rules.CredentialsUnreadable(), outcome=Outcome.PERMANENT)
        state = clients.connection_state(connection=self.connection, credentials=credentials)

        if rules.renewal_is_due(renewal_due_at=self.client.renewal_due_at(state), now=self.now, tunables=self.tunables):
            renewal = self._renew(state)
            if isinstance(renewal, CheckResult):
                return renewal
            state = renewal[0]
        probed = self._probe(state)
        if isinstance(probed, CheckResult):
            return probed
        accounts, state = probed
        breaker_record_success(app=app, permit=self.permit, now=self.now)
        app_credentials_accepted(app=app)
        happened = rules.Succeeded(renewal_due_at=self.client.renewal_due_at(state))
        return self._decided(happened, outcome=Outcome.OK, accounts=accounts)

    def _app_secret_unreadable(self) -> CheckResult:
        """The app's own secret cannot be decrypted: the app is flagged (admins alerted), the connection waits."""
        self.app = ProviderApp.objects.get(pk=self.connection.provider_app_id)  # without the secret
        self.connection.provider_app = self.app
        app_credentials_rejected(app=self.app, message=clients.UNREADABLE_APP_SECRET, now=self.now)
        rejected = rules.AppRejected(error=clients.UNREADABLE_APP_SECRET)
        return self._decided(rejected, outcome=Outcome.APP_CREDENTIALS_INVALID)

    def _call(self, call: Callable[[], T]) -> T | CheckResult:
        """One outbound call, within the app's shared rate limit: a call that would exceed it is deferred."""
        wait = rate_limit_acquire(app=self.app)
        if wait > 0:
            until = timezone.now() + timedelta(seconds=wait * random.uniform(1.0, 2.0))
            return self._defer(until, "outbound rate limit")
        return call()

    def _renew(self, state: ConnectionState) -> tuple[ConnectionState, bool] | CheckResult:
        """Renew once (once more with the same credentials if the outcome is unknown) and commit the result."""
        self._hold_lease_for_renewal()
        try:
            try:
                issued = self._call(lambda: list(self.client.renew(connection=state)))
            except ProviderError as exc:
                if not exc.outcome_unknown:
                    raise
                # The provider may have rotated the token without our hearing
                # it. Asking once more settles it: either it answers (new
                # tokens) or says the token was used up. A client holding a
                # non-rotating credential (Coinify's offline token) uses that.
                logger.info("Renewal of connection %s: outcome unknown, asking once more.", self.connection_id)
                issued = self._call(lambda: list(self.client.renew(connection=state)))
        except ProviderError as exc:
            return self._failed(exc, stage="renew")
        if isinstance(issued, CheckResult):
            return issued
        if not issued:
            return state, False
        return self._store_renewal(state, issued), True

    def _hold_lease_for_renewal(self) -> None:
        """Make the claim outlast the renewal's worst case before it starts, or give the check up.

        Worst case: two provider calls at their total deadline (the second when
        the first's outcome is unknown), then storing the rotated tokens through
        a database outage (``store_retry_total``). With the claim held that long,
        no second worker can claim the row and spend the same refresh token while
        this one still might; if the claim changed hands already, nothing is sent.
        """
        worst = 2 * total_timeout() + self.tunables.store_retry_total_seconds + RENEWAL_LEASE_SLACK_SECONDS
        if not lease_extend(
            connection_id=self.connection_id, owner=self.owner, until=timezone.now() + timedelta(seconds=worst)
        ):
            raise LeaseLost

    def _store_renewal(self, state: ConnectionState, issued: list[IssuedCredential]) -> ConnectionState:
        """Commit new credentials and a RENEWED event now, in their own transaction, before anything else."""
        connection = self.connection
        merged = {**state.credentials, **{credential.kind: credential for credential in issued}}
        new_state = replace(state, credentials=merged)
        deadline = clients.deadline_fields(self.client, new_state)
        lease = timedelta(seconds=self.tunables.check_lease_seconds)

        def write() -> None:
            with transaction.atomic():
                # The UPDATE takes the row lock (held to commit) and proves the
                # claim is still ours; a reconnect or disconnect in between has
                # cleared it, and then these tokens must not overwrite anything.
                held = Connection.objects.filter(pk=connection.pk, lease_owner=self.owner).update(
                    **deadline, lease_until=timezone.now() + lease
                )
                if not held:
                    raise LeaseLost
                credentials_upsert(issued, connection_id=connection.pk)
                renewal_event(
                    connection,
                    status=connection.status,
                    issued=issued,
                    held=merged,
                    reconnect_by=deadline["reconnect_by"],
                    actor=self.actor,
                    actor_label=self.actor_label,
                ).save()

        self._store_patiently(write)
        connection.reconnect_by, connection.reconnect_by_rolls = (
            deadline["reconnect_by"],
            deadline["reconnect_by_rolls"],
        )
        self.renewed = True
        return new_state

    def _store_patiently(self, write: Callable[[], None]) -> None:
        """Run ``write`` until it commits, through a database outage of up to ``store_retry_total``.

        Inside a caller's transaction nothing can be retried, and the error goes
        up. Between attempts the broken session is dropped (the next query opens
        a new one), and each attempt's UPDATE renews the lease, so no other
        worker can claim the row meanwhile while this process holds its tokens.
        """
        deadline = time.monotonic() + self.tunables.store_retry_total_seconds
        pause = self.tunables.store_retry_seconds
        attempt = 1
        while True:
            try:
                write()
                return
            except (OperationalError, InterfaceError) as exc:
                if db_connection.in_atomic_block or time.monotonic() + pause > deadline:
                    raise
                logger.warning(
                    "Storing renewed credentials of connection %s failed (%s); attempt %s, retrying in %.1f s.",
                    self.connection_id,
                    type(exc).__name__,
                    attempt,
                    pause,
                )
                db_connection.close_if_unusable_or_obsolete()
                time.sleep(pause)
                pause, attempt = min(pause * 2, 5.0), attempt + 1

    def _probe(self, state: ConnectionState) -> tuple[Sequence[AccountData], ConnectionState] | CheckResult:
        try:
            listed = self._call(lambda: list(self.client.probe(connection=state)))
            return listed if isinstance(listed, CheckResult) else (listed, state)
        except ProviderError as exc:
            if not exc.access_rejected or self.renewed:
                # A token renewed in this very check was rejected: that is the
                # "fresh token also got 401" case, permanent now.
                return self._failed(exc, stage="probe")
            first = exc
        # The access token was refused: renew, store, and probe once more.
        renewal = self._renew(state)
        if isinstance(renewal, CheckResult):
            return renewal
        state, renewed = renewal
        if not renewed:
            return self._failed(first, stage="probe")  # nothing renewable: permanent at once
        try:
            listed = self._call(lambda: list(self.client.probe(connection=state)))
            return listed if isinstance(listed, CheckResult) else (listed, state)
        except ProviderError as exc:
            return self._failed(exc, stage="probe after renewal")

    # --- outcomes ---------------------------------------------------------------------------
    def _failed(self, exc: ProviderError, *, stage: str) -> CheckResult:
        failure = check_failure(exc, stage=stage)
        if exc.kind == ErrorKind.TRANSIENT:
            breaker_record_failure(app=self.app, permit=self.permit, now=self.now)
            return self._decided(failure.happened, outcome=Outcome.TRANSIENT, details=failure.details)
        # The provider answered (it is up): a half-open trial closes the breaker.
        breaker_record_success(app=self.app, permit=self.permit, now=self.now)
        if exc.kind == ErrorKind.APP_CREDENTIALS_INVALID:
            app_credentials_rejected(app=self.app, message=failure.error, now=self.now)
            return self._decided(failure.happened, outcome=Outcome.APP_CREDENTIALS_INVALID, details=failure.details)
        return self._decided(
            failure.happened,
            outcome=Outcome.PERMANENT,
            details=failure.details,
            forget_credentials=failure.forget_credentials,
        )

    def _defer(self, until: datetime, why: str) -> CheckResult:
        """No call (more) now: reschedule, status unchanged, no event."""
        breaker_release(app=self.app, permit=self.permit)
        return self._decided(rules.Deferred(until=until), outcome=Outcome.DEFERRED, message=why, stamp=False)

    def interrupted(self, exc: BaseException) -> CheckResult:
        """Push the row's next check back after an unexpected error, with an event saying so."""
        try:
            return self._decided(
                rules.Interrupted(), outcome=Outcome.ERROR, details={"error": type(exc).__name__}, fresh_clock=True
            )
        except LeaseLost:
            return CheckResult(connection_id=self.connection_id, outcome=Outcome.SKIPPED, message="claim lost")
        except Exception:
            logger.exception("Could not push back connection %s after an unexpected error.", self.connection_id)
            return CheckResult(connection_id=self.connection_id, outcome=Outcome.ERROR, message=type(exc).__name__)

    def _decided(
        self,
        happened: rules.Happened,
        *,
        outcome: str,
        accounts: Sequence[AccountData] | None = None,
        details: dict[str, Any] | None = None,
        message: str = "",
        stamp: bool = True,
        forget_credentials: bool = False,
        fresh_clock: bool = False,
    ) -> CheckResult:
        """Ask the rules, then store their answer and release the claim (see :meth:`_finish`)."""
        connection = self.connection
        now = timezone.now() if fresh_clock else self.now
        state = rules.State(
            status=connection.status,
            reason=connection.reason,
            consecutive_failures=connection.consecutive_failures,
            degraded_since=connection.degraded_since,
        )
        transition = rules.decide(state, happened, now=now, tunables=self.tunables)
        fields = transition.fields()
        if transition.succeeded:
            fields["last_success_at"] = self.now
        if stamp:
            fields["last_checked_at"] = now
        events = events_for(
            connection, transition.events, actor=self.actor, actor_label=self.actor_label, details=details
        )
        self._finish(fields, events, accounts, forget_credentials=forget_credentials)
        return CheckResult(
            connection_id=self.connection_id,
            outcome=outcome,
            status=transition.status,
            renewed=self.renewed,
            message=message or (transition.error or ""),
            next_check_at=transition.next_check_at,
        )

    def _finish(
        self,
        fields: dict[str, Any],
        events: list[ConnectionEvent],
        accounts: Sequence[AccountData] | None,
        *,
        forget_credentials: bool = False,
    ) -> None:
        """One conditional UPDATE releasing the claim, plus accounts, credentials and events, in one transaction.

        A routine success (no event, the same account list as last time, told by
        its digest) is that one UPDATE and nothing else, without a transaction.
        """
        fields = {**fields, "lease_until": None, "lease_owner": ""}
        change: AccountsChange = NO_ACCOUNTS_CHANGE
        if accounts is not None:
            digest = accounts_digest(accounts)
            if digest != self.connection.accounts_digest:
                stored = rows_of(Account, "connection_id", self.connection_id)
                change = accounts_change(self.connection_id, accounts, self.now, stored=stored)
                fields["accounts_digest"] = digest
        if not events and not change and not forget_credentials:
            if self.chunk is not None:
                self.chunk.release_later(self.connection_id, fields)
                return
            if not connection_release(connection_id=self.connection_id, owner=self.owner, values=fields):
                raise LeaseLost
            return
        with transaction.atomic():
            if not connection_release(connection_id=self.connection_id, owner=self.owner, values=fields):
                raise LeaseLost
            accounts_write(self.connection_id, change)
            if forget_credentials:
                deleted, _ = Credential.objects.filter(connection_id=self.connection_id).delete()
                for event in events:
                    event.details["credentials_deleted"] = deleted
            if events:
                ConnectionEvent.objects.bulk_create(events)
