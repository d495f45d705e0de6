"""The connection lifecycle: the one place that decides status transitions.

Provider clients report what they saw as a :class:`ProviderError` kind; this
module alone turns that into a status, a reason, a next check time and a
:class:`ConnectionEvent`. Views, tasks and commands call these functions and
never set ``Connection.status`` themselves.

CONTRACT (implemented below; other modules rely on these names and signatures)
-----------------------------------------------------------------------------
event_record(*, connection, kind, message="", from_status="", to_status="",
             reason="", actor=None, actor_label="", details=None) -> ConnectionEvent
credentials_store(*, connection, issued, replace=False) -> None
    Upsert one Credential per kind, committed before anything else happens;
    ``reconnect_by`` follows the client's ``reconnect_deadline``.
connection_state(*, connection) -> providers.base.ConnectionState
client_for_app(*, app) -> providers.base.ProviderClient
    A client for a ProviderApp row, its app token cached in a Credential row.
grant_apply(*, connection, grant, purpose, actor=None, actor_label="") -> Connection
    Store credentials/accounts from a completed authorization and make the
    connection active. On reconnect, refuses a different source account with
    :class:`ReconnectMismatch` (nothing changes).
connection_disconnect(*, connection, actor=None, actor_label="") -> Connection
    Revoke at the provider where possible, delete secrets, status disconnected.
connection_check(*, connection_id, actor_label="job:check", force=False,
                 actor=None, now=None) -> CheckResult
    Renew when due, probe, store accounts, apply the outcome.

Also used by jobs and commands: ``connections_claim_due``,
``due_queryset``, ``app_credentials_rejected``/``app_credentials_accepted``,
``backoff_delay``, ``next_check_after_success``, :class:`CheckResult` and
:class:`Outcome`.

Settings (seconds unless named otherwise; defaults in :data:`DEFAULTS`):
``LIFECYCLE_PROBE_INTERVAL_SECONDS`` (900), ``LIFECYCLE_PROBE_JITTER_FRACTION``
(0.1), ``LIFECYCLE_MIN_RECHECK_SECONDS`` (30), ``LIFECYCLE_RENEW_JITTER_SECONDS``
(120), ``LIFECYCLE_BACKOFF_BASE_SECONDS`` (30), ``LIFECYCLE_BACKOFF_CAP_SECONDS``
(21600), ``LIFECYCLE_DEGRADED_AFTER`` (3 failures), ``LIFECYCLE_CHECK_LEASE_SECONDS``
(120), ``LIFECYCLE_SWEEP_LEASE_SECONDS`` (600), ``LIFECYCLE_ERROR_DELAY_SECONDS``
(1800), ``LIFECYCLE_APP_REJECTED_RETRY_SECONDS`` (900),
``LIFECYCLE_APP_DISABLED_RETRY_SECONDS`` (1800).

The state machine (DESIGN.md, "One status vocabulary")
------------------------------------------------------
A check's outcome, by provider error kind:

* success: ``active``, reason empty, ``consecutive_failures`` 0,
  ``last_success_at`` now, accounts upserted (vanished ones deleted),
  ``next_check_at`` = the earlier of the renewal point (minus jitter) and the
  probe interval (``LIFECYCLE_PROBE_INTERVAL_SECONDS`` ± jitter). Coming back
  from ``degraded`` or ``needs_reconnect`` writes a RECOVERED event.
* ``transient``: ``consecutive_failures`` + 1 and a retry after capped
  exponential backoff with full jitter (at least the provider's
  ``Retry-After``). After ``LIFECYCLE_DEGRADED_AFTER`` (3) in a row the status
  is ``degraded`` (``degraded_since`` set); the last data stays. Never
  ``needs_reconnect``.
* ``reauth_required``: ``needs_reconnect`` with the error's reason and
  ``next_check_at`` NULL: nothing is tried again until the client reconnects.
  A rejected access token (``access_rejected``) is permanent only after a
  renewal and a second probe with the fresh token were rejected too; when
  nothing can be renewed (``renew`` returns no credentials) it is permanent at
  once, and so is a rejection of a token renewed earlier in the same check.
* ``app_credentials_invalid``: flags the ProviderApp (``credentials_rejected_at``,
  ``last_error``) and emails firm admins with connections on it and staff,
  once per incident. The connection's status is left alone and its check
  rescheduled (``LIFECYCLE_APP_REJECTED_RETRY_SECONDS``).

``pending`` and ``disconnected`` connections are never checked.
``needs_reconnect`` ones are checked only when forced (a person asked).

Events. Every transition, every renewal and every failed check writes one
ConnectionEvent (what, why, which job or person; never a secret). A routine
success that changes nothing writes no event: the row's ``last_success_at``
records it, and a million connections probed every quarter of an hour would
otherwise add a hundred million rows a day of "nothing happened". Deferrals
(breaker open, rate limit, app flagged) are not events either: no call was
made and nothing changed.

Concurrency. A check first claims the connection with a conditional UPDATE of
its lease (``lease_owner``/``lease_until``), atomic on PostgreSQL (the WHERE is
re-checked under the row lock) and on SQLite (one writer at a time). No row
lock is held during HTTP calls. So at most one check, and therefore at most
one renewal, per connection is in flight across all workers, and a rotating
refresh token is never used twice. Renewed credentials are committed in their
own transaction, with a RENEWED event, before the probe; a database error on
that write is retried a few times (``LIFECYCLE_STORE_ATTEMPTS``), because the
provider has already rotated them and nothing else holds them. A connect, reconnect
or disconnect clears the lease; a check that lost its lease discards what it
learned (and stores no credentials).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection
from django.db import InterfaceError, OperationalError, transaction
from django.db import connection as db_connection
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone

from .logging import redact
from .models import (
    Account,
    AuthorizationRequest,
    Connection,
    ConnectionEvent,
    Credential,
    Household,
    Membership,
    Provider,
    ProviderApp,
    Reason,
    Status,
    platform_display,
    status_message,
)
from .providers import registry
from .providers.base import (
    AccountData,
    AppConfig,
    ConnectionState,
    ErrorKind,
    Grant,
    IssuedCredential,
    ProviderClient,
    ProviderError,
)
from .throttling import (
    Deferral,
    Permit,
    breaker_permit,
    breaker_record_failure,
    breaker_record_success,
    breaker_release,
    rate_limit_acquire,
)

logger = logging.getLogger("connections.lifecycle")

# --- Settings (read at call time, so deployments and tests can override) --------

DEFAULTS: dict[str, float] = {
    # Routine health probe of an active connection, ± a fraction of jitter.
    "LIFECYCLE_PROBE_INTERVAL_SECONDS": 15 * 60,
    "LIFECYCLE_PROBE_JITTER_FRACTION": 0.1,
    # Never schedule the next check sooner than this (a token whose lifetime is
    # shorter than its renewal margin must not turn into a busy loop).
    "LIFECYCLE_MIN_RECHECK_SECONDS": 30,
    # Renewals are scheduled up to this much earlier than the provider
    # client's renewal point, at random, so a batch connected together does
    # not renew in the same second; a check within this of the point renews.
    "LIFECYCLE_RENEW_JITTER_SECONDS": 120,
    # Transient failures: delay = uniform(0, min(cap, base * 2**(n-1))).
    "LIFECYCLE_BACKOFF_BASE_SECONDS": 30,
    "LIFECYCLE_BACKOFF_CAP_SECONDS": 6 * 3600,
    "LIFECYCLE_DEGRADED_AFTER": 3,
    # How long a check may hold its claim (longer than the task's hard limit).
    "LIFECYCLE_CHECK_LEASE_SECONDS": 120,
    # How long the sweep's claim lasts; a check task lost on the way is
    # claimed again after it.
    "LIFECYCLE_SWEEP_LEASE_SECONDS": 600,
    # An unexpected error pushes the connection's next check this far ahead.
    "LIFECYCLE_ERROR_DELAY_SECONDS": 30 * 60,
    # While the provider rejects the app's own credentials, checks of its
    # connections wait this long after the last rejection.
    "LIFECYCLE_APP_REJECTED_RETRY_SECONDS": 15 * 60,
    # A disabled ProviderApp: look again this much later.
    "LIFECYCLE_APP_DISABLED_RETRY_SECONDS": 30 * 60,
    # Storing renewed credentials that the database refused (a dropped
    # session, a failover): attempts, and the pause before the n-th retry
    # (n times this), so a blip of a second or two loses nothing.
    "LIFECYCLE_STORE_ATTEMPTS": 4,
    "LIFECYCLE_STORE_RETRY_SECONDS": 0.25,
}


def lifecycle_setting(name: str) -> float:
    """A lifecycle tunable from settings, or its default (see :data:`DEFAULTS`)."""
    return float(getattr(settings, name, DEFAULTS[name]))


def _seconds(name: str) -> timedelta:
    return timedelta(seconds=lifecycle_setting(name))


SCHEDULED_STATUSES = (Status.ACTIVE, Status.DEGRADED)
CHECKABLE_STATUSES = (Status.ACTIVE, Status.DEGRADED, Status.NEEDS_RECONNECT)
RECOVERY_FROM = (Status.DEGRADED, Status.NEEDS_RECONNECT)
SWEEP_OWNER_PREFIX = "sweep:"


# --- Errors and results -----------------------------------------------------------


class ReconnectMismatch(Exception):
    """A reconnect signed in to a different source account than the one stored.

    ``message`` is plain words naming the provider and platform, safe to show.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LeaseLost(Exception):
    """The connection was reconnected, disconnected or claimed by someone else mid-check."""


