"""Household reconnect requests through the API, over real HTTP: ask once per client, list where each stands."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.core import mail
from django.utils import timezone

from api.models import ApiKey
from connections import jobs, services
from connections import models as m
from tests.factories import ClientFactory, ConnectionFactory, HouseholdFactory

from .conftest import ApiWorld

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def household(api_world: ApiWorld) -> m.Household:
    """One client with two broken connections and a healthy one; another client with nothing to fix."""
    household = HouseholdFactory(firm=api_world.ours.firm, name="Adeyemi Household")
    client = ClientFactory(household=household, name="Tolu Adeyemi", email="tolu@example.test")
    for platform in ("coinbase", "kraken"):
        ConnectionFactory(client=client, platform=platform, status=m.Status.NEEDS_RECONNECT, reason=m.Reason.REVOKED)
    ConnectionFactory(client=client, platform="binance", status=m.Status.ACTIVE)
    ConnectionFactory(client=ClientFactory(household=household, name="Kemi Adeyemi"), status=m.Status.ACTIVE)
    return household


def _broken_ids(household: m.Household) -> list[int]:
    return sorted(household.connections.filter(status=m.Status.NEEDS_RECONNECT).values_list("pk", flat=True))


def test_asking_a_household_sends_one_request_per_client_covering_what_needs_them(
    api_world: ApiWorld, household: m.Household
) -> None:
    writer = api_world.client(api_world.ours.write_key)
    path = f"/households/{household.pk}/reconnect-requests"
    key = str(uuid.uuid4())

    created = writer.post(path, headers={"Idempotency-Key": key})

    assert created.status_code == 201, created.text
    body = created.json()
    request = m.ReconnectRequest.objects.get()
    client = m.Client.objects.get(name="Tolu Adeyemi")
    assert body["household_id"] == household.pk
    assert body["skipped"] == []
    (asked,) = body["asked"]
    assert asked["request_id"] == str(request.pk)
    assert asked["client"] == {"id": client.pk, "name": "Tolu Adeyemi"}
    assert asked["outcome"] == "sent"
    assert sorted(asked["connection_ids"]) == _broken_ids(household)
    assert asked["emailed_to"] == "tolu@example.test"
    (email,) = mail.outbox
    assert email.to == ["tolu@example.test"]
    # The client's token is theirs alone: neither the request's URL nor an item's link is in the reply.
    assert "/r/" not in created.text
    assert "/link/" not in created.text
    prefix = ApiKey.objects.get(firm=api_world.ours.firm, name="CRM write").prefix
    assert request.actor_label == f"api:{prefix}"
    assert request.created_by is None

    # A retry with the same key is the first reply; a new key finds the client already asked.
    replay = writer.post(path, headers={"Idempotency-Key": key})
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == body
    again = writer.post(path, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert again.status_code == 409, again.text
    assert again.headers["Content-Type"] == "application/problem+json"
    assert again.json()["code"] == "already_asked"
    assert "Tolu Adeyemi: Already asked" in again.json()["detail"]
    assert len(mail.outbox) == 1
    assert m.ReconnectRequest.objects.count() == 1


def test_the_list_says_where_each_request_stands(api_world: ApiWorld, household: m.Household) -> None:
    writer = api_world.client(api_world.ours.write_key)
    reader = api_world.client(api_world.ours.read_key)
    assert reader.get(f"/households/{household.pk}/reconnect-requests").json() == {"items": [], "next_cursor": None}
    writer.post(f"/households/{household.pk}/reconnect-requests")

    listed = reader.get(f"/households/{household.pk}/reconnect-requests")

    assert listed.status_code == 200, listed.text
    (item,) = listed.json()["items"]
    assert item["id"] == str(m.ReconnectRequest.objects.get().pk)
    assert (item["status"], item["status_words"]) == ("sent", "Sent, not opened yet.")
    assert item["sent_to"] == "tolu@example.test"
    assert item["client"]["name"] == "Tolu Adeyemi"
    assert item["done"] == 0
    assert sorted(i["connection_id"] for i in item["items"]) == _broken_ids(household)
    assert {i["status"] for i in item["items"]} == {"open"}

    # One connection recovers by itself: the list reads it back as dropped.
    recovered = household.connections.filter(status=m.Status.NEEDS_RECONNECT).first()
    m.Connection.objects.filter(pk=recovered.pk).update(status=m.Status.ACTIVE, reason="")
    item = reader.get(f"/households/{household.pk}/reconnect-requests").json()["items"][0]
    statuses = {i["connection_id"]: i["status"] for i in item["items"]}
    assert statuses[recovered.pk] == "dropped"
    assert list(statuses.values()).count("open") == 1


def test_a_request_emptied_by_mutes_is_listed_as_muted_not_resolved(
    api_world: ApiWorld, household: m.Household
) -> None:
    writer = api_world.client(api_world.ours.write_key)
    reader = api_world.client(api_world.ours.read_key)
    writer.post(f"/households/{household.pk}/reconnect-requests")
    now = timezone.now()
    household.connections.filter(status=m.Status.NEEDS_RECONNECT).update(muted_at=now)

    (item,) = reader.get(f"/households/{household.pk}/reconnect-requests").json()["items"]

    assert item["status"] == "muted"
    assert item["status_words"] == "Closed: every connection in it was muted; nothing was fixed."
    assert item["closed_at"] is not None
    assert {i["status"] for i in item["items"]} == {"withdrawn"}


def test_send_email_false_emails_nothing_now_or_later_and_returns_each_requests_link(
    api_world: ApiWorld, household: m.Household
) -> None:
    writer = api_world.client(api_world.ours.write_key)

    created = writer.post(f"/households/{household.pk}/reconnect-requests", json={"send_email": False})

    assert created.status_code == 201, created.text
    (asked,) = created.json()["asked"]
    assert asked["outcome"] == "sent"
    assert asked["emailed_to"] == ""
    assert urlsplit(asked["url"]).path.startswith("/r/")
    assert mail.outbox == []
    request = m.ReconnectRequest.objects.get()
    assert request.emailed_by_portal is False
    # The link works for the client, and no reminder ever follows from the portal.
    landing = requests.get(api_world.url + urlsplit(asked["url"]).path, timeout=10)
    assert landing.status_code == 200, landing.text
    m.ReconnectRequest.objects.filter(pk=request.pk).update(created_at=timezone.now() - timedelta(days=6))
    assert jobs.reminders_run()["reminders_sent"] == 0
    assert mail.outbox == []

    # The default still emails, and then no link is in the reply.
    other = ClientFactory(household=household, name="Femi Adeyemi", email="femi@example.test")
    ConnectionFactory(client=other, platform="gemini", status=m.Status.NEEDS_RECONNECT, reason=m.Reason.REVOKED)
    again = writer.post(f"/households/{household.pk}/reconnect-requests", json={})
    (femi,) = [a for a in again.json()["asked"] if a["client"]["name"] == "Femi Adeyemi"]
    assert femi["emailed_to"] == "femi@example.test"
    assert femi["url"] is None
    assert [message.to for message in mail.outbox] == [["femi@example.test"]]


def test_the_list_is_cursor_paged_newest_first_in_a_stable_order(api_world: ApiWorld, household: m.Household) -> None:
    reader = api_world.client(api_world.ours.read_key)
    same_moment = timezone.now() - timedelta(days=1)
    made = []
    for n in range(5):
        client = ClientFactory(household=household, name=f"Person {n}", email=f"p{n}@example.test")
        ConnectionFactory(client=client, status=m.Status.NEEDS_RECONNECT, reason=m.Reason.REVOKED)
        (result,) = [
            r
            for r in services.reconnect_requests_create(households=[household], send_email=False)
            if r.client == client
        ]
        made.append(result.request)
    # Three made in the same microsecond: the id keeps them in one order across pages.
    m.ReconnectRequest.objects.filter(pk__in=[r.pk for r in made[1:4]]).update(created_at=same_moment)
    expected = [
        str(r.pk) for r in m.ReconnectRequest.objects.filter(household=household).order_by("-created_at", "-id")
    ]

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = reader.get(f"/households/{household.pk}/reconnect-requests", params=params)
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["items"]]
        pages += 1
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == expected
    assert pages == 3

    bad = reader.get(f"/households/{household.pk}/reconnect-requests", params={"cursor": "not-ours"})
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_cursor"


def test_nothing_to_ask_and_no_address_are_problems_that_write_nothing(
    api_world: ApiWorld, household: m.Household
) -> None:
    writer = api_world.client(api_world.ours.write_key)
    healthy = HouseholdFactory(firm=api_world.ours.firm, name="Healthy Household")
    ConnectionFactory(client=ClientFactory(household=healthy), status=m.Status.ACTIVE)

    nothing = writer.post(f"/households/{healthy.pk}/reconnect-requests")
    assert nothing.status_code == 422, nothing.text
    assert nothing.json()["code"] == "nothing_to_ask"
    assert "Nothing in Healthy Household needs the client now" in nothing.json()["detail"]

    m.Client.objects.filter(name="Tolu Adeyemi").update(email="")
    no_address = writer.post(f"/households/{household.pk}/reconnect-requests")
    assert no_address.status_code == 422, no_address.text
    assert no_address.json()["code"] == "not_possible"
    assert "has no email address" in no_address.json()["detail"]
    assert not m.ReconnectRequest.objects.exists()
    assert mail.outbox == []


def test_another_firms_household_is_404_and_a_read_key_may_not_ask(
    api_world: ApiWorld, household: m.Household, settings: Any
) -> None:
    theirs = api_world.client(api_world.theirs.write_key)
    assert theirs.post(f"/households/{household.pk}/reconnect-requests").status_code == 404
    assert theirs.get(f"/households/{household.pk}/reconnect-requests").status_code == 404
    reader = api_world.client(api_world.ours.read_key)
    refused = reader.post(f"/households/{household.pk}/reconnect-requests")
    assert refused.status_code == 403
    assert refused.json()["code"] == "scope_required"
    assert not m.ReconnectRequest.objects.exists()
    assert mail.outbox == []


def test_a_key_over_its_email_limit_asks_nobody(api_world: ApiWorld, household: m.Household, settings: Any) -> None:
    settings.CLIENT_LINK_SENDS_PER_HOUR = 1
    writer = api_world.client(api_world.ours.write_key)
    broken = next(c for c in api_world.ours.connections if c.status == m.Status.NEEDS_RECONNECT)
    assert writer.post(f"/connections/{broken.pk}/client-links", json={}).status_code == 201

    over = writer.post(f"/households/{household.pk}/reconnect-requests")

    assert over.status_code == 429, over.text
    assert int(over.headers["Retry-After"]) >= 1
    assert not m.ReconnectRequest.objects.exists()
    assert len(mail.outbox) == 1
