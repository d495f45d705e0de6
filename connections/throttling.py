"""Protecting providers from the portal: a circuit breaker and a shared rate limit.

Both work per :class:`~connections.models.ProviderApp` and across every worker
process, because their state lives in the database (or Redis for the rate
limit), never in one process's memory.

Circuit breaker
---------------
Counts *transient* failures of an app's calls across all its connections in a
fixed window (``BREAKER_FAILURE_THRESHOLD`` failures within
``BREAKER_WINDOW_SECONDS``, default 20 in 60 s). When the count is reached the
breaker opens: checks for that app are deferred without any outbound call.
After ``BREAKER_COOLDOWN_SECONDS`` (default 120 s) it is half-open and lets
exactly one check through, claimed with a conditional UPDATE so two workers
can never both be "the" probe. The probe's success closes the breaker; a
transient failure re-opens it for another cool-down. The breaker never changes
a connection's status: the lifecycle only reschedules a deferred check.

Rate limit
----------
A token bucket per app, shaped so that no second ever carries more calls than
``ProviderApp.rate_limit_per_second`` (see :func:`bucket_shape`): a small burst
(5% of the limit, at least one token) and a refill of the rest, with 100 ms of
headroom for the jitter between taking a token and the provider receiving the call. A
bucket holding a full second's worth would allow the burst *plus* a second of
refill in the same second: up to twice the limit. One token is taken before
each outbound operation (renew, probe, revoke). The bucket lives in Redis when
``settings.RATE_LIMIT_REDIS_URL`` is set (a Lua script, atomic on the server,
using the server's clock so workers' clocks do not matter), otherwise in the
ProviderApp row itself (``rate_tokens``/``rate_updated_at``), taken with one
conditional UPDATE that refills and spends in the same statement. If Redis
fails twice in a row, the database bucket is used instead, so a Redis outage
slows nothing down and never lifts the limit (a switch between the two buckets
can allow at most one extra burst). A rate of zero or less means "no limit".

:func:`rate_limit_acquire` waits briefly (up to ``RATE_LIMIT_MAX_WAIT_SECONDS``,
default 1 s) for a token; beyond that it returns how long the caller would
have to wait, and the caller defers its work instead of exceeding the rate.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection as db_connection
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from .models import ProviderApp

logger = logging.getLogger("connections.throttling")

DEFAULT_BREAKER_FAILURE_THRESHOLD = 20
DEFAULT_BREAKER_WINDOW_SECONDS = 60.0
DEFAULT_BREAKER_COOLDOWN_SECONDS = 120.0
DEFAULT_RATE_LIMIT_MAX_WAIT_SECONDS = 1.0
REDIS_KEY_PREFIX = "portal:ratelimit:providerapp:"


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


# --- Circuit breaker ------------------------------------------------------------


@dataclass(frozen=True)
class Permit:
    """Permission to call the provider. ``probe`` is true for the single half-open trial call."""

    probe: bool = False
    claimed_at: datetime | None = None


@dataclass(frozen=True)
class Deferral:
    """No call now: try again at ``until``. ``reason`` is plain words for logs and results."""

    until: datetime
    reason: str


def _cooldown() -> timedelta:
    return timedelta(seconds=float(_setting("BREAKER_COOLDOWN_SECONDS", DEFAULT_BREAKER_COOLDOWN_SECONDS)))


def breaker_permit(*, app: ProviderApp, now: datetime | None = None) -> Permit | Deferral:
    """May a check of ``app`` call the provider now?

    Reads the breaker fields of the already loaded ``app`` row (no query while
    the breaker is closed, which is the hot path). Open and cooled down, or
    half-open with a probe that never reported back: claims the single probe
    with a conditional UPDATE; whoever loses the claim is deferred.
    """
    now = now or timezone.now()
    state = app.breaker_state
    if state == ProviderApp.BreakerState.CLOSED:
        return Permit()
    cooldown = _cooldown()
    opened_at = app.breaker_opened_at or now
    if opened_at + cooldown > now:
        # Spread the deferred checks over the next cool-down so the close does
        # not release them all in the same second.
        until = opened_at + cooldown + timedelta(seconds=random.uniform(0, cooldown.total_seconds()))
        what = "open" if state == ProviderApp.BreakerState.OPEN else "half-open (a trial call is in flight)"
        return Deferral(until=until, reason=f"circuit breaker {what}")
    # Cooled down. A half-open claim older than a cool-down belongs to a probe
    # that died without reporting; it may be claimed again.
    claimed = ProviderApp.objects.filter(
        pk=app.pk,
        breaker_state__in=[ProviderApp.BreakerState.OPEN, ProviderApp.BreakerState.HALF_OPEN],
        breaker_opened_at__lte=now - cooldown,
    ).update(breaker_state=ProviderApp.BreakerState.HALF_OPEN, breaker_opened_at=now)
    if claimed:
        app.breaker_state = ProviderApp.BreakerState.HALF_OPEN
        app.breaker_opened_at = now
        logger.info("Circuit breaker of provider app %s is half-open: one trial call goes through.", app.pk)
        return Permit(probe=True, claimed_at=now)
    until = now + timedelta(seconds=random.uniform(cooldown.total_seconds() / 2, cooldown.total_seconds()))
    return Deferral(until=until, reason="circuit breaker half-open (another worker holds the trial call)")


def breaker_record_success(*, app: ProviderApp, permit: Permit | None, now: datetime | None = None) -> None:
    """The provider answered. A half-open probe's success closes the breaker; otherwise nothing (no query)."""
    if permit is None or not permit.probe:
        return
    closed = ProviderApp.objects.filter(
        pk=app.pk, breaker_state=ProviderApp.BreakerState.HALF_OPEN, breaker_opened_at=permit.claimed_at
    ).update(
        breaker_state=ProviderApp.BreakerState.CLOSED,
        breaker_failures=0,
        breaker_window_started_at=None,
        breaker_opened_at=None,
    )
    if closed:
        app.breaker_state = ProviderApp.BreakerState.CLOSED
        logger.info("Circuit breaker of provider app %s closed: the trial call succeeded.", app.pk)


