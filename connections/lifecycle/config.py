"""The lifecycle's settings as they stand now (``rules.Tunables`` from Django settings)."""

from __future__ import annotations

from django.conf import settings

from .rules import Tunables


def tunables() -> Tunables:
    """Read at call time, so deployments and tests can override any ``LIFECYCLE_*`` setting."""
    return Tunables.from_settings(settings)
