"""The firm admins' Integrations pages and the Django admin for keys, endpoints and deliveries.

Only a firm admin reaches the pages, and only their own firm's objects; a
new key or signing secret is shown once, on the reply that made it, and on no
page after; the delivery log says what each attempt got back.
"""

from __future__ import annotations

import hashlib
import re
from html import unescape
from typing import Any

import pytest
from django.db import connection as db_connection
from django.test import Client
from django.urls import reverse

from api.models import ApiKey, WebhookDelivery, WebhookEndpoint
from connections import lifecycle
from connections import models as m
from tests.factories import ConnectionFactory, FirmFactory, HouseholdFactory, MembershipFactory, UserFactory
from tests.security.test_pages import csp_directives, scan
from tests.webhook_receiver import Answer, webhook_receiver

from .conftest import endpoint_for

SECRET_VALUE = re.compile(r'value="(whsec_[^"]+)"')
KEY_VALUE = re.compile(r'value="(cpk_[^"]+)"')


@pytest.fixture
def people(db: None) -> dict[str, Any]:
    firm = FirmFactory(name="Harbour Wealth")
    other = FirmFactory(name="Elsewhere Capital")
    return {
        "firm": firm,
        "other": other,
        "admin": MembershipFactory(firm=firm, role=m.Membership.Role.FIRM_ADMIN).user,
        "adviser": MembershipFactory(firm=firm).user,
        "other_admin": MembershipFactory(firm=other, role=m.Membership.Role.FIRM_ADMIN).user,
        "staff": UserFactory(username="root", is_staff=True, is_superuser=True),
    }


