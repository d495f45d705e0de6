"""Gunicorn's access log, for real: the Procfile's web line serves client links and callbacks, and prints no secret.

Each test starts gunicorn exactly as the Procfile's ``web`` line does (only
the port changes), on a migrated SQLite database of its own, sends the
requests an attacker would hope to find in a log (a client link, a provider
callback with its query string, a link inside a ``next`` parameter, a Referer
carrying a callback URL), stops the server and reads everything it printed.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
import requests
from django.core import signing

from connections.services import CLIENT_LINK_SALT

PROJECT_DIR = Path(__file__).resolve().parents[2]
SECRET_KEY = "access-log-test-secret-key-" + "x" * 40
STATE = "state-SENTINEL-4f1c9a7e2b"
ACCESS_CODE = "accesscode-SENTINEL-8d2e"
USER_SECRET = "usersecret-SENTINEL-77ab"
IDENTITY = "identity-SENTINEL-0c3d"
LINK_RANDOM = "linkrandom-SENTINEL-q1Yx3bD0mVZ8m3nR5tq2w9y4Hc7Jk1Lp6T"
SENTINELS = (STATE, ACCESS_CODE, USER_SECRET, IDENTITY, LINK_RANDOM)


def procfile_web_args() -> list[str]:
    procfile = (PROJECT_DIR / "Procfile").read_text()
    line = next(line for line in procfile.splitlines() if line.startswith("web:"))
    return shlex.split(line.removeprefix("web:"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    base_url: str
    process: subprocess.Popen[str]

    def stop(self) -> str:
        """Stop gunicorn (as honcho would) and return everything it printed."""
        self.process.send_signal(signal.SIGTERM)
        try:
            out, err = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
        return out + err


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A development environment on a migrated SQLite database of its own (shared by this module's servers)."""
    tmp_path = tmp_path_factory.mktemp("access-log")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "EMAIL_", "SANDBOX_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DEBUG": "true",
            "SECRET_KEY": SECRET_KEY,
            "VAR_DIR": str(tmp_path / "var"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'portal.sqlite3'}",
            "CELERY_TASK_ALWAYS_EAGER": "true",
            "LOG_LEVEL": "INFO",
        }
    )
    env.pop("REDIS_URL", None)
    migrated = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    return env


def serve(args: list[str], env: dict[str, str]) -> Iterator[Served]:
    port = free_port()
    bind = args.index("--bind")
    args = [*args[: bind + 1], f"127.0.0.1:{port}", *args[bind + 2 :]]
    process = subprocess.Popen(
        args, cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    served = Served(base_url=f"http://127.0.0.1:{port}", process=process)
    # Generous: on a loaded machine two workers importing Django take a while.
    deadline = time.monotonic() + 180
    while True:
        try:
            requests.get(f"{served.base_url}/healthz", timeout=10)
            break
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or still importing Django
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not start:\n{served.stop()[-3000:]}")
            time.sleep(0.2)
    try:
        yield served
    finally:
        if process.poll() is None:
            served.stop()


def attack(base_url: str) -> None:
    """Requests whose paths, queries and headers carry secrets, as a client or a provider's redirect sends them."""
    token = signing.TimestampSigner(key=SECRET_KEY, salt=CLIENT_LINK_SALT).sign(LINK_RANDOM)
    link = f"/link/{token}/"
    callback = "/connect/dapi/callback/?" + urlencode(
        {"state": STATE, "accessCode": ACCESS_CODE, "userSecret": USER_SECRET, "connectionID": "c-1", "userID": "u"}
    )
    turnqey = "/connect/turnqey/callback/?" + urlencode(
        {"state": STATE, "identity": IDENTITY, "collection": IDENTITY, "platform": "coinbase", "status": "success"}
    )
    with requests.Session() as browser:
        assert browser.get(base_url + link, timeout=60).status_code == 400  # genuinely signed, not in this database
        assert browser.post(base_url + link, data={"email": "a@example.test"}, timeout=60).status_code == 400
        assert browser.get(base_url + callback, timeout=60).status_code == 400  # no such state here
        browser.get(base_url + turnqey, headers={"Referer": base_url + callback}, timeout=60)
        browser.get(f"{base_url}/login/?next={quote(link, safe='')}", headers={"Referer": base_url + link}, timeout=60)


@pytest.fixture
def procfile_server(environment: dict[str, str]) -> Iterator[Served]:
    yield from serve(procfile_web_args(), environment)


@pytest.fixture
def default_format_server(environment: dict[str, str]) -> Iterator[Served]:
    # The same line without its format: gunicorn's default prints the request
    # line with its query string and the Referer header.
    args = procfile_web_args()
    if "--access-logformat" in args:
        at = args.index("--access-logformat")
        del args[at : at + 2]
    yield from serve(args, environment)


def test_the_procfile_access_log_masks_link_tokens_and_callback_queries(procfile_server: Served) -> None:
    attack(procfile_server.base_url)

    output = procfile_server.stop()

    # The requests were logged, with their secrets masked.
    assert '"GET /link/[redacted]/ HTTP/1.1" 400' in output
    assert '"POST /link/[redacted]/ HTTP/1.1" 400' in output
    assert '"GET /connect/dapi/callback/ HTTP/1.1" 400' in output
    for sentinel in SENTINELS:
        assert sentinel not in output


def test_any_access_log_format_masks_them_too(default_format_server: Served) -> None:
    """The masking is the logger's, not the format's: the default format's query and Referer are masked as well."""
    attack(default_format_server.base_url)

    output = default_format_server.stop()

    assert "/connect/dapi/callback/?[redacted]" in output
    assert "/link/[redacted]/" in output
    assert "next=%2Flink%2F[redacted]" in output
    for sentinel in SENTINELS:
        assert sentinel not in output


def test_a_five_thousand_character_search_reaches_the_portal_through_the_procfiles_server(
    procfile_server: Served,
) -> None:
    """gunicorn's default request-line limit (4094) would answer a long search itself, with a bare 414."""
    response = requests.get(
        f"{procfile_server.base_url}/connections/", params={"q": "x" * 5000}, allow_redirects=False, timeout=60
    )

    # The portal's own answer: an anonymous visitor is sent to sign in.
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login/")
