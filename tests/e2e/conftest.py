"""Fixtures of the end-to-end suite: the live server's sandbox, a controlled clock, and the portal's apps."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from connections.providers import base as providers_base
from tests.factories import ClientFactory, HouseholdFactory
from tests.sandbox_client import sandbox_apps, sandbox_session

from .support import (
    APP_IDS,
    REDIRECT_BASE,
    Beat,
    Clock,
    Portal,
    SandboxControl,
)


@pytest.fixture
def sandbox(live_server: Any, transactional_db: None, settings: Any) -> Iterator[SandboxControl]:
    """The sandbox of the live server, empty (see :func:`tests.sandbox_client.sandbox_session`)."""
    settings.PORTAL_BASE_URL = REDIRECT_BASE  # the apps' redirect URIs must be the portal's own callbacks
    with sandbox_session(live_server.url, settings) as control:
        yield control


@pytest.fixture
def clock(sandbox: SandboxControl, monkeypatch: pytest.MonkeyPatch) -> Clock:
    """One clock for the portal, its provider clients and the sandbox; it moves only when the test moves it.

    Random jitter is seeded, so a run is the same every time.
    """
    start = timezone.now().replace(microsecond=0) + timedelta(seconds=1)
    controlled = Clock(start)
    monkeypatch.setattr(timezone, "now", controlled.now)
    monkeypatch.setattr(providers_base, "utcnow", controlled.now)
    random.seed(20240614)
    return controlled


@pytest.fixture
def beat(clock: Clock) -> Beat:
    return Beat(clock)


@pytest.fixture
def portal(sandbox: SandboxControl) -> Portal:
    """A household and client, and ProviderApps for the four providers, registered in the sandbox."""
    turnqey_secret = f"tq-{uuid.uuid4().hex}"
    dapi_secret = f"dapi-{uuid.uuid4().hex}"
    household = HouseholdFactory(name="The Okafor household")
    client = ClientFactory(household=household, name="Ada Okafor")
    apps = sandbox_apps(
        sandbox,
        ids=APP_IDS,
        turnqey_secret=turnqey_secret,
        dapi_secret=dapi_secret,
        name="e2e",
        redirect_base=REDIRECT_BASE,
        # The clock stands still between moves, so a time-based rate limit would
        # never refill; the limiter has its own tests (tests/lifecycle/test_throttling.py).
        rate_limit_per_second=0,
    )
    return Portal(household=household, client=client, apps=apps)