def _as(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_only_firm_admins_see_the_integrations_link_and_pages(people: dict[str, Any]) -> None:
    admin_home = _as(people["admin"]).get(reverse("dashboard")).content.decode()
    adviser = _as(people["adviser"])
    assert reverse("integrations:index") in admin_home
    assert reverse("integrations:index") not in adviser.get(reverse("dashboard")).content.decode()
    for name in ("index", "key_new", "endpoint_new"):
        assert adviser.get(reverse(f"integrations:{name}")).status_code == 403
    assert Client().get(reverse("integrations:index")).status_code == 302  # to sign-in


def test_a_firm_admin_makes_a_key_that_is_shown_once_and_then_only_by_its_prefix(people: dict[str, Any]) -> None:
    admin = _as(people["admin"])
    created = admin.post(reverse("integrations:key_new"), {"name": "CRM sync", "scope": "write"})
    assert created.status_code == 200
    assert created["Cache-Control"] == "no-store"
    assert created["Referrer-Policy"] == "no-referrer"
    (key,) = KEY_VALUE.findall(created.content.decode())
    row = ApiKey.objects.get()
    assert (row.firm, row.scope, row.created_by) == (people["firm"], "write", people["admin"])
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()

    listing = admin.get(reverse("integrations:index")).content.decode()
    assert row.prefix in listing
    assert key not in listing
    # The key works against the API, until it is revoked.
    api = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api.get("/api/v1/connections").status_code == 200
    assert admin.post(reverse("integrations:key_revoke", args=[row.pk])).status_code == 302
    assert api.get("/api/v1/connections").status_code == 401


def test_another_firms_key_endpoint_and_delivery_are_not_found(people: dict[str, Any], settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES, settings.WEBHOOK_REQUIRE_HTTPS = True, False
    theirs = endpoint_for(people["other"], "http://127.0.0.1:9/hooks").endpoint
    from api.keys import api_key_create

    their_key = api_key_create(firm=people["other"], name="theirs").api_key
    admin = _as(people["admin"])
    for name in ("endpoint_detail", "endpoint_edit"):
        assert admin.get(reverse(f"integrations:{name}", args=[theirs.pk])).status_code == 404
    for name in ("endpoint_rotate", "endpoint_enable", "endpoint_disable"):
        assert admin.post(reverse(f"integrations:{name}", args=[theirs.pk])).status_code == 404
    assert admin.post(reverse("integrations:key_revoke", args=[their_key.pk])).status_code == 404
    their_key.refresh_from_db()
    assert their_key.revoked_at is None
    theirs.refresh_from_db()
    assert theirs.is_enabled


@pytest.mark.django_db(transaction=True)
def test_a_firm_admin_adds_an_endpoint_reads_its_delivery_log_and_resends(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES, settings.WEBHOOK_REQUIRE_HTTPS = True, False
    firm = FirmFactory()
    admin_user = MembershipFactory(firm=firm, role=m.Membership.Role.FIRM_ADMIN).user
    connection = ConnectionFactory(client__household=HouseholdFactory(firm=firm))
    admin = _as(admin_user)
    with webhook_receiver(Answer(503), Answer(200)) as receiver:
        added = admin.post(
            reverse("integrations:endpoint_new"),
            {"url": receiver.url, "description": "CRM", "event_types": ["connection.disconnected"]},
        )
        assert added.status_code == 200, added.content.decode()
        assert added["Cache-Control"] == "no-store"
        (secret,) = SECRET_VALUE.findall(added.content.decode())
        endpoint = WebhookEndpoint.objects.get()
        assert endpoint.secret == secret
        lifecycle.event_record(
            connection=connection, kind="disconnected", from_status="active", to_status="disconnected"
        )
        receiver.wait_for(1)

        log = admin.get(reverse("integrations:endpoint_detail", args=[endpoint.pk])).content.decode()
        delivery = WebhookDelivery.objects.get()
        assert "connection.disconnected" in log
        assert "503" in log
        assert f"{delivery.last_latency_ms} ms" in log
        attempts = admin.get(reverse("integrations:delivery_detail", args=[delivery.pk])).content.decode()
        assert "503" in attempts

        resent = admin.post(reverse("integrations:delivery_resend", args=[delivery.pk]))
        assert resent.status_code == 302
        first, again = receiver.wait_for(2)
        assert first.headers["webhook-id"] == again.headers["webhook-id"]
        assert again.verifies_with(secret)

        for url in (
            reverse("integrations:index"),
            reverse("integrations:endpoint_detail", args=[endpoint.pk]),
            reverse("integrations:endpoint_edit", args=[endpoint.pk]),
            reverse("integrations:delivery_detail", args=[delivery.pk]),
        ):
            page = admin.get(url)
            assert page.status_code == 200, url
            assert secret not in page.content.decode(), url
            assert scan(page.content.decode()).problems == [], url
            assert csp_directives(page)["script-src"] == ["'self'"], url

    # Rotating shows the new secret once; the old one keeps signing for the overlap.
    rotated = admin.post(reverse("integrations:endpoint_rotate", args=[endpoint.pk]))
    (new_secret,) = SECRET_VALUE.findall(rotated.content.decode())
    endpoint.refresh_from_db()
    assert (endpoint.secret, endpoint.previous_secret) == (new_secret, secret)
    assert admin.post(reverse("integrations:endpoint_disable", args=[endpoint.pk])).status_code == 302
    endpoint.refresh_from_db()
    assert not endpoint.is_enabled


def test_an_endpoint_on_a_private_address_is_refused_by_the_form_in_production(
    people: dict[str, Any], settings: Any
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES, settings.WEBHOOK_REQUIRE_HTTPS = False, True
    admin = _as(people["admin"])
    for url in ("https://10.0.0.5/hooks", "https://169.254.169.254/latest", "http://93.184.215.14/hooks"):
        page = admin.post(reverse("integrations:endpoint_new"), {"url": url, "event_types": ["connection.recovered"]})
        assert page.status_code == 400, url
        assert "field--error" in page.content.decode()
    assert not WebhookEndpoint.objects.exists()


# --- Django admin ---------------------------------------------------------------------------


def test_the_admin_shows_a_new_key_once_and_stores_only_its_hash(people: dict[str, Any]) -> None:
    staff = _as(people["staff"])
    page = staff.post(
        reverse("admin:api_apikey_add"), {"firm": people["firm"].pk, "name": "Reporting", "scope": "read"}
    )
    assert page.status_code == 200
    assert "no-store" in page["Cache-Control"]
    (key,) = KEY_VALUE.findall(page.content.decode())
    row = ApiKey.objects.get()
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    for url in (reverse("admin:api_apikey_changelist"), reverse("admin:api_apikey_change", args=[row.pk])):
        html = staff.get(url).content.decode()
        assert row.prefix in html
        assert key not in html
    staff.post(reverse("admin:api_apikey_changelist"), {"action": "revoke", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.revoked_at is not None


def test_the_admin_shows_a_signing_secret_once_and_refuses_a_private_url(people: dict[str, Any], settings: Any) -> None:
    staff = _as(people["staff"])
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES, settings.WEBHOOK_REQUIRE_HTTPS = False, True
    refused = staff.post(
        reverse("admin:api_webhookendpoint_add"),
        {"firm": people["firm"].pk, "url": "https://127.0.0.1/hooks", "event_types": ["connection.recovered"]},
    )
    assert refused.status_code == 200
    assert "private, loopback" in unescape(refused.content.decode())
    assert not WebhookEndpoint.objects.exists()

    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    added = staff.post(
        reverse("admin:api_webhookendpoint_add"),
        {"firm": people["firm"].pk, "url": "https://127.0.0.1/hooks", "event_types": ["connection.recovered"]},
    )
    (secret,) = SECRET_VALUE.findall(added.content.decode())
    endpoint = WebhookEndpoint.objects.get()
    change = staff.get(reverse("admin:api_webhookendpoint_change", args=[endpoint.pk])).content.decode()
    assert secret not in change
    assert "never shown" in change
    # Encrypted at rest: the column holds no plaintext.
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM api_webhookendpoint")
        (raw,) = cursor.fetchone()
    assert secret not in raw


@pytest.mark.django_db(transaction=True)
def test_the_admin_resends_a_delivery_and_shows_its_attempts(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES, settings.WEBHOOK_REQUIRE_HTTPS = True, False
    staff = _as(UserFactory(username="root", is_staff=True, is_superuser=True))
    connection = ConnectionFactory()
    with webhook_receiver(Answer(500), Answer(200)) as receiver:
        endpoint_for(connection.household.firm, receiver.url)
        lifecycle.event_record(connection=connection, kind="recovered", from_status="degraded", to_status="active")
        receiver.wait_for(1)
        delivery = WebhookDelivery.objects.get()
        page = staff.get(reverse("admin:api_webhookdelivery_change", args=[delivery.pk])).content.decode()
        assert "500" in page
        staff.post(
            reverse("admin:api_webhookdelivery_changelist"), {"action": "resend", "_selected_action": [delivery.pk]}
        )
        received = receiver.wait_for(2)
    assert len(received) == 2
    assert WebhookDelivery.objects.filter(manual=True, status="succeeded").count() == 1


def _page_queries(client: Client, url: str) -> int:
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(db_connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured.captured_queries)


def test_the_pages_query_counts_do_not_grow_with_their_rows(people: dict[str, Any], settings: Any) -> None:
    from api.keys import api_key_create
    from api.models import WebhookEvent

    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES, settings.WEBHOOK_REQUIRE_HTTPS = True, False
    firm, admin = people["firm"], _as(people["admin"])
    connection = ConnectionFactory(client__household=HouseholdFactory(firm=firm))
    endpoint = endpoint_for(firm, "http://127.0.0.1:9/hooks").endpoint

    def grow(count: int) -> None:
        for _ in range(count):
            api_key_create(firm=firm, name="k", user=people["admin"])
            endpoint_for(firm, "http://127.0.0.1:9/more")
            event = lifecycle.event_record(connection=connection, kind="recovered", from_status="degraded")
            made = WebhookEvent.objects.create(
                firm=firm,
                type="connection.recovered",
                connection=connection,
                source_event=event,
                occurred_at=event.created_at,
            )
            WebhookDelivery.objects.create(event=made, endpoint=endpoint, status="failed", attempts=7)

    pages = (reverse("integrations:index"), reverse("integrations:endpoint_detail", args=[endpoint.pk]))
    grow(1)
    few = [_page_queries(admin, url) for url in pages]
    grow(6)
    assert [_page_queries(admin, url) for url in pages] == few
