"""Household page: connections with reasons and deadlines in words, actions, links, and query counts."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from connections import models as m
from connections import selectors
from connections.providers.errors import FailureReason, ProviderError
from tests.factories import AccountFactory, ClientFactory, ConnectionFactory, CredentialFactory

from .conftest import FakeProvider, World


def test_household_page_shows_clients_connections_reasons_and_balances(adviser_client: Any, world: World) -> None:
    broken = ConnectionFactory(
        client=world.client,
        provider_app=world.turnqey,
        platform="gemini",
        status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.REVOKED,
    )
    AccountFactory(connection=world.connection, name="Main BTC", currency="BTC", balance=Decimal("1234.5"))
    body = adviser_client.get(reverse("household_detail", args=[world.household.pk])).content.decode()
    assert "Linh Nguyen" in body
    assert "linh@example.test" in body
    assert "Gemini via Turnqey: access was revoked at Gemini. Ask the client to reconnect." in body
    assert "Coinbase via Turnqey: connected and up to date." in body
    assert "Main BTC" in body
    assert "1,234.50 BTC" in body
    assert reverse("connection_reconnect", args=[broken.pk]) in body
    assert reverse("connection_link_send", args=[broken.pk]) in body
    assert reverse("connection_disconnect", args=[broken.pk]) in body
    assert reverse("household_connect", args=[world.household.pk]) in body


def test_every_deadline_is_shown_in_words(adviser_client: Any, world: World) -> None:
    now = timezone.now()
    coinify = ConnectionFactory(
        client=world.client,
        provider_app=world.coinify,
        platform="coinify",
        reconnect_by=now + timedelta(hours=3, minutes=5),
        next_check_at=now + timedelta(minutes=7, seconds=30),
    )
    CredentialFactory(connection=coinify, kind="access", expires_at=now + timedelta(minutes=12, seconds=30))
    CredentialFactory(connection=coinify, kind="refresh", expires_at=now + timedelta(hours=3))
    body = adviser_client.get(reverse("household_detail", args=[world.household.pk])).content.decode()
    assert "Access renews in 12\xa0minutes" in body
    assert "Reconnect by " in body
    assert "(in 3\xa0hours)" in body
    assert "Next check in 7\xa0minutes" in body


def test_a_sign_in_that_keeps_renewing_is_not_written_as_a_deadline(adviser_client: Any, world: World) -> None:
    now = timezone.now()
    coinify = ConnectionFactory(
        client=world.client,
        provider_app=world.coinify,
        platform="coinify",
        reconnect_by=now + timedelta(hours=23, minutes=50),
        reconnect_by_rolls=True,
    )
    CredentialFactory(
        connection=coinify, kind="refresh", issued_at=now - timedelta(minutes=10), expires_at=coinify.reconnect_by
    )
    body = adviser_client.get(reverse("household_detail", args=[world.household.pk])).content.decode()
    assert "Keeps renewing itself; needs the client only if renewals stop for 24 hours" in body
    assert "Reconnect by" not in body
    assert "Hard deadline" not in body

    # Renewals stopped 13 hours ago: now it is a deadline, and an urgent one.
    m.Credential.objects.filter(connection=coinify, kind="refresh").update(issued_at=now - timedelta(hours=13))
    m.Connection.objects.filter(pk=coinify.pk).update(reconnect_by=now + timedelta(hours=11))
    body = adviser_client.get(reverse("household_detail", args=[world.household.pk])).content.decode()
    assert "Renewals have stopped: reconnect by " in body


def test_a_deadline_that_went_by_reads_as_expired_with_the_next_step(adviser_client: Any, world: World) -> None:
    gone = timezone.now() - timedelta(days=7)
    ConnectionFactory(
        client=world.client,
        provider_app=world.coinify,
        platform="coinify",
        status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.EXPIRED,
        reconnect_by=gone,
        next_check_at=None,
    )
    body = adviser_client.get(reverse("household_detail", args=[world.household.pk])).content.decode()
    assert "Expired on " in body
    assert "ask the client to reconnect" in body
    assert "ago)" not in body.split("Expired on", 1)[1].split("</dd>", 1)[0]


def _household_queries(client: Any, world: World) -> int:
    selectors.provider_form_action_origins_forget()  # each request reads them, as the first would
    with CaptureQueriesContext(db_connection) as queries:
        response = client.get(reverse("household_detail", args=[world.household.pk]))
    assert response.status_code == 200
    return len(queries)


def _add_connections(world: World, count: int) -> None:
    now = timezone.now()
    for i in range(count):
        client = world.client if i % 2 else ClientFactory(household=world.household)
        connection = ConnectionFactory(
            client=client,
            provider_app=world.coinify if i % 3 else world.turnqey,
            status=m.Status.NEEDS_RECONNECT if i % 4 == 0 else m.Status.ACTIVE,
            reason=m.Reason.EXPIRED if i % 4 == 0 else "",
            reconnect_by=now + timedelta(hours=i) if i % 5 == 0 else None,
        )
        CredentialFactory(connection=connection, kind="access")
        AccountFactory(connection=connection)
        m.ClientLink.objects.create(
            token_hash=uuid.uuid4().hex * 2,
            household=world.household,
            client=client,
            connection=connection,
            provider_app=connection.provider_app,
            platform=connection.platform,
            sent_to="x@example.test",
            expires_at=now + timedelta(days=i % 9 - 2),
        )


def test_household_page_query_count_does_not_grow_with_connections(client: Any, world: World) -> None:
    client.force_login(world.adviser)
    _add_connections(world, 10)
    small = _household_queries(client, world)
    _add_connections(world, 190)
    large = _household_queries(client, world)
    assert world.household.connections.count() == 201
    assert large == small


def test_client_links_show_sent_opened_completed_and_expired(adviser_client: Any, world: World) -> None:
    now = timezone.now()
    base = {
        "household": world.household,
        "client": world.client,
        "provider_app": world.turnqey,
        "platform": "coinbase",
        "sent_to": "linh@example.test",
        "sent_at": now,
    }
    m.ClientLink.objects.create(token_hash="a" * 64, status="sent", expires_at=now + timedelta(days=1), **base)
    m.ClientLink.objects.create(
        token_hash="b" * 64, status="opened", opened_at=now, expires_at=now + timedelta(days=1), **base
    )
    m.ClientLink.objects.create(
        token_hash="c" * 64, status="completed", completed_at=now, expires_at=now + timedelta(days=1), **base
    )
    m.ClientLink.objects.create(token_hash="d" * 64, status="sent", expires_at=now - timedelta(minutes=1), **base)
    body = adviser_client.get(reverse("household_detail", args=[world.household.pk])).content.decode()
    for status in ("sent", "opened", "completed", "expired"):
        assert f'link-status--{status}">{status.capitalize()}<' in body


def test_check_now_with_htmx_swaps_the_connection_card(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    fake_provider.probe_error = ProviderError.reauth(FailureReason.REVOKED, "Access was revoked.")
    response = adviser_client.post(reverse("connection_check", args=[world.connection.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith("<article")
    assert f'id="connection-{world.connection.pk}"' in body
    assert "<html" not in body
    assert "access was revoked at Coinbase" in body
    assert 'hx-swap-oob="true"' in body  # the live region announces the result
    world.connection.refresh_from_db()
    assert world.connection.status == m.Status.NEEDS_RECONNECT
    assert fake_provider.probes == 1


def test_check_now_without_javascript_redirects_with_a_message(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    response = adviser_client.post(reverse("connection_check", args=[world.connection.pk]), follow=True)
    assert response.redirect_chain[-1][0] == reverse("household_detail", args=[world.household.pk])
    assert "Checked just now. Coinbase via Turnqey: connected and up to date." in response.content.decode()
    world.connection.refresh_from_db()
    assert world.connection.last_checked_at is not None


@pytest.mark.parametrize(
    ("probe_error", "said"),
    [
        (ProviderError.transient("Turnqey (accounts): had a server error (HTTP 503)."), "did not answer properly"),
        (RuntimeError("a bug in the portal"), "could not be completed because of an internal error"),
        (ProviderError.app_credentials("Turnqey rejected the client credentials."), "rejected the portal's own"),
    ],
)
def test_check_now_after_a_failed_check_says_what_happened_not_that_all_is_well(
    adviser_client: Any, world: World, fake_provider: FakeProvider, probe_error: Exception, said: str
) -> None:
    fake_provider.probe_error = probe_error
    response = adviser_client.post(reverse("connection_check", args=[world.connection.pk]), follow=True)
    messages = [str(message) for message in response.context["messages"]]
    assert len(messages) == 1
    assert said in messages[0]
    assert "Checked just now. Coinbase via Turnqey: connected and up to date." not in messages[0]


def test_check_now_needs_a_post(adviser_client: Any, world: World) -> None:
    assert adviser_client.get(reverse("connection_check", args=[world.connection.pk])).status_code == 405


def test_disconnect_asks_for_confirmation_then_revokes(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    CredentialFactory(connection=world.connection, kind="access")
    url = reverse("connection_disconnect", args=[world.connection.pk])
    page = adviser_client.get(url)
    assert page.status_code == 200
    assert b"Disconnect Coinbase via Turnqey?" in page.content
    world.connection.refresh_from_db()
    assert world.connection.status == m.Status.ACTIVE  # the GET changed nothing
    response = adviser_client.post(url, follow=True)
    assert response.redirect_chain[-1][0] == reverse("household_detail", args=[world.household.pk])
    world.connection.refresh_from_db()
    assert world.connection.status == m.Status.DISCONNECTED
    assert fake_provider.revoked == [world.connection.external_account_id]
    assert not world.connection.credentials.exists()
    assert "was disconnected" in response.content.decode()