def breaker_record_failure(*, app: ProviderApp, permit: Permit | None, now: datetime | None = None) -> bool:
    """A transient failure. Returns True when this failure opened (or re-opened) the breaker.

    Counting is one UPDATE: a failure outside the current window starts a new
    window at 1, otherwise it adds 1 (both CASEs read the row's old values).
    A second conditional UPDATE opens the breaker when the count is reached;
    only the worker whose UPDATE flips it sees True.
    """
    now = now or timezone.now()
    if permit is not None and permit.probe:
        reopened = ProviderApp.objects.filter(
            pk=app.pk, breaker_state=ProviderApp.BreakerState.HALF_OPEN, breaker_opened_at=permit.claimed_at
        ).update(breaker_state=ProviderApp.BreakerState.OPEN, breaker_opened_at=now)
        if reopened:
            logger.warning("Circuit breaker of provider app %s re-opened: the trial call failed.", app.pk)
        return bool(reopened)
    window = timedelta(seconds=float(_setting("BREAKER_WINDOW_SECONDS", DEFAULT_BREAKER_WINDOW_SECONDS)))
    threshold = int(_setting("BREAKER_FAILURE_THRESHOLD", DEFAULT_BREAKER_FAILURE_THRESHOLD))
    new_window = Q(breaker_window_started_at__isnull=True) | Q(breaker_window_started_at__lt=now - window)
    ProviderApp.objects.filter(pk=app.pk).update(
        breaker_failures=Case(When(new_window, then=Value(1)), default=F("breaker_failures") + 1),
        breaker_window_started_at=Case(When(new_window, then=Value(now)), default=F("breaker_window_started_at")),
    )
    opened = ProviderApp.objects.filter(
        pk=app.pk, breaker_state=ProviderApp.BreakerState.CLOSED, breaker_failures__gte=threshold
    ).update(
        breaker_state=ProviderApp.BreakerState.OPEN,
        breaker_opened_at=now,
        last_error=f"Circuit breaker opened after {threshold} temporary failures within {window.total_seconds():g} s.",
        last_error_at=now,
    )
    if opened:
        logger.warning(
            "Circuit breaker of provider app %s opened after %s transient failures within %ss.",
            app.pk,
            threshold,
            window.total_seconds(),
        )
    return bool(opened)


