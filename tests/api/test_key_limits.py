"""A write key is held to the per-person limits on link sends and checks, counted per key, over real HTTP.

Past the limit the key gets a 429 problem with ``Retry-After`` and nothing
happens: no link, no email, no check (so no provider call). Another key of
the same firm, and a person, keep their own counts.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.core import mail

from api.keys import api_key_create
from api.models import ApiKey, IdempotencyRecord
from connections import models as m
from connections import services

from .conftest import ApiWorld

pytestmark = pytest.mark.django_db(transaction=True)


def _checkable(world: ApiWorld) -> list[m.Connection]:
    return [c for c in world.ours.connections if c.status != m.Status.PENDING]


def _assert_limited(response: Any) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert int(response.headers["Retry-After"]) >= 1
    body = response.json()
    assert (body["status"], body["code"]) == (429, "rate_limited")
    assert "this API key" in body["detail"]


def test_a_key_over_the_link_send_limit_gets_429_and_emails_nobody(api_world: ApiWorld, settings: Any) -> None:
    settings.CLIENT_LINK_SENDS_PER_HOUR = 2
    first, second, third = _checkable(api_world)[:3]
    writer = api_world.client(api_world.ours.write_key)

    assert writer.post(f"/connections/{first.pk}/client-links", json={}).status_code == 201
    assert writer.post(f"/connections/{second.pk}/client-links", json={}).status_code == 201
    key = str(uuid.uuid4())
    over = writer.post(f"/connections/{third.pk}/client-links", json={}, headers={"Idempotency-Key": key})

    _assert_limited(over)
    assert "sent client links 2 times in the last hour" in over.json()["detail"]
    assert len(mail.outbox) == 2
    assert not m.ClientLink.objects.filter(connection=third).exists()
    assert not third.events.filter(kind="link_sent").exists()
    # A 429 is not the request's final answer: no record, so the same key may try again later.
    assert not IdempotencyRecord.objects.exists()

    # Another key of the firm has its own count, and so does a person.
    other = api_world.client(api_key_create(firm=api_world.ours.firm, name="ERP", scope=ApiKey.Scope.WRITE).key)
    assert other.post(f"/connections/{third.pk}/client-links", json={}).status_code == 201
    services.client_link_create(
        household=first.household, client=first.client, connection=first, user=api_world.ours.admin
    )
    assert len(mail.outbox) == 4

    settings.CLIENT_LINK_SENDS_PER_HOUR = 3
    assert (
        writer.post(f"/connections/{third.pk}/client-links", json={}, headers={"Idempotency-Key": key}).status_code
        == 201
    )


def test_a_refused_link_does_not_count_against_the_key(api_world: ApiWorld, settings: Any) -> None:
    settings.CLIENT_LINK_SENDS_PER_HOUR = 1
    first = _checkable(api_world)[0]
    second = next(c for c in _checkable(api_world) if c.client_id != first.client_id)
    m.Client.objects.filter(pk=first.client_id).update(email="")
    writer = api_world.client(api_world.ours.write_key)
    assert writer.post(f"/connections/{first.pk}/client-links", json={}).status_code == 422
    assert writer.post(f"/connections/{second.pk}/client-links", json={}).status_code == 201


def test_a_key_over_the_check_now_limit_gets_429_and_no_check_runs(api_world: ApiWorld, settings: Any) -> None:
    settings.CHECK_NOW_PER_MINUTE = 2
    first, second, third = _checkable(api_world)[:3]
    writer = api_world.client(api_world.ours.write_key)

    assert writer.post(f"/connections/{first.pk}/check", json={}).status_code == 202
    assert writer.post(f"/connections/{second.pk}/check", json={}).status_code == 202
    over = writer.post(f"/connections/{third.pk}/check", json={})

    _assert_limited(over)
    assert "asked for a check 2 times in the last minute" in over.json()["detail"]
    # (Celery runs eagerly here: a queued check has run by the time the reply arrives.)
    checked = set(
        m.Connection.objects.filter(pk__in=[first.pk, second.pk, third.pk], last_checked_at__isnull=False).values_list(
            "pk", flat=True
        )
    )
    assert checked == {first.pk, second.pk}
