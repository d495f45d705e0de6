"""The admin's webhook delivery log, per endpoint and per firm, reached from the endpoint's own page."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from api.models import WebhookDelivery, WebhookEndpoint
from connections import lifecycle
from connections import models as m
from tests.factories import ConnectionFactory, UserFactory
from tests.webhook_receiver import Answer, webhook_receiver

from .conftest import endpoint_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("local_receivers")]

CHANGELIST = "admin:api_webhookdelivery_changelist"


def _revoked(connection: m.Connection) -> None:
    m.Connection.objects.filter(pk=connection.pk).update(status=m.Status.NEEDS_RECONNECT, reason=m.Reason.REVOKED)
    lifecycle.event_record(
        connection=connection,
        kind="check_failed",
        from_status=m.Status.ACTIVE,
        to_status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.REVOKED,
        message="Revoked.",
    )


@pytest.fixture
def superuser(client: Client) -> Client:
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def _rows(page: Any) -> set[int]:
    """The delivery ids the changelist shows (its action checkboxes)."""
    return {int(pk) for pk in page.context["cl"].result_list.values_list("pk", flat=True)}


def test_the_delivery_log_filters_by_endpoint_and_by_firm(superuser: Client) -> None:
    ours, theirs = ConnectionFactory(), ConnectionFactory()
    with webhook_receiver(Answer(200)) as crm, webhook_receiver(Answer(200)) as erp:
        endpoint_for(ours.household.firm, crm.url)
        endpoint_for(ours.household.firm, erp.url + "/erp")
        endpoint_for(theirs.household.firm, crm.url + "/theirs")
        _revoked(ours)
        _revoked(theirs)
        crm.wait_for(2)
        erp.wait_for(1)
    crm_endpoint = WebhookEndpoint.objects.get(url=crm.url)
    by_endpoint = {e.url: set(e.deliveries.values_list("pk", flat=True)) for e in WebhookEndpoint.objects.all()}
    assert WebhookDelivery.objects.count() == 3

    everything = superuser.get(reverse(CHANGELIST))
    assert everything.status_code == 200
    assert _rows(everything) == set(WebhookDelivery.objects.values_list("pk", flat=True))
    body = everything.content.decode()
    assert "By endpoint" in body
    assert f"{crm.url} ({ours.household.firm.name})" in body

    one = superuser.get(reverse(CHANGELIST), {"endpoint": crm_endpoint.pk})
    assert one.status_code == 200
    assert _rows(one) == by_endpoint[crm.url]
    assert len(_rows(one)) == 1

    firm = superuser.get(reverse(CHANGELIST), {"endpoint__firm__id__exact": ours.household.firm_id})
    assert _rows(firm) == by_endpoint[crm.url] | by_endpoint[erp.url + "/erp"]

    assert _rows(superuser.get(reverse(CHANGELIST), {"endpoint": "not-a-number"})) == set()


def test_an_endpoints_page_links_to_its_own_deliveries(superuser: Client) -> None:
    connection = ConnectionFactory()
    made = endpoint_for(connection.household.firm, "http://127.0.0.1:9/hooks")
    page = superuser.get(reverse("admin:api_webhookendpoint_change", args=[made.endpoint.pk]))
    assert page.status_code == 200
    assert f'{reverse(CHANGELIST)}?endpoint={made.endpoint.pk}"' in page.content.decode()
    assert made.secret not in page.content.decode()
