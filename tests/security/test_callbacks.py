"""Provider callbacks: state single use, bound to user, session and household, expiring; mix-up defence.

Also: the callback's parameters are checked before anything else (duplicate,
unknown, oversized: 400, nothing consumed, the provider never asked), secrets
are compared in constant time, and a ``next`` that leaves the site is ignored.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.db import connection as db_connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from connections import models as m
from tests.sandbox_client import control_headers

from .conftest import (
    DAPI_SUCCESS,
    TURNQEY_SUCCESS,
    CannedProvider,
    People,
    build_people,
    logged_in,
    sha256,
    start_connect,
)

PROJECT_DIR = Path(__file__).resolve().parents[2]


def callback(client: Client, provider: str, params: dict[str, str] | str) -> Any:
    query = params if isinstance(params, str) else urlencode(params)
    return client.get(f"{reverse('connect_callback', args=[provider])}?{query}")


def _request(state: str) -> m.AuthorizationRequest:
    return m.AuthorizationRequest.objects.get(state_hash=sha256(state))


# --- state ----------------------------------------------------------------------------------------


def test_state_is_stored_only_as_a_hash_and_carries_256_bits(people: People, canned: CannedProvider) -> None:
    adviser = logged_in(people.assigned)
    state = start_connect(adviser, people.household, people.apps["turnqey"])
    row = _request(state)
    assert len(state) >= 43  # 32 random bytes, url-safe base64
    assert state not in str(m.AuthorizationRequest.objects.values().get())
    assert row.started_by == people.assigned
    assert row.household == people.household
    assert row.expires_at - row.created_at <= timedelta(minutes=15)


def test_state_is_single_use(people: People, canned: CannedProvider) -> None:
    adviser = logged_in(people.assigned)
    state = start_connect(adviser, people.household, people.apps["turnqey"])

    first = callback(adviser, "turnqey", {"state": state, **TURNQEY_SUCCESS})
    replay = callback(adviser, "turnqey", {"state": state, **TURNQEY_SUCCESS})

    assert first.status_code == 302
    # Refused either as a replay (400) or because this browser no longer holds it (403).
    assert replay.status_code in (400, 403)
    assert canned.completes == 1
    assert m.Connection.objects.filter(household=people.household, status=m.Status.ACTIVE).count() == 2


def test_state_started_by_another_user_is_refused_and_not_consumed(people: People, canned: CannedProvider) -> None:
    adviser = logged_in(people.assigned)
    state = start_connect(adviser, people.household, people.apps["turnqey"])
    # Another adviser of the same firm who somehow got the URL (and even the session binding).
    intruder = logged_in(people.firm_admin)
    session = intruder.session
    session["authorization_state_hashes"] = [sha256(state)]
    session.save()

    refused = callback(intruder, "turnqey", {"state": state, **TURNQEY_SUCCESS})

    assert refused.status_code == 403
    assert canned.completes == 0
    assert _request(state).used_at is None
    assert callback(adviser, "turnqey", {"state": state, **TURNQEY_SUCCESS}).status_code == 302


def test_state_started_in_another_browser_is_refused_and_not_consumed(people: People, canned: CannedProvider) -> None:
    adviser = logged_in(people.assigned)
    state = start_connect(adviser, people.household, people.apps["turnqey"])
    same_user_elsewhere = logged_in(people.assigned)

    refused = callback(same_user_elsewhere, "turnqey", {"state": state, **TURNQEY_SUCCESS})
    anonymous = callback(Client(), "turnqey", {"state": state, **TURNQEY_SUCCESS})

    assert refused.status_code == 403
    assert anonymous.status_code == 403
    assert canned.completes == 0
    assert _request(state).used_at is None


def test_the_connection_lands_in_the_household_that_started_it(people: People, canned: CannedProvider) -> None:
    adviser = logged_in(people.assigned)
    state = start_connect(adviser, people.household, people.apps["turnqey"])

    smuggled = callback(
        adviser, "turnqey", {"state": state, **TURNQEY_SUCCESS, "household": people.foreign_household.pk}
    )
    done = callback(adviser, "turnqey", {"state": state, **TURNQEY_SUCCESS})

    assert smuggled.status_code == 400
    assert done.status_code == 302
    assert done["Location"] == reverse("household_detail", args=[people.household.pk])
    assert _request(state).connection.household == people.household


def test_state_expires(people: People, canned: CannedProvider) -> None:
    adviser = logged_in(people.assigned)
    state = start_connect(adviser, people.household, people.apps["turnqey"])
    m.AuthorizationRequest.objects.filter(state_hash=sha256(state)).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    expired = callback(adviser, "turnqey", {"state": state, **TURNQEY_SUCCESS})
    again = callback(adviser, "turnqey", {"state": state, **TURNQEY_SUCCESS})

    assert expired.status_code == 410
    assert again.status_code in (400, 403)
    assert canned.completes == 0
    assert _request(state).outcome == m.AuthorizationRequest.Outcome.EXPIRED


def test_a_callback_at_another_providers_address_is_refused_and_not_consumed(
    people: People, canned: CannedProvider
) -> None:
    """Mix-up defence: each provider has its own callback, and it must match the pending request."""
    adviser = logged_in(people.assigned)
    state = start_connect(adviser, people.household, people.apps["turnqey"])

    mixed_up = callback(adviser, "dapi", {"state": state, **DAPI_SUCCESS})

    assert mixed_up.status_code == 400
    assert canned.completes == 0
    assert _request(state).used_at is None
    assert callback(adviser, "turnqey", {"state": state, **TURNQEY_SUCCESS}).status_code == 302


@pytest.mark.parametrize("provider", ["coinify", "bloquo", "nonesuch"])
def test_providers_without_a_redirect_flow_have_no_callback(people: People, provider: str) -> None:
    response = callback(logged_in(people.assigned), provider, {"state": "x"})
    assert response.status_code == 404


# --- parameters -----------------------------------------------------------------------------------


def _bad_queries(state: str) -> dict[str, str]:
    base = {"state": state, **TURNQEY_SUCCESS}
    return {
        "duplicate state": urlencode(base) + f"&state={state}",
        "duplicate other": urlencode(base) + "&status=denied",
        "unknown parameter": urlencode({**base, "next": "https://evil.example/"}),
        "oversized value": urlencode({**base, "error_description": "x" * 5000}),
        "oversized query": urlencode(base) + "&" + "&".join(f"p{i}=v" for i in range(2000)),
        "no state": urlencode(TURNQEY_SUCCESS),
        "empty state": urlencode({**base, "state": ""}),
        # A NUL cannot be stored (PostgreSQL refuses it), and no provider sends control characters.
        "NUL in a value": urlencode({**base, "platform": "coinbase\x00"}),
        "control character in a value": urlencode({**base, "error_description": "a\x1bb"}),
    }


@pytest.mark.parametrize("case", sorted(_bad_queries("s")))
def test_malformed_callback_parameters_are_a_400_and_consume_nothing(
    people: People, canned: CannedProvider, case: str
) -> None:
    adviser = logged_in(people.assigned)
    state = start_connect(adviser, people.household, people.apps["turnqey"])

    response = callback(adviser, "turnqey", _bad_queries(state)[case])

    assert response.status_code == 400
    assert response["Referrer-Policy"] == "no-referrer"
    assert canned.completes == 0
    assert _request(state).used_at is None
    assert state not in response.content.decode()


# --- near misses ---------------------------------------------------------------------------------


def test_a_state_one_character_off_is_refused_and_the_genuine_one_still_works(
    people: People, canned: CannedProvider
) -> None:
    adviser = logged_in(people.assigned)
    state = start_connect(adviser, people.household, people.apps["turnqey"])
    near_miss = state[:-1] + ("A" if state[-1] != "A" else "B")

    refused = callback(adviser, "turnqey", {"state": near_miss, **TURNQEY_SUCCESS})

    assert refused.status_code == 400
    assert canned.completes == 0
    assert _request(state).used_at is None
    assert callback(adviser, "turnqey", {"state": state, **TURNQEY_SUCCESS}).status_code == 302


def test_the_authorize_checksum_is_recomputed_and_a_tampered_one_refused(
    people: People, client: Client, allow_hosts: Callable[..., None]
) -> None:
    """The sandbox plays Turnqey: it recomputes the checksum over what it received (constant-time compare)."""
    from connections.providers.turnqey import TurnqeyClient

    # The sandbox answers Django's test client here, at testserver.
    allow_hosts("turnqey", "sandbox", "testserver")

    client.post(
        "/sandbox/_control/apps",
        data={
            "provider": "turnqey",
            "client_id": "tq-checksum",
            "client_secret": "tq-checksum-secret",
            "redirect_uri": "http://testserver/connect/turnqey/callback/",
        },
        content_type="application/json",
        headers=control_headers(),
    )
    app = people.apps["turnqey"]
    app.base_url, app.client_id, app.client_secret = (
        "http://testserver/sandbox/turnqey",
        "tq-checksum",
        "tq-checksum-secret",
    )
    from connections.lifecycle import app_config

    start = TurnqeyClient(app_config(app)).start_authorization(
        state="abc", platform="coinbase", identity=str(people.client.identity), grouping={}, redirect_uri=""
    )
    genuine = start.redirect_url.replace("http://testserver", "")

    assert client.get(genuine).status_code == 200
    assert client.get(genuine.replace("platform=coinbase", "platform=gemini")).status_code == 400
    flipped = start.checksum[:-1] + ("0" if start.checksum[-1] != "0" else "1")
    assert client.get(genuine.replace(start.checksum, flipped)).status_code == 400


# --- next ----------------------------------------------------------------------------------------------

OFF_SITE = [
    "https://evil.example/",
    "//evil.example/path",
    "/\\evil.example",
    "https:evil.example",
    "javascript:alert(1)",
    " https://evil.example/",
]


@pytest.mark.parametrize("target", OFF_SITE)
def test_an_off_site_next_is_ignored_after_sign_in(people: People, client: Client, target: str) -> None:
    response = client.post(
        f"{reverse('login')}?{urlencode({'next': target})}",
        {"username": "assigned", "password": "correct-horse-battery", "next": target},
    )
    assert response.status_code == 302
    assert "evil.example" not in response["Location"]
    assert not response["Location"].startswith("javascript:")


@pytest.mark.parametrize("target", OFF_SITE)
def test_an_off_site_next_is_ignored_by_actions(people: People, canned: CannedProvider, target: str) -> None:
    adviser = logged_in(people.assigned)
    household_url = reverse("household_detail", args=[people.household.pk])

    checked = adviser.post(reverse("connection_check", args=[people.connection.pk]), {"next": target})

    assert checked.status_code == 302
    assert checked["Location"] == household_url


def test_an_on_site_next_is_honoured(people: People, canned: CannedProvider) -> None:
    adviser = logged_in(people.assigned)
    detail = reverse("connection_detail", args=[people.connection.pk])
    checked = adviser.post(reverse("connection_check", args=[people.connection.pk]), {"next": detail})
    assert checked["Location"] == detail


# --- concurrency ------------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_two_simultaneous_callbacks_with_one_state_complete_once(
    transactional_db: None, canned: CannedProvider
) -> None:
    everyone = build_people()
    adviser = logged_in(everyone.assigned)
    state = start_connect(adviser, everyone.household, everyone.apps["turnqey"])
    browsers = []
    for _ in range(2):
        twin = Client()
        twin.cookies = adviser.cookies  # the same browser, two tabs
        browsers.append(twin)
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def land(browser: Client) -> None:
        try:
            barrier.wait(timeout=10)
            statuses.append(callback(browser, "turnqey", {"state": state, **TURNQEY_SUCCESS}).status_code)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=land, args=(b,)) for b in browsers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(statuses) == [302, 400]
    assert canned.completes == 1
    assert m.Connection.objects.filter(household=everyone.household, status=m.Status.ACTIVE).count() == 2
