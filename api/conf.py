"""The integration surface's settings, each with its default (Django setting of the same name).

Only the two that differ between development and production live in
``portal/settings.py`` (``WEBHOOK_REQUIRE_HTTPS``, ``WEBHOOK_ALLOW_PRIVATE_ADDRESSES``);
the rest are read here so a deployment may override any of them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings

# Standard Webhooks' (Svix's) schedule, over about 17 hours: immediately, then 5 s,
# 5 min, 30 min, 2 h, 5 h and 10 h after each failure.
DEFAULT_RETRY_SCHEDULE_SECONDS = (0, 5, 300, 1800, 7200, 18000, 36000)


def _get(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def retry_schedule() -> tuple[float, ...]:
    """Seconds to wait before each attempt (the first is the initial delivery); its length is the attempt limit."""
    return tuple(float(s) for s in _get("WEBHOOK_RETRY_SCHEDULE_SECONDS", DEFAULT_RETRY_SCHEDULE_SECONDS))


def delivery_timeout() -> float:
    """A delivery's whole budget (connect, send, the reply's headers and the body read), in seconds."""
    return float(_get("WEBHOOK_TIMEOUT_SECONDS", 10.0))


def response_max_bytes() -> int:
    """How much of a receiver's reply is read before the connection is dropped."""
    return int(_get("WEBHOOK_RESPONSE_MAX_BYTES", 64 * 1024))


def disable_after() -> timedelta:
    """An endpoint failing every attempt for this long is disabled (and its firm admins are emailed)."""
    return timedelta(seconds=float(_get("WEBHOOK_DISABLE_AFTER_SECONDS", 5 * 24 * 3600)))


def secret_overlap() -> timedelta:
    """How long a rotated-out signing secret keeps signing alongside the new one."""
    return timedelta(seconds=float(_get("WEBHOOK_SECRET_OVERLAP_SECONDS", 24 * 3600)))


def dispatch_settle() -> timedelta:
    """How long any transaction that writes connection events may take to commit (see DispatchCursor)."""
    return timedelta(seconds=float(_get("WEBHOOK_DISPATCH_SETTLE_SECONDS", 120)))


def retention() -> timedelta:
    """How long webhook events (the feed) and their delivery logs are kept."""
    return timedelta(days=float(_get("WEBHOOK_RETENTION_DAYS", 30)))


def require_https() -> bool:
    return bool(_get("WEBHOOK_REQUIRE_HTTPS", True))


def allow_private_addresses() -> bool:
    return bool(_get("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", False))


def idempotency_ttl() -> timedelta:
    return timedelta(seconds=float(_get("API_IDEMPOTENCY_TTL_SECONDS", 24 * 3600)))


def rate_limit_per_minute() -> int:
    """Requests per key per minute; zero or less turns the limit off."""
    return int(_get("API_RATE_LIMIT_PER_MINUTE", 600))