class Outcome:
    """What a check did (``CheckResult.outcome``)."""

    OK = "ok"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    APP_CREDENTIALS_INVALID = "app_credentials_invalid"
    DEFERRED = "deferred"  # no call made: breaker open, rate limit, app flagged or disabled
    SKIPPED = "skipped"  # not claimed: not due, busy elsewhere, pending or disconnected
    ERROR = "error"  # an unexpected exception; the connection was pushed back


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one :func:`connection_check`. ``status`` is empty when the check was skipped."""

    connection_id: int
    outcome: str
    status: str = ""
    renewed: bool = False
    message: str = ""
    next_check_at: datetime | None = None


# --- Small helpers --------------------------------------------------------------------


def _source(connection: Connection) -> str:
    return f"{platform_display(connection.platform)} via {Provider(connection.provider).label}"


def _provider_label(key: str) -> str:
    try:
        return Provider(key).label
    except ValueError:
        return key.title()


def _message_for(connection: Connection, *, status: str, reason: str) -> str:
    return status_message(
        provider=_provider_label(connection.provider),
        platform=platform_display(connection.platform),
        status=status,
        reason=reason,
    )


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z")


def _new_lease_owner(prefix: str = "check:") -> str:
    # Unique per claim, not per worker: two threads of one process must not
    # mistake each other's claim for their own.
    return f"{prefix}{os.getpid()}:{uuid.uuid4().hex[:16]}"


def backoff_delay(failures: int, *, retry_after: float | None = None, rng: random.Random | None = None) -> float:
    """Seconds until the next attempt after ``failures`` transient failures in a row.

    Full jitter: uniform between 0 and min(cap, base * 2**(failures-1)), so a
    provider outage does not bring every connection back at the same moment.
    A provider's ``Retry-After`` is a floor: never sooner than it asked.
    """
    base = lifecycle_setting("LIFECYCLE_BACKOFF_BASE_SECONDS")
    cap = lifecycle_setting("LIFECYCLE_BACKOFF_CAP_SECONDS")
    exponent = min(max(failures, 1) - 1, 62)
    ceiling = min(cap, base * (2**exponent))
    delay = (rng or random).uniform(0, ceiling)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, float(retry_after))
    return delay


def next_check_after_success(*, renewal_due_at: datetime | None, now: datetime) -> datetime:
    """When to look at a healthy connection again: the earlier of its renewal point and the probe interval.

    The renewal point is moved earlier by a random part of
    ``LIFECYCLE_RENEW_JITTER_SECONDS`` (at most half the time left), and the
    result is never sooner than ``LIFECYCLE_MIN_RECHECK_SECONDS``.
    """
    jitter = lifecycle_setting("LIFECYCLE_PROBE_JITTER_FRACTION")
    interval = lifecycle_setting("LIFECYCLE_PROBE_INTERVAL_SECONDS") * random.uniform(1 - jitter, 1 + jitter)
    candidate = now + timedelta(seconds=interval)
    if renewal_due_at is not None:
        room = max((renewal_due_at - now).total_seconds() / 2, 0.0)
        early = random.uniform(0, min(lifecycle_setting("LIFECYCLE_RENEW_JITTER_SECONDS"), room))
        candidate = min(candidate, renewal_due_at - timedelta(seconds=early))
    return max(candidate, now + _seconds("LIFECYCLE_MIN_RECHECK_SECONDS"))


def renewal_is_due(*, renewal_due_at: datetime | None, now: datetime) -> bool:
    """True when a check at ``now`` should renew (within the renewal jitter of the client's point)."""
    if renewal_due_at is None:
        return False
    return renewal_due_at <= now + _seconds("LIFECYCLE_RENEW_JITTER_SECONDS")


# --- Events ------------------------------------------------------------------------------


def event_record(
    *,
    connection: Connection,
    kind: str,
    message: str = "",
    from_status: str = "",
    to_status: str = "",
    reason: str = "",
    actor: Any = None,
    actor_label: str = "",
    details: Mapping[str, Any] | None = None,
    created_at: datetime | None = None,
) -> ConnectionEvent:
    """Write one ConnectionEvent. The message is masked for secret-shaped text and cut to fit."""
    return ConnectionEvent.objects.create(
        **_event_fields(
            connection_id=connection.pk,
            kind=kind,
            message=message,
            from_status=from_status,
            to_status=to_status,
            reason=reason,
            actor=actor,
            actor_label=actor_label,
            details=details,
            created_at=created_at,
        )
    )


def _event_fields(
    *,
    connection_id: int,
    kind: str,
    message: str = "",
    from_status: str = "",
    to_status: str = "",
    reason: str = "",
    actor: Any = None,
    actor_label: str = "",
    details: Mapping[str, Any] | None = None,
    created_at: datetime | None = None,
) -> dict[str, Any]:
    actor_id = getattr(actor, "pk", None) if actor is not None and getattr(actor, "is_authenticated", False) else None
    return {
        "connection_id": connection_id,
        "kind": kind,
        "message": redact(message)[:500],
        "from_status": from_status,
        "to_status": to_status,
        "reason": reason or "",
        "actor_id": actor_id,
        "actor_label": actor_label[:100],
        "details": _clean_details(details or {}),
        "created_at": created_at or timezone.now(),
    }


def _clean_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """Details are for people reading history: plain values, secret-shaped text masked."""
    clean: dict[str, Any] = {}
    for key, value in details.items():
        if isinstance(value, str):
            clean[key] = redact(value)[:500]
        elif isinstance(value, datetime):
            clean[key] = value.isoformat()
        elif isinstance(value, Mapping):
            clean[key] = _clean_details(value)
        elif isinstance(value, list | tuple):
            clean[key] = [redact(v) if isinstance(v, str) else v for v in value]
        else:
            clean[key] = value
    return clean


# --- Clients and state ---------------------------------------------------------------------


class DbAppTokenCache:
    """An AppTokenCache backed by the ProviderApp's ``app`` Credential row, memoised per client instance.

    Every worker shares the row, so one fetch serves them all; the memo spares
    a query per call while the cached token is comfortably valid.
    """

    def __init__(self, app_id: int) -> None:
        self.app_id = app_id
        self._memo: IssuedCredential | None = None

    def load(self) -> IssuedCredential | None:
        memo = self._memo
        if memo is not None and (memo.expires_at is None or memo.expires_at - timezone.now() > self._fresh_for(memo)):
            return memo
        row = Credential.objects.filter(provider_app_id=self.app_id, kind=Credential.Kind.APP).first()
        if row is None:
            self._memo = None
            return None
        self._memo = IssuedCredential(
            kind=row.kind, value=row.value, issued_at=row.issued_at, expires_at=row.expires_at
        )
        return self._memo

    @staticmethod
    def _fresh_for(credential: IssuedCredential) -> timedelta:
        # Trust the memo only while the token is far from its renewal point
        # (a quarter of its life, at least 2 minutes): nearer to it, read the
        # row, which the refresh_app_tokens job or another worker may already
        # have renewed, instead of every worker fetching a token of its own.
        lifetime = (credential.expires_at or credential.issued_at) - credential.issued_at
        return max(timedelta(minutes=2), lifetime / 4)

    def save(self, credential: IssuedCredential) -> None:
        updated = Credential.objects.filter(provider_app_id=self.app_id, kind=Credential.Kind.APP).update(
            value=credential.value, issued_at=credential.issued_at, expires_at=credential.expires_at
        )
        if not updated:
            Credential.objects.create(
                provider_app_id=self.app_id,
                kind=Credential.Kind.APP,
                value=credential.value,
                issued_at=credential.issued_at,
                expires_at=credential.expires_at,
            )
        self._memo = credential


_clients = threading.local()


def app_config(app: ProviderApp) -> AppConfig:
    return AppConfig(
        provider=app.provider,
        environment=app.environment,
        base_url=app.base_url,
        client_id=app.client_id,
        client_secret=app.client_secret or "",
        redirect_uri=app.redirect_uri,
        connect_url=app.connect_url,
    )


def client_for_app(*, app: ProviderApp) -> ProviderClient:
    """A client for a ProviderApp row, its app token cached in the app's Credential row.

    Clients are reused per thread while the row is unchanged (admin edits move
    ``updated_at``, which makes a fresh one), so pooled HTTP connections and
    the app token memo survive between checks.
    """
    cls = registry.client_class(app.provider)
    cache: dict[Any, ProviderClient] = getattr(_clients, "cache", None) or {}
    _clients.cache = cache
    key = (app.pk, app.updated_at, cls, app.base_url)
    client = cache.get(key)
    if client is None:
        if len(cache) > 64:
            cache.clear()
        client = cls(app_config(app), app_token_cache=DbAppTokenCache(app.pk))
        cache[key] = client
    return client


def _issued(row: Credential) -> IssuedCredential:
    return IssuedCredential(kind=row.kind, value=row.value, issued_at=row.issued_at, expires_at=row.expires_at)


def connection_state(*, connection: Connection, credentials: Iterable[Credential] | None = None) -> ConnectionState:
    """What a provider client needs of the row: platform, account id, decrypted credentials, grouping.

    ``credentials`` are the connection's rows when the caller has read them;
    otherwise its ``credentials`` (prefetched, or read now). Turnqey's
    grouping falls back to the client's identity and the household's
    collection for rows stored before the connection kept its own.
    """
    rows = connection.credentials.all() if credentials is None else credentials
    issued = {row.kind: _issued(row) for row in rows}
    grouping = {str(k): str(v) for k, v in (connection.grouping or {}).items() if v not in (None, "")}
    if connection.provider == Provider.TURNQEY:
        if "identity" not in grouping:
            grouping["identity"] = str(connection.client.identity)
        if "collection" not in grouping and connection.household.turnqey_collection:
            grouping["collection"] = str(connection.household.turnqey_collection)
    return ConnectionState(
        platform=connection.platform,
        external_account_id=connection.external_account_id,
        credentials=issued,
        grouping=grouping,
    )


def _credentials_upsert(connection_id: int, issued: Iterable[IssuedCredential]) -> list[str]:
    """One row per kind: update in place, insert when new. Returns the kinds written."""
    kinds: list[str] = []
    latest: dict[str, IssuedCredential] = {}
    for credential in issued:
        latest[credential.kind] = credential  # the last of a kind wins
    for kind, credential in latest.items():
        updated = Credential.objects.filter(connection_id=connection_id, kind=kind).update(
            value=credential.value, issued_at=credential.issued_at, expires_at=credential.expires_at
        )
        if not updated:
            Credential.objects.create(
                connection_id=connection_id,
                kind=kind,
                value=credential.value,
                issued_at=credential.issued_at,
                expires_at=credential.expires_at,
            )
        kinds.append(kind)
    return kinds


def credentials_store(*, connection: Connection, issued: Sequence[IssuedCredential], replace: bool = False) -> None:
    """Upsert one Credential per kind in its own transaction, and refresh ``reconnect_by``.

    ``replace=True`` also deletes the connection's credentials of kinds not in
    ``issued`` (a grant that supersedes everything held before). The hard
    deadline comes from the provider client's ``reconnect_deadline``.
    """
    with transaction.atomic():
        _credentials_upsert(connection.pk, issued)
        if replace:
            Credential.objects.filter(connection_id=connection.pk).exclude(kind__in=[c.kind for c in issued]).delete()
        fresh = Connection.objects.select_related("provider_app", "household", "client").get(pk=connection.pk)
        client = client_for_app(app=fresh.provider_app)
        deadline = client.reconnect_deadline(connection_state(connection=fresh))
        Connection.objects.filter(pk=connection.pk).update(reconnect_by=deadline)
        connection.reconnect_by = deadline


def _account_values(account: Account) -> tuple[str, str, Decimal, str]:
    return (account.name, account.currency, Decimal(account.balance), account.status)


@dataclass(frozen=True)
class AccountsChange:
    """What storing a provider's account list has to write: rows to upsert, ids to delete."""

    upsert: list[Account]
    delete: list[int]

    def __bool__(self) -> bool:
        return bool(self.upsert or self.delete)


def accounts_change(
    connection_id: int, accounts: Sequence[AccountData], now: datetime, *, stored: Sequence[Account]
) -> AccountsChange:
    """Compare the provider's list with the ``stored`` rows: new and changed accounts (``as_of`` = now,
    when the provider last reported a change) and the ids of accounts it no longer lists.
    Unchanged accounts are left out, so a routine check of an unchanged connection writes none."""
    listed: dict[str, Account] = {}
    for account in accounts:
        external_id = str(account.external_id)[:200]
        listed[external_id] = Account(
            connection_id=connection_id,
            external_id=external_id,
            name=(account.name or external_id)[:200],
            currency=account.currency[:20],
            balance=account.balance,
            status=(account.status or "active")[:20],
            as_of=now,
        )
    known = {row.external_id: row for row in stored}
    return AccountsChange(
        upsert=[
            row
            for external_id, row in listed.items()
            if external_id not in known or _account_values(known[external_id]) != _account_values(row)
        ],
        delete=[row.pk for external_id, row in known.items() if external_id not in listed],
    )


def accounts_digest(accounts: Sequence[AccountData]) -> str:
    """A fingerprint of a provider's account list as it would be stored (order does not matter).

    Equal digests mean the same list, and so the same stored rows: a check
    compares it with ``Connection.accounts_digest`` before reading any row.
    """
    rows = sorted(
        [
            str(account.external_id)[:200],
            (account.name or str(account.external_id))[:200],
            account.currency[:20],
            format(Decimal(account.balance).normalize(), "f"),
            (account.status or "active")[:20],
        ]
        for account in accounts
    )
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def accounts_write(connection_id: int, change: AccountsChange) -> None:
    """Apply an :class:`AccountsChange`: one upsert statement, one delete, each only when needed."""
    if change.upsert:
        Account.objects.bulk_create(
            change.upsert,
            update_conflicts=True,
            unique_fields=["connection", "external_id"],
            update_fields=["name", "currency", "balance", "status", "as_of"],
        )
    if change.delete:
        Account.objects.filter(connection_id=connection_id, pk__in=change.delete).delete()


def _accounts_replace(connection_id: int, accounts: Sequence[AccountData], now: datetime) -> None:
    """Make the stored accounts match what the provider listed (reads them first)."""
    stored = list(Account.objects.filter(connection_id=connection_id))
    accounts_write(connection_id, accounts_change(connection_id, accounts, now, stored=stored))


# --- App credentials rejected -------------------------------------------------------------------


def app_credentials_rejected(*, app: ProviderApp, message: str, now: datetime | None = None) -> bool:
    """Flag the ProviderApp; on the first flag of an incident, email firm admins and staff.

    Returns True when this call raised the flag. Connections are not touched.
    """
    now = now or timezone.now()
    text = redact(message)[:500] or "The provider rejected the portal's app credentials."
    newly = ProviderApp.objects.filter(pk=app.pk, credentials_rejected_at__isnull=True).update(
        credentials_rejected_at=now, last_error=text, last_error_at=now
    )
    if not newly:
        ProviderApp.objects.filter(pk=app.pk).update(last_error=text, last_error_at=now)
    app.credentials_rejected_at = app.credentials_rejected_at or now
    app.last_error, app.last_error_at = text, now
    if newly:
        logger.error("Provider app %s: the provider rejected the portal's own credentials.", app.pk)
        transaction.on_commit(lambda: _app_alert_send(app_id=app.pk))
    return bool(newly)


def app_credentials_accepted(*, app: ProviderApp) -> None:
    """Clear the flag once the provider accepts the app again (no query unless it was flagged)."""
    if app.credentials_rejected_at is None:
        return
    if ProviderApp.objects.filter(pk=app.pk, credentials_rejected_at__isnull=False).update(
        credentials_rejected_at=None
    ):
        logger.info("Provider app %s: the provider accepts the portal's credentials again.", app.pk)
    app.credentials_rejected_at = None


def app_alert_recipients(*, app: ProviderApp) -> list[str]:
    """Firm admins of firms with connections on ``app``, and active staff; addresses, deduplicated."""
    user_model = get_user_model()
    firm_ids = Household.objects.filter(connections__provider_app=app).values("firm_id")
    admins = user_model.objects.filter(
        is_active=True,
        membership__role=Membership.Role.FIRM_ADMIN,
        membership__firm_id__in=firm_ids,
    ).exclude(email="")
    staff = user_model.objects.filter(is_active=True, is_staff=True).exclude(email="")
    emails = {u.email for u in admins} | {u.email for u in staff}
    return sorted(emails)


def _app_alert_send(*, app_id: int) -> int:
    """One email per recipient (firms never see each other's addresses). Returns how many were sent."""
    try:
        app = ProviderApp.objects.get(pk=app_id)
        recipients = app_alert_recipients(app=app)
        if not recipients:
            return 0
        context = {
            "app": app,
            "provider": _provider_label(app.provider),
            "environment": app.get_environment_display(),
            "error": app.last_error,
            "flagged_at": app.credentials_rejected_at,
            "portal_url": settings.PORTAL_BASE_URL,
        }
        subject = " ".join(render_to_string("email/app_credentials_alert_subject.txt", context).split())
        body = render_to_string("email/app_credentials_alert.txt", context)
        mail = get_connection()
        messages = [
            EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [to], connection=mail) for to in recipients
        ]
        return mail.send_messages(messages) or 0
    except Exception:
        # A mail problem must never break the job that noticed the rejection.
        logger.exception("Could not send the app credentials alert for provider app %s.", app_id)
        return 0


