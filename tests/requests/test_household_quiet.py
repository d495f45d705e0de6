"""Snoozing and muting from the household page, through the same view the attention list posts to."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Any

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from connections import models as m
from connections.providers.errors import FailureReason, ProviderError
from tests.factories import ConnectionFactory
from tests.web.conftest import World

pytestmark = pytest.mark.django_db


def _snooze_forms(page: str, connection: m.Connection) -> list[str]:
    """The actions of the forms inside the connection card's Snooze disclosure."""
    card = page.split(f'id="connection-{connection.pk}"')[1].split("</article>")[0]
    if '<details class="quiet">' not in card:
        return []
    menu = card.split('<details class="quiet">')[1].split("</details>")[0]
    assert f'action="{reverse("connection_quiet", args=[connection.pk])}"' in menu
    return re.findall(r'name="action" value="([a-z]+)"', menu)


def test_a_broken_connection_is_snoozed_from_the_household_page_shown_as_such_and_woken(
    adviser_client: Any, world: World, broken: m.Connection
) -> None:
    household = reverse("household_detail", args=[world.household.pk])
    page = adviser_client.get(household).content.decode()
    assert _snooze_forms(page, broken) == ["day", "week", "until"]
    assert _snooze_forms(page, world.connection) == []  # healthy: nothing to snooze (Mute is still offered)

    snoozed = adviser_client.post(reverse("connection_quiet", args=[broken.pk]), {"action": "week", "next": household})
    assert snoozed.status_code == 302
    assert snoozed["Location"] == household
    problem = m.ConnectionProblem.objects.get(connection=broken, closed_at__isnull=True)
    assert problem.snoozed_until is not None
    assert timedelta(days=6, hours=23) < problem.snoozed_until - timezone.now() <= timedelta(days=7)

    page = adviser_client.get(household).content.decode()
    card = page.split(f'id="connection-{broken.pk}"')[1].split("</article>")[0]
    assert "Snoozed until" in card
    assert f'datetime="{timezone.localtime(problem.snoozed_until).isoformat()}"' in card
    assert "wakes by itself" in card
    assert _snooze_forms(page, broken) == []  # snoozed already: Wake now instead
    assert 'value="wake"' in card
    row = f'href="{reverse("connection_detail", args=[broken.pk])}"'
    assert row not in adviser_client.get(reverse("attention_list")).content.decode()
    assert row in adviser_client.get(reverse("attention_list"), {"show": "quiet"}).content.decode()

    adviser_client.post(reverse("connection_quiet", args=[broken.pk]), {"action": "wake", "next": household})
    page = adviser_client.get(household).content.decode()
    assert "Snoozed until" not in page
    assert _snooze_forms(page, broken) == ["day", "week", "until"]
    assert row in adviser_client.get(reverse("attention_list")).content.decode()


def test_snoozing_until_a_date_from_the_household_page_wakes_at_the_start_of_that_day(
    adviser_client: Any, world: World, broken: m.Connection
) -> None:
    household = reverse("household_detail", args=[world.household.pk])
    day = timezone.localdate() + timedelta(days=3)
    adviser_client.post(
        reverse("connection_quiet", args=[broken.pk]),
        {"action": "until", "until": day.isoformat(), "next": household},
    )
    problem = m.ConnectionProblem.objects.get(connection=broken, closed_at__isnull=True)
    assert problem.snoozed_until == datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())
    refused = adviser_client.post(
        reverse("connection_quiet", args=[broken.pk]),
        {"action": "until", "until": date(2000, 1, 1).isoformat(), "next": household},
        follow=True,
    )
    assert "Choose a date after today." in refused.content.decode()


def test_a_muted_connection_reads_muted_on_the_household_page_with_unmute_and_no_snooze(
    adviser_client: Any, world: World, broken: m.Connection
) -> None:
    household = reverse("household_detail", args=[world.household.pk])
    adviser_client.post(reverse("connection_quiet", args=[broken.pk]), {"action": "mute", "next": household})
    page = adviser_client.get(household).content.decode()
    card = page.split(f'id="connection-{broken.pk}"')[1].split("</article>")[0]
    assert "Muted " in card
    assert "until it has broken and works again, or until you unmute it" in card
    assert 'value="unmute"' in card
    assert _snooze_forms(page, broken) == []


def test_the_household_pages_query_count_does_not_grow_with_snoozed_connections(
    adviser_client: Any, world: World, broken: m.Connection, django_assert_max_num_queries: Any
) -> None:
    household = reverse("household_detail", args=[world.household.pk])
    adviser_client.post(reverse("connection_quiet", args=[broken.pk]), {"action": "day", "next": household})
    adviser_client.get(household)
    with CaptureQueriesContext(db) as one:
        assert adviser_client.get(household).status_code == 200
    queries_for_one = len(one)
    for platform in ("kraken", "gemini", "bitstamp"):
        more = ConnectionFactory(
            client=world.client,
            provider_app=world.coinify,
            platform=platform,
            status=m.Status.NEEDS_RECONNECT,
            reason=m.Reason.REVOKED,
        )
        adviser_client.post(reverse("connection_quiet", args=[more.pk]), {"action": "day", "next": household})
    with django_assert_max_num_queries(queries_for_one):
        page = adviser_client.get(household).content.decode()
    assert page.count("Snoozed until") == 4


def test_check_now_swapping_a_snoozed_card_keeps_its_snooze_and_a_broken_card_its_snooze_menu(
    adviser_client: Any, world: World, fake_provider: Any
) -> None:
    fake_provider.probe_error = ProviderError.reauth(FailureReason.REVOKED, "Access was revoked.")
    check = reverse("connection_check", args=[world.connection.pk])
    swapped = adviser_client.post(check, HTTP_HX_REQUEST="true").content.decode()
    assert _snooze_forms(swapped, world.connection) == ["day", "week", "until"]  # broken now: snoozable

    adviser_client.post(reverse("connection_quiet", args=[world.connection.pk]), {"action": "day"})
    swapped = adviser_client.post(check, HTTP_HX_REQUEST="true").content.decode()
    assert "Snoozed until" in swapped
    assert 'value="wake"' in swapped
    assert _snooze_forms(swapped, world.connection) == []
