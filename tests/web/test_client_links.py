"""Client links: signed, hashed, expiring, emailed, tracked, and usable without a login."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from django.conf import settings
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from connections import models as m
from connections import services
from tests.factories import ClientFactory, ConnectionFactory

from .conftest import FakeProvider, World, sha256


def _send_reconnect_link(adviser_client: Any, connection: m.Connection) -> str:
    response = adviser_client.post(reverse("connection_link_send", args=[connection.pk]))
    assert response.status_code == 302
    match = re.search(rf"{re.escape(settings.PORTAL_BASE_URL)}(/link/[^/\s]+/)", mail.outbox[-1].body)
    assert match is not None
    return match.group(1)


def test_sending_a_link_emails_the_client_and_stores_only_a_hash(
    adviser_client: Any, world: World, broken: m.Connection
) -> None:
    path = _send_reconnect_link(adviser_client, broken)
    token = path.split("/")[2]
    link = m.ClientLink.objects.get()
    raw = token.split(":")[0]
    assert link.token_hash == sha256(raw)
    assert token not in str(m.ClientLink.objects.values().get())
    assert raw not in str(m.ClientLink.objects.values().get())
    assert link.status == "sent"
    assert link.sent_to == "linh@example.test"
    assert link.connection == broken
    assert timedelta(days=6, hours=23) < link.expires_at - timezone.now() <= timedelta(days=7)
    email = mail.outbox[-1]
    assert email.to == ["linh@example.test"]
    assert "Harbour Wealth" in email.subject
    assert "Kraken" in email.subject
    html = email.alternatives[0][0]
    assert path in html
    assert "Read-only" in html
    assert broken.events.filter(kind=m.ConnectionEvent.Kind.LINK_SENT).exists()
    page = adviser_client.get(reverse("household_detail", args=[world.household.pk])).content.decode()
    assert 'link-status--sent">Sent<' in page


def test_link_page_names_firm_client_source_and_read_only_access(
    adviser_client: Any, world: World, broken: m.Connection, fake_provider: FakeProvider
) -> None:
    path = _send_reconnect_link(adviser_client, broken)
    visitor = Client()
    response = visitor.get(path)
    assert response.status_code == 200
    assert response["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()
    for text in ("Harbour Wealth", "Linh Nguyen", "Kraken", "Turnqey", "Read-only.", "Continue to Turnqey"):
        assert text in body
    link = m.ClientLink.objects.get()
    assert link.status == "opened"
    assert link.opened_at is not None
    assert broken.events.filter(kind=m.ConnectionEvent.Kind.LINK_OPENED).count() == 1
    visitor.get(path)
    assert broken.events.filter(kind=m.ConnectionEvent.Kind.LINK_OPENED).count() == 1  # tracked once


def test_tampered_link_is_a_400(adviser_client: Any, world: World, broken: m.Connection) -> None:
    path = _send_reconnect_link(adviser_client, broken)
    token = path.split("/")[2]
    tampered = ("B" if token[0] != "B" else "C") + token[1:]
    response = Client().get(reverse("client_link", args=[tampered]))
    assert response.status_code == 400
    assert "This link is not valid" in response.content.decode()
    assert Client().get(reverse("client_link", args=["no-signature-at-all"])).status_code == 400
    assert m.ClientLink.objects.get().status == "sent"


def test_expired_link_is_a_410_and_marked_expired(adviser_client: Any, world: World, broken: m.Connection) -> None:
    path = _send_reconnect_link(adviser_client, broken)
    m.ClientLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = Client().get(path)
    assert response.status_code == 410
    assert "This link has expired" in response.content.decode()
    assert m.ClientLink.objects.get().status == "expired"
    assert broken.events.filter(kind=m.ConnectionEvent.Kind.LINK_EXPIRED).count() == 1


def test_link_older_than_its_signature_allows_is_a_410(
    adviser_client: Any, world: World, broken: m.Connection, settings: Any
) -> None:
    path = _send_reconnect_link(adviser_client, broken)
    settings.CLIENT_LINK_MAX_AGE_DAYS = -1  # every signature is now too old
    response = Client().get(path)
    assert response.status_code == 410
    assert m.ClientLink.objects.get().status == "expired"


def test_reconnect_link_flow_end_to_end_without_a_login(
    adviser_client: Any, world: World, broken: m.Connection, fake_provider: FakeProvider
) -> None:
    path = _send_reconnect_link(adviser_client, broken)
    visitor = Client()
    visitor.get(path)
    start = visitor.post(path)
    assert start.status_code == 302
    assert start["Referrer-Policy"] == "no-referrer"
    state = FakeProvider.state_from(start["Location"])
    request = m.AuthorizationRequest.objects.get()
    assert request.client_link is not None
    assert request.started_by is None
    assert request.purpose == "reconnect"
    done = visitor.get(
        reverse("connect_callback", args=["turnqey"]) + "?" + urlencode({"state": state, "status": "success"})
    )
    assert done.status_code == 200
    assert "Thank you, you are connected" in done.content.decode()
    broken.refresh_from_db()
    assert broken.status == m.Status.ACTIVE
    link = m.ClientLink.objects.get()
    assert link.status == "completed"
    assert link.completed_at is not None
    assert broken.events.filter(kind=m.ConnectionEvent.Kind.LINK_COMPLETED).count() == 1
    again = visitor.get(path)
    assert again.status_code == 410
    assert "already used" in again.content.decode()
    page = adviser_client.get(reverse("household_detail", args=[world.household.pk])).content.decode()
    assert 'link-status--completed">Completed<' in page


def test_new_connection_link_with_a_credential_form(
    adviser_client: Any, world: World, fake_provider: FakeProvider
) -> None:
    response = adviser_client.post(
        reverse("household_link_new", args=[world.household.pk]),
        {"client": world.client.pk, "provider_app": world.coinify.pk, "platform": "coinify"},
    )
    assert response.status_code == 302
    path = urlsplit(
        re.search(rf"{re.escape(settings.PORTAL_BASE_URL)}(/link/\S+/)", mail.outbox[-1].body).group(0)
    ).path
    visitor = Client()
    page = visitor.get(path)
    assert 'type="password"' in page.content.decode()
    done = visitor.post(path, {"email": "linh@example.test", "password": "Client-Pass-123"})
    assert done.status_code == 200
    assert "Client-Pass-123" not in done.content.decode()
    connection = m.Connection.objects.get(provider="coinify")
    assert connection.status == m.Status.ACTIVE
    assert connection.created_by is None
    assert m.ClientLink.objects.get().status == "completed"
    assert connection.events.filter(kind="link_completed").exists()


def test_link_to_a_client_without_email_is_refused_clearly(adviser_client: Any, world: World) -> None:
    mute = ClientFactory(household=world.household, name="No Mail", email="")
    connection = ConnectionFactory(client=mute, provider_app=world.turnqey)
    page = adviser_client.get(reverse("connection_link_send", args=[connection.pk]))
    assert b"has no email address" in page.content
    response = adviser_client.post(reverse("connection_link_send", args=[connection.pk]))
    assert response.status_code == 400
    assert m.ClientLink.objects.count() == 0
    assert mail.outbox == []
    new = adviser_client.post(
        reverse("household_link_new", args=[world.household.pk]),
        {"client": mute.pk, "provider_app": world.turnqey.pk, "platform": "coinbase"},
    )
    assert new.status_code == 400
    assert b"has no email address" in new.content
    assert m.ClientLink.objects.count() == 0


def test_link_service_refuses_a_connection_from_another_household(world: World) -> None:
    with pytest.raises(ValueError, match="not this client's"):
        services.client_link_create(
            household=world.household, client=world.client, connection=world.other_connection, user=world.adviser
        )