# --- Claims ------------------------------------------------------------------------------------------


def _lease_free(now: datetime) -> Q:
    return Q(lease_until__isnull=True) | Q(lease_until__lt=now)


# The check's own statements. A check runs a few single-row statements, and at
# scale the ORM spent more CPU compiling them than the database spent running
# them; these are written once per process from the models' metadata (columns,
# the fields' own value preparation), so they follow the models.
_sql_cache: dict[tuple[Any, ...], Any] = {}


def _qn(name: str) -> str:
    return db_connection.ops.quote_name(name)


def _db_value(model: type[Any], name: str, value: Any) -> Any:
    return model._meta.get_field(name).get_db_prep_save(value, connection=db_connection)


def _claim_sql(force: bool) -> str:
    key = ("claim", db_connection.vendor, force)
    sql = _sql_cache.get(key)
    if sql is None:
        meta = Connection._meta
        columns = _reader(Connection).columns
        statuses = CHECKABLE_STATUSES if force else SCHEDULED_STATUSES
        status_in = ", ".join(f"%(status{i})s" for i in range(len(statuses)))
        lease_free = "(lease_until IS NULL OR lease_until < %(now)s)"
        held_by_sweep = "(lease_owner LIKE %(sweep)s AND lease_until >= %(now)s)"
        due = f"({held_by_sweep} OR ({lease_free} AND next_check_at <= %(now)s))"
        condition = f"({lease_free} OR {held_by_sweep})" if force else due
        sql = (
            f"UPDATE {_qn(meta.db_table)} SET lease_owner = %(owner)s, lease_until = %(until)s "  # noqa: S608 - no user input
            f"WHERE id = %(id)s AND status IN ({status_in}) AND {condition} RETURNING {columns}"
        )
        _sql_cache[key] = sql
    return sql


