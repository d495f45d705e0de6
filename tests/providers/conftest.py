"""Fixtures for the provider-client tests: HTTP is mocked at one seam, ``responses``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import responses

from .support import FixedClock, start_of_test_day


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """Every request of the test must match a registered reply; nothing reaches the network."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture(autouse=True)
def _portal_at_its_test_address(settings: Any) -> None:
    """The portal's address here: the callbacks the test apps name (``support.app_config``) are its own."""
    settings.PORTAL_BASE_URL = "http://portal.test"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(start_of_test_day())
