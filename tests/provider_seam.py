"""The provider seam of the web and security suites: ``lifecycle.client_for_app``.

Both suites swap it for subclasses of the real provider clients (so ``flow``,
``platforms`` and the credential forms stay the real ones) whose network calls
are fakes of their own kind; this installs such subclasses.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from connections import lifecycle
from connections import models as m
from connections.providers import registry
from connections.providers.base import ProviderClient


def provider_clients_replace(
    monkeypatch: pytest.MonkeyPatch, subclass: Callable[[type[ProviderClient]], type[ProviderClient]]
) -> None:
    """Make ``lifecycle.client_for_app`` build ``subclass(real client class)`` for every provider."""
    classes = {key: subclass(cls) for key, cls in registry.PROVIDERS.items()}

    def client_for_app(*, app: m.ProviderApp) -> ProviderClient:
        return classes[app.provider](lifecycle.app_config(app))

    monkeypatch.setattr(lifecycle, "client_for_app", client_for_app)
