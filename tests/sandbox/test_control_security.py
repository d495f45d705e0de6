"""The control API answers scripts, not other sites' pages, and only with the token when one is set.

Attacks as a browser would make them: a page on another site POSTs
``text/plain`` or a form (no preflight needed) to reset the world, revoke a
subject or inject a fault; a script without the token, or with a wrong one.
Each is refused and leaves the world as it was. Then generated requests
(methods, content types, bodies, query strings, browser headers) show that
nothing a caller sends makes it fail with a server error.
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
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from sandbox.models import Provider
from tests.sandbox_client import CONTROL_TOKEN_HEADER, SandboxControl, control_headers

from .conftest import COINIFY_PARTNER, DAPI_APP, TURNQEY_CLIENT, ControlClient

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


# --- Generated requests never crash it ----------------------------------------------------

FUZZ = hsettings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ANSWERS = {200, 201, 400, 403, 404, 405, 415}
ENDPOINTS = [
    "",
    "reset",
    "apps",
    "subjects",
    "actions",
    "lifetimes",
    "requests",
    "faults",
    "faults/1",
    "faults/" + "9" * 20,
]

# Values that fail somewhere below the checks unless the checks catch them:
# NUL (PostgreSQL text cannot hold it), longer than any column, digits int()
# does not take, dates that parse but do not exist, numbers beyond the
# integer columns or a timedelta.
TROUBLE_TEXT = ["", " ", "\x00", "a\x00b", "²", "١٢٣", "a" * 201, "b" * 600, "/" + "p" * 300, "-1", "9" * 30]
TROUBLE_TEXT += ["2020-02-30T00:00:00", "9999-12-31T23:59:59+00:00", "0000-00-00", "<script>", "é"]
TROUBLE_NUMBERS = [-1, 0, 2**31 - 1, 2**31, 2**63, 10**30, 1e20, 1e300, -0.0, 0.5]
hostile_text = st.one_of(st.sampled_from(TROUBLE_TEXT), st.text(max_size=30), st.text(min_size=190, max_size=700))
hostile_number = st.one_of(st.sampled_from(TROUBLE_NUMBERS), st.integers(), st.floats(allow_nan=False))
scalars = st.one_of(hostile_text, hostile_number, st.none(), st.booleans())
# Mostly text, as most fields are; then numbers, then the wrong JSON types.
values = st.one_of(
    hostile_text,
    hostile_text,
    hostile_number,
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=5), scalars, max_size=3),
)

# A valid request per endpoint (against the apps and user the test registers);
# generated ones replace or add a few fields, so they get past the first check.
VALID: dict[str, list[dict[str, Any]]] = {
    "apps": [
        {"provider": "coinify", "client_id": "partner-2"},
        {"provider": "turnqey", "client_id": "tq-2", "client_secret": "s", "redirect_uri": "https://x.test/cb"},
        {"provider": "dapi", "client_id": "dapi-2", "client_secret": "s", "redirect_uri": "https://x.test/cb"},
    ],
    "subjects": [
        {"provider": "coinify", "partner_id": COINIFY_PARTNER, "email": "e@example.test", "password": "pw"},
        {"provider": "bloquo", "client_id": "bq-1", "client_secret": "s", "name": "n", "email": "e@example.test"},
        {"provider": "bloquo-production"},
        {"provider": "turnqey", "client": TURNQEY_CLIENT["client_id"], "identity": "id-1", "platform": "kraken"},
        {"provider": "dapi", "app_key": DAPI_APP["client_id"], "username": "u", "exchange": True},
    ],
    "actions": [
        {"provider": "coinify", "action": "revoke", "user_id": "<user>"},
        {"provider": "turnqey", "action": "expire", "identity": "id-1", "platform": "kraken"},
        {"provider": "bloquo", "action": "revoke", "customer_id": "cus_1"},
        {"provider": "dapi", "action": "delink", "user_id": "x"},
    ],
    "lifetimes": [{"provider": "coinify", "access": 5, "refresh": 60}, {"provider": "dapi", "access_code": 60}],
    "faults": [
        {"provider": "bloquo", "kind": "status", "status": 503, "retry_after": 1, "count": 1, "path": "/api"},
        {"provider": "dapi", "kind": "latency", "latency_ms": 1, "seconds": 1, "method": "POST"},
        {"provider": "coinify", "kind": "missing_field", "field": "access_token", "grant_type": "password"},
        {"provider": "turnqey", "kind": "timeout", "hang_seconds": 0.01, "process": True},
    ],
    "reset": [{"keep_apps": True}],
}
FIELDS = {endpoint: sorted({name for body in bodies for name in body}) for endpoint, bodies in VALID.items()}
FIELDS["actions"] += ["connection_id", "access_token", "source_account_id", "client"]
FIELDS["subjects"] += ["collection", "username"]


def variants(endpoint: str, *, user_id: str = "1") -> st.SearchStrategy[dict[str, Any]]:
    """A valid body of ``endpoint`` with up to three of its fields replaced or added, hostile."""
    bases = [{k: user_id if v == "<user>" else v for k, v in body.items()} for body in VALID[endpoint]]
    fields = st.sampled_from(FIELDS[endpoint])
    # Changes of one kind at a time as well as mixed: a wrong type anywhere
    # stops the request before a long string or a big number elsewhere is looked at.
    changes = st.one_of(
        st.dictionaries(fields, hostile_text, min_size=1, max_size=2),
        st.dictionaries(fields, hostile_number, min_size=1, max_size=2),
        st.dictionaries(fields, values, max_size=3),
    )
    return st.builds(lambda base, changed: {**base, **changed}, st.sampled_from(bases), changes)


any_object = st.dictionaries(st.sampled_from(sorted({f for fields in FIELDS.values() for f in fields})), values)
raw_bodies = st.one_of(
    st.sampled_from([b"", b"{}", b"[]", b"null", b"NaN", b'{"seconds": NaN}', b'{"count": Infinity}', b"{"]),
    st.sampled_from([b"[" * 5000, b'{"a":' * 5000, b"\xff\xfe", b'{"provider": "coinify"}']),
    st.builds(json.dumps, any_object).map(str.encode),
    st.binary(max_size=200),
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/json-patch+json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "garbage;;;=",
        "",
    ]
)
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
browser_headers = st.fixed_dictionaries(
    {},
    optional={
        "Origin": st.one_of(st.sampled_from(["http://testserver", EVIL_ORIGIN, "null"]), header_text),
        "Sec-Fetch-Site": st.one_of(st.sampled_from(["same-origin", "none", "same-site", "cross-site"]), header_text),
    },
)
queries = st.dictionaries(
    st.sampled_from(["provider", "path", "since", "after", "method", "grant_type", "junk"]),
    st.one_of(hostile_text, st.sampled_from(Provider.values)),
    max_size=4,
)


def assert_answered(response: Any) -> None:
    assert response.status_code in ANSWERS, (response.status_code, response.content[:300])
    assert isinstance(response.json(), dict)


def test_generated_requests_get_an_answer_never_a_server_error(client: Client, db: None) -> None:
    @FUZZ
    @given(
        method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH"]),
        endpoint=st.sampled_from(ENDPOINTS),
        body=raw_bodies,
        content_type=content_types,
        headers=browser_headers,
        query=queries,
    )
    def run(
        method: str, endpoint: str, body: bytes, content_type: str, headers: dict[str, str], query: dict[str, str]
    ) -> None:
        path = f"/sandbox/_control/{endpoint}"
        # The run's own token, if it has one, so that what is tested is what comes after that check.
        headers = {**control_headers(), **headers}
        if method == "GET":
            response = client.get(path, query, headers=headers)
        else:
            response = client.generic(method, path, body, content_type=content_type, headers=headers)
        assert_answered(response)

    run()


@pytest.mark.parametrize("endpoint", list(VALID))
def test_generated_json_objects_get_an_answer_never_a_server_error(
    client: Client, turnqey_app: dict, dapi_app: dict, coinify_user: dict, endpoint: str
) -> None:
    """Valid bodies with hostile fields, against registered apps and a user, so the checks deep inside run too."""

    @FUZZ
    @given(body=variants(endpoint, user_id=str(coinify_user["user_id"])))
    def run(body: dict[str, Any]) -> None:
        response = client.post(
            f"/sandbox/_control/{endpoint}",
            data=json.dumps(body),
            content_type="application/json",
            headers=control_headers(),
        )
        assert_answered(response)

    run()


def test_generated_query_strings_get_an_answer_never_a_server_error(client: Client, db: None) -> None:
    @FUZZ
    @given(query=queries)
    def run(query: dict[str, str]) -> None:
        headers = control_headers()
        assert_answered(client.get("/sandbox/_control/requests", query, headers=headers))
        subjects = client.get("/sandbox/_control/subjects", {"provider": query.get("provider", "")}, headers=headers)
        assert_answered(subjects)

    run()
