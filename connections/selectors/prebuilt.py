"""Statements built once per process: a queryset's SQL compiled for stand-ins, rebound per request.

Building and compiling a queryset costs a page more Python than running it: the
hot reads of every page (the membership, the dashboard's counts and attention
list, the household's cards) are compiled once per process and shape for a
stand-in user, firm, household and moment (:func:`stand_in_user`), and each
request binds its own values (:meth:`PrebuiltStatement.rows`).
"""

from __future__ import annotations

import copy
import datetime as dt
import threading
from typing import Any

from django.contrib.auth.models import User as AuthUser
from django.db import connections as db_connections
from django.db.models import QuerySet
from django.utils import timezone

from ..models import Membership

# A page's hot statement is the same for every adviser but for the adviser, their firm, a household and
# the moment: built once per process and shape, it spares each page building and compiling the queryset.
STAND_IN_USER_ID = -730_001
STAND_IN_FIRM_ID = -730_002
STAND_IN_HOUSEHOLD_ID = -730_003
STAND_IN_MOMENT = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def stand_in_user(*, is_firm_admin: bool) -> AuthUser:
    """A user (``STAND_IN_USER_ID``) of a firm (``STAND_IN_FIRM_ID``) to build a :class:`PrebuiltStatement` for."""
    marker = AuthUser(pk=STAND_IN_USER_ID, username="")
    role = Membership.Role.FIRM_ADMIN if is_firm_admin else Membership.Role.ADVISER
    marker.membership = Membership(user_id=STAND_IN_USER_ID, firm_id=STAND_IN_FIRM_ID, role=role)
    return marker


class PrebuiltStatement:
    """A queryset's SQL built once, its values bound per use; reads model rows as the queryset would.

    Built from a queryset made for a stand-in user, firm and household (``STAND_IN_*``) at a stand-in
    moment (``STAND_IN_MOMENT``): a parameter equal to a stand-in is bound to the real one; a moment is
    bound to the real moment plus the same offset (every moment in such a statement must be ``now``
    give or take a tunable, which is part of the caller's key). Everything else in it (statuses, the
    shape of the scope) is part of the shape it was built for. Prefetches are not part of it.
    """

    def __init__(self, queryset: QuerySet[Any]) -> None:
        self.model = queryset.model
        self.db = queryset.db
        self.query = queryset.query
        # Model rows, or values_list() tuples: read as the queryset would have read them.
        self.iterable_class = queryset._iterable_class  # noqa: SLF001
        self.fields = queryset._fields  # type: ignore[attr-defined]
        compiler = self.query.get_compiler(using=self.db)
        self.sql, params = compiler.as_sql()  # also sets up what reading the rows needs (select, klass_info)
        self.compiler = compiler
        marks = {STAND_IN_USER_ID: "user", STAND_IN_FIRM_ID: "firm", STAND_IN_HOUSEHOLD_ID: "household"}
        self.binds: list[tuple[str, Any]] = []
        db = db_connections[self.db]
        for value in params:
            moment = self._moment(value, db)
            if isinstance(value, int) and value in marks:
                self.binds.append((marks[value], None))
            elif moment is not None:
                # SQLite's parameters are moments already written as text: bound in the same words.
                self.binds.append(("now" if isinstance(value, dt.datetime) else "now_text", moment - STAND_IN_MOMENT))
            else:
                self.binds.append(("constant", value))

    @staticmethod
    def _moment(value: Any, db: Any) -> dt.datetime | None:
        """The moment a parameter stands for: a datetime, or (SQLite) the text it adapts one to."""
        if isinstance(value, dt.datetime):
            return value
        if not isinstance(value, str) or db.vendor == "postgresql":
            return None
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        return timezone.make_aware(parsed, db.timezone) if timezone.is_naive(parsed) else parsed

    def _bound(self, kind: str, bound: Any, now: dt.datetime, values: dict[str, int]) -> Any:
        if kind == "now":
            return now + bound
        if kind == "now_text":
            return db_connections[self.db].ops.adapt_datetimefield_value(now + bound)
        return bound if kind == "constant" else values[kind]

    def rows(self, *, now: dt.datetime, **values: int) -> list[Any]:
        params = tuple(self._bound(kind, bound, now, values) for kind, bound in self.binds)
        compiler = copy.copy(self.compiler)
        compiler.connection = db_connections[self.db]  # this thread's connection
        compiler.as_sql = lambda *args, **kwargs: (self.sql, params)
        query = copy.copy(self.query)
        query.get_compiler = lambda *args, **kwargs: compiler  # type: ignore[method-assign]
        rows: QuerySet[Any] = QuerySet(model=self.model, query=query, using=self.db)
        rows._iterable_class = self.iterable_class  # noqa: SLF001
        rows._fields = self.fields  # type: ignore[attr-defined]
        return list(rows)


_statements: dict[tuple[Any, ...], PrebuiltStatement] = {}
_statements_lock = threading.Lock()


def prebuilt_statement(key: tuple[Any, ...], build: Any) -> PrebuiltStatement:
    """The process's statement for ``key``, made from ``build()`` (a queryset) the first time."""
    statement = _statements.get(key)
    if statement is None:
        statement = PrebuiltStatement(build())
        with _statements_lock:
            _statements[key] = statement
    return statement


def prefetched(instance: Any, name: str, rows: list[Any], *, back: str) -> None:
    """Leave ``rows`` on ``instance`` as the reverse relation ``name``'s prefetch would (``instance.<name>.all()``
    answers them without a query), each row pointing ``back`` to ``instance``.

    For rows a :class:`PrebuiltStatement` read for many instances at once: the prefetch itself would build
    and compile its query on every request, and a related manager's queryset per instance.
    """
    manager = getattr(type(instance), name)
    cached: QuerySet[Any] = QuerySet(model=manager.rel.related_model)
    cached._result_cache = rows  # noqa: SLF001
    cached._prefetch_done = True  # type: ignore[attr-defined]  # noqa: SLF001
    for row in rows:
        setattr(row, back, instance)
    if not hasattr(instance, "_prefetched_objects_cache"):
        instance._prefetched_objects_cache = {}  # noqa: SLF001
    instance._prefetched_objects_cache[manager.field.remote_field.cache_name] = cached  # noqa: SLF001
