"""What belongs to no single provider: token lifetimes, fault rules, the request log, reset.

Each is kept per mount but works the same for every one, so none goes
through a provider's module except reset, which asks the registry for each
simulator's tables.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import models, transaction

from .. import clock, state
from ..models import App, Fault, Lifetime, Provider, RequestLog, SandboxState, Token
from . import SIMULATORS
from .common import MAX_INTEGER, SandboxError, check_columns, read_mount, read_text

# --- Lifetimes ----------------------------------------------------------------


def lifetimes_get() -> dict[str, dict[str, int]]:
    return state.snapshot().lifetimes


def lifetimes_set(data: dict[str, Any]) -> dict[str, int]:
    """Set some token lifetimes (seconds) of one provider mount; returns that provider's lifetimes."""
    provider = read_mount(data.get("provider"), tuple(Provider.values))
    kinds = SIMULATORS[provider].LIFETIMES
    changes = {k: v for k, v in data.items() if k != "provider"}
    if not changes:
        raise SandboxError(f"Give at least one of: {', '.join(kinds)}.")
    for kind, seconds in changes.items():
        if kind not in kinds:
            raise SandboxError(f"Lifetimes for {provider} are: {', '.join(kinds)}.")
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0:
            raise SandboxError(f"{kind} must be a whole number of seconds, 0 or more.")
        if seconds > MAX_INTEGER:
            raise SandboxError(f"{kind} must be at most {MAX_INTEGER} seconds.")
    with transaction.atomic():
        for kind, seconds in changes.items():
            Lifetime.objects.update_or_create(provider=provider, kind=kind, defaults={"seconds": seconds})
        state.bump()
    return dict(state.snapshot().lifetimes[provider])


# --- Faults -------------------------------------------------------------------

FAULT_DEFAULT_PROCESS: dict[str, bool] = {
    Fault.Kind.STATUS: False,
    Fault.Kind.LATENCY: True,
    Fault.Kind.TIMEOUT: False,
    Fault.Kind.TRUNCATED_JSON: True,
    Fault.Kind.HTML: True,
    Fault.Kind.MISSING_FIELD: True,
    # The real reply, sent slowly: it took effect, as a reply lost on a slow line would have.
    Fault.Kind.TRICKLE: True,
}


def _number(data: dict[str, Any], name: str, *, minimum: float = 0, integer: bool = True) -> Any:
    value = data.get(name)
    if value is None:
        return None
    allowed = (int,) if integer else (int, float)
    if not isinstance(value, allowed) or isinstance(value, bool) or value < minimum:
        raise SandboxError(f"{name} must be a {'whole ' if integer else ''}number of at least {minimum:g}.")
    if value > MAX_INTEGER:
        raise SandboxError(f"{name} must be at most {MAX_INTEGER}.")
    return value


def fault_create(data: dict[str, Any]) -> dict[str, Any]:
    """Add a fault rule; see :mod:`sandbox.faults` for what each kind does."""
    provider = read_mount(data.get("provider"), tuple(Provider.values))
    kind = data.get("kind")
    if kind not in Fault.Kind.values:
        raise SandboxError(f"kind must be one of: {', '.join(Fault.Kind.values)}.")
    status = _number(data, "status", minimum=100)
    if status is not None and status > 599:
        raise SandboxError("status must be an HTTP status code.")
    latency_ms = _number(data, "latency_ms")
    hang_seconds = _number(data, "hang_seconds", integer=False)
    if kind == Fault.Kind.LATENCY and latency_ms is None:
        raise SandboxError("A latency fault needs latency_ms.")
    if kind == Fault.Kind.TIMEOUT and hang_seconds is None:
        raise SandboxError("A timeout fault needs hang_seconds.")
    interval = _number(data, "interval", minimum=0.001, integer=False)
    if kind == Fault.Kind.TRICKLE and interval is None:
        raise SandboxError("A trickle fault needs interval (seconds between bytes).")
    count = _number(data, "count", minimum=1)
    seconds = _number(data, "seconds", minimum=0, integer=False)
    process = data.get("process", FAULT_DEFAULT_PROCESS[kind])
    if not isinstance(process, bool):
        raise SandboxError("process must be true or false.")
    path = read_text(data, "path")
    if path and not path.startswith("/"):
        raise SandboxError("path must start with / (the path beneath the provider, e.g. /auth).")
    method = read_text(data, "method").upper()
    grant_type, field = read_text(data, "grant_type"), read_text(data, "field")
    check_columns(Fault, path_prefix=path, method=method, grant_type=grant_type, field=field)
    with transaction.atomic():
        fault = Fault.objects.create(
            provider=provider,
            path_prefix=path,
            method=method,
            grant_type=grant_type,
            kind=kind,
            status=status,
            retry_after=_number(data, "retry_after"),
            latency_ms=latency_ms,
            hang_seconds=hang_seconds,
            interval_seconds=interval,
            field=field,
            process=process,
            remaining=count,
            expires_at=clock.now() + timedelta(seconds=seconds) if seconds is not None else None,
        )
        state.bump()
    return fault_dict(fault)


