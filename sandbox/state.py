"""Per-process cache of the sandbox's settings: fault rules and token lifetimes.

Every provider request needs both. Reading them costs one primary-key read of
:class:`~sandbox.models.SandboxState`: the cached snapshot is reused while its
version matches, and reloaded (two small queries) after any control change,
which calls :func:`bump`. So a fault set through one process (or the control
API of a separate sandbox server) takes effect in every process on its next
request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection
from django.db.models import Q

from .models import Fault, Lifetime, SandboxState


def default_lifetimes() -> dict[str, dict[str, int]]:
    """Token lifetimes in seconds per mount and kind, as each simulator declares them (``LIFETIMES``)."""
    # Imported here: the simulators read their lifetimes through this module.
    from .services import SIMULATORS

    return {mount: dict(simulator.LIFETIMES) for mount, simulator in SIMULATORS.items()}


_UNSET = "<unset>"


@dataclass(frozen=True)
class FaultRule:
    """A fault rule as evaluated per request (an immutable copy of the row)."""

    id: int
    provider: str
    path_prefix: str
    method: str
    grant_type: str
    kind: str
    status: int | None
    retry_after: int | None
    latency_ms: int | None
    hang_seconds: float | None
    interval_seconds: float | None
    field: str
    process: bool
    counted: bool
    expires_at: datetime | None

    def matches(self, *, provider: str, path: str, method: str, grant_type: str, at: datetime) -> bool:
        return (
            self.provider == provider
            and path.startswith(self.path_prefix)
            and (not self.method or self.method == method)
            and (not self.grant_type or self.grant_type == grant_type)
            and (self.expires_at is None or self.expires_at > at)
        )


@dataclass(frozen=True)
class Snapshot:
    version: str
    faults: tuple[FaultRule, ...] = ()
    # Every mount's, defaults included (the snapshot before the first load has none).
    lifetimes: dict[str, dict[str, int]] = field(default_factory=dict)

    def lifetime(self, provider: str, kind: str) -> int:
        return self.lifetimes[provider][kind]

    def faults_for(self, provider: str) -> bool:
        return any(rule.provider == provider for rule in self.faults)


_snapshot = Snapshot(version=_UNSET)
_VERSION_SQL = f"SELECT version FROM {SandboxState._meta.db_table} WHERE id = 1"  # noqa: S608 (a constant table name)


def _load(version: str) -> Snapshot:
    lifetimes = default_lifetimes()
    for provider, kind, seconds in Lifetime.objects.values_list("provider", "kind", "seconds"):
        lifetimes.setdefault(provider, {})[kind] = seconds
    rules = tuple(
        FaultRule(
            id=f.id,
            provider=f.provider,
            path_prefix=f.path_prefix,
            method=f.method,
            grant_type=f.grant_type,
            kind=f.kind,
            status=f.status,
            retry_after=f.retry_after,
            latency_ms=f.latency_ms,
            hang_seconds=f.hang_seconds,
            interval_seconds=f.interval_seconds,
            field=f.field,
            process=f.process,
            counted=f.remaining is not None,
            expires_at=f.expires_at,
        )
        for f in Fault.objects.filter(Q(remaining__isnull=True) | Q(remaining__gt=0)).order_by("id")
    )
    return Snapshot(version=version, faults=rules, lifetimes=lifetimes)


def snapshot() -> Snapshot:
    """The current faults and lifetimes: cached, revalidated with one small read."""
    global _snapshot
    # A raw query: this runs on every simulated request, and the ORM's
    # overhead would cost more than the lookup itself.
    with connection.cursor() as cursor:
        cursor.execute(_VERSION_SQL)
        row = cursor.fetchone()
    version = row[0] if row else ""
    current = _snapshot
    if current.version != version:
        # Assigning a new immutable snapshot is atomic; racing threads at worst
        # both load the same data.
        current = _snapshot = _load(version)
    return current


def bump() -> None:
    """Tell every process that faults or lifetimes changed."""
    version = uuid.uuid4().hex
    if not SandboxState.objects.filter(pk=1).update(version=version):
        SandboxState.objects.update_or_create(pk=1, defaults={"version": version})
