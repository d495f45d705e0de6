"""Limits on what people try: at most N attempts in any rolling window, per subject, across every process.

Each :class:`Limit` is a number of attempts and a window ("10 wrong
credentials in 15 minutes"); a subject is who or where the attempts come from
(a user id, a client address, a typed email address). :func:`attempts_take`
takes one attempt under one or more limits at once, all or none, *before* the
work is done, so concurrent requests can never pass a limit together; it
raises :class:`LimitReached` with the seconds until the next attempt is free.
Work that turns out not to count (a credential form that was accepted: only
failures are limited) hands its attempt back with :func:`attempts_give_back`.

The window is a true rolling one: an attempt counts for exactly
``window_seconds`` after it was taken, so no window of that length anywhere
holds more than the limit (a fixed window would allow twice the limit across
its boundary).

Where the attempts live: in Redis when ``settings.ATTEMPT_LIMIT_REDIS_URL`` is
set (``REDIS_URL`` by default), one sorted set per limit and subject, changed
by a Lua script so the check and the take are one atomic step on the server
(with the server's clock); otherwise, or when Redis fails twice in a row, in
:class:`~connections.models.AttemptWindow` rows, locked with
``SELECT ... FOR UPDATE`` in key order (SQLite's write transactions are
serial anyway). Subjects are stored as a keyed hash (``SECRET_KEY``), never in
clear. A limit of zero or less means "no limit".

The limits themselves are settings (see ``portal/settings.py``): the names in
:class:`LimitName` map to a count and a window there.
"""

from __future__ import annotations

import enum
import itertools
import logging
import math
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils.crypto import salted_hmac

from .models import AttemptWindow

logger = logging.getLogger("connections.attempts")

REDIS_KEY_PREFIX = "portal:attempts:"
# Every this many takes a process deletes the rows whose window has passed.
PRUNE_EVERY = 500


class LimitName(enum.StrEnum):
    CREDENTIAL_FAILURES_PER_ADDRESS = "credential-failures-address"
    CREDENTIAL_FAILURES_PER_USER = "credential-failures-user"
    PASSWORD_RESETS_PER_ADDRESS = "password-resets-address"  # noqa: S105 - a limit's name
    PASSWORD_RESETS_PER_EMAIL = "password-resets-email"  # noqa: S105 - a limit's name
    CHECK_NOW_PER_USER = "check-now-user"
    LINK_SENDS_PER_USER = "link-sends-user"


# name: (setting with the count, its default, setting with the window or None, the window's default in seconds)
_SETTINGS: dict[LimitName, tuple[str, int, str | None, float]] = {
    LimitName.CREDENTIAL_FAILURES_PER_ADDRESS: (
        "CREDENTIAL_FAILURES_PER_ADDRESS",
        20,
        "CREDENTIAL_FAILURE_WINDOW_SECONDS",
        900,
    ),
    LimitName.CREDENTIAL_FAILURES_PER_USER: (
        "CREDENTIAL_FAILURES_PER_USER",
        10,
        "CREDENTIAL_FAILURE_WINDOW_SECONDS",
        900,
    ),
    LimitName.PASSWORD_RESETS_PER_ADDRESS: ("PASSWORD_RESETS_PER_ADDRESS", 5, "PASSWORD_RESET_WINDOW_SECONDS", 3600),
    LimitName.PASSWORD_RESETS_PER_EMAIL: ("PASSWORD_RESETS_PER_EMAIL", 3, "PASSWORD_RESET_WINDOW_SECONDS", 3600),
    LimitName.CHECK_NOW_PER_USER: ("CHECK_NOW_PER_MINUTE", 10, None, 60),
    LimitName.LINK_SENDS_PER_USER: ("CLIENT_LINK_SENDS_PER_HOUR", 20, None, 3600),
}


@dataclass(frozen=True)
class Limit:
    """At most ``attempts`` attempts in any ``window_seconds``, per subject."""

    name: str
    attempts: int
    window_seconds: float


def limit(name: LimitName) -> Limit:
    """The limit called ``name``, as the settings have it now."""
    count_setting, count_default, window_setting, window_default = _SETTINGS[name]
    window = float(getattr(settings, window_setting, window_default)) if window_setting else window_default
    return Limit(name=str(name), attempts=int(getattr(settings, count_setting, count_default)), window_seconds=window)


