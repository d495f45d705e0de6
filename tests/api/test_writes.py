"""Writes over real HTTP: a client link (emailed once however often it is retried), check now, disconnect."""

from __future__ import annotations

import threading
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.core import mail

from api.models import ApiKey, IdempotencyRecord
from connections import models as m

from .conftest import ApiWorld

pytestmark = pytest.mark.django_db(transaction=True)


def _active(world: ApiWorld) -> m.Connection:
    return next(c for c in world.ours.connections if c.status == m.Status.NEEDS_RECONNECT)


def test_a_client_link_is_emailed_and_its_url_and_expiry_returned(api_world: ApiWorld) -> None:
    connection = _active(api_world)
    writer = api_world.client(api_world.ours.write_key)

    response = writer.post(f"/connections/{connection.pk}/client-links", json={})

    assert response.status_code == 201, response.text
    body = response.json()
    link = m.ClientLink.objects.get()
    assert body["id"] == str(link.pk)
    assert body["emailed"] is True
    assert body["sent_to"] == connection.client.email
    assert urlsplit(body["url"]).path.startswith("/link/")
    assert body["url"] in mail.outbox[0].body
    assert len(mail.outbox) == 1
    assert response.headers["Cache-Control"] == "no-store"
    # The link works: the client's page opens without a login.
    page = requests.get(api_world.url + urlsplit(body["url"]).path, timeout=10)
    assert page.status_code == 200
    event = connection.events.get(kind="link_sent")
    key = ApiKey.objects.get(firm=api_world.ours.firm, name="CRM write")
    assert event.actor_label == f"api:{key.prefix}"
    assert event.details["client_link_id"] == str(link.pk)


def test_a_link_that_should_not_be_emailed_is_only_returned(api_world: ApiWorld) -> None:
    connection = _active(api_world)
    writer = api_world.client(api_world.ours.write_key)
    response = writer.post(f"/connections/{connection.pk}/client-links", json={"send_email": False})
    assert response.status_code == 201, response.text
    assert response.json()["emailed"] is False
    assert mail.outbox == []
    assert "not emailed" in connection.events.get(kind="link_sent").message


def test_a_retried_write_with_the_same_idempotency_key_sends_one_email(api_world: ApiWorld) -> None:
    connection = _active(api_world)
    writer = api_world.client(api_world.ours.write_key)
    key = str(uuid.uuid4())
    path = f"/connections/{connection.pk}/client-links"

    first = writer.post(path, json={}, headers={"Idempotency-Key": key})
    again = writer.post(path, json={}, headers={"Idempotency-Key": key})

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(mail.outbox) == 1
    assert m.ClientLink.objects.count() == 1
    # The stored reply carries the link's URL: it is encrypted at rest.
    from django.db import connection as db_connection

    with db_connection.cursor() as cursor:
        cursor.execute("SELECT response_body FROM api_idempotencyrecord")
        (raw,) = cursor.fetchone()
    assert first.json()["url"] not in raw

    # The same key for another request is refused, and does nothing.
    other = writer.post(path, json={"send_email": False}, headers={"Idempotency-Key": key})
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert len(mail.outbox) == 1
    # Another key is another request.
    assert writer.post(path, json={}, headers={"Idempotency-Key": str(uuid.uuid4())}).status_code == 201
    assert len(mail.outbox) == 2


# Concurrent writers need a database that lets them wait for each other: SQLite's in-memory test database
# (shared cache) refuses a second writer at once ("database table is locked") instead.
@pytest.mark.postgres
def test_two_copies_of_a_request_sent_at_once_write_once(api_world: ApiWorld) -> None:
    connection = _active(api_world)
    key = str(uuid.uuid4())
    path = f"{api_world.url}/api/v1/connections/{connection.pk}/client-links"
    headers = {"Authorization": f"Bearer {api_world.ours.write_key}", "Idempotency-Key": key}
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def send() -> None:
        barrier.wait(timeout=10)
        statuses.append(requests.post(path, json={}, headers=headers, timeout=15).status_code)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(set(statuses)) <= [201, 409]
    assert 201 in statuses
    assert m.ClientLink.objects.count() == 1
    assert len(mail.outbox) == 1