def breaker_release(*, app: ProviderApp, permit: Permit | None) -> None:
    """A probe permit that was never used (the check deferred itself): let another worker claim it now."""
    if permit is None or not permit.probe:
        return
    claimed_at = permit.claimed_at or timezone.now()
    ProviderApp.objects.filter(
        pk=app.pk, breaker_state=ProviderApp.BreakerState.HALF_OPEN, breaker_opened_at=permit.claimed_at
    ).update(breaker_state=ProviderApp.BreakerState.OPEN, breaker_opened_at=claimed_at - _cooldown())


# --- Rate limit -------------------------------------------------------------------

# The burst, as a share of the per-second limit (at least one token).
RATE_LIMIT_BURST_FRACTION = 0.05
# Seconds of jitter between taking a token and the provider receiving the call
# (thread scheduling, connection pool, network). A provider counting calls per
# second of its own clock sees the calls of a window up to this much longer.
RATE_LIMIT_JITTER_SECONDS = 0.1


def bucket_shape(limit: float) -> tuple[float, float]:
    """``(refill per second, capacity)`` of the bucket for a limit of ``limit`` calls a second.

    In any window of ``1 + RATE_LIMIT_JITTER_SECONDS`` seconds the bucket grants
    at most ``capacity + refill * (1 + jitter)`` tokens, which this makes equal
    to ``limit``: 100/s gives a burst of 5 and a refill of 86.4/s. Below two
    calls a second the one-token burst cannot fit inside the limit; there the
    refill is the limit itself, so a window may hold one call more than the
    limit, never a higher sustained rate.
    """
    capacity = max(1.0, math.floor(limit * RATE_LIMIT_BURST_FRACTION))
    if limit < 2:
        return limit, 1.0
    return (limit - capacity) / (1 + RATE_LIMIT_JITTER_SECONDS), capacity


def _db_try_acquire(app_id: int, now: datetime, limit: float) -> float:
    """One conditional UPDATE that refills and spends a token; 0.0 if taken, else seconds to wait."""
    table = ProviderApp._meta.db_table
    vendor = db_connection.vendor
    refill, capacity = bucket_shape(limit)
    params: dict[str, Any] = {"id": app_id, "refill": refill, "capacity": capacity}
    if vendor == "postgresql":
        elapsed = "GREATEST(0, EXTRACT(EPOCH FROM (%(now)s - COALESCE(rate_updated_at, %(now)s)))::float8)"
        refilled = f"LEAST(%(capacity)s, rate_tokens + {elapsed} * %(refill)s)"
        newest = "GREATEST(COALESCE(rate_updated_at, %(now)s), %(now)s)"
        params["now"] = now
    elif vendor == "sqlite":
        elapsed = "MAX(0, (julianday(%(now)s) - julianday(COALESCE(rate_updated_at, %(now)s))) * 86400.0)"
        refilled = f"MIN(%(capacity)s, rate_tokens + {elapsed} * %(refill)s)"
        newest = "MAX(COALESCE(rate_updated_at, %(now)s), %(now)s)"
        # SQLite stores datetimes as naive UTC text; compare like with like.
        params["now"] = db_connection.ops.adapt_datetimefield_value(now)
    else:  # pragma: no cover - the project runs on PostgreSQL or SQLite only
        raise NotImplementedError(f"No database rate limiter for {vendor}")
    # The WHERE re-evaluates the refill under the row lock (PostgreSQL re-checks
    # it after waiting for a concurrent writer; SQLite has one writer), so two
    # workers can never both spend the last token.
    sql = (
        f"UPDATE {table} SET rate_tokens = {refilled} - 1, rate_updated_at = {newest} "  # noqa: S608 - no user input
        f"WHERE id = %(id)s AND {refilled} >= 1"
    )
    with db_connection.cursor() as cursor:
        cursor.execute(sql, params)
        if cursor.rowcount == 1:
            return 0.0
    row = ProviderApp.objects.filter(pk=app_id).values_list("rate_tokens", "rate_updated_at")
    found = row.first()
    if found is None:
        return 0.0
    tokens, updated_at = found
    elapsed_s = max(0.0, (now - updated_at).total_seconds()) if updated_at else 0.0
    available = min(capacity, tokens + elapsed_s * refill)
    return max((1.0 - available) / refill, 0.001)


