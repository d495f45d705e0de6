"""A client link's email is sent after its link commits; one the mail server refuses is not kept.

The mail backend below refuses every message the way an SMTP server that is
down does (``smtplib.SMTPException``), so the send fails where a real one
would: inside :func:`connections.services.client_link_create`, after the
link was committed and before its event is written. Another backend looks,
from inside its send and over a connection of its own, at what the rest of
the portal sees while a (slow) mail server is being waited for. The API is
reached over real HTTP; the adviser's two pages through Django's test client.
"""

from __future__ import annotations

import smtplib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage
from django.db import connections, transaction
from django.test import Client as WebClient
from django.urls import reverse

from api import tasks
from api.models import IdempotencyRecord, WebhookDelivery, WebhookEvent
from connections import models as m
from tests.factories import ClientFactory, ConnectionFactory, HouseholdFactory, MembershipFactory, UserFactory
from tests.webhook_receiver import Answer, webhook_receiver

from .conftest import ApiWorld, endpoint_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("local_receivers")]

REFUSING_BACKEND = f"{__name__}.RefusingBackend"


class RefusingBackend(BaseEmailBackend):
    """A mail server that refuses every message."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        raise smtplib.SMTPException("451 4.3.0 mail server temporarily unavailable")


@dataclass
class SeenDuringSend:
    in_transaction: bool
    links: list[tuple[str, str]]
    link_sent_events: int


SEEN_DURING_SEND: list[SeenDuringSend] = []
WATCHING_BACKEND = f"{__name__}.WatchingBackend"


class WatchingBackend(BaseEmailBackend):
    """A mail server that, while it is "sending", notes what another database connection sees, then delivers."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute("SELECT id::text, status FROM connections_clientlink")
                links = [(str(row[0]), str(row[1])) for row in cursor.fetchall()]
                cursor.execute(
                    "SELECT count(*) FROM connections_connectionevent WHERE kind = %s",
                    [m.ConnectionEvent.Kind.LINK_SENT.value],
                )
                (events,) = cursor.fetchone()
        finally:
            other.close()
        SEEN_DURING_SEND.append(
            SeenDuringSend(
                in_transaction=transaction.get_connection().in_atomic_block, links=links, link_sent_events=events
            )
        )
        mail.outbox.extend(email_messages)
        return len(email_messages)


@pytest.fixture
def watching_mail(settings: Any) -> Iterator[list[SeenDuringSend]]:
    SEEN_DURING_SEND.clear()
    settings.EMAIL_BACKEND = WATCHING_BACKEND
    yield SEEN_DURING_SEND
    SEEN_DURING_SEND.clear()


def _broken(world: ApiWorld) -> m.Connection:
    return next(c for c in world.ours.connections if c.status == m.Status.NEEDS_RECONNECT)


def test_a_link_whose_email_fails_is_not_kept_and_a_retry_with_the_same_key_makes_one(
    api_world: ApiWorld, settings: Any
) -> None:
    connection = _broken(api_world)
    writer = api_world.client(api_world.ours.write_key)
    path = f"/connections/{connection.pk}/client-links"
    key = str(uuid.uuid4())
    with webhook_receiver(Answer(200)) as receiver:
        made = endpoint_for(api_world.ours.firm, receiver.url)
        settings.EMAIL_BACKEND = REFUSING_BACKEND

        refused = writer.post(path, json={}, headers={"Idempotency-Key": key})

        assert refused.status_code == 503, refused.text
        assert refused.headers["Content-Type"] == "application/problem+json"
        assert refused.headers["Retry-After"] == "60"
        problem = refused.json()
        assert problem["code"] == "email_failed"
        assert problem["status"] == 503
        assert connection.client.email in problem["detail"]
        assert "no link was made" in problem["detail"]
        assert "same Idempotency-Key" in problem["detail"]
        assert "451" not in refused.text  # the mail server's own words stay in the log
        # Nothing half-written: no link, no event, nothing for the webhooks, no idempotency record.
        tasks.webhooks_tick()
        assert not m.ClientLink.objects.exists()
        assert not connection.events.filter(kind="link_sent").exists()
        assert not WebhookEvent.objects.exists()
        assert not WebhookDelivery.objects.exists()
        assert not IdempotencyRecord.objects.exists()
        assert mail.outbox == []

        # The mail server is back: the same request with the same key goes through, once.
        settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
        sent = writer.post(path, json={}, headers={"Idempotency-Key": key})
        assert sent.status_code == 201, sent.text
        assert "Idempotent-Replayed" not in sent.headers
        again = writer.post(path, json={}, headers={"Idempotency-Key": key})
        assert again.headers["Idempotent-Replayed"] == "true"
        (request,) = receiver.wait_for(1)

    link = m.ClientLink.objects.get()
    assert str(link.pk) == sent.json()["id"] == again.json()["id"]
    assert link.status == m.ClientLink.LinkStatus.SENT
    assert connection.events.filter(kind="link_sent").count() == 1
    assert len(mail.outbox) == 1
    payload = request.verified(made.secret)
    assert payload["type"] == "client_link.sent"
    assert payload["data"]["client_link"]["id"] == str(link.pk)


