"""An explicit map from provider key to client class: no import-order magic."""

from __future__ import annotations

from .base import ProviderClient

PROVIDERS: dict[str, type[ProviderClient]] = {}


def client_class(key: str) -> type[ProviderClient]:
    """The client class for a provider key; ``KeyError`` names an unknown one."""
    try:
        return PROVIDERS[key]
    except KeyError:
        raise KeyError(f"Unknown provider {key!r}; known: {', '.join(sorted(PROVIDERS))}") from None
