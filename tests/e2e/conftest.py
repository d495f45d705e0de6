"""Fixtures of the end-to-end suite: the live server's sandbox, a controlled clock, and the portal's apps."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from connections import lifecycle
from connections import models as m
from connections.providers import base as providers_base
from tests.factories import ClientFactory, HouseholdFactory, ProviderAppFactory

from .support import (
    COINIFY_PARTNER,
    DAPI_APP_KEY,
    REDIRECT_BASE,
    TURNQEY_CLIENT,
    Beat,
    Clock,
    Portal,
    SandboxControl,
)


@pytest.fixture
def sandbox(live_server: Any, transactional_db: None, settings: Any) -> Iterator[SandboxControl]:
    """The sandbox of the live server, empty, with the database rate bucket (it follows the test's clock)."""
    settings.RATE_LIMIT_REDIS_URL = ""
    control = SandboxControl(live_server.url)
    control.reset()
    # Clients are cached per thread by app row; a new world gets new clients.
    lifecycle._clients.cache = {}
    yield control
    control.clear_faults()
    lifecycle._clients.cache = {}
    # Kept-alive HTTP connections pin a live-server thread, and with it a
    # database session, that would outlive the test database.
    control.close()
    providers_base.shared_session().close()


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
    apps = {
        "turnqey": ProviderAppFactory(
            provider=m.Provider.TURNQEY,
            name="e2e",
            base_url=sandbox.base_url("turnqey"),
            client_id=TURNQEY_CLIENT,
            client_secret=turnqey_secret,
            redirect_uri=f"{REDIRECT_BASE}/connect/turnqey/callback/",
        ),
        "coinify": ProviderAppFactory(
            provider=m.Provider.COINIFY,
            name="e2e",
            base_url=sandbox.base_url("coinify"),
            client_id=COINIFY_PARTNER,
            client_secret=None,
        ),
        "bloquo": ProviderAppFactory(
            provider=m.Provider.BLOQUO,
            name="e2e",
            base_url=sandbox.base_url("bloquo"),
            client_id="",
            client_secret=None,
        ),
        "dapi": ProviderAppFactory(
            provider=m.Provider.DAPI,
            name="e2e",
            base_url=sandbox.base_url("dapi"),
            client_id=DAPI_APP_KEY,
            client_secret=dapi_secret,
            redirect_uri=f"{REDIRECT_BASE}/connect/dapi/callback/",
        ),
    }
    sandbox.register_app(
        "turnqey", client_id=TURNQEY_CLIENT, client_secret=turnqey_secret, redirect_uri=apps["turnqey"].redirect_uri
    )
    sandbox.register_app("coinify", client_id=COINIFY_PARTNER)
    sandbox.register_app(
        "dapi", client_id=DAPI_APP_KEY, client_secret=dapi_secret, redirect_uri=apps["dapi"].redirect_uri
    )
    return Portal(household=household, client=client, apps=apps)
