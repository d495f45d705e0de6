"""Fixtures of the fault-tolerance suite: the sandbox behind a live server, reset per test.

The portal's provider clients reach the sandbox over real HTTP (a ProviderApp's
``base_url`` is the live server's ``/sandbox/<provider>``); faults are injected
with the sandbox's control API and counted in its request log.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from connections import lifecycle

from .support import Portal, SandboxControl, portal_on_sandbox

# Short enough that a hang fault costs a test about a second, long enough
# for the live server to answer a normal request on a loaded CI machine.
READ_TIMEOUT_SECONDS = 1.0
HANG_SECONDS = 2.0


@pytest.fixture
def sandbox(live_server: Any, transactional_db: None, settings: Any) -> Iterator[SandboxControl]:
    # Database sessions of the live server's threads: see the root conftest.
    settings.PROVIDER_READ_TIMEOUT = READ_TIMEOUT_SECONDS
    settings.RATE_LIMIT_REDIS_URL = ""
    control = SandboxControl(live_server.url)
    control.reset()
    lifecycle._clients.cache = {}
    yield control
    # Let requests the sandbox is still sleeping through finish before the
    # database is flushed under them.
    control.clear_faults()
    lifecycle._clients.cache = {}


@pytest.fixture
def portal(sandbox: SandboxControl) -> Portal:
    return portal_on_sandbox(sandbox)