class LimitReached(Exception):
    """One of the limits has no attempt left; nothing was taken. ``retry_after``: seconds until one is free."""

    def __init__(self, *, limit: Limit, retry_after: float) -> None:
        super().__init__(f"{limit.name}: {limit.attempts} attempts in {limit.window_seconds:g} s")
        self.limit = limit
        self.retry_after = retry_after


@dataclass(frozen=True)
class Taken:
    """One attempt taken under some limits: what :func:`attempts_give_back` needs to hand it back."""

    keys: tuple[str, ...]
    token: str
    in_redis: bool


def _key(limit: Limit, subject: str) -> str:
    # Keyed, so a leaked table or Redis dump does not list who tried what from where.
    return salted_hmac("connections.attempts", f"{limit.name}:{subject}", algorithm="sha256").hexdigest()


def _redis_url() -> str:
    return str(getattr(settings, "ATTEMPT_LIMIT_REDIS_URL", "") or "")


def attempts_take(*, subjects: Sequence[tuple[Limit, str]], now: float | None = None) -> Taken:
    """Take one attempt for each ``(limit, subject)``, all or none; :class:`LimitReached` if one has none left.

    ``now`` (seconds since the epoch) is for tests; otherwise Redis uses its
    own clock and the database this process's.
    """
    entries: dict[str, Limit] = {}
    for each, subject in subjects:
        if not subject:
            raise ValueError(f"An attempt under {each.name} needs a subject.")
        if each.attempts > 0:
            entries[_key(each, subject)] = each
    token = secrets.token_hex(8)
    if not entries:
        return Taken(keys=(), token=token, in_redis=False)
    url = _redis_url()
    if url:
        # One retry rides out a blip; a Redis that stays away falls back to the
        # database (whose attempts are separate: a switch can allow one more
        # limit's worth in a window, never an unlimited number).
        for attempt in (1, 2):
            try:
                wait, refused = _redis_take(url, entries, token, now)
            except Exception as exc:
                if attempt == 2:
                    logger.warning("Attempt limits: Redis unavailable (%s); using the database.", type(exc).__name__)
                continue
            if refused is not None:
                raise LimitReached(limit=refused, retry_after=wait)
            return Taken(keys=tuple(entries), token=token, in_redis=True)
    wait, refused = _db_take(entries, token, time.time() if now is None else now)
    if refused is not None:
        raise LimitReached(limit=refused, retry_after=wait)
    return Taken(keys=tuple(entries), token=token, in_redis=False)


def attempts_give_back(*, taken: Taken) -> None:
    """Hand back an attempt that turned out not to count (the work succeeded, or was never tried)."""
    if not taken.keys:
        return
    if taken.in_redis:
        try:
            client = _redis_client(_redis_url())
            prefix = _redis_prefix()
            pipe = client.pipeline()
            for key in taken.keys:
                pipe.zrem(prefix + key, taken.token)
            pipe.execute()
        except Exception as exc:  # the attempt then counts until its window passes: the safe side
            logger.warning("Attempt limits: could not hand an attempt back to Redis (%s).", type(exc).__name__)
        return
    with transaction.atomic():
        for row in AttemptWindow.objects.select_for_update().filter(key__in=sorted(taken.keys)).order_by("key"):
            hits = [hit for hit in row.hits if hit[1] != taken.token]
            if len(hits) != len(row.hits):
                row.hits = hits
                row.save(update_fields=["hits"])


