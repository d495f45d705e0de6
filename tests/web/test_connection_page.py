"""Connection page: the event timeline and the 30-day health strip drawn server-side."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.urls import reverse
from django.utils import timezone

from connections import models as m
from connections import selectors
from tests.factories import ConnectionEventFactory

from .conftest import World

NOW = dt.datetime(2026, 3, 31, 12, 0, tzinfo=dt.UTC)


def _event(connection: m.Connection, days_ago: float, to_status: str, from_status: str = "", **kw: Any) -> None:
    ConnectionEventFactory(
        connection=connection,
        kind=m.ConnectionEvent.Kind.STATUS_CHANGED,
        from_status=from_status,
        to_status=to_status,
        created_at=NOW - dt.timedelta(days=days_ago),
        **kw,
    )


def test_health_days_take_the_worst_status_of_each_day(world: World) -> None:
    connection = world.connection
    m.Connection.objects.filter(pk=connection.pk).update(created_at=NOW - dt.timedelta(days=60))
    connection.refresh_from_db()
    _event(connection, 40, m.Status.ACTIVE, m.Status.PENDING)
    _event(connection, 10.1, m.Status.NEEDS_RECONNECT, m.Status.ACTIVE, reason="revoked")  # 21 Mar, 09:36
    _event(connection, 9.9, m.Status.ACTIVE, m.Status.NEEDS_RECONNECT)  # 21 Mar, 14:24: same day
    _event(connection, 3, m.Status.DEGRADED, m.Status.ACTIVE)  # 28 Mar
    days = selectors.connection_health_days(connection=connection, now=NOW)
    assert len(days) == 30
    assert days[0].day == dt.date(2026, 3, 2)
    assert days[-1].day == dt.date(2026, 3, 31)
    by_day = {d.day: d.status for d in days}
    assert by_day[dt.date(2026, 3, 20)] == "active"
    assert by_day[dt.date(2026, 3, 21)] == "needs_reconnect"  # worst of the day, though it ended active
    assert by_day[dt.date(2026, 3, 22)] == "active"
    assert by_day[dt.date(2026, 3, 28)] == "degraded"
    assert by_day[dt.date(2026, 3, 31)] == "degraded"  # still degraded today


def test_days_before_the_connection_existed_have_no_data(world: World) -> None:
    connection = world.connection
    m.Connection.objects.filter(pk=connection.pk).update(created_at=NOW - dt.timedelta(days=2))
    connection.refresh_from_db()
    days = selectors.connection_health_days(connection=connection, now=NOW)
    assert [d.status for d in days[:27]] == [""] * 27
    assert [d.status for d in days[27:]] == ["active"] * 3  # no events: the current status


def test_connection_page_draws_an_accessible_svg_strip(adviser_client: Any, world: World) -> None:
    m.Connection.objects.filter(pk=world.connection.pk).update(created_at=timezone.now() - dt.timedelta(days=90))
    ConnectionEventFactory(
        connection=world.connection,
        kind=m.ConnectionEvent.Kind.STATUS_CHANGED,
        from_status="active",
        to_status="needs_reconnect",
        reason="revoked",
        created_at=timezone.now() - dt.timedelta(days=5),
    )
    body = adviser_client.get(reverse("connection_detail", args=[world.connection.pk])).content.decode()
    svg = re.search(r"<svg role=\"img\".*?</svg>", body, flags=re.S).group(0)
    assert len(re.findall(r"<rect ", svg)) == 30
    assert '<title id="health-strip-title">Health over the last 30 days</title>' in svg
    assert '<desc id="health-strip-desc">' in svg
    assert "days needs reconnect" in svg
    assert 'aria-labelledby="health-strip-title health-strip-desc"' in svg
    assert svg.count("cell--needs_reconnect") == 6
    assert svg.count("cell--active") == 24
    assert "<script" not in svg
    assert " style=" not in svg


def test_timeline_lists_events_newest_first_and_pages(adviser_client: Any, world: World) -> None:
    for i in range(25):
        ConnectionEventFactory(
            connection=world.connection,
            message=f"event number {i:02d}",
            created_at=timezone.now() - dt.timedelta(hours=i),
        )
    first = adviser_client.get(reverse("connection_detail", args=[world.connection.pk])).content.decode()
    assert first.index("event number 00") < first.index("event number 01")
    assert "event number 19" in first
    assert "event number 20" not in first
    second = adviser_client.get(reverse("connection_detail", args=[world.connection.pk]) + "?page=2").content.decode()
    assert "event number 24" in second
    assert "event number 00" not in second
    assert 'rel="prev"' in second


def test_timeline_names_who_did_it_in_plain_words(adviser_client: Any, world: World) -> None:
    ConnectionEventFactory(connection=world.connection, actor=world.adviser, message="by the reader")
    ConnectionEventFactory(connection=world.connection, actor=world.firm_admin, message="by a colleague")
    ConnectionEventFactory(connection=world.connection, actor_label="job:check", message="by a job")
    ConnectionEventFactory(connection=world.connection, actor_label="client-link", message="by the client")
    body = adviser_client.get(reverse("connection_detail", args=[world.connection.pk])).content.decode()
    assert "by you" in body
    assert f"by {world.firm_admin.get_username()}" in body
    assert "by scheduled check" in body
    assert "by the client through their link" in body
    assert "job:" not in body
