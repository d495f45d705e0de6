"""Management commands: app registration, subject seeding, the separate sandbox server."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.management import CommandError, call_command

from sandbox.management.commands.run_sandbox import gunicorn_argv
from sandbox.models import App, BloquoKey
from tests.sandbox_client import control_headers

MANAGE = Path(__file__).resolve().parents[2] / "manage.py"


def run(*args: str, stdin: str | None = None, monkeypatch: pytest.MonkeyPatch | None = None) -> str:
    out = io.StringIO()
    if stdin is not None and monkeypatch is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_register_app_creates_then_updates_the_same_app() -> None:
    created = run(
        "sandbox_register_app",
        "--provider",
        "turnqey",
        "--client-id",
        "c1",
        "--client-secret",
        "s1",
        "--redirect-uri",
        "http://127.0.0.1:8000/connect/turnqey/callback/",
    )
    updated = run("sandbox_register_app", "--provider", "turnqey", "--client-id", "c1", "--client-secret", "s2")

    assert "Registered turnqey app c1" in created
    assert "Updated turnqey app c1" in updated
    app = App.objects.get(provider="turnqey", client_id="c1")
    assert app.client_secret == "s2"
    assert app.redirect_uri == "http://127.0.0.1:8000/connect/turnqey/callback/"
    assert "s2" not in created + updated


@pytest.mark.django_db
def test_register_app_refuses_a_new_dapi_app_without_secret_and_redirect() -> None:
    with pytest.raises(CommandError, match="client_secret and redirect_uri"):
        run("sandbox_register_app", "--provider", "dapi", "--client-id", "k")


@pytest.mark.django_db
def test_create_subject_prints_the_reply_as_json() -> None:
    reply = json.loads(
        run(
            "sandbox_create_subject",
            '{"provider": "coinify", "partner_id": "p", "email": "a@example.test", "password": "pw"}',
        )
    )

    assert isinstance(reply["user_id"], int)
    assert reply["offline_token"]


@pytest.mark.django_db
def test_create_subject_reads_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    reply = json.loads(
        run("sandbox_create_subject", "-", stdin='{"provider": "bloquo-production"}', monkeypatch=monkeypatch)
    )

    assert reply["provider"] == "bloquo-production"
    assert reply["customer_id"].startswith("cus_")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "message"), [("{nope", "Not valid JSON"), ("[1]", "JSON object"), ('{"provider": "x"}', "provider")]
)
def test_create_subject_explains_bad_input(fields: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("sandbox_create_subject", fields)


@pytest.mark.django_db
def test_subject_action_revokes_a_bloquo_key_pair_then_restores_it() -> None:
    key = json.loads(run("sandbox_create_subject", '{"provider": "bloquo"}'))
    action = {"provider": "bloquo", "customer_id": key["customer_id"]}

    revoked = json.loads(run("sandbox_subject_action", json.dumps({**action, "action": "revoke"})))
    assert BloquoKey.objects.get(customer_id=key["customer_id"]).revoked_at is not None
    restored = json.loads(run("sandbox_subject_action", json.dumps({**action, "action": "restore"})))

    assert revoked == {"provider": "bloquo", "action": "revoke", "affected": 1}
    assert restored["affected"] == 1
    assert BloquoKey.objects.get(customer_id=key["customer_id"]).revoked_at is None


@pytest.mark.django_db
def test_subject_action_reads_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    user = json.loads(
        run(
            "sandbox_create_subject",
            '{"provider": "coinify", "partner_id": "p", "email": "a@example.test", "password": "pw"}',
        )
    )

    reply = json.loads(
        run(
            "sandbox_subject_action",
            "-",
            stdin=json.dumps({"provider": "coinify", "action": "deactivate", "user_id": user["user_id"]}),
            monkeypatch=monkeypatch,
        )
    )

    assert reply["affected"] == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("{nope", "Not valid JSON"),
        ("[1]", "JSON object"),
        ('{"provider": "bloquo", "action": "explode", "customer_id": "c"}', "action for bloquo"),
        ('{"provider": "bloquo", "action": "revoke", "customer_id": "cus_missing"}', "No such Bloquo customer"),
    ],
)
def test_subject_action_explains_bad_input_and_unknown_subjects(fields: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("sandbox_subject_action", fields)


def test_run_sandbox_serves_the_sandbox_settings_with_threaded_workers() -> None:
    argv = gunicorn_argv(host="0.0.0.0", port=8300, workers=3, threads=8, timeout=90)  # noqa: S104

    assert argv[1] == "sandbox.wsgi:application"
    assert argv[argv.index("--bind") + 1] == "0.0.0.0:8300"
    assert argv[argv.index("--workers") + 1] == "3"
    assert argv[argv.index("--worker-class") + 1] == "gthread"
    assert argv[argv.index("--threads") + 1] == "8"
    assert argv[argv.index("--timeout") + 1] == "90"
    assert "DJANGO_SETTINGS_MODULE=sandbox.server_settings" in argv


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_run_sandbox_serves_only_the_sandbox_from_its_own_process(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'sandbox.sqlite3'}", "DEBUG": "true"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    subprocess.run([sys.executable, str(MANAGE), "migrate", "--noinput", "-v", "0"], env=env, check=True, timeout=120)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, str(MANAGE), "run_sandbox", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        index: Any = None
        for _ in range(200):
            try:
                index = requests.get(base + "/sandbox/_control/", headers=control_headers(), timeout=10)
                break
            except (requests.ConnectionError, requests.Timeout):
                # Still booting (gunicorn imports Django first): ask again.
                time.sleep(0.1)
        assert index is not None
        assert index.status_code == 200
        token = requests.post(base + "/sandbox/turnqey/v1/api/token", headers={"accept": "application/json"}, timeout=5)
        assert token.status_code == 400
        assert requests.get(base + "/admin/", timeout=5).status_code == 404
    finally:
        server.terminate()
        server.wait(timeout=30)
