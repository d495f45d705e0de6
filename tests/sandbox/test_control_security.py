"""The control API answers scripts, not other sites' pages, and only with the token when one is set.

Attacks as a browser would make them: a page on another site POSTs
``text/plain`` or a form (no preflight needed) to reset the world, revoke a
subject or inject a fault; a script without the token, or with a wrong one.
Each is refused and leaves the world as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from django.test import Client

from sandbox.models import Provider
from tests.sandbox_client import CONTROL_TOKEN_HEADER, SandboxControl, control_headers

from .conftest import ControlClient

PROJECT_DIR = Path(__file__).resolve().parents[2]
EVIL_ORIGIN = "https://evil.example"
TOKEN = "let-me-in"


def world(control: ControlClient) -> dict[str, Any]:
    """Everything a control call could change, as the control API reads it back."""
    return {
        "apps": control.get("apps")["apps"],
        "subjects": {mount: control.get("subjects", {"provider": mount})["subjects"] for mount in Provider.values},
        "faults": control.get("faults")["faults"],
        "lifetimes": control.get("lifetimes")["lifetimes"],
    }


@pytest.fixture
def populated(control: ControlClient, coinify_user: dict[str, Any]) -> dict[str, Any]:
    """A world with a Coinify user and a fault rule, as it reads back."""
    control.fault(provider="bloquo", kind="status", status=503)
    return world(control)


# What another site's page would send to wreck the sandbox: wipe it, revoke a
# subject, break a provider, shorten every token's life.
ATTACKS: list[tuple[str, dict[str, Any]]] = [
    ("reset", {}),
    ("actions", {"provider": "coinify", "action": "revoke", "user_id": "1"}),
    ("faults", {"provider": "coinify", "kind": "status", "status": 500}),
    ("lifetimes", {"provider": "coinify", "access": 1}),
]


def attacks(populated: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    user_id = populated["subjects"]["coinify"][0]["user_id"]
    return [(path, {**body, "user_id": user_id} if "user_id" in body else body) for path, body in ATTACKS]


# --- Another site's page ------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
def test_a_cross_site_simple_post_is_refused_and_changes_nothing(
    client: Client, control: ControlClient, populated: dict[str, Any], content_type: str
) -> None:
    for path, body in attacks(populated):
        response = client.post(
            f"/sandbox/_control/{path}",
            data=json.dumps(body),
            content_type=content_type,
            headers={"Origin": EVIL_ORIGIN, "Sec-Fetch-Site": "cross-site"},
        )

        assert response.status_code == 403, (path, response.content)
        assert "another site" in response.json()["error"]
    assert world(control) == populated


@pytest.mark.parametrize(
    "browser_headers",
    [
        {"Origin": EVIL_ORIGIN},
        {"Origin": "null"},
        # Another port of this host: same site, but another origin.
        {"Origin": "http://testserver:8200", "Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
    ids=["origin", "null-origin", "same-site-origin", "fetch-site-cross", "fetch-site-same-site"],
)
def test_a_cross_site_request_is_refused_even_as_json_with_the_token(
    client: Client, control: ControlClient, populated: dict[str, Any], settings: Any, browser_headers: dict[str, str]
) -> None:
    settings.SANDBOX_CONTROL_TOKEN = TOKEN

    for path, body in attacks(populated):
        response = client.post(
            f"/sandbox/_control/{path}",
            data=json.dumps(body),
            content_type="application/json",
            headers={CONTROL_TOKEN_HEADER: TOKEN, **browser_headers},
        )

        assert response.status_code == 403, (path, response.content)
    read = client.get("/sandbox/_control/faults", headers={CONTROL_TOKEN_HEADER: TOKEN, **browser_headers})
    assert read.status_code == 403
    assert world(control) == populated


def test_a_same_origin_browser_request_is_answered(
    client: Client, control: ControlClient, populated: dict[str, Any]
) -> None:
    same_origin = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin", **control_headers()}

    response = client.post("/sandbox/_control/reset", data="{}", content_type="application/json", headers=same_origin)

    assert response.status_code == 200, response.content
    assert control.get("faults")["faults"] == []
    # The user opening a control URL in the address bar.
    typed = client.get("/sandbox/_control/faults", headers={"Sec-Fetch-Site": "none", **control_headers()})
    assert typed.status_code == 200


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_post_that_is_not_json_is_415_and_changes_nothing(
    client: Client, control: ControlClient, populated: dict[str, Any], content_type: str | None
) -> None:
    for path, body in attacks(populated):
        if content_type is None:
            # No body and no Content-Type, as fetch() sends with method POST alone.
            response = client.generic("POST", f"/sandbox/_control/{path}", headers=control_headers())
        else:
            response = client.post(
                f"/sandbox/_control/{path}",
                data=json.dumps(body),
                content_type=content_type,
                headers=control_headers(),
            )

        assert response.status_code == 415, (path, response.content)
        assert response.json() == {"error": "Send Content-Type: application/json (with a JSON object body, or none)."}
    assert world(control) == populated


def test_a_delete_with_a_body_that_is_not_json_is_415(
    client: Client, control: ControlClient, populated: dict[str, Any]
) -> None:
    response = client.delete("/sandbox/_control/faults", data="x", content_type="text/plain", headers=control_headers())

    assert response.status_code == 415
    assert world(control) == populated


# --- The token ----------------------------------------------------------------------------


@pytest.mark.parametrize("given_token", [None, "", "let-me-i", "let-me-inn", "LET-ME-IN"])
def test_with_a_token_set_a_missing_or_wrong_one_is_refused_and_changes_nothing(
    client: Client, control: ControlClient, populated: dict[str, Any], settings: Any, given_token: str | None
) -> None:
    settings.SANDBOX_CONTROL_TOKEN = TOKEN
    headers = {} if given_token is None else {CONTROL_TOKEN_HEADER: given_token}

    for path, body in attacks(populated):
        response = client.post(
            f"/sandbox/_control/{path}", data=json.dumps(body), content_type="application/json", headers=headers
        )

        assert response.status_code == 403, (path, response.content)
        assert response.json() == {"error": f"A valid {CONTROL_TOKEN_HEADER} header is required."}
    # The test helper sends the configured token, so it reads the world back.
    assert world(control) == populated


def test_with_a_token_set_the_right_one_is_accepted(
    client: Client, control: ControlClient, populated: dict[str, Any], settings: Any
) -> None:
    settings.SANDBOX_CONTROL_TOKEN = TOKEN

    response = client.post(
        "/sandbox/_control/reset", data="{}", content_type="application/json", headers={CONTROL_TOKEN_HEADER: TOKEN}
    )

    assert response.status_code == 200, response.content
    assert control.get("faults")["faults"] == []
    assert control.get("subjects", {"provider": "coinify"})["subjects"] == []


@pytest.mark.django_db(transaction=True)
def test_the_live_server_helper_sends_the_configured_token(live_server: Any, settings: Any) -> None:
    settings.SANDBOX_CONTROL_TOKEN = TOKEN
    url = f"{live_server.url}/sandbox/_control/faults"
    rule = {"provider": "bloquo", "kind": "status", "status": 503}

    assert requests.post(url, json=rule, timeout=10).status_code == 403
    sandbox = SandboxControl(live_server.url)
    try:
        sandbox.fault("bloquo", kind="status", status=503)
        assert [f["status"] for f in sandbox.call("GET", "faults")["faults"]] == [503]
        sandbox.reset()
    finally:
        sandbox.close()


# In a fresh process, as a deployment starts: the settings module reads the
# token from the environment and the sandbox's control API then asks for it.
TOKEN_PROBE = r"""
import json, django
django.setup()
from django.test import Client
browser = Client()
print("PROBE" + json.dumps({
    "without": browser.get("/sandbox/_control/").status_code,
    "wrong": browser.get("/sandbox/_control/", headers={"X-Sandbox-Control-Token": "nope"}).status_code,
    "reset_without": browser.post("/sandbox/_control/reset", data="{}", content_type="application/json").status_code,
    "right": browser.get("/sandbox/_control/", headers={"X-Sandbox-Control-Token": "from-the-environment"}).status_code,
}))
"""


@pytest.mark.parametrize("settings_module", ["portal.settings", "sandbox.server_settings"])
def test_the_control_token_in_the_environment_is_honoured_in_the_portal_and_the_sandbox_server(
    tmp_path: Path, settings_module: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SANDBOX_"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": settings_module,
            "DEBUG": "true",
            "SANDBOX_ENABLED": "true",
            "SANDBOX_CONTROL_TOKEN": "from-the-environment",
            "VAR_DIR": str(tmp_path / "var"),
            # Refusals are decided before any query; the index reads nothing.
            "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.sqlite3'}",
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", TOKEN_PROBE],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.split("PROBE", 1)[1])
    assert probe == {"without": 403, "wrong": 403, "reset_without": 403, "right": 200}