def attempt_windows_prune(*, now: float | None = None) -> int:
    """Delete the rows whose every attempt has left its window. Returns how many."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
    deleted, _ = AttemptWindow.objects.filter(expires_at__lt=moment).delete()
    return deleted


# --- The database store -------------------------------------------------------------------------

_takes = itertools.count(1)


class _RowVanished(Exception):
    """A row was pruned between its insert and its lock: take again."""


def _db_take(entries: dict[str, Limit], token: str, now: float) -> tuple[float, Limit | None]:
    if next(_takes) % PRUNE_EVERY == 0:
        attempt_windows_prune(now=now)
    for _ in range(3):
        try:
            return _db_take_once(entries, token, now)
        except _RowVanished:
            continue
    return _db_take_once(entries, token, now)  # pragma: no cover - pruned three times in a row


def _db_take_once(entries: dict[str, Limit], token: str, now: float) -> tuple[float, Limit | None]:
    keys = sorted(entries)
    with transaction.atomic():
        # Insert the missing rows (in key order, like the locks below, so two
        # takes of overlapping keys never wait on each other crosswise), then
        # lock them all: the check and the take happen under the locks.
        AttemptWindow.objects.bulk_create(
            [
                AttemptWindow(key=key, name=entries[key].name, hits=[], expires_at=datetime.fromtimestamp(now, tz=UTC))
                for key in keys
            ],
            ignore_conflicts=True,
        )
        rows = {row.key: row for row in AttemptWindow.objects.select_for_update().filter(key__in=keys).order_by("key")}
        if len(rows) != len(keys):
            raise _RowVanished
        recent: dict[str, list[list[Any]]] = {}
        wait, refused = 0.0, None
        for key in keys:
            each = entries[key]
            hits = sorted((hit for hit in rows[key].hits if hit[0] > now - each.window_seconds), key=lambda h: h[0])
            recent[key] = hits
            if len(hits) >= each.attempts:
                # Free once enough of the oldest have left the window.
                free_in = max(hits[len(hits) - each.attempts][0] + each.window_seconds - now, 0.001)
                if free_in > wait:
                    wait, refused = free_in, each
        if refused is not None:
            return wait, refused
        for key in keys:
            row = rows[key]
            row.hits = [*recent[key], [now, token]]
            row.expires_at = datetime.fromtimestamp(now + entries[key].window_seconds, tz=UTC)
            row.save(update_fields=["hits", "expires_at"])
    return 0.0, None


# --- The Redis store --------------------------------------------------------------------------------

_REDIS_SCRIPT = """
-- KEYS: one sorted set of attempts per limit and subject (score: when, member: the attempt's id).
-- ARGV[1]: now, negative for the server's clock; ARGV[2]: this attempt's id;
-- then for each key in turn: its limit's attempts and window in seconds.
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local wait = 0
local refused = 0
for i, key in ipairs(KEYS) do
  local attempts = tonumber(ARGV[1 + 2 * i])
  local window = tonumber(ARGV[2 + 2 * i])
  -- %.17g: Lua's own number-to-string keeps 14 digits, 0.1 ms of an epoch time.
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.17g', now - window))
  local count = redis.call('ZCARD', key)
  if count >= attempts then
    local oldest = redis.call('ZRANGE', key, count - attempts, count - attempts, 'WITHSCORES')
    local free_in = math.max(tonumber(oldest[2]) + window - now, 0.001)
    if free_in > wait then
      wait = free_in
      refused = i
    end
  end
end
if refused > 0 then
  return {refused, string.format('%.17g', wait)}
end
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[2 + 2 * i])
  redis.call('ZADD', key, string.format('%.17g', now), ARGV[2])
  redis.call('EXPIRE', key, math.ceil(window) + 1)
end
return {0, '0'}
"""

_redis_lock = threading.Lock()
# url: (client, the registered script)
_redis_clients: dict[str, tuple[Any, Any]] = {}


def _redis_prefix() -> str:
    return str(getattr(settings, "ATTEMPT_LIMIT_REDIS_PREFIX", REDIS_KEY_PREFIX))


def _redis(url: str) -> tuple[Any, Any]:
    with _redis_lock:
        found = _redis_clients.get(url)
        if found is None:
            import redis  # imported lazily: only deployments with Redis need it at run time

            client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=0.5)
            found = _redis_clients[url] = (client, client.register_script(_REDIS_SCRIPT))
        return found


def _redis_client(url: str) -> Any:
    return _redis(url)[0]


def _redis_take(url: str, entries: dict[str, Limit], token: str, now: float | None) -> tuple[float, Limit | None]:
    script = _redis(url)[1]
    keys = list(entries)
    args: list[str] = [repr(float(now)) if now is not None else "-1", token]
    for key in keys:
        args += [str(entries[key].attempts), repr(float(entries[key].window_seconds))]
    refused, wait = script(keys=[_redis_prefix() + key for key in keys], args=args)
    index = int(refused)
    if index == 0:
        return 0.0, None
    seconds = float(wait.decode() if isinstance(wait, bytes) else wait)
    return (seconds if math.isfinite(seconds) else 1.0), entries[keys[index - 1]]