def fault_dict(fault: Fault) -> dict[str, Any]:
    at = clock.now()
    return {
        "id": fault.id,
        "provider": fault.provider,
        "path": fault.path_prefix,
        "method": fault.method,
        "grant_type": fault.grant_type,
        "kind": fault.kind,
        "status": fault.status,
        "retry_after": fault.retry_after,
        "latency_ms": fault.latency_ms,
        "hang_seconds": fault.hang_seconds,
        "interval": fault.interval_seconds,
        "field": fault.field,
        "process": fault.process,
        "remaining": fault.remaining,
        "expires_at": fault.expires_at.isoformat() if fault.expires_at else None,
        "active": (fault.remaining is None or fault.remaining > 0)
        and (fault.expires_at is None or fault.expires_at > at),
    }


def fault_list() -> list[dict[str, Any]]:
    return [fault_dict(f) for f in Fault.objects.order_by("id")]


def fault_delete(*, fault_id: int | None = None) -> int:
    """Delete one fault rule, or all of them; returns how many."""
    with transaction.atomic():
        rows = Fault.objects.all() if fault_id is None else Fault.objects.filter(pk=fault_id)
        deleted, _ = rows.delete()
        state.bump()
    return deleted


# --- Request log --------------------------------------------------------------


def request_log_list(
    *,
    provider: str = "",
    path: str = "",
    since: datetime | None = None,
    after: int | None = None,
    method: str = "",
    grant_type: str = "",
) -> list[dict[str, Any]]:
    """Logged requests, oldest first, filtered (path is a prefix, since an aware datetime)."""
    rows = RequestLog.objects.order_by("id")
    if provider:
        rows = rows.filter(provider=provider)
    if path:
        rows = rows.filter(path__startswith=path)
    if since is not None:
        rows = rows.filter(at__gte=since)
    if after is not None:
        rows = rows.filter(id__gt=after)
    if method:
        rows = rows.filter(method=method.upper())
    if grant_type:
        rows = rows.filter(grant_type=grant_type)
    return [
        {
            "id": r.id,
            "provider": r.provider,
            "method": r.method,
            "path": r.path,
            "status": r.status,
            "grant_type": r.grant_type,
            "fault": r.fault,
            "at": r.at.isoformat(),
        }
        for r in rows
    ]


def request_log_clear() -> int:
    deleted, _ = RequestLog.objects.all().delete()
    return deleted


# --- Reset --------------------------------------------------------------------


def sandbox_reset(*, keep_apps: bool = False) -> None:
    """Everything back to empty (registered apps too, unless ``keep_apps``); lifetimes to defaults."""
    # Bloquo's two mounts share one module, hence one set of tables: each once.
    provider_models = dict.fromkeys(model for simulator in SIMULATORS.values() for model in simulator.MODELS)
    tables: list[type[models.Model]] = [Token, *provider_models, Fault, Lifetime, RequestLog]
    with transaction.atomic():
        for model in tables:
            model._default_manager.all().delete()
        if not keep_apps:
            App.objects.all().delete()
        SandboxState.objects.all().delete()
        state.bump()
