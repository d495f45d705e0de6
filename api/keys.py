"""Firm API keys: made, looked up, revoked and rate limited. Keyword-only, ``<noun>_<verb>`` names.

A key reads ``cpk_<prefix>_<secret>``: the prefix (10 lowercase letters and
digits) is public and indexed, so a request costs one lookup; the secret is
256 random bits. Only the SHA-256 of the whole key is stored and compared in
constant time; the key itself exists once, in the reply to whoever made it.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from connections.models import Firm

from . import conf
from .models import ApiKey

KEY_PREFIX = "cpk_"
PREFIX_LENGTH = 10
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
RATE_WINDOW = timedelta(minutes=1)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKeyCreated:
    """A new key's row, and the key itself: shown once, never stored."""

    api_key: ApiKey
    key: str

    def __repr__(self) -> str:  # the key is a secret
        return f"ApiKeyCreated(api_key={self.api_key.pk}, prefix={self.api_key.prefix!r})"


def api_key_fill(api_key: ApiKey) -> str:
    """Give an unsaved key row its prefix and hash; returns the key itself (the only copy)."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    api_key.prefix, api_key.key_hash = prefix, _hash(key)
    return key


def api_key_create(*, firm: Firm, name: str, scope: str = ApiKey.Scope.READ, user: Any = None) -> ApiKeyCreated:
    """A new key for ``firm`` with ``scope`` (``read`` or ``write``). Raises ``ValueError`` for a bad scope or name."""
    if scope not in ApiKey.Scope.values:
        raise ValueError(f"scope must be one of {', '.join(ApiKey.Scope.values)}")
    name = name.strip()
    if not name:
        raise ValueError("a key needs a name that says what it is for")
    created_by = user if user is not None and getattr(user, "is_authenticated", False) else None
    row = ApiKey(firm=firm, name=name[:100], scope=scope, created_by=created_by)
    key = api_key_fill(row)
    row.save()
    return ApiKeyCreated(api_key=row, key=key)


def api_key_revoke(*, api_key: ApiKey, user: Any = None) -> bool:
    """Revoke the key from now on, once (the row is locked first). True when this call revoked it.

    A model save rather than an UPDATE, so the audit trail hears of it the way
    it hears of every other change to a key (``post_save``, names of fields only).
    """
    revoked_by = user if user is not None and getattr(user, "is_authenticated", False) else None
    now = timezone.now()
    with transaction.atomic():
        row = ApiKey.objects.select_for_update().filter(pk=api_key.pk, revoked_at__isnull=True).first()
        if row is None:
            return False
        row.revoked_at, row.revoked_by = now, revoked_by
        row.save(update_fields=["revoked_at", "revoked_by"])
    api_key.revoked_at, api_key.revoked_by = now, revoked_by
    return True


def api_key_authenticate(*, key: str) -> ApiKey | None:
    """The active key ``key`` is; ``None`` for anything else (malformed, unknown, revoked). One indexed lookup."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    prefix = key[len(KEY_PREFIX) : len(KEY_PREFIX) + PREFIX_LENGTH]
    if (
        len(prefix) != PREFIX_LENGTH
        or key[len(KEY_PREFIX) + PREFIX_LENGTH : len(KEY_PREFIX) + PREFIX_LENGTH + 1] != "_"
    ):
        return None
    row = ApiKey.objects.filter(prefix=prefix).first()
    # Compared even for an unknown prefix, so timing says nothing about which prefixes exist.
    stored = row.key_hash if row is not None else "0" * 64
    if not hmac.compare_digest(stored, _hash(key)) or row is None or row.revoked_at is not None:
        return None
    return row


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after: int = 0  # whole seconds, for the Retry-After header


def api_key_rate_take(*, api_key: ApiKey, now: datetime | None = None) -> RateDecision:
    """Count one request against the key's limit (``API_RATE_LIMIT_PER_MINUTE``) and stamp ``last_used_at``.

    A fixed one-minute window kept on the key's row, so every web process
    counts against one limit: the usual request is one conditional UPDATE
    (in the window and under the limit); a request after the window opens a
    new one; otherwise it is refused with the seconds until the window ends.
    Two requests opening a window at the same instant may both start it at 1;
    the limit is a guard against runaway clients, and one request in a
    minute's allowance is not worth a lock.
    """
    now = now or timezone.now()
    limit = conf.rate_limit_per_minute()
    keys = ApiKey.objects.filter(pk=api_key.pk)
    if limit <= 0:
        keys.update(last_used_at=now)
        return RateDecision(allowed=True)
    in_window = Q(rate_window_start__gt=now - RATE_WINDOW, rate_count__lt=limit)
    if keys.filter(in_window).update(rate_count=F("rate_count") + 1, last_used_at=now):
        return RateDecision(allowed=True)
    window_over = Q(rate_window_start__isnull=True) | Q(rate_window_start__lte=now - RATE_WINDOW)
    if keys.filter(window_over).update(rate_window_start=now, rate_count=1, last_used_at=now):
        return RateDecision(allowed=True)
    started = ApiKey.objects.filter(pk=api_key.pk).values_list("rate_window_start", flat=True).first() or now
    wait = (started + RATE_WINDOW - now).total_seconds()
    return RateDecision(allowed=False, retry_after=max(1, math.ceil(wait)))
