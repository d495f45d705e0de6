"""Each page says what is true, what to do, and by when (the adviser-experience round)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from connections import lifecycle, selectors, wording
from connections import models as m
from connections.providers.errors import AuthorizationDenied
from tests.factories import AccountFactory, AuthorizationRequestFactory, ConnectionFactory

from .conftest import World


def _card(body: str, connection: m.Connection) -> str:
    start = body.index(f'id="connection-{connection.pk}"')
    return body[start : body.index("</article>", start)]


def test_the_status_count_cards_lead_to_the_list_of_that_status(adviser_client: Any, world: World) -> None:
    broken = ConnectionFactory(
        client=world.client,
        provider_app=world.turnqey,
        platform="gemini",
        status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.REVOKED,
        next_check_at=None,
    )
    body = adviser_client.get(reverse("dashboard")).content.decode()
    for status in ("needs_reconnect", "degraded", "pending", "active", "disconnected"):
        assert f"{reverse('connection_list')}?status={status}" in body

    listed = adviser_client.get(reverse("connection_list"), {"status": "needs_reconnect"})
    assert listed.status_code == 200
    page = listed.content.decode()
    assert reverse("connection_detail", args=[broken.pk]) in page
    assert reverse("connection_detail", args=[world.connection.pk]) not in page  # active
    assert reverse("connection_detail", args=[world.foreign_connection.pk]) not in page  # another firm


def test_the_status_list_costs_the_same_queries_for_many_rows(adviser_client: Any, world: World) -> None:
    def queries() -> int:
        selectors.provider_form_action_origins_forget()  # each request reads them, as the first would
        with CaptureQueriesContext(db_connection) as captured:
            assert adviser_client.get(reverse("connection_list"), {"status": "active"}).status_code == 200
        return len(captured)

    few = queries()
    for _ in range(15):
        ConnectionFactory(client=world.client, provider_app=world.turnqey, platform="kraken")
    assert queries() == few


def test_a_degraded_connection_offers_check_now_not_reconnect(adviser_client: Any, world: World) -> None:
    degraded = ConnectionFactory(
        client=world.client,
        provider_app=world.turnqey,
        platform="kraken",
        status=m.Status.DEGRADED,
        reason=m.Reason.TRANSIENT,
        consecutive_failures=4,
        degraded_since=timezone.now() - timedelta(hours=3),
    )
    card = _card(adviser_client.get(reverse("household_detail", args=[world.household.pk])).content.decode(), degraded)
    assert 'button--primary">Check now' in card
    assert reverse("connection_reconnect", args=[degraded.pk]) not in card
    assert "No action needed yet" not in card
    assert "The portal retries by itself" in card
    attention = adviser_client.get(reverse("attention_list")).content.decode()
    row = attention[attention.index(reverse("connection_detail", args=[degraded.pk])) :].split("</tr>", 1)[0]
    assert reverse("connection_check", args=[degraded.pk]) in row
    assert reverse("connection_reconnect", args=[degraded.pk]) not in row


def test_a_pending_connection_past_its_window_is_shown_lapsed_with_start_again(
    adviser_client: Any, world: World
) -> None:
    pending = ConnectionFactory(
        client=world.client,
        provider_app=world.turnqey,
        platform="gemini",
        status=m.Status.PENDING,
        external_account_id="",
        next_check_at=None,
    )
    AuthorizationRequestFactory(connection=pending, expires_at=timezone.now() - timedelta(minutes=1))
    card = _card(adviser_client.get(reverse("household_detail", args=[world.household.pk])).content.decode(), pending)
    assert "Lapsed" in card
    assert "Start again" in card
    assert "Resume" not in card
    assert "waiting for the client" not in card


def test_a_pending_connection_inside_its_window_waits_for_the_client(adviser_client: Any, world: World) -> None:
    pending = ConnectionFactory(
        client=world.client,
        provider_app=world.turnqey,
        platform="gemini",
        status=m.Status.PENDING,
        external_account_id="",
        next_check_at=None,
    )
    AuthorizationRequestFactory(connection=pending, expires_at=timezone.now() + timedelta(minutes=10))
    card = _card(adviser_client.get(reverse("household_detail", args=[world.household.pk])).content.decode(), pending)
    assert "waiting for the client" in card
    assert "Resume" in card


def test_the_connection_page_shows_accounts_and_balances_with_sensible_precision(
    adviser_client: Any, world: World
) -> None:
    AccountFactory(connection=world.connection, name="BTC Wallet", currency="BTC", balance=Decimal("0.5"))
    AccountFactory(connection=world.connection, name="Cash", currency="USDC", balance=Decimal("1234.5"))
    body = adviser_client.get(reverse("connection_detail", args=[world.connection.pk])).content.decode()
    assert "Accounts and balances" in body
    assert ">0.50<" in body
    assert ">1,234.50<" in body
    assert "0.500000000000000000" not in body


@pytest.mark.parametrize(
    ("value", "currency", "shown"),
    [
        ("0.500000000000000000", "BTC", "0.50"),
        ("0.123456789", "BTC", "0.12345679"),
        ("1234.5", "USD", "1,234.50"),
        ("1234.567", "USDC", "1,234.57"),
        ("12.000000000000000000", "SOL", "12.00"),
        ("0.000000000001", "ETH", "0.00"),
        ("42", "XYZ", "42.00"),
    ],
)
def test_balances_use_the_currencys_precision(value: str, currency: str, shown: str) -> None:
    assert wording.amount(Decimal(value), currency) == shown


def test_admin_shows_balances_the_same_way(client: Any, world: World) -> None:
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    AccountFactory(connection=world.connection, name="BTC Wallet", currency="BTC", balance=Decimal("0.5"))
    body = client.get(reverse("admin:connections_account_changelist")).content.decode()
    assert "0.50" in body
    assert "0.500000000000000000" not in body


def test_sources_have_one_name_everywhere(adviser_client: Any, world: World) -> None:
    coinify = ConnectionFactory(
        client=world.client,
        provider_app=world.coinify,
        platform="coinify",
        status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.EXPIRED,
        next_check_at=None,
    )
    pages = [
        adviser_client.get(reverse("dashboard")).content.decode(),
        adviser_client.get(reverse("attention_list")).content.decode(),
        adviser_client.get(reverse("household_detail", args=[world.household.pk])).content.decode(),
        adviser_client.get(reverse("connection_detail", args=[coinify.pk])).content.decode(),
    ]
    for page in pages:
        assert "Coinify via Coinify" not in page
        assert "via Coinify</div>" not in page
        assert "Sandbox (Sandbox)" not in page
    assert str(world.coinify) == "Coinify Sandbox"


@pytest.mark.parametrize(
    ("provider", "callback"),
    [("turnqey", {"status": "denied"}), ("turnqey", {"status": "error"}), ("dapi", {"error": "access_denied"})],
)
@pytest.mark.parametrize("platform", ["metamask", "coinbase", "bitstamp"])
def test_a_providers_own_sentences_name_the_source_as_the_pages_do(
    world: World, provider: str, callback: dict[str, str], platform: str
) -> None:
    client = lifecycle.client_for_app(app=getattr(world, provider))

    with pytest.raises(AuthorizationDenied) as refused:
        client.complete_authorization(params=callback, platform=platform, identity=str(world.client.identity))

    assert refused.value.message.startswith(f"{wording.source_name(provider=provider, platform=platform)}: ")


def test_a_failed_check_names_the_source_in_its_error_event_and_page_as_everywhere_else(
    adviser_client: Any, world: World
) -> None:
    # A Dapi connection with no token stored: the real client refuses before sending anything.
    connection = ConnectionFactory(client=world.client, provider_app=world.dapi, platform="metamask")

    lifecycle.connection_check(connection_id=connection.pk, force=True)

    connection.refresh_from_db()
    assert connection.status == m.Status.NEEDS_RECONNECT
    assert connection.last_error.startswith("MetaMask via Dapi: no access token is stored")
    event = connection.events.get(kind=m.ConnectionEvent.Kind.CHECK_FAILED)
    assert "MetaMask via Dapi" in event.message
    page = adviser_client.get(reverse("connection_detail", args=[connection.pk])).content.decode()
    assert "MetaMask via Dapi" in page
    assert "Metamask" not in event.message + connection.last_error + page