def test_a_refused_link_writes_nothing_and_says_why(api_world: ApiWorld) -> None:
    connection = _active(api_world)
    m.Client.objects.filter(pk=connection.client_id).update(email="")
    writer = api_world.client(api_world.ours.write_key)
    key = str(uuid.uuid4())

    response = writer.post(f"/connections/{connection.pk}/client-links", json={}, headers={"Idempotency-Key": key})

    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    assert "has no email address" in response.json()["detail"]
    assert not m.ClientLink.objects.exists()
    assert not connection.events.filter(kind="link_sent").exists()
    # The refusal is the request's answer, replayed like a success would be.
    again = writer.post(f"/connections/{connection.pk}/client-links", json={}, headers={"Idempotency-Key": key})
    assert again.status_code == 422
    assert again.headers["Idempotent-Replayed"] == "true"


def test_bad_bodies_and_headers_are_problems_naming_the_field(api_world: ApiWorld) -> None:
    connection = _active(api_world)
    writer = api_world.client(api_world.ours.write_key)
    path = f"/connections/{connection.pk}/client-links"

    not_json = writer.post(path, data="{send_email", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400
    assert not_json.json()["errors"] == [{"field": "body", "message": "The request body is not valid JSON."}]

    wrong_type = writer.post(path, json={"send_email": "sometimes"})
    assert wrong_type.status_code == 422
    assert [e["field"] for e in wrong_type.json()["errors"]] == ["body.payload.send_email"]

    bad_key = writer.post(path, json={}, headers={"Idempotency-Key": "x" * 300})
    assert bad_key.status_code == 400
    assert bad_key.json()["errors"][0]["field"] == "header.Idempotency-Key"
    assert not m.ClientLink.objects.exists()
    assert mail.outbox == []


def test_check_now_queues_a_check_as_the_key_and_a_pending_connection_is_refused(api_world: ApiWorld) -> None:
    connection = next(c for c in api_world.ours.connections if c.status == m.Status.ACTIVE)
    pending = next(c for c in api_world.ours.connections if c.status == m.Status.PENDING)
    writer = api_world.client(api_world.ours.write_key)

    queued = writer.post(f"/connections/{connection.pk}/check", json={})
    assert queued.status_code == 202, queued.text
    assert queued.json()["queued"] is True
    assert connection.source_display in queued.json()["message"]
    # (Celery runs eagerly here: the check ran, against a provider nobody answers for.)
    connection.refresh_from_db()
    assert connection.last_checked_at is not None

    refused = writer.post(f"/connections/{pending.pk}/check", json={})
    assert refused.status_code == 409
    assert refused.json()["code"] == "not_checkable"


def test_disconnect_ends_the_connection_once(api_world: ApiWorld) -> None:
    connection = next(c for c in api_world.ours.connections if c.status == m.Status.ACTIVE)
    writer = api_world.client(api_world.ours.write_key)
    first = writer.post(f"/connections/{connection.pk}/disconnect")
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "disconnected"
    assert not m.Credential.objects.filter(connection=connection).exists()
    again = writer.post(f"/connections/{connection.pk}/disconnect")
    assert again.status_code == 200
    assert connection.events.filter(kind="disconnected").count() == 1
    link = writer.post(f"/connections/{connection.pk}/client-links", json={})
    assert link.status_code == 409
    assert link.json()["code"] == "disconnected"


def test_idempotency_records_are_forgotten_after_their_time(api_world: ApiWorld, settings: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from api.tasks import housekeeping_run

    connection = _active(api_world)
    writer = api_world.client(api_world.ours.write_key)
    writer.post(f"/connections/{connection.pk}/check", json={}, headers={"Idempotency-Key": "k1"})
    assert IdempotencyRecord.objects.count() == 1
    assert housekeeping_run(now=timezone.now() + timedelta(hours=23))["idempotency_records_forgotten"] == 0
    assert housekeeping_run(now=timezone.now() + timedelta(hours=25))["idempotency_records_forgotten"] == 1