def test_a_failed_email_leaves_the_older_link_of_the_connection_live(api_world: ApiWorld, settings: Any) -> None:
    connection = _broken(api_world)
    writer = api_world.client(api_world.ours.write_key)
    path = f"/connections/{connection.pk}/client-links"
    first = writer.post(path, json={})
    assert first.status_code == 201

    settings.EMAIL_BACKEND = REFUSING_BACKEND
    refused = writer.post(path, json={})

    assert refused.status_code == 503
    # The new link would have superseded the first; rolled back, the first still works.
    assert list(m.ClientLink.objects.values_list("pk", "status")) == [
        (uuid.UUID(first.json()["id"]), m.ClientLink.LinkStatus.SENT)
    ]


@pytest.fixture
def adviser_page(db: None) -> tuple[WebClient, m.Connection]:
    household = HouseholdFactory(name="Nguyen Household")
    adviser = MembershipFactory(firm=household.firm, user=UserFactory(username="alice")).user
    household.advisers.add(adviser)
    connection = ConnectionFactory(
        client=ClientFactory(household=household, email="linh@example.test"),
        status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.REVOKED,
        external_account_id="source-account-1",
    )
    web = WebClient()
    web.force_login(adviser)
    return web, connection


def test_the_advisers_pages_say_the_email_failed_and_keep_nothing(
    adviser_page: tuple[WebClient, m.Connection], settings: Any
) -> None:
    web, connection = adviser_page
    settings.EMAIL_BACKEND = REFUSING_BACKEND

    reconnect = web.post(reverse("connection_link_send", args=[connection.pk]))
    new = web.post(
        reverse("household_link_new", args=[connection.household_id]),
        {"client": connection.client_id, "provider_app": connection.provider_app_id, "platform": "coinbase"},
    )

    for page in (reconnect, new):
        assert page.status_code == 503
        body = page.content.decode()
        assert 'role="alert"' in body
        assert "The email to linh@example.test could not be sent, so no link was made" in body
    assert not m.ClientLink.objects.exists()
    assert not m.ConnectionEvent.objects.filter(kind="link_sent").exists()

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert web.post(reverse("connection_link_send", args=[connection.pk])).status_code == 302
    assert m.ClientLink.objects.count() == 1
    assert len(mail.outbox) == 1


# A second database connection watches the send: an in-memory SQLite test database has none.
@pytest.mark.postgres
def test_the_api_commits_the_link_before_the_mail_server_is_asked_and_announces_it_after(
    api_world: ApiWorld, watching_mail: list[SeenDuringSend]
) -> None:
    connection = _broken(api_world)
    writer = api_world.client(api_world.ours.write_key)

    sent = writer.post(f"/connections/{connection.pk}/client-links", json={})

    assert sent.status_code == 201, sent.text
    (seen,) = watching_mail
    # No transaction (and no row lock) is held while the mail server is waited for,
    # and another connection already sees the link the email names ...
    assert seen.in_transaction is False
    assert seen.links == [(sent.json()["id"], m.ClientLink.LinkStatus.SENT)]
    # ... but nothing announces it before the email went.
    assert seen.link_sent_events == 0
    assert connection.events.filter(kind="link_sent").count() == 1
    assert m.ClientLink.objects.get().sent_at is not None


# A second database connection watches the send: an in-memory SQLite test database has none.
@pytest.mark.postgres
def test_the_advisers_page_keeps_the_older_link_live_until_the_new_email_went(
    adviser_page: tuple[WebClient, m.Connection], watching_mail: list[SeenDuringSend]
) -> None:
    web, connection = adviser_page
    assert web.post(reverse("connection_link_send", args=[connection.pk])).status_code == 302
    older = m.ClientLink.objects.get()

    assert web.post(reverse("connection_link_send", args=[connection.pk])).status_code == 302

    first, second = watching_mail
    assert first.in_transaction is second.in_transaction is False
    newer = m.ClientLink.objects.exclude(pk=older.pk).get()
    # While the second email was being sent, both links were there and the older still worked.
    assert sorted(second.links) == sorted(
        [(str(older.pk), m.ClientLink.LinkStatus.SENT), (str(newer.pk), m.ClientLink.LinkStatus.SENT)]
    )
    older.refresh_from_db()
    assert (older.status, newer.status) == (m.ClientLink.LinkStatus.SUPERSEDED, m.ClientLink.LinkStatus.SENT)


def test_a_failed_email_on_the_advisers_page_gives_back_the_send_it_took(
    adviser_page: tuple[WebClient, m.Connection], settings: Any
) -> None:
    web, connection = adviser_page
    settings.CLIENT_LINK_SENDS_PER_HOUR = 1
    settings.EMAIL_BACKEND = REFUSING_BACKEND
    send = reverse("connection_link_send", args=[connection.pk])

    # Neither failure counts against the adviser's one send an hour.
    assert web.post(send).status_code == 503
    assert web.post(send).status_code == 503

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert web.post(send).status_code == 302
    assert web.post(send).status_code == 429  # the one that went does count
    assert m.ClientLink.objects.count() == 1
