"""Single use under concurrency: many threads at once, one winner (PostgreSQL, real HTTP)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.sandbox_client import control_headers

from .conftest import DAPI_APP

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 12


def all_at_once(call: Callable[[], requests.Response]) -> list[requests.Response]:
    """Run ``call`` in THREADS threads released together by a barrier."""
    barrier = threading.Barrier(THREADS)

    def attempt(_: int) -> requests.Response:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(attempt, range(THREADS)))


def test_a_refresh_token_is_spent_exactly_once_under_concurrent_requests(live_server: Any) -> None:
    base = live_server.url + "/sandbox"
    login = {"email": "ann@example.test", "password": "pw"}
    requests.post(
        base + "/_control/subjects",
        json={"provider": "coinify", "partner_id": "p", **login},
        headers=control_headers(),
        timeout=10,
    )
    first = requests.post(
        base + "/coinify/auth", json={"grant_type": "password", "partnerId": "p", **login}, timeout=10
    )
    refresh_body = {"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]}

    responses = all_at_once(lambda: requests.post(base + "/coinify/auth", json=refresh_body, timeout=30))

    assert Counter(r.status_code for r in responses) == {200: 1, 400: THREADS - 1}
    assert {r.json()["error_description"] for r in responses if r.status_code == 400} == {
        "Refresh token has already been used."
    }
    winner = next(r for r in responses if r.status_code == 200).json()
    follow_up = requests.post(
        base + "/coinify/auth",
        json={"grant_type": "refresh_token", "refresh_token": winner["refresh_token"]},
        timeout=10,
    )
    assert follow_up.status_code == 200
    log = requests.get(
        base + "/_control/requests",
        params={"provider": "coinify", "grant_type": "refresh_token"},
        headers=control_headers(),
        timeout=10,
    ).json()
    assert log["count"] == THREADS + 1


def test_an_access_code_is_exchanged_exactly_once_under_concurrent_requests(live_server: Any) -> None:
    base = live_server.url + "/sandbox"
    requests.post(base + "/_control/apps", json={"provider": "dapi", **DAPI_APP}, headers=control_headers(), timeout=10)
    login = requests.post(
        base + "/_control/subjects",
        json={"provider": "dapi", "app_key": DAPI_APP["client_id"], "username": "u"},
        headers=control_headers(),
        timeout=10,
    ).json()
    body = {
        "appSecret": DAPI_APP["client_secret"],
        "accessCode": login["access_code"],
        "connectionID": login["connection_id"],
    }

    responses = all_at_once(lambda: requests.post(base + "/dapi/v2/auth/ExchangeToken", json=body, timeout=30))

    assert Counter(r.status_code for r in responses) == {200: 1, 400: THREADS - 1}


def test_a_counted_fault_is_applied_exactly_count_times_under_concurrent_requests(live_server: Any) -> None:
    base = live_server.url + "/sandbox"
    requests.post(
        base + "/_control/faults",
        json={"provider": "bloquo", "kind": "status", "status": 503, "count": 3},
        headers=control_headers(),
        timeout=10,
    )

    responses = all_at_once(lambda: requests.post(base + "/bloquo/api/v1/auth/token", json={}, timeout=30))

    assert Counter(r.status_code for r in responses) == {503: 3, 400: THREADS - 3}