def connection_claim(*, connection_id: int, owner: str, now: datetime, force: bool = False) -> Connection | None:
    """Claim one connection for a check and read it, in one ``UPDATE ... RETURNING``; None if not granted.

    Not forced: only an ``active``/``degraded`` connection that the sweep
    claimed, or that is due and unclaimed. Forced (a person asked): any
    ``active``/``degraded``/``needs_reconnect`` connection not held by another
    check. A second delivery of the same task finds the claim taken and does
    nothing: this is what keeps renewals single-flight. Reading the row in the
    statement that claims it means it is read after the claim, never before: a
    check never works from a row that another check changed meanwhile.
    """
    statuses = CHECKABLE_STATUSES if force else SCHEDULED_STATUSES
    params: dict[str, Any] = {
        "id": connection_id,
        "owner": owner,
        "now": _db_value(Connection, "lease_until", now),
        "until": _db_value(Connection, "lease_until", now + _seconds("LIFECYCLE_CHECK_LEASE_SECONDS")),
        "sweep": f"{SWEEP_OWNER_PREFIX}%",
        **{f"status{i}": str(status) for i, status in enumerate(statuses)},
    }
    rows = _reader(Connection).fetch(_claim_sql(force), params)
    return rows[0] if rows else None


@dataclass(frozen=True)
class _Reader:
    """Turns rows of every concrete column of ``model`` (in ``columns`` order) into instances,
    with the same value conversions as the ORM (decryption, datetimes, JSON)."""

    model: type[Any]
    columns: str
    attnames: tuple[str, ...]
    converters: tuple[tuple[int, tuple[Any, ...], Any], ...]

    def fetch(self, sql: str, params: Any) -> list[Any]:
        with db_connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        found = []
        for row in rows:
            values = list(row)
            for index, functions, expression in self.converters:
                for function in functions:
                    values[index] = function(values[index], expression, db_connection)
            found.append(self.model.from_db(db_connection.alias, self.attnames, values))
        return found


