"""Rows the lifecycle writes: credentials, accounts and events.

Credentials: one upsert for connections and provider apps alike (the app-token
cache uses it too), one row per kind. Accounts: the provider's list compared
with what is stored (by a digest first, then row by row), written only where
it changed. Events: the rules' :class:`~connections.lifecycle.rules.EventSpec`
put into words by :mod:`connections.wording`, masked for anything secret-shaped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone

from .. import wording
from ..logging import redact
from ..models import Account, Connection, ConnectionEvent, Credential
from ..providers.base import AccountData, IssuedCredential
from .rules import EventSpec

# --- Credentials ------------------------------------------------------------------------


def credentials_upsert(
    issued: Iterable[IssuedCredential], *, connection_id: int | None = None, provider_app_id: int | None = None
) -> list[str]:
    """Store each credential as the one row of its kind for its owner (update in place, insert when new).

    Exactly one of ``connection_id`` and ``provider_app_id``. The last of a
    kind wins. Returns the kinds written.
    """
    if (connection_id is None) == (provider_app_id is None):
        raise ValueError("a credential belongs to a connection or a provider app, exactly one")
    owner: dict[str, int | None] = (
        {"connection_id": connection_id} if connection_id is not None else {"provider_app_id": provider_app_id}
    )
    latest = {credential.kind: credential for credential in issued}
    for kind, credential in latest.items():
        values = {"value": credential.value, "issued_at": credential.issued_at, "expires_at": credential.expires_at}
        if not Credential.objects.filter(**owner, kind=kind).update(**values):
            Credential.objects.create(**owner, kind=kind, **values)
    return list(latest)


def credentials_keep_only(*, connection_id: int, kinds: Iterable[str]) -> int:
    """Delete the connection's credentials of every other kind (a grant that supersedes all before it)."""
    deleted, _ = Credential.objects.filter(connection_id=connection_id).exclude(kind__in=list(kinds)).delete()
    return deleted


def issued_from(row: Credential) -> IssuedCredential:
    return IssuedCredential(kind=row.kind, value=row.value, issued_at=row.issued_at, expires_at=row.expires_at)


# --- Accounts -------------------------------------------------------------------------------


def _account_values(account: Account) -> tuple[str, str, Decimal, str]:
    return (account.name, account.currency, Decimal(account.balance), account.status)


@dataclass(frozen=True)
class AccountsChange:
    """What storing a provider's account list has to write: rows to upsert, ids to delete."""

    upsert: list[Account]
    delete: list[int]

    def __bool__(self) -> bool:
        return bool(self.upsert or self.delete)


NO_ACCOUNTS_CHANGE = AccountsChange(upsert=[], delete=[])


def accounts_change(
    connection_id: int, accounts: Sequence[AccountData], now: datetime, *, stored: Sequence[Account]
) -> AccountsChange:
    """New and changed accounts (``as_of`` now: when the provider last reported a change) and the ids of
    accounts it no longer lists. Unchanged ones are left out, so an unchanged connection writes none."""
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

    Equal digests mean the same stored rows: a check compares it with
    ``Connection.accounts_digest`` before reading any account row. Not a
    secret (it fingerprints balances the adviser sees anyway).
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


def accounts_replace(connection_id: int, accounts: Sequence[AccountData], now: datetime) -> None:
    """Make the stored accounts match what the provider listed (reads them first)."""
    stored = list(Account.objects.filter(connection_id=connection_id))
    accounts_write(connection_id, accounts_change(connection_id, accounts, now, stored=stored))


# --- Events ------------------------------------------------------------------------------------


def clean_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """Details are for people reading history: plain values, secret-shaped text masked."""
    clean: dict[str, Any] = {}
    for key, value in details.items():
        if isinstance(value, str):
            clean[key] = redact(value)[:500]
        elif isinstance(value, datetime):
            clean[key] = value.isoformat()
        elif isinstance(value, Mapping):
            clean[key] = clean_details(value)
        elif isinstance(value, list | tuple):
            clean[key] = [redact(v) if isinstance(v, str) else v for v in value]
        else:
            clean[key] = value
    return clean


def event_row(
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
) -> ConnectionEvent:
    """An unsaved ConnectionEvent; the message is masked for secret-shaped text and cut to fit."""
    authenticated = actor is not None and getattr(actor, "is_authenticated", False)
    return ConnectionEvent(
        connection_id=connection_id,
        kind=kind,
        message=redact(message)[:500],
        from_status=from_status,
        to_status=to_status,
        reason=reason or "",
        actor_id=actor.pk if authenticated else None,
        actor_label=actor_label[:100],
        details=clean_details(details or {}),
        created_at=created_at or timezone.now(),
    )


def event_record(*, connection: Connection, kind: str, **fields: Any) -> ConnectionEvent:
    """Write one ConnectionEvent now (see :func:`event_row` for the fields)."""
    event = event_row(connection_id=connection.pk, kind=kind, **fields)
    event.save()
    return event


def renewal_event(
    connection: Connection,
    *,
    status: str,
    issued: Sequence[IssuedCredential],
    held: Mapping[str, IssuedCredential],
    reconnect_by: datetime | None,
    actor: Any = None,
    actor_label: str = "",
    at: datetime | None = None,
) -> ConnectionEvent:
    """The unsaved RENEWED event of a check of a connection in ``status`` that obtained ``issued`` (``held``:
    every credential held after it)."""
    access = held.get(Credential.Kind.ACCESS)
    source = wording.source_name(provider=connection.provider, platform=connection.platform)
    return event_row(
        connection_id=connection.pk,
        kind=ConnectionEvent.Kind.RENEWED,
        message=wording.renewed(source=source, access_expires_at=access.expires_at if access else None),
        from_status=status,
        to_status=status,
        actor=actor,
        actor_label=actor_label,
        details={
            "kinds": sorted({credential.kind for credential in issued}),
            "expires_at": {c.kind: c.expires_at for c in issued if c.expires_at is not None},
            "reconnect_by": reconnect_by,
        },
        created_at=at,
    )


# Facts that are wording's business only (flags for which sentence), not history.
_WORDING_FLAGS = frozenset({"by_client", "by_reconnect", "interrupted", "app_rejected", "deadline_rolls"})


def events_for(
    connection: Connection,
    specs: Iterable[EventSpec],
    *,
    actor: Any = None,
    actor_label: str = "",
    at: datetime | None = None,
    details: Mapping[str, Any] | None = None,
) -> list[ConnectionEvent]:
    """Unsaved events for what the rules decided, in words (``details`` are added to each)."""
    source = wording.source_name(provider=connection.provider, platform=connection.platform)
    rows = []
    for spec in specs:
        message = wording.event_sentence(
            kind=spec.kind,
            source=source,
            provider=connection.provider,
            platform=connection.platform,
            from_status=spec.from_status,
            to_status=spec.to_status,
            reason=spec.reason,
            facts=spec.facts,
        )
        facts = {key: value for key, value in spec.facts.items() if key not in _WORDING_FLAGS and value is not None}
        if spec.facts.get("interrupted"):
            facts["error"] = (details or {}).get("error", "")
        rows.append(
            event_row(
                connection_id=connection.pk,
                kind=spec.kind,
                message=message,
                from_status=spec.from_status,
                to_status=spec.to_status,
                reason=spec.reason,
                actor=actor,
                actor_label=actor_label,
                details={**facts, **(details or {})},
                created_at=at,
            )
        )
    return rows
