"""The lifecycle's settings as they stand now: ``rules.Tunables`` read from Django settings.

``rules.py`` holds only the table of tunables and their defaults; reading
``LIFECYCLE_<NAME>`` settings happens here, so the rules never see Django.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from django.conf import settings

from .rules import Tunables

# degraded_after counts failures; every other tunable is a number of seconds (or a share).
_SETTING_TYPES: dict[str, type] = {
    item.name: int if item.name == "degraded_after" else float for item in fields(Tunables)
}


def tunables_from(source: Any) -> Tunables:
    """The defaults, overridden by ``LIFECYCLE_<NAME>`` attributes of ``source`` (Django's settings, say)."""
    values: dict[str, Any] = {}
    for item in fields(Tunables):
        name = f"LIFECYCLE_{item.name.upper()}"
        if hasattr(source, name):
            values[item.name] = _SETTING_TYPES[item.name](getattr(source, name))
    return Tunables(**values)


def tunables() -> Tunables:
    """Read at call time, so deployments and tests can override any ``LIFECYCLE_*`` setting."""
    return tunables_from(settings)