def _reader(model: type[Any]) -> _Reader:
    key = ("reader", db_connection.vendor, model)
    reader = _sql_cache.get(key)
    if reader is None:
        fields = model._meta.concrete_fields
        converters = []
        for index, field in enumerate(fields):
            column = field.get_col(model._meta.db_table)
            functions = db_connection.ops.get_db_converters(column) + column.get_db_converters(db_connection)
            if functions:
                converters.append((index, tuple(functions), column))
        reader = _sql_cache[key] = _Reader(
            model=model,
            columns=", ".join(_qn(field.column) for field in fields),
            attnames=tuple(field.attname for field in fields),
            converters=tuple(converters),
        )
    return reader


def _rows_of(model: type[Any], column: str, value: int) -> list[Any]:
    """Every row of ``model`` whose ``column`` equals ``value`` (fields converted as the ORM would)."""
    reader = _reader(model)
    key = ("rows", db_connection.vendor, model, column)
    sql = _sql_cache.get(key)
    if sql is None:
        sql = f"SELECT {reader.columns} FROM {_qn(model._meta.db_table)} WHERE {_qn(column)} = %s"  # noqa: S608
        _sql_cache[key] = sql
    return reader.fetch(sql, [value])


def _release(*, connection_id: int, owner: str, values: Mapping[str, Any]) -> bool:
    """``UPDATE connection SET values WHERE id AND lease_owner``: True if the claim was still ours."""
    names = tuple(values)
    key = ("release", db_connection.vendor, names)
    sql = _sql_cache.get(key)
    if sql is None:
        meta = Connection._meta
        assignments = ", ".join(f"{_qn(meta.get_field(name).column)} = %s" for name in names)
        sql = f"UPDATE {_qn(meta.db_table)} SET {assignments} WHERE id = %s AND lease_owner = %s"  # noqa: S608
        _sql_cache[key] = sql
    params = [_db_value(Connection, name, values[name]) for name in names]
    with db_connection.cursor() as cursor:
        cursor.execute(sql, [*params, connection_id, owner])
        return cursor.rowcount == 1


def due_queryset(*, now: datetime) -> Any:
    """Connections due for a check and not claimed: the sweep's query.

    ``next_check_at IS NOT NULL AND next_check_at <= now ORDER BY next_check_at``
    matches the partial index ``connection_due_idx``, so its cost follows the
    number of due rows, not the size of the table.
    """
    return (
        Connection.objects.filter(next_check_at__isnull=False, next_check_at__lte=now)
        .filter(_lease_free(now))
        .order_by("next_check_at")
    )


