"""Claims: who may work on a connection now, and the rows that are due.

A check claims its connection with a conditional UPDATE of the lease
(``lease_owner``/``lease_until``), atomic on PostgreSQL (the WHERE is
re-checked under the row lock) and on SQLite (one writer at a time); no row
lock is held during HTTP calls. So at most one check, and therefore at most
one renewal, per connection is in flight across all workers. The sweep claims
due rows in batches for ``sweep:`` owners; a check of a swept row takes the
claim over.

The hand-written SQL of the portal lives here alone. A routine check runs a
few single-row statements, and at a million connections the ORM spent more CPU
compiling them than PostgreSQL spent running them (``make bench``, "checks":
worker CPU per check 6.9 ms with the ORM, 3.2 ms with these). They are built
once per process from the models' metadata (columns, the fields' own value
preparation and converters, decryption included), so they follow the models,
and the behavioural suites cover them like any other path.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection as db_connection
from django.db import transaction
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from ..models import Connection, Credential
from . import rules
from .config import tunables

SWEEP_OWNER_PREFIX = "sweep:"
_sql_cache: dict[tuple[Any, ...], Any] = {}


def lease_owner_new(prefix: str = "check:") -> str:
    # Unique per claim, not per worker: two threads of one process must not
    # mistake each other's claim for their own.
    return f"{prefix}{os.getpid()}:{uuid.uuid4().hex[:16]}"


def _qn(name: str) -> str:
    return db_connection.ops.quote_name(name)


def _db_value(model: type[Any], name: str, value: Any) -> Any:
    return model._meta.get_field(name).get_db_prep_save(value, connection=db_connection)


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


def rows_of(model: type[Any], column: str, value: int) -> list[Any]:
    """Every row of ``model`` whose ``column`` equals ``value`` (fields converted as the ORM would)."""
    reader = _reader(model)
    key = ("rows", db_connection.vendor, model, column)
    sql = _sql_cache.get(key)
    if sql is None:
        sql = f"SELECT {reader.columns} FROM {_qn(model._meta.db_table)} WHERE {_qn(column)} = %s"  # noqa: S608
        _sql_cache[key] = sql
    return reader.fetch(sql, [value])


def rows_in(model: type[Any], column: str, values: Sequence[int]) -> list[Any]:
    """Every row of ``model`` whose ``column`` is one of ``values``, in one statement."""
    if not values:
        return []
    reader = _reader(model)
    table = _qn(model._meta.db_table)
    if db_connection.vendor == "postgresql":
        key = ("rows_in", model, column)
        sql = _sql_cache.get(key)
        if sql is None:
            sql = _sql_cache[key] = f"SELECT {reader.columns} FROM {table} WHERE {_qn(column)} = ANY(%s)"  # noqa: S608
        return reader.fetch(sql, [list(values)])
    marks = ", ".join(["%s"] * len(values))
    return reader.fetch(f"SELECT {reader.columns} FROM {table} WHERE {_qn(column)} IN ({marks})", list(values))  # noqa: S608


def _ids_clause(count: int) -> str:
    """The claim's ``WHERE`` on ids: one id, or many (an array on PostgreSQL, a list elsewhere)."""
    if count == 1:
        return "id = %(id)s"
    if db_connection.vendor == "postgresql":
        return "id = ANY(%(ids)s)"
    return f"id IN ({', '.join(f'%(id{i})s' for i in range(count))})"


