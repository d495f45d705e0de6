"""The freshness page and its daily snapshot: one definition, counted the same everywhere."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from connections import models as m
from reports import jobs
from reports.models import FreshnessSnapshot
from tests.factories import ClientFactory, ConnectionFactory, HouseholdFactory, MembershipFactory, UserFactory

from .conftest import World, csv_rows

pytestmark = pytest.mark.django_db

LIVE = {"active", "degraded", "needs_reconnect"}


def _random_world(firm: m.Firm, advisers: list[Any], households: int, rng: random.Random) -> None:
    """Households with a spread of statuses and data ages, each assigned to some of ``advisers``."""
    now = timezone.now()
    for i in range(households):
        household = HouseholdFactory(
            firm=firm, name=f"Random {firm.pk}-{i}", advisers=rng.sample(advisers, rng.randint(0, 2))
        )
        client = ClientFactory(household=household)
        for _ in range(rng.randint(0, 3)):
            status = rng.choice(["active", "active", "degraded", "needs_reconnect", "pending", "disconnected"])
            age = rng.choice([None, 1, 5, 23, 25, 30, 200])
            ConnectionFactory(
                client=client,
                status=status,
                reason="revoked" if status == "needs_reconnect" else "",
                last_success_at=None if age is None else now - dt.timedelta(hours=age),
            )


def _expected(households: list[m.Household], cutoff: dt.datetime) -> dict[str, int]:
    """The figures counted in Python, straight from the rows, without the code under test."""
    figures = {"households": 0, "with_data": 0, "fresh": 0, "live": 0, "live_fresh": 0}
    by_status = dict.fromkeys(["active", "degraded", "needs_reconnect", "pending", "disconnected"], 0)
    for household in households:
        figures["households"] += 1
        connections = list(m.Connection.objects.filter(household=household))
        live = [c for c in connections if c.status in LIVE]
        fresh = [c for c in live if c.last_success_at is not None and c.last_success_at >= cutoff]
        for c in connections:
            by_status[c.status] += 1
        figures["live"] += len(live)
        figures["live_fresh"] += len(fresh)
        if live:
            figures["with_data"] += 1
            figures["fresh"] += len(fresh) == len(live)
    return {**figures, **by_status}


def _as_dict(row: FreshnessSnapshot) -> dict[str, int]:
    return {
        "households": row.households,
        "with_data": row.households_with_data,
        "fresh": row.households_fresh,
        "live": row.connections_live,
        "live_fresh": row.connections_fresh,
        **{s: getattr(row, s) for s in ("active", "degraded", "needs_reconnect", "pending", "disconnected")},
    }


def test_snapshot_figures_equal_counts_taken_directly_from_the_rows(world: World) -> None:
    rng = random.Random(16)
    advisers = [world.adviser, world.other_adviser]
    _random_world(world.firm, advisers, 25, rng)
    now = timezone.now()
    cutoff = now - dt.timedelta(hours=24)

    jobs.freshness_snapshot_take(now=now)

    firm_row = FreshnessSnapshot.objects.get(firm=world.firm, adviser=None, day=timezone.localdate(now))
    assert _as_dict(firm_row) == _expected(list(m.Household.objects.filter(firm=world.firm)), cutoff)
    for adviser in advisers:
        row = FreshnessSnapshot.objects.get(firm=world.firm, adviser=adviser, day=timezone.localdate(now))
        assert _as_dict(row) == _expected(list(m.Household.objects.filter(firm=world.firm, advisers=adviser)), cutoff)


def test_snapshot_uses_the_firms_own_window(world: World) -> None:
    world.firm.freshness_window_hours = 6
    world.firm.save()
    m.Connection.objects.filter(pk=world.connection.pk).update(last_success_at=timezone.now() - dt.timedelta(hours=7))

    jobs.freshness_snapshot_take()

    row = FreshnessSnapshot.objects.get(firm=world.firm, adviser=world.adviser)
    assert (row.window_hours, row.households_with_data, row.households_fresh) == (6, 1, 0)


def test_snapshot_is_idempotent_per_day(world: World) -> None:
    now = timezone.localtime().replace(hour=11, minute=0)  # both readings on the same local day, whenever this runs
    jobs.freshness_snapshot_take(now=now)
    first = FreshnessSnapshot.objects.filter(firm=world.firm).count()
    m.Connection.objects.filter(pk=world.connection.pk).update(status="needs_reconnect", reason="revoked")

    jobs.freshness_snapshot_take(now=now + dt.timedelta(minutes=30))

    rows = FreshnessSnapshot.objects.filter(firm=world.firm, day=timezone.localdate(now))
    assert rows.count() == first == 3  # the firm, alice, bob
    assert rows.get(adviser=None).needs_reconnect == 1  # the later reading of the day replaced the first


def test_snapshot_task_runs_once_per_slot(world: World) -> None:
    from reports import tasks

    assert tasks.freshness_snapshot() > 0
    assert tasks.freshness_snapshot() == 0  # the same hour's slot is taken


def test_freshness_page_shows_todays_figures_and_the_trend(client: Any, world: World) -> None:
    today = timezone.localdate()
    for days_ago, fresh in ((2, 0), (1, 1)):
        FreshnessSnapshot.objects.create(
            firm=world.firm,
            day=today - dt.timedelta(days=days_ago),
            window_hours=24,
            households=2,
            households_with_data=2,
            households_fresh=fresh,
        )
    client.force_login(world.firm_admin)

    body = client.get(reverse("reports:freshness")).content.decode()

    assert "households fully fresh (2 of 2 with data)" in body
    assert '<title id="trend-chart-title">Share of households whose every connection is fresh' in body
    assert '<desc id="trend-chart-desc">' in body
    assert body.count('class="chart__dot"') == 2  # two days recorded, the rest are gaps
    assert f"{(today - dt.timedelta(days=1)):%-d %b %Y}" in body  # the table fallback
    advisers = body.split('id="advisers-title"')[1].split("</section>")[0]
    assert "Alice" in advisers
    assert "bob" in advisers


def test_an_adviser_sees_only_their_households(client: Any, world: World) -> None:
    m.Connection.objects.filter(pk=world.other_connection.pk).update(last_success_at=None)
    m.Connection.objects.filter(pk=world.foreign_connection.pk).update(last_success_at=None)
    client.force_login(world.adviser)

    body = client.get(reverse("reports:freshness")).content.decode()

    assert "the households assigned to you" in body
    assert "households fully fresh (1 of 1 with data)" in body
    assert "Okoro Household" not in body
    assert "Foreign Household" not in body
    assert "By adviser" not in body


def test_the_oldest_stale_connections_are_listed_oldest_first(client: Any, world: World) -> None:
    now = timezone.now()
    older = ConnectionFactory(client=world.client, platform="kraken", last_success_at=now - dt.timedelta(days=9))
    m.Connection.objects.filter(pk=world.connection.pk).update(last_success_at=now - dt.timedelta(days=2))
    client.force_login(world.adviser)

    body = client.get(reverse("reports:freshness")).content.decode()

    section = body.split('id="stale-title"')[1]
    assert section.index(f"/connections/{older.pk}/") < section.index(f"/connections/{world.connection.pk}/")


@pytest.mark.parametrize("role", ["firm_admin", "adviser"])
def test_freshness_page_queries_do_not_grow_with_households(client: Any, world: World, role: str) -> None:
    user = world.firm_admin if role == "firm_admin" else world.adviser
    client.force_login(user)
    rng = random.Random(1)

    def queries() -> int:
        with CaptureQueriesContext(db_connection) as captured:
            assert client.get(reverse("reports:freshness")).status_code == 200
        return len(captured.captured_queries)

    _random_world(world.firm, [world.adviser, world.other_adviser], 3, rng)
    small = queries()
    extra = MembershipFactory(firm=world.firm, user=UserFactory()).user
    _random_world(world.firm, [world.adviser, world.other_adviser, extra], 30, rng)
    assert queries() == small


def test_the_dashboard_links_the_freshness_page_and_every_report(client: Any, world: World) -> None:
    client.force_login(world.adviser)
    body = client.get(reverse("dashboard")).content.decode()
    assert f'href="{reverse("reports:freshness")}"' in body
    assert f'href="{reverse("reports:index")}"' in body


def test_freshness_csv_holds_the_daily_figures_of_the_readers_scope(client: Any, world: World) -> None:
    jobs.freshness_snapshot_take()
    client.force_login(world.adviser)

    rows = csv_rows(client.get(reverse("reports:freshness_csv")))

    assert [(r["Households"], r["Households with data"]) for r in rows] == [("1", "1")]  # alice's, not the firm's
