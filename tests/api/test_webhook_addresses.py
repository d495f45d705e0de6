"""Where webhooks may go: https and public addresses only in production, checked when saved and when sent.

The production values of the two settings are what ``portal/settings.py``
gives with ``DEBUG`` off (tests/security/test_production_settings.py reads
them from a production process); here the test sets them directly.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from api.models import WebhookDelivery, WebhookEndpoint
from api.webhooks.addresses import address_is_public, webhook_url_problems
from api.webhooks.services import endpoint_create
from connections import lifecycle
from connections import models as m
from tests.factories import ConnectionFactory
from tests.webhook_receiver import Answer, webhook_receiver

from .conftest import ALL_TYPES


@pytest.fixture
def production(settings: Any) -> None:
    settings.WEBHOOK_REQUIRE_HTTPS = True
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False


REFUSED = {
    "http://hooks.example.com/portal": "must use https",
    "https://127.0.0.1/hooks": "private, loopback",
    "https://localhost:8443/hooks": "private, loopback",
    "https://10.0.0.8/hooks": "private, loopback",
    "https://192.168.1.20/hooks": "private, loopback",
    "https://172.16.5.4/hooks": "private, loopback",
    "https://169.254.169.254/latest/meta-data/": "private, loopback",
    "https://100.64.0.1/hooks": "private, loopback",
    "https://0.0.0.0/hooks": "private, loopback",
    "https://[::1]/hooks": "private, loopback",
    "https://[fd00::1]/hooks": "private, loopback",
    "https://[fe80::1]/hooks": "private, loopback",
    "https://[::ffff:127.0.0.1]/hooks": "private, loopback",
    "https://224.0.0.1/hooks": "private, loopback",
    "https://user:password@93.184.215.14/hooks": "user names and passwords",
    "ftp://93.184.215.14/hooks": "full URL",
    "https:///hooks": "full URL",
}


@pytest.mark.usefixtures("production")
@pytest.mark.parametrize("url", sorted(REFUSED))
def test_an_endpoint_on_a_private_address_or_without_https_is_refused_in_production(url: str) -> None:
    problems = webhook_url_problems(url)
    assert len(problems) == 1
    assert REFUSED[url] in problems[0]


@pytest.mark.usefixtures("production")
def test_a_public_https_address_is_accepted_in_production() -> None:
    assert webhook_url_problems("https://93.184.215.14/hooks/portal?source=portal") == []


@pytest.mark.usefixtures("production")
@pytest.mark.django_db
def test_creating_an_endpoint_on_a_private_address_is_refused_and_saves_nothing() -> None:
    connection = ConnectionFactory()
    with pytest.raises(ValueError, match="private, loopback"):
        endpoint_create(firm=connection.household.firm, url="https://127.0.0.1:9000/x", event_types=ALL_TYPES)
    assert not WebhookEndpoint.objects.exists()


def test_the_rule_on_addresses_is_the_global_unicast_range() -> None:
    public = ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"]
    private = ["127.0.0.1", "10.1.2.3", "169.254.1.1", "100.100.1.1", "::1", "fc00::1", "::ffff:10.0.0.1", "ff02::1"]
    assert all(address_is_public(ipaddress.ip_address(a)) for a in public)
    assert not any(address_is_public(ipaddress.ip_address(a)) for a in private)


@pytest.mark.django_db(transaction=True)
def test_an_address_is_checked_again_when_each_delivery_is_sent(settings: Any) -> None:
    """An endpoint saved while local addresses were allowed is not sent to once production rules apply."""
    settings.WEBHOOK_REQUIRE_HTTPS = False
    connection = ConnectionFactory()
    with webhook_receiver(Answer(200)) as receiver:
        settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
        endpoint_create(firm=connection.household.firm, url=receiver.url, event_types=ALL_TYPES)
        lifecycle.event_record(
            connection=connection, kind="disconnected", from_status="active", to_status="disconnected"
        )
        assert len(receiver.wait_for(1)) == 1  # allowed: delivered

        settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
        lifecycle.event_record(connection=connection, kind="recovered", from_status="degraded", to_status="active")
        assert len(receiver.wait_for(2, timeout=0.5)) == 1  # refused: nothing sent

    refused = WebhookDelivery.objects.filter(event__type="connection.recovered").get()
    assert refused.status == "pending"  # retried later, as any failure is
    assert refused.last_status_code is None
    assert "private, loopback" in refused.last_error
    assert m.ConnectionEvent.objects.count() == 2
