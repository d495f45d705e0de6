"""The control API: reset, apps, subjects, actions, lifetimes, faults, request log."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.test import Client
from django.utils import timezone

from sandbox import clock, faults
from sandbox.models import Provider
from tests.sandbox_client import control_headers

from .conftest import COINIFY_PARTNER, TURNQEY_CLIENT, ControlClient, doc_example

AUTH_URL = "/sandbox/coinify/auth"
PASSWORD_GRANT = doc_example("coinify_requests.json")["password"]


def post_json(client: Client, url: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    return client.post(url, data=json.dumps(body), content_type="application/json", headers=headers or {})


def refresh(client: Client, token: str) -> Any:
    return post_json(client, AUTH_URL, {"grant_type": "refresh_token", "refresh_token": token})


def grant(client: Client) -> dict[str, Any]:
    response = post_json(client, AUTH_URL, PASSWORD_GRANT)
    assert response.status_code == 200, response.content
    return response.json()


# --- Index, methods, token ------------------------------------------------------------


def test_index_lists_the_endpoints(control: ControlClient) -> None:
    assert "POST /sandbox/_control/reset" in control.get("")["endpoints"]


def test_a_wrong_method_is_405_with_allow(client: Client, db: None) -> None:
    response = client.get("/sandbox/_control/reset", headers=control_headers())

    assert response.status_code == 405
    assert response["Allow"] == "POST"


def test_a_configured_control_token_is_required(client: Client, db: None, settings: Any) -> None:
    settings.SANDBOX_CONTROL_TOKEN = "let-me-in"

    assert client.get("/sandbox/_control/faults").status_code == 403
    allowed = client.get("/sandbox/_control/faults", headers={"X-Sandbox-Control-Token": "let-me-in"})
    assert allowed.status_code == 200


def test_a_body_that_is_not_a_json_object_is_400(client: Client, db: None) -> None:
    response = client.post(
        "/sandbox/_control/faults", data="[1]", content_type="application/json", headers=control_headers()
    )

    assert response.status_code == 400
    assert response.json() == {"error": "The body must be a JSON object."}


# --- Apps ----------------------------------------------------------------------------


def test_registering_an_app_twice_updates_it(control: ControlClient) -> None:
    first = control.post("apps", {"provider": "turnqey", **TURNQEY_CLIENT}, expect=201)
    second = control.post(
        "apps", {"provider": "turnqey", "client_id": "tq-client", "redirect_uri": "https://other.test/cb"}
    )

    assert first["created"] is True
    assert second["created"] is False
    apps = control.get("apps")["apps"]
    assert apps == [
        {"provider": "turnqey", "client_id": "tq-client", "redirect_uri": "https://other.test/cb", "has_secret": True}
    ]
    assert "tq-secret" not in json.dumps(apps)


@pytest.mark.parametrize(
    "body",
    [
        {"provider": "turnqey", "client_id": "x", "redirect_uri": "https://a.test/"},
        {"provider": "dapi", "client_id": "x", "client_secret": "s"},
        {"provider": "bloquo", "client_id": "x"},
        {"provider": "coinify"},
        {"provider": "turnqey", "client_id": "x", "client_secret": "s", "redirect_uri": "javascript:alert(1)"},
    ],
)
def test_incomplete_app_registrations_are_refused(control: ControlClient, body: dict[str, str]) -> None:
    assert "error" in control.post("apps", body, expect=400)


# --- Subjects and actions ------------------------------------------------------------


def test_a_coinify_subject_gets_a_user_id_and_an_offline_token(client: Client, control: ControlClient) -> None:
    control.post("apps", {"provider": "coinify", "client_id": COINIFY_PARTNER}, expect=201)

    # With a single partner registered, partner_id may be left out.
    user = control.post("subjects", {"provider": "coinify", "email": "ann@example.test", "password": "pw"}, expect=201)

    assert isinstance(user["user_id"], int)
    assert user["partner_id"] == COINIFY_PARTNER
    offline = post_json(client, AUTH_URL, {"grant_type": "offline_token", "offline_token": user["offline_token"]})
    assert offline.status_code == 200
    listed = control.get("subjects", {"provider": "coinify"})["subjects"]
    assert listed == [
        {"user_id": user["user_id"], "email": "ann@example.test", "partner_id": COINIFY_PARTNER, "deactivated": False}
    ]


def test_creating_a_coinify_subject_again_updates_its_password(client: Client, control: ControlClient) -> None:
    body = {"provider": "coinify", "partner_id": "p", "email": "ann@example.test", "password": "old"}
    first = control.post("subjects", body, expect=201)

    second = control.post("subjects", {**body, "password": "new"}, expect=200)

    assert second["user_id"] == first["user_id"]
    login = {"grant_type": "password", "email": "ann@example.test", "partnerId": "p"}
    assert post_json(client, AUTH_URL, {**login, "password": "old"}).status_code == 400
    assert post_json(client, AUTH_URL, {**login, "password": "new"}).status_code == 200


def test_a_turnqey_subject_is_an_active_authorization_without_a_browser(
    client: Client, control: ControlClient, turnqey_app: dict
) -> None:
    seeded = control.post(
        "subjects", {"provider": "turnqey", "client": "tq-client", "identity": "id-1", "platform": "kraken"}, expect=201
    )

    headers = {"clientId": "tq-client", "clientSecret": "tq-secret"}
    token = client.post("/sandbox/turnqey/v1/api/token", headers=headers).json()["result"]["token"]
    accounts = client.get(
        f"/sandbox/turnqey/v1/api/collections/{seeded['collection']}/accounts",
        headers={"Authorization": f"Bearer {token}"},
    ).json()["result"]["accounts"]
    assert {a["sourceAccountId"] for a in accounts} == {seeded["source_account_id"]}
    assert seeded["status"] == "active"


def test_a_dapi_subject_is_a_connect_login_whose_code_can_be_exchanged(
    client: Client, control: ControlClient, dapi_app: dict
) -> None:
    seeded = control.post(
        "subjects", {"provider": "dapi", "app_key": dapi_app["client_id"], "username": "u"}, expect=201
    )

    body = {
        "appSecret": dapi_app["client_secret"],
        "accessCode": seeded["access_code"],
        "connectionID": seeded["connection_id"],
    }
    assert post_json(client, "/sandbox/dapi/v2/auth/ExchangeToken", body).json()["success"] is True


def test_a_dapi_subject_can_come_exchanged_with_a_working_permanent_token(
    client: Client, control: ControlClient, dapi_app: dict
) -> None:
    seeded = control.post(
        "subjects",
        {"provider": "dapi", "app_key": dapi_app["client_id"], "username": "u", "exchange": True},
        expect=201,
    )

    accounts = post_json(
        client,
        "/sandbox/dapi/v2/data/accounts/get",
        {"appSecret": dapi_app["client_secret"], "userSecret": seeded["user_secret"]},
        headers={"Authorization": f"Bearer {seeded['access_token']}"},
    )
    assert accounts.status_code == 200, accounts.content
    assert accounts.json()["accounts"]
    # The code was spent by the exchange: single use, as over HTTP.
    again = post_json(
        client,
        "/sandbox/dapi/v2/auth/ExchangeToken",
        {
            "appSecret": dapi_app["client_secret"],
            "accessCode": seeded["access_code"],
            "connectionID": seeded["connection_id"],
        },
    )
    assert again.json()["type"] == "INVALID_ACCESS_CODE"


def test_a_dapi_subject_without_exchange_has_no_token_yet(control: ControlClient, dapi_app: dict) -> None:
    seeded = control.post(
        "subjects", {"provider": "dapi", "app_key": dapi_app["client_id"], "username": "u"}, expect=201
    )

    assert "access_token" not in seeded


def test_exchange_must_be_a_boolean(control: ControlClient, dapi_app: dict) -> None:
    body = {"provider": "dapi", "app_key": dapi_app["client_id"], "username": "u", "exchange": "yes"}

    assert control.post("subjects", body, expect=400) == {"error": "exchange must be true or false."}
    assert control.get("subjects", {"provider": "dapi"})["subjects"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"provider": "nobody"},
        {"provider": "coinify", "partner_id": "p", "email": "a@example.test"},
        {"provider": "turnqey", "client": "unknown", "identity": "i", "platform": "p"},
        {"provider": "dapi", "app_key": "unknown", "username": "u"},
    ],
)
def test_incomplete_subjects_are_refused(control: ControlClient, body: dict[str, str]) -> None:
    assert "error" in control.post("subjects", body, expect=400)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"provider": "coinify", "action": "delink", "user_id": 1}, 400),
        ({"provider": "dapi", "action": "deactivate", "user_id": "x"}, 400),
        ({"provider": "coinify", "action": "revoke", "user_id": 999999}, 404),
        ({"provider": "bloquo", "action": "revoke", "customer_id": "cus_nope"}, 404),
        ({"provider": "turnqey", "action": "revoke", "identity": "nobody", "platform": "coinbase"}, 404),
        ({"provider": "dapi", "action": "delink", "user_id": "nobody"}, 404),
        ({"provider": "turnqey", "action": "revoke"}, 400),
    ],
)
def test_actions_on_unknown_subjects_or_with_wrong_verbs_are_refused(
    control: ControlClient, body: dict[str, Any], status: int
) -> None:
    assert "error" in control.post("actions", body, expect=status)


# --- Lifetimes -------------------------------------------------------------------------


def test_lifetimes_start_at_the_documented_defaults_and_can_be_changed(control: ControlClient) -> None:
    assert control.get("lifetimes")["lifetimes"] == {
        "turnqey": {"app_token": 3600},
        "coinify": {"access": 1200, "refresh": 86400},
        "bloquo": {"access": 3600},
        "bloquo-production": {"access": 3600},
        "dapi": {"access_code": 1800},
    }

    reply = control.post("lifetimes", {"provider": "coinify", "access": 5, "refresh": 60})

    assert reply == {"provider": "coinify", "lifetimes": {"access": 5, "refresh": 60}}
    assert control.get("lifetimes")["lifetimes"]["coinify"] == {"access": 5, "refresh": 60}


@pytest.mark.parametrize(
    "body",
    [
        {"provider": "coinify", "offline": 5},
        {"provider": "coinify", "access": -1},
        {"provider": "coinify"},
        {"provider": "x"},
    ],
)
def test_invalid_lifetimes_are_refused(control: ControlClient, body: dict[str, Any]) -> None:
    control.post("lifetimes", body, expect=400)


# --- Faults -----------------------------------------------------------------------------


@pytest.mark.usefixtures("coinify_user")
def test_an_error_status_fault_answers_for_its_count_with_retry_after_and_does_not_process(
    client: Client, control: ControlClient
) -> None:
    tokens = grant(client)
    control.fault(provider="coinify", path="/auth", kind="status", status=503, retry_after=7, count=2)

    refused = [refresh(client, tokens["refresh_token"]) for _ in range(2)]
    served = refresh(client, tokens["refresh_token"])

    for response in refused:
        assert response.status_code == 503
        assert response["Retry-After"] == "7"
        assert response.json() == {"error": "temporarily_unavailable", "error_description": "Service Unavailable"}
    # The refused refreshes never reached the token: it still rotates once.
    assert served.status_code == 200
    assert [f["active"] for f in control.get("faults")["faults"]] == [False]


@pytest.mark.usefixtures("coinify_user")
def test_a_fault_for_a_duration_stops_when_the_time_is_up(
    client: Client, control: ControlClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    control.fault(provider="coinify", kind="status", status=500, seconds=60)
    assert post_json(client, AUTH_URL, PASSWORD_GRANT).status_code == 500

    later = timezone.now() + timedelta(seconds=61)
    monkeypatch.setattr(clock, "now", lambda: later)

    assert post_json(client, AUTH_URL, PASSWORD_GRANT).status_code == 200


@pytest.mark.usefixtures("coinify_user")
def test_a_fault_matches_only_its_path_method_and_grant_type(client: Client, control: ControlClient) -> None:
    tokens = grant(client)
    control.fault(provider="coinify", path="/me", kind="status", status=502)
    control.fault(provider="coinify", path="/auth", grant_type="refresh_token", kind="status", status=429)

    assert post_json(client, AUTH_URL, PASSWORD_GRANT).status_code == 200
    assert refresh(client, tokens["refresh_token"]).status_code == 429
    assert (
        client.get("/sandbox/coinify/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}).status_code
        == 502
    )


def test_a_fault_for_bloquo_staging_leaves_production_alone(client: Client, control: ControlClient) -> None:
    control.fault(provider="bloquo", kind="status", status=503)

    staging = post_json(client, "/sandbox/bloquo/api/v1/auth/token", {})
    production = post_json(client, "/sandbox/bloquo-production/api/v1/auth/token", {})

    assert staging.status_code == 503
    assert staging.json() == {"status": False, "message": "Service Unavailable"}
    assert production.status_code == 400


def test_a_redirect_status_fault_points_back_at_the_same_url(client: Client, control: ControlClient) -> None:
    control.fault(provider="bloquo", path="/api/v1/accounting/accounts", kind="status", status=302, count=1)

    redirected = client.get("/sandbox/bloquo/api/v1/accounting/accounts?page=2")
    followed = client.get("/sandbox/bloquo/api/v1/accounting/accounts?page=2")

    assert redirected.status_code == 302
    assert redirected["Location"] == "/sandbox/bloquo/api/v1/accounting/accounts?page=2"
    # The redirect was the fault's one use: following it reaches the endpoint itself.
    assert followed.status_code == 401
    assert [(r["status"], r["fault"]) for r in control.requests(provider="bloquo")] == [(302, "status"), (401, "")]


@pytest.mark.usefixtures("turnqey_app")
def test_error_faults_keep_each_provider_error_shape(client: Client, control: ControlClient) -> None:
    control.fault(provider="turnqey", path="/v1/api/token", kind="status", status=503, count=1)
    control.fault(provider="dapi", kind="status", status=500, count=1)

    turnqey = client.post("/sandbox/turnqey/v1/api/token")
    dapi = post_json(client, "/sandbox/dapi/v2/auth/ExchangeToken", {})

    assert turnqey.json() == {
        "statusCode": 503,
        "isError": True,
        "responseException": {"exceptionMessage": "Service Unavailable"},
    }
    assert dapi.json() == {"success": False, "type": "INTERNAL_SERVER_ERROR", "msg": "Internal Server Error"}


@pytest.mark.parametrize(
    ("mount", "body"),
    [
        (
            "turnqey",
            {"statusCode": 503, "isError": True, "responseException": {"exceptionMessage": "Service Unavailable"}},
        ),
        ("coinify", {"error": "temporarily_unavailable", "error_description": "Service Unavailable"}),
        ("bloquo", {"status": False, "message": "Service Unavailable"}),
        ("bloquo-production", {"status": False, "message": "Service Unavailable"}),
        ("dapi", {"success": False, "type": "SERVICE_UNAVAILABLE", "msg": "Service Unavailable"}),
    ],
)
def test_every_mount_injects_errors_in_the_shape_its_simulator_declares(mount: str, body: dict[str, Any]) -> None:
    assert faults.error_body(mount, 503) == body


@pytest.mark.usefixtures("turnqey_app")
def test_an_error_fault_on_a_browser_page_is_an_html_page(client: Client, control: ControlClient) -> None:
    control.fault(provider="turnqey", path="/authorize", kind="status", status=502)

    response = client.get("/sandbox/turnqey/authorize?client=tq-client")

    assert response.status_code == 502
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.usefixtures("coinify_user")
def test_a_latency_fault_delays_then_answers_normally(
    client: Client, control: ControlClient, sleeps: list[float]
) -> None:
    control.fault(provider="coinify", kind="latency", latency_ms=250, count=1)

    first = post_json(client, AUTH_URL, PASSWORD_GRANT)
    second = post_json(client, AUTH_URL, PASSWORD_GRANT)

    assert first.status_code == second.status_code == 200
    assert sleeps == [0.25]
    assert [r["fault"] for r in control.requests(provider="coinify")] == ["latency", ""]


@pytest.mark.usefixtures("coinify_user")
def test_a_timeout_fault_hangs_and_then_drops_the_request(
    client: Client, control: ControlClient, sleeps: list[float]
) -> None:
    tokens = grant(client)
    control.fault(provider="coinify", path="/auth", kind="timeout", hang_seconds=30, count=1)

    hung = refresh(client, tokens["refresh_token"])

    assert sleeps == [30]
    assert hung.status_code == 504
    # The hung request never took effect: the same refresh token still works.
    assert refresh(client, tokens["refresh_token"]).status_code == 200


@pytest.mark.usefixtures("coinify_user")
def test_a_timeout_fault_with_process_loses_the_reply_of_a_refresh_that_happened(
    client: Client, control: ControlClient, sleeps: list[float]
) -> None:
    tokens = grant(client)
    control.fault(provider="coinify", path="/auth", kind="timeout", hang_seconds=30, process=True, count=1)

    refresh(client, tokens["refresh_token"])

    assert sleeps == [30]
    retried = refresh(client, tokens["refresh_token"])
    assert retried.json()["error_description"] == "Refresh token has already been used."


@pytest.mark.usefixtures("coinify_user")
def test_a_trickle_fault_sends_the_real_reply_one_byte_per_interval(
    client: Client, control: ControlClient, sleeps: list[float]
) -> None:
    tokens = grant(client)
    control.fault(provider="coinify", path="/auth", kind="trickle", interval=2, count=1)

    trickled = refresh(client, tokens["refresh_token"])
    chunks = list(trickled.streaming_content)

    assert trickled.status_code == 200
    assert trickled["Content-Length"] == str(len(b"".join(chunks)))
    assert {len(chunk) for chunk in chunks} == {1}
    # A pause before every byte but the first: the reply lasts its length times the interval.
    assert sleeps == [2] * (len(chunks) - 1)
    assert json.loads(b"".join(chunks))["refresh_token"]
    # The refresh took effect, as a reply lost on a slow line would have.
    assert refresh(client, tokens["refresh_token"]).json()["error_description"] == (
        "Refresh token has already been used."
    )
    assert [r["fault"] for r in control.requests(provider="coinify")][-2:] == ["trickle", ""]


def test_a_trickle_fault_needs_its_interval(control: ControlClient) -> None:
    refused = control.post("faults", {"provider": "coinify", "kind": "trickle"}, expect=400)

    assert "interval" in refused["error"]


@pytest.mark.usefixtures("coinify_user")
def test_a_truncated_json_fault_cuts_the_real_reply(client: Client, control: ControlClient) -> None:
    control.fault(provider="coinify", path="/auth", kind="truncated_json", count=1)

    response = post_json(client, AUTH_URL, PASSWORD_GRANT)

    assert response.status_code == 200
    assert response.content.startswith(b'{"access_token"')
    with pytest.raises(ValueError, match=r"Unterminated|Expecting"):
        json.loads(response.content)


@pytest.mark.usefixtures("coinify_user")
def test_an_html_fault_replaces_the_reply_with_an_html_page(client: Client, control: ControlClient) -> None:
    control.fault(provider="coinify", path="/auth", kind="html", status=502, count=1)

    response = post_json(client, AUTH_URL, PASSWORD_GRANT)

    assert response.status_code == 502
    assert response["Content-Type"].startswith("text/html")
    assert response.content.startswith(b"<!DOCTYPE html>")


@pytest.mark.usefixtures("coinify_user")
def test_a_missing_field_fault_removes_the_main_field_by_default(client: Client, control: ControlClient) -> None:
    control.fault(provider="coinify", path="/auth", kind="missing_field", count=1)

    body = post_json(client, AUTH_URL, PASSWORD_GRANT).json()

    assert set(body) == {"token_type", "expires_in", "refresh_token"}


@pytest.mark.usefixtures("turnqey_app")
def test_a_missing_field_fault_removes_a_named_nested_field(client: Client, control: ControlClient) -> None:
    control.fault(provider="turnqey", kind="missing_field", field="result.expiresOn", count=1)

    body = client.post(
        "/sandbox/turnqey/v1/api/token", headers={"clientId": "tq-client", "clientSecret": "tq-secret"}
    ).json()

    assert set(body["result"]) == {"expiresIn", "token"}


@pytest.mark.parametrize(
    "body",
    [
        {"provider": "coinify", "kind": "explode"},
        {"provider": "coinify", "kind": "latency"},
        {"provider": "coinify", "kind": "timeout"},
        {"provider": "coinify", "kind": "status", "status": 999},
        {"provider": "coinify", "kind": "status", "count": 0},
        {"provider": "coinify", "kind": "status", "path": "auth"},
        {"provider": "nowhere", "kind": "status"},
    ],
)
def test_invalid_faults_are_refused(control: ControlClient, body: dict[str, Any]) -> None:
    control.post("faults", body, expect=400)


def test_faults_are_listed_and_deleted_one_or_all(client: Client, control: ControlClient) -> None:
    first = control.fault(provider="bloquo", kind="status", status=503, count=3)
    control.fault(provider="dapi", kind="latency", latency_ms=10, seconds=30)

    listed = control.get("faults")["faults"]
    assert [f["id"] for f in listed] == [first["id"], listed[1]["id"]]
    assert listed[0]["remaining"] == 3
    assert listed[1]["expires_at"]
    assert control.delete(f"faults/{first['id']}") == {"deleted": 1}
    assert client.delete(f"/sandbox/_control/faults/{first['id']}", headers=control_headers()).status_code == 404
    assert control.delete("faults") == {"deleted": 1}
    assert post_json(client, "/sandbox/bloquo/api/v1/auth/token", {}).status_code == 400


# --- Request log --------------------------------------------------------------------------


@pytest.mark.usefixtures("coinify_user")
def test_the_request_log_counts_refreshes_without_recording_secrets(client: Client, control: ControlClient) -> None:
    tokens = grant(client)
    refresh(client, tokens["refresh_token"])
    client.get("/sandbox/coinify/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})

    log = control.requests(provider="coinify")
    refreshes = control.requests(provider="coinify", path="/auth", grant_type="refresh_token")

    assert [(r["method"], r["path"], r["status"], r["grant_type"]) for r in log] == [
        ("POST", "/auth", 200, "password"),
        ("POST", "/auth", 200, "refresh_token"),
        ("GET", "/me", 200, ""),
    ]
    assert len(refreshes) == 1
    dumped = json.dumps(log)
    for secret in (tokens["refresh_token"], tokens["access_token"]):
        assert secret not in dumped


@pytest.mark.usefixtures("coinify_user")
def test_the_request_log_filters_by_since_and_after(client: Client, control: ControlClient) -> None:
    grant(client)
    first = control.requests()[-1]
    grant(client)

    assert len(control.requests(after=str(first["id"]))) == 1
    assert len(control.requests(since=first["at"])) == 2
    assert control.get("requests", {"since": "2999-01-01T00:00:00+00:00"})["count"] == 0
    unparsable = control.client.get("/sandbox/_control/requests", {"since": "yesterday"}, headers=control_headers())
    assert unparsable.status_code == 400


@pytest.mark.usefixtures("coinify_user")
def test_the_request_log_can_be_cleared(client: Client, control: ControlClient) -> None:
    grant(client)

    assert control.delete("requests") == {"deleted": 1}
    assert control.requests() == []


# --- Reset --------------------------------------------------------------------------------


def test_reset_empties_the_world_and_restores_default_lifetimes(
    client: Client, control: ControlClient, coinify_user: dict, turnqey_app: dict
) -> None:
    grant(client)
    control.fault(provider="coinify", kind="status", status=500, count=5)
    control.post("lifetimes", {"provider": "coinify", "access": 1})

    assert control.post("reset") == {"reset": True}

    assert control.get("apps")["apps"] == []
    assert control.get("subjects", {"provider": "coinify"})["subjects"] == []
    assert control.get("faults")["faults"] == []
    assert control.requests() == []
    assert control.get("lifetimes")["lifetimes"]["coinify"]["access"] == 1200
    assert post_json(client, AUTH_URL, PASSWORD_GRANT).json()["error_description"] == "Invalid email or password."


def test_reset_empties_the_subjects_of_every_mount(
    control: ControlClient, turnqey_app: dict, dapi_app: dict, coinify_user: dict
) -> None:
    turnqey = {"provider": "turnqey", "client": "tq-client", "identity": "id-1", "platform": "kraken"}
    control.post("subjects", turnqey, expect=201)
    control.post("subjects", {"provider": "bloquo"}, expect=201)
    control.post("subjects", {"provider": "bloquo-production"}, expect=201)
    control.post("subjects", {"provider": "dapi", "app_key": dapi_app["client_id"], "username": "u"}, expect=201)
    assert all(control.get("subjects", {"provider": mount})["subjects"] for mount in Provider.values)

    control.post("reset")

    assert {mount: control.get("subjects", {"provider": mount})["subjects"] for mount in Provider.values} == {
        mount: [] for mount in Provider.values
    }


def test_reset_can_keep_the_registered_apps(control: ControlClient, turnqey_app: dict, coinify_user: dict) -> None:
    control.post("reset", {"keep_apps": True})

    assert {a["provider"] for a in control.get("apps")["apps"]} == {"turnqey", "coinify"}
    assert control.get("subjects", {"provider": "coinify"})["subjects"] == []


# --- Over real HTTP ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_hang_outlasts_the_client_read_timeout_over_http(live_server: Any) -> None:
    base = live_server.url + "/sandbox"
    fault = requests.post(
        base + "/_control/faults",
        json={"provider": "bloquo", "kind": "timeout", "hang_seconds": 1.0, "count": 1},
        headers=control_headers(),
        timeout=10,
    )
    assert fault.status_code == 201

    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(base + "/bloquo/api/v1/auth/token", json={}, timeout=(3, 0.2))

    # Wait for the hung request to finish on the server before the test ends.
    for _ in range(100):
        log = requests.get(
            base + "/_control/requests", params={"provider": "bloquo"}, headers=control_headers(), timeout=10
        ).json()["requests"]
        if log:
            break
        time.sleep(0.05)
    assert [(r["status"], r["fault"]) for r in log] == [(504, "timeout")]