def _claim_sql(force: bool, count: int = 1) -> str:
    ids = _ids_clause(count)
    key = ("claim", db_connection.vendor, force, ids)
    sql = _sql_cache.get(key)
    if sql is None:
        statuses = rules.CHECKABLE if force else rules.SCHEDULED
        status_in = ", ".join(f"%(status{i})s" for i in range(len(statuses)))
        lease_free = "(lease_until IS NULL OR lease_until < %(now)s)"
        held_by_sweep = "(lease_owner LIKE %(sweep)s AND lease_until >= %(now)s)"
        due = f"({held_by_sweep} OR ({lease_free} AND next_check_at <= %(now)s))"
        condition = f"({lease_free} OR {held_by_sweep})" if force else due
        sql = (
            f"UPDATE {_qn(Connection._meta.db_table)} SET lease_owner = %(owner)s, lease_until = %(until)s "  # noqa: S608
            f"WHERE {ids} AND status IN ({status_in}) AND {condition} RETURNING {_reader(Connection).columns}"
        )
        _sql_cache[key] = sql
    return sql


def connection_claim(
    *, connection_id: int, owner: str, now: datetime, lease: timedelta, force: bool = False
) -> Connection | None:
    """Claim one connection for a check and read it, in one ``UPDATE ... RETURNING``; None if not granted.

    Not forced: only an ``active``/``degraded`` connection that the sweep
    claimed, or that is due and unclaimed. Forced (a person asked): any
    ``active``/``degraded``/``needs_reconnect`` connection not held by another
    check. A second delivery of the same task finds the claim taken and does
    nothing: this is what keeps renewals single-flight. Reading the row in the
    statement that claims it means a check never works from a row that
    another check changed meanwhile.
    """
    params = {"id": connection_id, **_claim_params(owner=owner, now=now, lease=lease, force=force)}
    rows = _reader(Connection).fetch(_claim_sql(force), params)
    return rows[0] if rows else None


def _claim_params(*, owner: str, now: datetime, lease: timedelta, force: bool) -> dict[str, Any]:
    statuses = sorted(rules.CHECKABLE if force else rules.SCHEDULED)
    return {
        "owner": owner,
        "now": _db_value(Connection, "lease_until", now),
        "until": _db_value(Connection, "lease_until", now + lease),
        "sweep": f"{SWEEP_OWNER_PREFIX}%",
        **{f"status{i}": status for i, status in enumerate(statuses)},
    }


def connections_claim(
    *, connection_ids: Sequence[int], owner: str, now: datetime, lease: timedelta
) -> dict[int, Connection]:
    """Claim many connections for scheduled checks under one owner, in one ``UPDATE ... RETURNING``.

    The same condition as :func:`connection_claim` (not forced), row by row:
    a connection another check holds, or that is no longer due, is simply not
    among those returned. Every row claimed is ``owner``'s until its own
    release, exactly as if each had been claimed alone.
    """
    ids = list(dict.fromkeys(connection_ids))
    if not ids:
        return {}
    params = _claim_params(owner=owner, now=now, lease=lease, force=False)
    if len(ids) == 1:
        params["id"] = ids[0]
    elif db_connection.vendor == "postgresql":
        params["ids"] = ids
    else:
        params.update({f"id{i}": connection_id for i, connection_id in enumerate(ids)})
    rows = _reader(Connection).fetch(_claim_sql(False, len(ids)), params)
    return {row.pk: row for row in rows}


def connection_release(*, connection_id: int, owner: str, values: Mapping[str, Any]) -> bool:
    """``UPDATE connection SET values WHERE id AND lease_owner``: True if the claim was still ours."""
    names = tuple(values)
    key = ("release", db_connection.vendor, names)
    sql = _sql_cache.get(key)
    if sql is None:
        meta = Connection._meta
        assignments = ", ".join(f"{_qn(meta.get_field(name).column)} = %s" for name in names)  # type: ignore[union-attr, arg-type]
        sql = f"UPDATE {_qn(meta.db_table)} SET {assignments} WHERE id = %s AND lease_owner = %s"  # noqa: S608
        _sql_cache[key] = sql
    params = [_db_value(Connection, name, values[name]) for name in names]
    with db_connection.cursor() as cursor:
        cursor.execute(sql, [*params, connection_id, owner])
        return cursor.rowcount == 1


