"""Each adviser reads dates in their own time zone (their digest settings), not the server's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from connections import models as m
from connections import notifications
from tests.web.conftest import World

pytestmark = pytest.mark.django_db

# A known instant, far from today so the page writes it in full: 15:30 UTC is 11:30 in New York (summer time).
INSTANT = datetime(2025, 7, 1, 15, 30, tzinfo=UTC)


def _card(adviser_client: Any, world: World) -> str:
    page = adviser_client.get(reverse("household_detail", args=[world.household.pk])).content.decode()
    return page.split(f'id="connection-{world.connection.pk}"')[1].split("</article>")[0]


def test_an_adviser_in_new_york_sees_a_utc_instant_in_new_york_time_on_the_household_page(
    adviser_client: Any, world: World, settings: Any
) -> None:
    settings.TIME_ZONE = "UTC"
    m.Connection.objects.filter(pk=world.connection.pk).update(last_success_at=INSTANT)
    assert "1 Jul 2025, 15:30" in _card(adviser_client, world)  # no preference yet: the server's zone

    m.NotificationSettings.objects.create(user=world.adviser, time_zone="America/New_York")
    card = _card(adviser_client, world)

    assert "1 Jul 2025, 11:30" in card
    assert 'datetime="2025-07-01T11:30:00-04:00"' in card
    assert "15:30" not in card
    assert timezone.get_current_timezone_name() == "UTC"  # the zone was the request's only


def test_an_adviser_whose_zone_is_unknown_reads_utc(adviser_client: Any, world: World, settings: Any) -> None:
    settings.TIME_ZONE = "UTC"
    m.Connection.objects.filter(pk=world.connection.pk).update(last_success_at=INSTANT)
    m.NotificationSettings.objects.create(user=world.adviser, time_zone="Mars/Olympus_Mons")
    assert "1 Jul 2025, 15:30" in _card(adviser_client, world)


def test_snoozing_until_a_date_means_the_start_of_that_day_in_the_advisers_zone(
    adviser_client: Any, world: World, broken: m.Connection
) -> None:
    m.NotificationSettings.objects.create(user=world.adviser, time_zone="Asia/Tokyo")
    adviser_client.post(reverse("connection_quiet", args=[broken.pk]), {"action": "until", "until": "2099-03-10"})
    problem = m.ConnectionProblem.objects.get(connection=broken, closed_at__isnull=True)
    assert problem.snoozed_until == datetime(2099, 3, 9, 15, 0, tzinfo=UTC)  # midnight in Tokyo


def test_a_digest_writes_its_dates_in_the_recipients_zone(world: World, mailoutbox: list[Any]) -> None:
    now = timezone.now()
    m.NotificationSettings.objects.create(user=world.adviser, time_zone="America/New_York")
    m.Membership.objects.update(digest_sent_up_to=now - timedelta(hours=1))
    deadline = (now + timedelta(days=2)).replace(hour=15, minute=30, second=0, microsecond=0)
    m.ConnectionProblem.objects.create(
        connection=world.connection,
        cause=m.ConnectionProblem.Cause.LAPSING,
        opened_at=now - timedelta(minutes=40),
        announced_at=now - timedelta(minutes=30),
        deadline=deadline,
        message="Coinbase via Turnqey must be reconnected before its sign-in lapses.",
    )

    notifications.digests_send(now=now)

    (digest,) = [message for message in mailoutbox if message.to == [world.adviser.email]]
    local = deadline.astimezone(ZoneInfo("America/New_York"))
    assert f"reconnect by {local:%Y-%m-%d %H:%M} E" in digest.body  # EDT or EST, as the date falls
    assert f"{deadline:%Y-%m-%d %H:%M}" not in digest.body


def test_the_zone_comes_with_the_membership_the_page_reads_anyway(
    adviser_client: Any, world: World, settings: Any
) -> None:
    settings.TIME_ZONE = "UTC"
    m.Connection.objects.filter(pk=world.connection.pk).update(last_success_at=INSTANT)
    m.NotificationSettings.objects.create(user=world.adviser, time_zone="America/New_York")
    with CaptureQueriesContext(db_connection) as queries:
        card = _card(adviser_client, world)
    assert "1 Jul 2025, 11:30" in card
    zone_reads = [q["sql"] for q in queries.captured_queries if "notificationsettings" in q["sql"]]
    assert len(zone_reads) == 1
    assert "connections_membership" in zone_reads[0]  # one statement with the membership and firm
