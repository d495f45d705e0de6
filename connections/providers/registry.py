"""An explicit map from provider key to client class: no import-order magic.

The keys are the values of ``connections.models.Provider``.
"""

from __future__ import annotations

from .base import ProviderClient
from .bloquo import BloquoClient
from .coinify import CoinifyClient
from .dapi import DapiClient
from .turnqey import TurnqeyClient

PROVIDERS: dict[str, type[ProviderClient]] = {
    TurnqeyClient.key: TurnqeyClient,
    CoinifyClient.key: CoinifyClient,
    BloquoClient.key: BloquoClient,
    DapiClient.key: DapiClient,
}

# What pages, messages and events call each provider (connections.wording.provider_name).
PROVIDER_NAMES: dict[str, str] = {key: client.display_name for key, client in PROVIDERS.items()}


def client_class(key: str) -> type[ProviderClient]:
    """The client class for a provider key; ``KeyError`` names an unknown one."""
    try:
        return PROVIDERS[key]
    except KeyError:
        raise KeyError(f"Unknown provider {key!r}; known: {', '.join(sorted(PROVIDERS))}") from None