def _release_many_sql(names: tuple[str, ...], count: int) -> str:
    key = ("release_many", db_connection.vendor, names, count)
    sql = _sql_cache.get(key)
    if sql is None:
        meta = Connection._meta
        fields = [meta.get_field(name) for name in names]
        if db_connection.vendor == "postgresql":
            # Each value cast to its column's type: a VALUES list types a column
            # from its literals, and a column of NULLs alone would be text.
            values = [f"CAST(v.c{i} AS {field.cast_db_type(db_connection)})" for i, field in enumerate(fields)]  # type: ignore[union-attr]
        else:
            # SQLite types values, not columns, and its CAST to a date type
            # would make a number of a timestamp: the prepared values go as they are.
            values = [f"v.c{i}" for i in range(len(fields))]
        assignments = ", ".join(
            f"{_qn(field.column)} = {value}"  # type: ignore[union-attr, arg-type]
            for field, value in zip(fields, values, strict=True)
        )
        row = "(" + ", ".join(["%s"] * (len(names) + 1)) + ")"
        columns = ", ".join(["connection_id", *(f"c{i}" for i in range(len(names)))])
        # A common table expression with named columns: both PostgreSQL and
        # SQLite (3.33 and later: UPDATE ... FROM, RETURNING from 3.35) read it.
        sql = _sql_cache[key] = (
            f"WITH v({columns}) AS (VALUES {', '.join([row] * count)}) "  # noqa: S608
            f"UPDATE {_qn(meta.db_table)} AS t SET {assignments} "
            # SQLite's RETURNING names the updated table's columns without its alias.
            "FROM v WHERE t.id = v.connection_id AND t.lease_owner = %s RETURNING id"
        )
    return sql


def connections_release(*, owner: str, releases: Sequence[tuple[int, Mapping[str, Any]]]) -> set[int]:
    """Release many of ``owner``'s claims, each with its own values; returns the ids whose claim was still ours.

    Each row's release is conditional on ``owner``, as :func:`connection_release`
    is: a claim that changed hands meanwhile is left alone and its id is not
    returned. Releases with the same fields are one ``UPDATE ... FROM`` a list
    of ``VALUES``, on PostgreSQL and SQLite alike.
    """
    released: set[int] = set()
    groups: dict[tuple[str, ...], list[tuple[int, Mapping[str, Any]]]] = {}
    for connection_id, values in releases:
        groups.setdefault(tuple(values), []).append((connection_id, values))
    for names, rows in groups.items():
        if len(rows) == 1:
            (connection_id, values), = rows
            if connection_release(connection_id=connection_id, owner=owner, values=values):
                released.add(connection_id)
            continue
        params: list[Any] = []
        for connection_id, values in rows:
            params.append(connection_id)
            params.extend(_db_value(Connection, name, values[name]) for name in names)
        params.append(owner)
        with db_connection.cursor() as cursor:
            cursor.execute(_release_many_sql(names, len(rows)), params)
            released.update(row[0] for row in cursor.fetchall())
    return released


def lease_extend(*, connection_id: int, owner: str, until: datetime) -> bool:
    """Move our claim's end to ``until``; False when the claim is no longer ours (fenced off)."""
    return connection_release(connection_id=connection_id, owner=owner, values={"lease_until": until})


def _lease_free(now: datetime) -> Q:
    return Q(lease_until__isnull=True) | Q(lease_until__lt=now)


def due_queryset(*, now: datetime) -> QuerySet[Connection]:
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


def _claim_due_sql() -> str:
    key = ("claim_due", db_connection.vendor)
    sql = _sql_cache.get(key)
    if sql is None:
        table = _qn(Connection._meta.db_table)
        due = (
            "next_check_at IS NOT NULL AND next_check_at <= %(now)s "
            "AND (lease_until IS NULL OR lease_until < %(now)s)"
        )
        sql = _sql_cache[key] = (
            f"UPDATE {table} SET lease_owner = %(owner)s, lease_until = %(until)s, next_check_at = %(until)s "  # noqa: S608
            f"WHERE id IN (SELECT id FROM {table} WHERE {due} ORDER BY next_check_at LIMIT %(limit)s "
            f"FOR UPDATE SKIP LOCKED) AND {due} RETURNING id"
        )
    return sql


