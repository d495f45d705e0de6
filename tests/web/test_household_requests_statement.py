"""The household page's requests and links come from SQL built once per process: the same rows as the querysets."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from connections import models as m
from connections import request_selectors, selectors
from connections.services.reconnect_requests import TRACKED
from tests.factories import ClientFactory

from .conftest import World

STATUSES = list(m.ReconnectRequest.RequestStatus)


def _populate(world: World) -> None:
    now = timezone.now()
    for i in range(14):
        client = ClientFactory(household=world.household)  # one open request per client
        request = m.ReconnectRequest.objects.create(
            household=world.household,
            client=client,
            sent_to="c@example.test",
            expires_at=now + timedelta(days=3),
            status=STATUSES[i % len(STATUSES)],
        )
        # Two share a moment: the newest first, then the greater id.
        m.ReconnectRequest.objects.filter(pk=request.pk).update(created_at=now - timedelta(hours=i // 2 * 2))
        m.ClientLink.objects.create(
            token_hash=uuid.uuid4().hex * 2,
            household=world.household,
            client=world.client,
            provider_app=world.coinify,
            platform="coinify",
            sent_to="c@example.test",
            expires_at=now + timedelta(days=i % 5 - 2),
        )


@pytest.mark.parametrize("who", ["adviser", "firm_admin"])
def test_the_requests_read_is_the_latest_and_every_tracked_one(world: World, who: str) -> None:
    _populate(world)
    user = getattr(world, who)
    read = request_selectors.household_requests_read(user=user, household=world.household, limit=10)
    everything = list(m.ReconnectRequest.objects.filter(household=world.household).order_by("-created_at", "-id"))
    assert [r.pk for r in read.latest] == [r.pk for r in everything[:10]]
    assert {r.pk for r in read.tracked} == {r.pk for r in everything if r.status in TRACKED}
    assert any(r.pk not in {x.pk for x in read.latest} for r in read.tracked)  # an old tracked one is synced too


@pytest.mark.parametrize("who", ["adviser", "firm_admin"])
def test_the_links_are_the_newest_twenty(world: World, who: str) -> None:
    _populate(world)
    user = getattr(world, who)
    for limit in (5, 20):
        page = selectors.household_page(user=user, household=world.household, link_limit=limit)
        expected = list(
            selectors.client_link_queryset_for(user=user)
            .filter(household=world.household, reconnect_item__isnull=True)
            .order_by("-created_at")[:limit]
        )
        assert [link.pk for link in page.links] == [link.pk for link in expected]
        assert [link.client.name for link in page.links] == [link.client.name for link in expected]


def test_another_advisers_household_reads_nothing(world: World) -> None:
    _populate(world)
    read = request_selectors.household_requests_read(user=world.other_adviser, household=world.household)
    assert read.latest == []
    assert read.tracked == []
    assert selectors.household_page(user=world.other_adviser, household=world.household).links == []
