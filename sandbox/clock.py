"""The sandbox's clock: one indirection so tests can move time forward.

Every expiry decision in the sandbox calls :func:`now` through this module
(``clock.now()``), so a test can monkeypatch ``sandbox.clock.now``.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def now() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return timezone.now()