def connections_claim_due(*, now: datetime, limit: int, owner: str, lease: timedelta | None = None) -> list[int]:
    """Claim up to ``limit`` due connections for ``owner`` (a ``sweep:`` token); returns their ids.

    PostgreSQL: one ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP
    LOCKED) RETURNING id``, so overlapping sweeps take disjoint batches without
    waiting on each other, in one round trip (``make bench``, "sweep": the
    select and then the update by id read the due rows twice). Elsewhere
    (SQLite ignores the lock clause, but its transactions here are IMMEDIATE:
    one writer) a select, then an update. Either way the UPDATE repeats the due
    condition, and moves ``next_check_at`` to the end of the claim: the claimed
    rows leave the due index at once (so the next batch does not scan them),
    and come back by themselves if the check task is lost.
    """
    if not owner.startswith(SWEEP_OWNER_PREFIX):
        raise ValueError(f"sweep claims must be owned by a {SWEEP_OWNER_PREFIX!r} token")
    until = now + (lease if lease is not None else timedelta(seconds=tunables().sweep_lease_seconds))
    if db_connection.vendor == "postgresql":
        params = {
            "now": _db_value(Connection, "next_check_at", now),
            "until": _db_value(Connection, "next_check_at", until),
            "owner": owner,
            "limit": limit,
        }
        with transaction.atomic(), db_connection.cursor() as cursor:
            cursor.execute(_claim_due_sql(), params)
            return [row[0] for row in cursor.fetchall()]
    with transaction.atomic():
        ids = list(due_queryset(now=now).select_for_update(skip_locked=True).values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        Connection.objects.filter(pk__in=ids, next_check_at__lte=now).filter(_lease_free(now)).update(
            lease_owner=owner, lease_until=until, next_check_at=until
        )
    return ids


# --- Deadlines as SQL -------------------------------------------------------------------


def deadline_near_q(*, now: datetime, tunables: rules.Tunables, basis: str = "deadline_basis") -> tuple[dict, Q]:
    """``rules.deadline_is_near`` as a queryset filter: (aliases to add, condition).

    ``basis`` names an alias the caller defines (the refresh token's issue,
    else the connection's start). ``left <= (deadline - basis) / 2`` is
    written ``deadline - now <= now - basis``, the same inequality without a
    division the database would have to do on an interval.
    """
    at = Value(now, output_field=DateTimeField())
    aliases = {
        "deadline_left": ExpressionWrapper(F("reconnect_by") - at, output_field=DurationField()),
        "deadline_since_basis": ExpressionWrapper(at - F(basis), output_field=DurationField()),
    }
    condition = Q(
        reconnect_by__isnull=False,
        reconnect_by__lte=now + timedelta(seconds=tunables.deadline_warning_seconds),
    ) & (Q(reconnect_by_rolls=False) | Q(deadline_left__lte=F("deadline_since_basis")))
    return aliases, condition


def deadline_is_near_q(
    connections: QuerySet[Connection], *, now: datetime, tunables: rules.Tunables
) -> tuple[QuerySet[Connection], Q]:
    """:func:`rules.deadline_is_near` for a queryset: ``connections`` with what it reads, and the condition.

    The basis is the rule's own: the refresh token's last issue, else when the
    connection connected, else when it was created. Only the issue time of the
    refresh token is read (never its encrypted value).
    """
    refresh_issued = Credential.objects.filter(connection=OuterRef("pk"), kind=Credential.Kind.REFRESH).values(
        "issued_at"
    )[:1]
    aliases, near = deadline_near_q(now=now, tunables=tunables)
    basis = Coalesce(Subquery(refresh_issued), F("connected_at"), F("created_at"))
    return connections.alias(deadline_basis=basis).alias(**aliases), near
