"""Shared fixtures, and the bookkeeping of which suites could run here.

Some suites need a service: PostgreSQL (concurrency, `select_for_update`),
Redis, or Chromium (browser tests). On a machine without one, those tests skip
and the end of the run says plainly which suites were skipped and why. Under
``REQUIRE_ALL_SUITES=1`` (set by `.ci/run`) a skipped test fails the run.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings

REQUIRE_ALL_SUITES = os.environ.get("REQUIRE_ALL_SUITES", "").lower() in {"1", "true", "yes"}
CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")

# Playwright's sync API runs an event loop in the test thread; Django refuses
# ORM calls from a thread with a running loop unless told this is deliberate.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def _redis_available() -> bool:
    host, port = "127.0.0.1", 6379
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def suite_unavailable_reasons() -> dict[str, str]:
    """Suites that cannot run on this machine, with the reason for each."""
    reasons: dict[str, str] = {}
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        reasons["postgres"] = "DATABASE_URL does not point at PostgreSQL (tests ran on SQLite)"
    if not _redis_available():
        reasons["redis"] = "no Redis server answers on 127.0.0.1:6379"
    if not (os.path.exists(CHROMIUM_PATH) or shutil.which("chromium")):
        reasons["browser"] = f"Chromium not found at {CHROMIUM_PATH} (apt-get install chromium)"
    return reasons


_UNAVAILABLE = suite_unavailable_reasons()


# --- No real network ---------------------------------------------------------------------------
# Every test talks to 127.0.0.1 only (the sandbox, PostgreSQL, Redis, the live
# server); a connection anywhere else is refused before a packet leaves, so a
# test that would reach the internet by accident fails loudly instead.


class NetworkRefused(OSError):
    """A test tried to open a connection to a host other than this machine."""


def _is_loopback(host: Any) -> bool:
    try:
        return ipaddress.ip_address(str(host).split("%", 1)[0]).is_loopback
    except ValueError:
        try:
            resolved = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return bool(resolved) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in resolved)


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _checked(address: Any, family: int) -> None:
    if family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        raise NetworkRefused(f"tests may only connect to this machine, not {address[0]!r}")


def _loopback_connect(self: socket.socket, address: Any) -> None:
    _checked(address, self.family)
    return _real_connect(self, address)


def _loopback_connect_ex(self: socket.socket, address: Any) -> int:
    _checked(address, self.family)
    return _real_connect_ex(self, address)


def pytest_configure(config: pytest.Config) -> None:
    socket.socket.connect = _loopback_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _loopback_connect_ex  # type: ignore[method-assign]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for suite, reason in _UNAVAILABLE.items():
            if item.get_closest_marker(suite):
                item.add_marker(pytest.mark.skip(reason=f"[{suite} suite] {reason}"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if REQUIRE_ALL_SUITES and skipped and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    if hasattr(terminalreporter.config, "workerinput"):
        return
    skipped = terminalreporter.stats.get("skipped", [])
    if _UNAVAILABLE:
        terminalreporter.section("suites skipped on this machine")
        for suite, reason in sorted(_UNAVAILABLE.items()):
            terminalreporter.write_line(f"{suite}: skipped, because {reason}")
    if REQUIRE_ALL_SUITES and skipped:
        terminalreporter.write_line(
            f"REQUIRE_ALL_SUITES is set and {len(skipped)} test(s) were skipped: failing the run.", red=True
        )


@pytest.fixture(autouse=True)
def _fast_and_isolated(settings: object) -> None:
    """Every test: in-memory email, eager Celery, attempt limits in the database.

    (The network guard is set up in ``pytest_configure``.)
    """
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"  # type: ignore[attr-defined]
    settings.CELERY_TASK_ALWAYS_EAGER = True  # type: ignore[attr-defined]
    # Attempt limits in the test database, which each test starts empty; the
    # Redis store is tested on its own, under keys of its own.
    settings.ATTEMPT_LIMIT_REDIS_URL = ""  # type: ignore[attr-defined]
    # Hashing demo passwords properly costs more than most tests themselves.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # type: ignore[attr-defined]
    settings.STORAGES = {  # type: ignore[attr-defined]
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    from portal.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    # ``task.delay()`` goes to Celery's *current* app: a test that builds an app
    # of its own must not make it current, or every later test's tasks would
    # be sent to that app's broker instead of running here.
    app.set_current()


# Where the test world's stand-in providers live (factories, mocked HTTP). The
# name never resolves, so the network guard refuses any real call to it.
TEST_PROVIDER_HOST = "provider.test"


@pytest.fixture(autouse=True)
def _providers_of_the_test_world(request: pytest.FixtureRequest, settings: Any) -> None:
    """Every provider app may call the test world's hosts: ``provider.test``, and the live server's sandbox.

    The host rule itself (connections.providers.endpoints) is tested with the
    settings each of those tests sets; the rest of the suite lives in this world.
    """
    from connections.providers.endpoints import host_table

    settings.PROVIDER_HOSTS = {
        provider: {environment: [*hosts, TEST_PROVIDER_HOST] for environment, hosts in environments.items()}
        for provider, environments in host_table().items()
    }
    if "live_server" in request.fixturenames:
        # The sandbox is served by the live server, at whatever port it got.
        settings.SANDBOX_BASE_URL = f"{request.getfixturevalue('live_server').url}/sandbox"


@pytest.fixture
def allow_hosts(settings: Any) -> Callable[..., None]:
    """``allow_hosts(provider, environment, *hosts)``: let that provider's apps call these hosts too, for this test."""

    def allow(provider: str, environment: str, *hosts: str) -> None:
        listed = {name: dict(environments) for name, environments in settings.PROVIDER_HOSTS.items()}
        listed.setdefault(provider, {})
        listed[provider][environment] = [*listed[provider].get(environment, []), *hosts]
        settings.PROVIDER_HOSTS = listed

    return allow


@pytest.fixture(autouse=True)
def _short_lived_connections_with_a_live_server(request: pytest.FixtureRequest) -> None:
    """With a live server, each request thread closes its database session when done.

    Persistent connections (CONN_MAX_AGE) would keep sessions of finished
    request threads open past the test, and PostgreSQL would then refuse to
    drop the test database.
    """
    if "live_server" in request.fixturenames:
        from django.db import connections

        request.getfixturevalue("monkeypatch").setitem(connections.databases["default"], "CONN_MAX_AGE", 0)
