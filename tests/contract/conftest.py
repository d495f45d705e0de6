"""Fixtures of the contract tests: a live server carrying the sandbox, reset for every test."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from django.test.testcases import QuietWSGIRequestHandler

from connections.providers.transport import shared_session

from .support import Sandbox


@pytest.fixture(scope="session", autouse=True)
def _live_server_without_nagle() -> Iterator[None]:
    """Let the test server send each reply at once.

    It writes a reply's headers and body in two small packets; with Nagle's
    algorithm on, the second waits for the client's delayed ACK, adding about
    40 ms to every request on a kept-alive connection. The contract tests make
    hundreds of requests, so that wait would be most of their run time.
    """
    before = QuietWSGIRequestHandler.disable_nagle_algorithm
    QuietWSGIRequestHandler.disable_nagle_algorithm = True
    yield
    QuietWSGIRequestHandler.disable_nagle_algorithm = before


def _release_connections() -> None:
    """Let go of every kept-alive connection to the live server.

    Each one holds a server thread, and that thread a database connection.
    urllib3 closes a dropped pool's sockets only when the pool is garbage
    collected, and an error's traceback (a reply in a failed request's frame)
    can keep one alive in a reference cycle: hence the collection.
    """
    shared_session().close()
    gc.collect()


@pytest.fixture(scope="session")
def _live_server_released(django_db_setup: None, live_server: Any) -> Iterator[Any]:
    """The live server, with every connection to it released before it stops and the test database is dropped.

    Set up after (so torn down before) both: otherwise a server thread still
    serving a kept-alive socket keeps a session open on the test database,
    and PostgreSQL refuses to drop it.
    """
    yield live_server
    _release_connections()


@pytest.fixture
def world(transactional_db: None, _live_server_released: Any) -> Iterator[Sandbox]:
    """The sandbox of the live server, empty: no apps, subjects, faults or log, default lifetimes."""
    sandbox = Sandbox(_live_server_released.url)
    sandbox.reset()
    yield sandbox
    sandbox.http.close()
    # The provider clients' pooled connections go too, so a server thread of
    # this test is not left serving a kept-alive socket into the next.
    shared_session().close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``failure``: one case per entry of the provider class's ``permanent_failures``."""
    if "failure" in metafunc.fixturenames and metafunc.cls is not None:
        metafunc.parametrize("failure", list(metafunc.cls.permanent_failures))