def connections_claim_due(*, now: datetime, limit: int, owner: str) -> list[int]:
    """Claim up to ``limit`` due connections for ``owner`` (a ``sweep:`` token); returns their ids.

    PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED`` so overlapping sweeps
    take disjoint batches without waiting on each other. SQLite ignores the
    lock clause, but its transactions here are IMMEDIATE (one writer), which
    makes the select-then-update just as exclusive. The UPDATE repeats the due
    condition anyway, and moves ``next_check_at`` to the end of the claim: the
    claimed rows leave the due index at once (so the next batch does not scan
    them), and come back by themselves if the check task is lost.
    """
    if not owner.startswith(SWEEP_OWNER_PREFIX):
        raise ValueError(f"sweep claims must be owned by a {SWEEP_OWNER_PREFIX!r} token")
    until = now + _seconds("LIFECYCLE_SWEEP_LEASE_SECONDS")
    with transaction.atomic():
        ids = list(due_queryset(now=now).select_for_update(skip_locked=True).values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        Connection.objects.filter(pk__in=ids, next_check_at__lte=now).filter(_lease_free(now)).update(
            lease_owner=owner, lease_until=until, next_check_at=until
        )
    return ids


# --- The check ---------------------------------------------------------------------------------------


def connection_check(
    *,
    connection_id: int,
    actor_label: str = "job:check",
    force: bool = False,
    actor: Any = None,
    now: datetime | None = None,
) -> CheckResult:
    """Renew when due, probe, store accounts, apply the outcome (see the module docstring).

    Safe to call any number of times and from any number of workers: only the
    caller that claims the connection does anything. Never raises for a
    provider problem; an unexpected exception is logged (without secrets),
    the connection's next check pushed ``LIFECYCLE_ERROR_DELAY_SECONDS`` ahead
    and the claim released, so one bad row cannot crash-loop a job.
    """
    now = now or timezone.now()
    owner = _new_lease_owner()
    claimed = connection_claim(connection_id=connection_id, owner=owner, now=now, force=force)
    if claimed is None:
        return CheckResult(connection_id=connection_id, outcome=Outcome.SKIPPED, message="not claimed")
    check = _Check(connection=claimed, owner=owner, now=now, actor_label=actor_label, actor=actor)
    try:
        return check.run()
    except LeaseLost:
        logger.info("Check of connection %s discarded: the connection changed meanwhile.", connection_id)
        return CheckResult(connection_id=connection_id, outcome=Outcome.SKIPPED, message="claim lost")
    except Exception as exc:
        logger.error(
            "Check of connection %s failed unexpectedly (%s); next check pushed back.",
            connection_id,
            type(exc).__name__,
            exc_info=True,
        )
        return _push_back(check, exc)


def _push_back(check: _Check, exc: BaseException) -> CheckResult:
    now = timezone.now()
    until = now + _seconds("LIFECYCLE_ERROR_DELAY_SECONDS")
    status = check.connection.status
    try:
        with transaction.atomic():
            fields: dict[str, Any] = {"lease_until": None, "lease_owner": "", "last_checked_at": now}
            if status in SCHEDULED_STATUSES:
                fields["next_check_at"] = until
            updated = Connection.objects.filter(pk=check.connection_id, lease_owner=check.owner).update(**fields)
            if updated:
                event_record(
                    connection=check.connection,
                    kind=ConnectionEvent.Kind.CHECK_FAILED,
                    message=(
                        f"{_source(check.connection)}: an internal error interrupted the check; "
                        f"it will be tried again at {_when(until)}."
                    ),
                    from_status=status,
                    to_status=status,
                    actor_label=check.actor_label,
                    details={"error": type(exc).__name__, "next_check_at": until},
                )
    except Exception:
        logger.exception("Could not push back connection %s after an unexpected error.", check.connection_id)
    return CheckResult(
        connection_id=check.connection_id,
        outcome=Outcome.ERROR,
        status=status,
        message=type(exc).__name__,
        next_check_at=until,
    )


class _Check:
    """One claimed check. Holds what the steps share; every exit releases the claim."""

    def __init__(self, *, connection: Connection, owner: str, now: datetime, actor_label: str, actor: Any) -> None:
        self.connection = connection
        self.connection_id = connection.pk
        self.owner = owner
        self.now = now
        self.actor_label = actor_label
        self.actor = actor
        self.credentials: list[Credential] = []
        self.permit: Permit | None = None
        self.renewed = False

    # --- steps ---
    def run(self) -> CheckResult:
        connection = self.connection
        app = _rows_of(ProviderApp, "id", connection.provider_app_id)[0]
        connection.provider_app = app
        self.app = app
        if not app.is_enabled:
            return self._defer(self.now + _seconds("LIFECYCLE_APP_DISABLED_RETRY_SECONDS"), "provider app disabled")
        if app.credentials_rejected_at is not None:
            retry = (app.last_error_at or app.credentials_rejected_at) + _seconds(
                "LIFECYCLE_APP_REJECTED_RETRY_SECONDS"
            )
            if retry > self.now:
                spread = random.uniform(0, lifecycle_setting("LIFECYCLE_APP_REJECTED_RETRY_SECONDS") / 2)
                return self._defer(retry + timedelta(seconds=spread), "provider rejects the app's credentials")
        decision = breaker_permit(app=app, now=self.now)
        if isinstance(decision, Deferral):
            return self._defer(decision.until, decision.reason)
        self.permit = decision
        self.client = client_for_app(app=app)
        self.credentials = _rows_of(Credential, "connection_id", connection.pk)
        state = connection_state(connection=connection, credentials=self.credentials)

        if renewal_is_due(renewal_due_at=self.client.renewal_due_at(state), now=self.now):
            renewal = self._renew(state)
            if isinstance(renewal, CheckResult):
                return renewal
            state = renewal[0]
        probed = self._probe(state)
        if isinstance(probed, CheckResult):
            return probed
        accounts, state = probed
        return self._succeeded(accounts, state)

    def _rate_limited(self) -> CheckResult | None:
        wait = rate_limit_acquire(app=self.app)
        if wait > 0:
            until = timezone.now() + timedelta(seconds=wait * random.uniform(1.0, 2.0))
            return self._defer(until, "outbound rate limit")
        return None

    def _renew(self, state: ConnectionState) -> tuple[ConnectionState, bool] | CheckResult:
        """Renew once (retrying once with the same token if the outcome is unknown) and commit the result."""
        limited = self._rate_limited()
        if limited is not None:
            return limited
        try:
            try:
                issued = list(self.client.renew(connection=state))
            except ProviderError as exc:
                if not exc.outcome_unknown:
                    raise
                # The provider may have rotated the token without our hearing
                # it. Asking once more with the same token settles it: either
                # it answers (new tokens) or says the token was used up.
                logger.info("Renewal of connection %s: outcome unknown, retrying once.", self.connection_id)
                rate_limit_acquire(app=self.app, max_wait=5.0)
                issued = list(self.client.renew(connection=state))
        except ProviderError as exc:
            return self._failed(exc, stage="renew")
        if not issued:
            return state, False
        return self._store_renewal(state, issued), True

    def _store_renewal(self, state: ConnectionState, issued: list[IssuedCredential]) -> ConnectionState:
        """Commit new credentials and a RENEWED event now, in their own transaction, before anything else."""
        connection = self.connection
        merged = dict(state.credentials)
        for credential in issued:
            merged[credential.kind] = credential
        new_state = replace(state, credentials=merged)
        deadline = self.client.reconnect_deadline(new_state)
        now = timezone.now()

        def write() -> None:
            with transaction.atomic():
                # The UPDATE takes the row lock (held to commit) and proves the
                # claim is still ours; a reconnect or disconnect in between has
                # cleared it, and then these tokens must not overwrite anything.
                held = Connection.objects.filter(pk=connection.pk, lease_owner=self.owner).update(
                    reconnect_by=deadline, lease_until=now + _seconds("LIFECYCLE_CHECK_LEASE_SECONDS")
                )
                if not held:
                    raise LeaseLost
                kinds = _credentials_upsert(connection.pk, issued)
                expiries = {c.kind: c.expires_at for c in issued if c.expires_at is not None}
                access = merged.get(Credential.Kind.ACCESS)
                until = f" until {_when(access.expires_at)}" if access is not None and access.expires_at else ""
                event_record(
                    connection=connection,
                    kind=ConnectionEvent.Kind.RENEWED,
                    message=f"{_source(connection)}: credentials renewed ahead of expiry; access is valid{until}.",
                    from_status=connection.status,
                    to_status=connection.status,
                    actor_label=self.actor_label,
                    actor=self.actor,
                    details={"kinds": sorted(kinds), "expires_at": expiries, "reconnect_by": deadline},
                )

        # The provider has already issued (and, for a rotating refresh token,
        # already invalidated the old one): this process holds the only copy
        # of the new secrets, so a database blip is waited out rather than
        # turned into a lost chain. Inside a caller's transaction nothing can
        # be retried, and the error goes up as before.
        attempts = max(int(lifecycle_setting("LIFECYCLE_STORE_ATTEMPTS")), 1)
        for attempt in range(1, attempts + 1):
            try:
                write()
                break
            except (OperationalError, InterfaceError) as exc:
                if attempt == attempts or db_connection.in_atomic_block:
                    raise
                logger.warning(
                    "Storing renewed credentials of connection %s failed (%s); retrying (%s of %s).",
                    connection.pk,
                    type(exc).__name__,
                    attempt + 1,
                    attempts,
                )
                # A broken session is replaced on the next query.
                db_connection.close_if_unusable_or_obsolete()
                time.sleep(lifecycle_setting("LIFECYCLE_STORE_RETRY_SECONDS") * attempt)
        connection.reconnect_by = deadline
        self.renewed = True
        return new_state

    def _probe(self, state: ConnectionState) -> tuple[Sequence[AccountData], ConnectionState] | CheckResult:
        limited = self._rate_limited()
        if limited is not None:
            return limited
        try:
            return list(self.client.probe(connection=state)), state
        except ProviderError as exc:
            if not getattr(exc, "access_rejected", False) or self.renewed:
                # A token renewed in this very check was rejected: that is
                # the "fresh token also got 401" case, permanent now.
                return self._failed(exc, stage="probe")
            first = exc
        # The access token was refused: renew, store, and probe once more.
        renewal = self._renew(state)
        if isinstance(renewal, CheckResult):
            return renewal
        state, renewed = renewal
        if not renewed:
            return self._failed(first, stage="probe")  # nothing renewable: permanent at once
        limited = self._rate_limited()
        if limited is not None:
            return limited
        try:
            return list(self.client.probe(connection=state)), state
        except ProviderError as exc:
            return self._failed(exc, stage="probe after renewal")

    # --- outcomes ---
    def _finish(self, fields: dict[str, Any], events: list[dict[str, Any]], accounts: Sequence[AccountData] | None):
        """One conditional UPDATE releasing the claim, plus accounts and events, in one transaction.

        A routine success (no event, the same account list as last time, told by
        its digest) is that one UPDATE and nothing else, without a transaction.
        """
        fields = {**fields, "lease_until": None, "lease_owner": "", "last_checked_at": self.now}
        change = AccountsChange(upsert=[], delete=[])
        if accounts is not None:
            digest = accounts_digest(accounts)
            # Not a secret, but compared like one: the project's rule for digests (tests/security).
            if not hmac.compare_digest(digest, self.connection.accounts_digest):
                stored = _rows_of(Account, "connection_id", self.connection_id)
                change = accounts_change(self.connection_id, accounts, self.now, stored=stored)
                fields["accounts_digest"] = digest
        if not events and not change:
            if not _release(connection_id=self.connection_id, owner=self.owner, values=fields):
                raise LeaseLost
            return
        with transaction.atomic():
            if not _release(connection_id=self.connection_id, owner=self.owner, values=fields):
                raise LeaseLost
            accounts_write(self.connection_id, change)
            if events:
                ConnectionEvent.objects.bulk_create([ConnectionEvent(**_event_fields(**e)) for e in events])

    def _event(self, **kwargs: Any) -> dict[str, Any]:
        return {"connection_id": self.connection_id, "actor_label": self.actor_label, "actor": self.actor, **kwargs}

    def _defer(self, until: datetime, why: str) -> CheckResult:
        """No call (more) now: reschedule, status unchanged, no event."""
        connection = self.connection
        breaker_release(app=connection.provider_app, permit=self.permit)
        next_check = until if connection.status in SCHEDULED_STATUSES else None
        fields: dict[str, Any] = {"next_check_at": next_check, "lease_until": None, "lease_owner": ""}
        if not _release(connection_id=self.connection_id, owner=self.owner, values=fields):
            raise LeaseLost
        return CheckResult(
            connection_id=self.connection_id,
            outcome=Outcome.DEFERRED,
            status=connection.status,
            renewed=self.renewed,
            message=why,
            next_check_at=next_check,
        )

    def _succeeded(self, accounts: Sequence[AccountData], state: ConnectionState) -> CheckResult:
        connection = self.connection
        breaker_record_success(app=self.app, permit=self.permit, now=self.now)
        app_credentials_accepted(app=self.app)
        next_check = next_check_after_success(renewal_due_at=self.client.renewal_due_at(state), now=self.now)
        before = connection.status
        events = []
        if before in RECOVERY_FROM:
            events.append(
                self._event(
                    kind=ConnectionEvent.Kind.RECOVERED,
                    message=(
                        f"{_message_for(connection, status=Status.ACTIVE, reason='')} "
                        f"Recovered from {Status(before).label.lower()}."
                    ),
                    from_status=before,
                    to_status=Status.ACTIVE,
                    details={"previous_reason": connection.reason, "failures": connection.consecutive_failures},
                )
            )
        self._finish(
            {
                "status": Status.ACTIVE,
                "reason": Reason.NONE,
                "last_success_at": self.now,
                "last_error": "",
                "consecutive_failures": 0,
                "degraded_since": None,
                "next_check_at": next_check,
            },
            events,
            accounts,
        )
        return CheckResult(
            connection_id=self.connection_id,
            outcome=Outcome.OK,
            status=Status.ACTIVE,
            renewed=self.renewed,
            next_check_at=next_check,
        )

    def _failed(self, exc: ProviderError, *, stage: str) -> CheckResult:
        connection = self.connection
        before = connection.status
        error_text = redact(exc.message or str(exc))[:500]
        details: dict[str, Any] = {"stage": stage, "error_kind": str(exc.kind), "error": error_text}
        if exc.status_code is not None:
            details["status_code"] = exc.status_code
        if exc.kind == ErrorKind.TRANSIENT:
            breaker_record_failure(app=self.app, permit=self.permit, now=self.now)
            failures = connection.consecutive_failures + 1
            delay = backoff_delay(failures, retry_after=exc.retry_after)
            after = before
            fields: dict[str, Any] = {"consecutive_failures": failures, "last_error": error_text}
            if before in SCHEDULED_STATUSES:
                next_check = self.now + timedelta(seconds=delay)
                if failures >= lifecycle_setting("LIFECYCLE_DEGRADED_AFTER"):
                    after = Status.DEGRADED
                    fields.update(status=after, reason=Reason.TRANSIENT)
                    fields["degraded_since"] = connection.degraded_since or self.now
            else:
                next_check = None  # needs_reconnect stays unscheduled
            fields["next_check_at"] = next_check
            details.update(consecutive_failures=failures, next_check_at=next_check, retry_after=exc.retry_after)
            if after != before:
                message = f"{_message_for(connection, status=after, reason=Reason.TRANSIENT)} ({error_text})"
            elif next_check is not None:
                message = (
                    f"{_source(connection)}: the check failed for now ({error_text}); retrying at {_when(next_check)}."
                )
            else:
                message = f"{_source(connection)}: the check failed for now ({error_text})."
            event = self._event(
                kind=ConnectionEvent.Kind.CHECK_FAILED,
                message=message,
                from_status=before,
                to_status=after,
                reason=Reason.TRANSIENT,
                details=details,
            )
            self._finish(fields, [event], None)
            return CheckResult(
                connection_id=self.connection_id,
                outcome=Outcome.TRANSIENT,
                status=after,
                renewed=self.renewed,
                message=error_text,
                next_check_at=next_check,
            )

        # The provider answered (it is up): a half-open trial closes the breaker.
        breaker_record_success(app=self.app, permit=self.permit, now=self.now)
        if exc.kind == ErrorKind.APP_CREDENTIALS_INVALID:
            app_credentials_rejected(app=self.app, message=error_text, now=self.now)
            retry = lifecycle_setting("LIFECYCLE_APP_REJECTED_RETRY_SECONDS")
            next_check = (
                self.now + timedelta(seconds=retry * random.uniform(1.0, 1.5)) if before in SCHEDULED_STATUSES else None
            )
            event = self._event(
                kind=ConnectionEvent.Kind.CHECK_FAILED,
                message=(
                    f"{_source(connection)}: {_provider_label(connection.provider)} rejected the portal's own app "
                    "credentials. Administrators have been alerted; the client need not do anything."
                ),
                from_status=before,
                to_status=before,
                details={**details, "next_check_at": next_check},
            )
            self._finish({"next_check_at": next_check, "last_error": error_text}, [event], None)
            return CheckResult(
                connection_id=self.connection_id,
                outcome=Outcome.APP_CREDENTIALS_INVALID,
                status=before,
                renewed=self.renewed,
                message=error_text,
                next_check_at=next_check,
            )

        reason = str(exc.reason or Reason.EXPIRED)
        if getattr(exc, "access_rejected", False):
            details["access_rejected"] = True
        event = self._event(
            kind=ConnectionEvent.Kind.CHECK_FAILED,
            message=_message_for(connection, status=Status.NEEDS_RECONNECT, reason=reason),
            from_status=before,
            to_status=Status.NEEDS_RECONNECT,
            reason=reason,
            details=details,
        )
        self._finish(
            {
                "status": Status.NEEDS_RECONNECT,
                "reason": reason,
                "next_check_at": None,
                "last_error": error_text,
                "consecutive_failures": 0,
                "degraded_since": None,
            },
            [event],
            None,
        )
        return CheckResult(
            connection_id=self.connection_id,
            outcome=Outcome.PERMANENT,
            status=Status.NEEDS_RECONNECT,
            renewed=self.renewed,
            message=error_text,
        )


# --- Connect, reconnect, disconnect ----------------------------------------------------------------


def _purpose_is_reconnect(purpose: str) -> bool:
    return str(purpose) == AuthorizationRequest.Purpose.RECONNECT


def grant_apply(
    *,
    connection: Connection,
    grant: Grant,
    purpose: str,
    actor: Any = None,
    actor_label: str = "",
) -> Connection:
    """Store a completed authorization and make the connection active.

    ``purpose`` is ``"connect"`` or ``"reconnect"`` (AuthorizationRequest.Purpose).
    A reconnect must return the stored ``external_account_id``; a different one
    raises :class:`ReconnectMismatch` after recording a RECONNECT_REFUSED event,
    and changes nothing else. Call it outside an outer ``atomic`` block (or catch
    the exception inside it), or the refusal event is rolled back with it.

    Otherwise: credentials upserted per kind (other kinds deleted only when the
    grant carries ``replace_credentials = True``), accounts stored when the
    grant has them, the grouping remembered (Turnqey's collection also on the
    household when it has none), ``status`` active, ``reason`` empty,
    ``connected_at`` now, ``reconnect_by`` from the client's
    ``reconnect_deadline``, ``next_check_at`` scheduled; any in-flight check's
    claim is cleared so it cannot overwrite this. Events: CONNECTED or
    RECONNECTED, plus RECOVERED when the connection was degraded or needed
    reconnecting.
    """
    now = timezone.now()
    reconnect = _purpose_is_reconnect(purpose)
    refused: tuple[Connection, str] | None = None
    with transaction.atomic():
        locked = (
            Connection.objects.select_for_update()
            .select_related("provider_app", "household", "client")
            .get(pk=connection.pk)
        )
        before = locked.status
        stored_id = locked.external_account_id
        if reconnect and stored_id and str(grant.external_account_id) != stored_id:
            refused = (locked, before)
        else:
            _grant_store(locked, grant, now=now, reconnect=reconnect, actor=actor, actor_label=actor_label)
    if refused is not None:
        locked, before = refused
        source = _source(locked)
        message = (
            f"{source}: the reconnect signed in to a different {platform_display(locked.platform)} account than "
            "the one this connection belongs to, so it was refused and nothing was changed. Ask the client to "
            f"sign in to {platform_display(locked.platform)} with the original account and reconnect again."
        )
        event_record(
            connection=locked,
            kind=ConnectionEvent.Kind.RECONNECT_REFUSED,
            message=message,
            from_status=before,
            to_status=before,
            actor=actor,
            actor_label=actor_label,
            details={
                "expected_account": locked.external_account_id,
                "returned_account": str(grant.external_account_id),
            },
        )
        raise ReconnectMismatch(message)
    connection.refresh_from_db()
    return connection


def _grant_store(
    locked: Connection, grant: Grant, *, now: datetime, reconnect: bool, actor: Any, actor_label: str
) -> None:
    before = locked.status
    before_reason = locked.reason
    replace_all = bool(getattr(grant, "replace_credentials", False))
    issued = list(grant.credentials)
    _credentials_upsert(locked.pk, issued)
    if replace_all:
        Credential.objects.filter(connection_id=locked.pk).exclude(kind__in=[c.kind for c in issued]).delete()

    grouping = {**(locked.grouping or {}), **{str(k): str(v) for k, v in (grant.grouping or {}).items() if v}}
    collection = grouping.get("collection")
    if locked.provider == Provider.TURNQEY and collection:
        try:
            collection_id = uuid.UUID(collection)
        except ValueError:
            logger.warning("Connection %s: Turnqey returned a collection that is not a UUID.", locked.pk)
        else:
            Household.objects.filter(pk=locked.household_id, turnqey_collection__isnull=True).update(
                turnqey_collection=collection_id
            )
    locked.grouping = grouping
    locked.external_account_id = str(grant.external_account_id)[:200]

    # The client reads deadlines from the credentials as they are now stored.
    locked._prefetched_objects_cache = {}  # type: ignore[attr-defined]
    state = connection_state(connection=Connection.objects.prefetch_related("credentials").get(pk=locked.pk))
    state = replace(state, external_account_id=locked.external_account_id, grouping=grouping)
    client = client_for_app(app=locked.provider_app)
    deadline = client.reconnect_deadline(state)
    if grant.accounts is not None:
        next_check = next_check_after_success(renewal_due_at=client.renewal_due_at(state), now=now)
    else:
        # Nothing read yet: look soon, so the household shows balances.
        next_check = now + _seconds("LIFECYCLE_MIN_RECHECK_SECONDS")

    locked.status = Status.ACTIVE
    locked.reason = Reason.NONE
    locked.connected_at = now
    locked.disconnected_at = None
    locked.reconnect_by = deadline
    locked.next_check_at = next_check
    locked.consecutive_failures = 0
    locked.degraded_since = None
    locked.last_error = ""
    locked.lease_until = None
    locked.lease_owner = ""
    update_fields = [
        "status",
        "reason",
        "connected_at",
        "disconnected_at",
        "reconnect_by",
        "next_check_at",
        "consecutive_failures",
        "degraded_since",
        "last_error",
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
        _accounts_replace(locked.pk, grant.accounts, now)
    locked.save(update_fields=update_fields)

    source = _source(locked)
    kind = ConnectionEvent.Kind.RECONNECTED if reconnect else ConnectionEvent.Kind.CONNECTED
    verb = "reconnected" if reconnect else "connected"
    purpose_word = "reconnect" if reconnect else "connect"
    deadline_note = f" The client must reconnect by {_when(deadline)}." if deadline else ""
    events = [
        _event_fields(
            connection_id=locked.pk,
            kind=kind,
            message=f"{source}: {verb}.{deadline_note}",
            from_status=before,
            to_status=Status.ACTIVE,
            actor=actor,
            actor_label=actor_label,
            details={"credential_kinds": sorted({c.kind for c in issued}), "reconnect_by": deadline},
            created_at=now,
        )
    ]
    if before in RECOVERY_FROM:
        events.append(
            _event_fields(
                connection_id=locked.pk,
                kind=ConnectionEvent.Kind.RECOVERED,
                message=f"{source}: connected and up to date again after the client's {purpose_word}.",
                from_status=before,
                to_status=Status.ACTIVE,
                reason=before_reason,
                actor=actor,
                actor_label=actor_label,
                created_at=now,
            )
        )
    ConnectionEvent.objects.bulk_create([ConnectionEvent(**fields) for fields in events])


def connection_disconnect(*, connection: Connection, actor: Any = None, actor_label: str = "") -> Connection:
    """Revoke at the provider where it can be, delete every secret, status ``disconnected``.

    A provider failure while revoking (transient or not) never blocks the
    disconnect: it is recorded in the DISCONNECTED event's details and the
    secrets are deleted anyway. The revoke call happens outside any
    transaction (no row lock held over HTTP); the local change is atomic and
    clears any check's claim, so a renewal finishing meanwhile stores nothing.
    """
    now = timezone.now()
    current = (
        Connection.objects.select_related("provider_app", "household", "client")
        .prefetch_related("credentials")
        .get(pk=connection.pk)
    )
    revoke_outcome = "nothing to revoke"
    revoke_error = ""
    if current.status != Status.DISCONNECTED and list(current.credentials.all()):
        try:
            client = client_for_app(app=current.provider_app)
            rate_limit_acquire(app=current.provider_app, max_wait=2.0)  # best effort: a person is waiting
            client.revoke(connection=connection_state(connection=current))
            revoke_outcome = "revoked at the provider (where it supports it)"
        except ProviderError as exc:
            revoke_outcome = "revoke failed; secrets deleted anyway"
            revoke_error = redact(exc.message or str(exc))[:300]
            logger.warning("Disconnect of connection %s: revoke failed (%s).", current.pk, exc.kind)
        except Exception as exc:
            revoke_outcome = "revoke failed; secrets deleted anyway"
            revoke_error = type(exc).__name__
            logger.error("Disconnect of connection %s: revoke raised %s.", current.pk, revoke_error, exc_info=True)
    with transaction.atomic():
        locked = Connection.objects.select_for_update().get(pk=connection.pk)
        before = locked.status
        deleted, _ = Credential.objects.filter(connection_id=locked.pk).delete()
        Connection.objects.filter(pk=locked.pk).update(
            status=Status.DISCONNECTED,
            reason=Reason.NONE,
            next_check_at=None,
            lease_until=None,
            lease_owner="",
            reconnect_by=None,
            consecutive_failures=0,
            degraded_since=None,
            disconnected_at=now,
            updated_at=now,
        )
        message = _message_for(current, status=Status.DISCONNECTED, reason="")
        if revoke_error:
            message += f" Revoking at {_provider_label(current.provider)} failed ({revoke_error})."
        event_record(
            connection=locked,
            kind=ConnectionEvent.Kind.DISCONNECTED,
            message=message,
            from_status=before,
            to_status=Status.DISCONNECTED,
            actor=actor,
            actor_label=actor_label,
            details={"revoke": revoke_outcome, "revoke_error": revoke_error, "credentials_deleted": deleted},
        )
    connection.refresh_from_db()
    return connection