_REDIS_SCRIPT = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local data = redis.call('HMGET', key, 'tokens', 'ts')
local tokens = tonumber(data[1])
local ts = tonumber(data[2])
if tokens == nil or ts == nil then
  tokens = cap
  ts = now
end
if now > ts then
  tokens = math.min(cap, tokens + (now - ts) * rate)
  ts = now
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
-- %.17g round-trips a double exactly; tostring's 14 digits would round the
-- timestamp to 0.1 ms and hand out a sliver of extra tokens on every call.
redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', ts))
redis.call('EXPIRE', key, math.ceil(cap / rate) + 60)
return string.format('%.17g', wait)
"""

_redis_lock = threading.Lock()
_redis_clients: dict[str, Any] = {}


def _redis_script(url: str) -> Any:
    with _redis_lock:
        script = _redis_clients.get(url)
        if script is None:
            import redis  # imported lazily: only deployments with Redis need it at run time

            client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=0.5)
            script = client.register_script(_REDIS_SCRIPT)
            _redis_clients[url] = script
        return script


def _redis_try_acquire(url: str, app_id: int, limit: float, now: datetime | None) -> float:
    script = _redis_script(url)
    prefix = str(_setting("RATE_LIMIT_REDIS_PREFIX", REDIS_KEY_PREFIX))
    stamp = now.timestamp() if now is not None else -1
    refill, capacity = bucket_shape(limit)
    result = script(keys=[f"{prefix}{app_id}"], args=[repr(float(refill)), repr(float(capacity)), repr(stamp)])
    wait = float(result.decode() if isinstance(result, bytes) else result)
    return max(wait, 0.001) if wait > 0 else 0.0


def rate_limit_try_acquire(*, app: ProviderApp, now: datetime | None = None) -> float:
    """Take one token for ``app`` without waiting: 0.0 when taken, else the seconds until one is free.

    ``now`` is for tests; in production the database uses the caller's clock
    and Redis its own server clock.
    """
    rate = float(app.rate_limit_per_second or 0)
    if rate <= 0:
        return 0.0
    url = str(_setting("RATE_LIMIT_REDIS_URL", "") or "")
    if url:
        # One retry rides out a blip; a Redis that stays away falls back to
        # the database bucket (separate tokens, so a switch can briefly allow
        # up to one extra burst, never an unlimited rate).
        for attempt in (1, 2):
            try:
                return _redis_try_acquire(url, app.pk, rate, now)
            except Exception as exc:
                if attempt == 2:
                    logger.warning("Rate limit: Redis unavailable (%s); using the database bucket.", type(exc).__name__)
    return _db_try_acquire(app.pk, now or timezone.now(), rate)


def rate_limit_acquire(*, app: ProviderApp, max_wait: float | None = None) -> float:
    """Take one token for ``app``, waiting up to ``max_wait`` seconds for it.

    Returns 0.0 once a token is taken. Returns the (positive) number of seconds
    the caller would still have to wait when that exceeds ``max_wait``: the
    caller then defers its work and makes no call.
    """
    budget = float(_setting("RATE_LIMIT_MAX_WAIT_SECONDS", DEFAULT_RATE_LIMIT_MAX_WAIT_SECONDS))
    if max_wait is not None:
        budget = max_wait
    waited = 0.0
    while True:
        wait = rate_limit_try_acquire(app=app)
        if wait <= 0:
            return 0.0
        if waited + wait > budget:
            return wait
        # A little jitter so the waiting workers do not retry in lockstep.
        pause = wait * random.uniform(1.0, 1.2)
        time.sleep(pause)
        waited += pause
