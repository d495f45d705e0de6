"""Fixtures of the fault-tolerance suite: the sandbox behind a live server, reset per test.

The portal's provider clients reach the sandbox over real HTTP (a ProviderApp's
``base_url`` is the live server's ``/sandbox/<provider>``); faults are injected
with the sandbox's control API and counted in its request log.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.sandbox_client import sandbox_session

from .support import Portal, SandboxControl, portal_on_sandbox

# Short enough that a hang fault costs a test about a second, long enough
# for the live server to answer a normal request on a loaded CI machine.
READ_TIMEOUT_SECONDS = 1.0
HANG_SECONDS = 2.0


@pytest.fixture
def sandbox(live_server: Any, transactional_db: None, settings: Any) -> Iterator[SandboxControl]:
    settings.PROVIDER_READ_TIMEOUT = READ_TIMEOUT_SECONDS
    # The apps' redirect URIs (portal_on_sandbox) must be the portal's own callbacks.
    settings.PORTAL_BASE_URL = "http://testserver"
    with sandbox_session(live_server.url, settings) as control:
        yield control


@pytest.fixture
def portal(sandbox: SandboxControl) -> Portal:
    return portal_on_sandbox(sandbox)
