"""The one provider seam of the test suites: the registry that ``lifecycle.clients`` builds clients from.

Every client the portal uses is built by ``connections.lifecycle.clients.client_for_app``
from ``providers.registry`` at that moment, so putting a class into the
registry reaches every caller: web views, services, checks, jobs and forms
alike. Suites pass a function from the real client class to the class to use
(usually a subclass, so ``flow``, ``platforms`` and the credential forms stay
the real ones).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from connections import lifecycle
from connections.providers import registry
from connections.providers.base import ProviderClient


def provider_clients_replace(
    monkeypatch: pytest.MonkeyPatch, replacement: Callable[[type[ProviderClient]], type[ProviderClient]]
) -> None:
    """Build every provider's clients from ``replacement(real client class)`` for the rest of the test."""
    for key, cls in list(registry.PROVIDERS.items()):
        monkeypatch.setitem(registry.PROVIDERS, key, replacement(cls))
    # This thread's cache is keyed by class too; forgetting it also drops app-token memos of earlier tests.
    lifecycle.clients_forget()
