"""Webhooks end to end: a connection revoked at the sandbox, then reconnected, as a firm's receiver sees it.

The connection is made the portal's way against the sandbox; the provider
revokes it; the beat's sweep notices; the client reconnects at the consent
page. A real HTTP receiver on this machine verifies every delivery with the
``standardwebhooks`` library, and the API's feed replays the same events.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.urls import reverse

from api.keys import api_key_create
from api.models import ApiKey, EventType
from api.webhooks.services import endpoint_create
from connections import models as m
from tests.webhook_receiver import Answer, webhook_receiver

from .support import Beat, Clock, Portal, SandboxControl, connect_turnqey, consent, fresh, reconnect_turnqey


@pytest.fixture
def local_receivers(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    settings.WEBHOOK_REQUIRE_HTTPS = False


def _revoked_at_the_sandbox(sandbox: SandboxControl, portal: Portal, clock: Clock, beat: Beat) -> m.Connection:
    """A Coinbase connection made through Turnqey, revoked at the sandbox and found so by the next sweep."""
    connection = connect_turnqey(portal, platform="coinbase")
    assert sandbox.act("turnqey", "revoke", identity=str(portal.client.identity), platform="coinbase") >= 1
    clock.move_to(fresh(connection).next_check_at)
    beat.tick()
    assert fresh(connection).status == m.Status.NEEDS_RECONNECT
    return connection


@pytest.mark.usefixtures("local_receivers")
def test_a_revoked_connection_sends_one_needs_reconnect_and_after_the_reconnect_one_recovered(
    sandbox: SandboxControl, portal: Portal, clock: Clock, beat: Beat, live_server: Any
) -> None:
    firm = portal.household.firm
    with webhook_receiver(Answer(200)) as receiver:
        endpoint = endpoint_create(firm=firm, url=receiver.url, event_types=EventType.values)
        connection = _revoked_at_the_sandbox(sandbox, portal, clock, beat)
        # A day of sweeps: the prompt stands, nothing more is said.
        for _ in range(24):
            clock.advance(timedelta(hours=1))
            beat.tick()
        assert len(receiver.wait_for(2, timeout=0.5)) == 1

        reconnected = reconnect_turnqey(portal, fresh(connection))
        assert reconnected.status == m.Status.ACTIVE
        # Healthy again for a while: routine checks say nothing.
        for _ in range(6):
            clock.advance(timedelta(minutes=20))
            beat.tick()
        received = receiver.wait_for(3, timeout=1.0)

    payloads = [r.verified(endpoint.secret) for r in received]
    assert [p["type"] for p in payloads] == ["connection.needs_reconnect", "connection.recovered"]
    broken, recovered = payloads
    assert broken["data"]["connection"]["id"] == recovered["data"]["connection"]["id"] == connection.pk
    assert broken["data"]["event"]["reason"] == "revoked"
    assert broken["data"]["connection"]["message"] == (
        "Coinbase via Turnqey: access was revoked at Coinbase. Ask the client to reconnect."
    )
    assert recovered["data"]["connection"]["status"] == "active"
    assert [r.headers["webhook-id"] for r in received] == [p["id"] for p in payloads]

    # The feed replays the same two events, in order, for a consumer catching up.
    key = api_key_create(firm=firm, name="catch-up").key
    feed = requests.get(
        f"{live_server.url}/api/v1/events", headers={"Authorization": f"Bearer {key}"}, timeout=10
    ).json()
    assert [(e["id"], e["type"]) for e in feed["items"]] == [(p["id"], p["type"]) for p in payloads]
    assert json.loads(received[0].body)["timestamp"] == feed["items"][0]["timestamp"]


@pytest.mark.usefixtures("local_receivers")
def test_a_link_sent_through_the_api_is_opened_and_completed_and_each_step_is_a_signed_webhook(
    sandbox: SandboxControl, portal: Portal, clock: Clock, beat: Beat, live_server: Any
) -> None:
    """Revoked at the sandbox, the firm's CRM sends a link through the API; the client opens it and reconnects."""
    firm = portal.household.firm
    with webhook_receiver(Answer(200)) as receiver:
        endpoint = endpoint_create(firm=firm, url=receiver.url, event_types=EventType.values)
        connection = _revoked_at_the_sandbox(sandbox, portal, clock, beat)

        key = api_key_create(firm=firm, name="CRM", scope=ApiKey.Scope.WRITE).key
        sent = requests.post(
            f"{live_server.url}/api/v1/connections/{connection.pk}/client-links",
            json={"send_email": False},
            headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "crm-task-1"},
            timeout=15,
        )
        assert sent.status_code == 201, sent.text
        link_path = urlsplit(sent.json()["url"]).path

        with requests.Session() as browser:
            page = browser.get(live_server.url + link_path, timeout=15)
            assert page.status_code == 200
            start = browser.post(live_server.url + link_path, allow_redirects=False, timeout=15)
            assert start.status_code == 302, start.text
            callback = consent(start.headers["Location"])  # approved at Turnqey's consent page
            assert callback.get("status") == "success", callback
            done = browser.get(
                live_server.url + reverse("connect_callback", args=["turnqey"]), params=callback, timeout=15
            )
            assert done.status_code == 200
            assert "you are connected" in done.text
        assert fresh(connection).status == m.Status.ACTIVE
        received = receiver.wait_for(6, timeout=1.0)

    payloads = [r.verified(endpoint.secret) for r in received]
    types = [p["type"] for p in payloads]
    assert sorted(types) == sorted(
        [
            "connection.needs_reconnect",
            "client_link.sent",
            "client_link.opened",
            "client_link.completed",
            "connection.recovered",
        ]
    )
    assert types[:3] == ["connection.needs_reconnect", "client_link.sent", "client_link.opened"]
    by_type = {p["type"]: p["data"] for p in payloads}
    link_id = sent.json()["id"]
    for step in ("client_link.sent", "client_link.opened", "client_link.completed"):
        assert by_type[step]["client_link"]["id"] == link_id, step
        assert by_type[step]["connection"]["id"] == connection.pk, step
    completed = by_type["client_link.completed"]
    assert completed["event"]["kind"] == "link_completed"
    assert completed["client_link"]["status"] == "completed"
    assert completed["client_link"]["completed_at"] is not None
    assert completed["connection"]["status"] == "active"
    assert link_path not in b"".join(r.body for r in received).decode()
