"""Django system checks of the portal's own settings (``manage.py check``, and so ``check --deploy``)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import Error, register


@register()
def encryption_keys_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Every entry of ``TOKEN_ENCRYPTION_KEYS`` must be a Fernet key; say which position is wrong, never the value."""
    keys = [key for key in getattr(settings, "TOKEN_ENCRYPTION_KEYS", []) if key.strip()]
    if not keys:
        return [Error("TOKEN_ENCRYPTION_KEYS is empty: at least one Fernet key is required.", id="connections.E001")]
    errors = []
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.strip().encode())
        except (ValueError, TypeError):
            errors.append(
                Error(
                    f"TOKEN_ENCRYPTION_KEYS entry {position} of {len(keys)} is not a valid Fernet key "
                    "(32 url-safe base64-encoded bytes).",
                    hint='Make one with: python -c "from cryptography.fernet import Fernet; '
                    'print(Fernet.generate_key().decode())"',
                    id="connections.E002",
                )
            )
    return errors


@register()
def lifecycle_tunables_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Every ``LIFECYCLE_<NAME>`` setting names a tunable and holds a number, or the portal does not start.

    Read at call time by the lifecycle (``lifecycle.tunables_from``), a bad
    value would otherwise surface only inside the first check that reads it.
    """
    from .lifecycle import rules, tunables_from

    known = {f"LIFECYCLE_{item.name.upper()}": item for item in fields(rules.Tunables)}
    errors = []
    for name in sorted(n for n in dir(settings) if n.startswith("LIFECYCLE_")):
        if name not in known:
            errors.append(
                Error(
                    f"{name} is not a lifecycle tunable.",
                    hint="The tunables are: " + ", ".join(sorted(known)),
                    id="connections.E003",
                )
            )
            continue
        try:
            tunables_from(type("Only", (), {name: getattr(settings, name)}))
        except (TypeError, ValueError):
            errors.append(Error(f"{name} must be a number.", id="connections.E004"))
    return errors
