"""Plain words for times, deadlines and amounts."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from connections import models as m
from connections.selectors import Deadline
from connections.templatetags import portal

NOW = dt.datetime(2026, 3, 10, 14, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("1234.5"), "1,234.50"),
        (Decimal("0.000000000000000000"), "0.00"),
        (Decimal("0.12345678"), "0.12345678"),
        (Decimal("1000000"), "1,000,000.00"),
        (None, "—"),
    ],
)
def test_amount_drops_trailing_zeros_but_keeps_two_decimals(value: Decimal | None, expected: str) -> None:
    assert portal.amount(value) == expected


def test_relative_time_in_words() -> None:
    assert portal.relative(NOW + dt.timedelta(minutes=12, seconds=5), NOW) == "in 12\xa0minutes"
    assert portal.relative(NOW - dt.timedelta(hours=3, minutes=2), NOW) == "3\xa0hours ago"
    assert portal.relative(NOW - dt.timedelta(seconds=10), NOW) == "just now"
    assert portal.relative(None, NOW) == "never"


def test_clock_says_today_tomorrow_or_the_date() -> None:
    assert portal.clock(NOW.replace(hour=14, minute=30), NOW) == "14:30"
    assert portal.clock(NOW + dt.timedelta(days=1), NOW) == "tomorrow 14:00"
    assert portal.clock(NOW - dt.timedelta(days=1), NOW) == "yesterday 14:00"
    assert portal.clock(NOW + dt.timedelta(days=5), NOW) == "15 Mar 2026, 14:00"


@pytest.mark.parametrize(
    ("kind", "offset", "status", "expected"),
    [
        ("renews", dt.timedelta(minutes=12, seconds=1), "active", "Access renews in 12\xa0minutes"),
        (
            "renews",
            -dt.timedelta(minutes=3, seconds=1),
            "active",
            "Access token lapsed 3\xa0minutes ago; the portal renews it at the next check",
        ),
        ("token_expires", dt.timedelta(hours=1, seconds=1), "active", "Access token expires in 1\xa0hour"),
        (
            "rolling",
            dt.timedelta(hours=23),
            "active",
            "Keeps renewing itself; needs the client only if renewals stop for 24 hours",
        ),
        ("reconnect_by", dt.timedelta(minutes=30), "active", "Reconnect by 14:30 (in 30\xa0minutes)"),
        (
            "reconnect_by",
            -dt.timedelta(days=8),
            "needs_reconnect",
            "Expired on 2 Mar 2026, 14:00: ask the client to reconnect",
        ),
        (
            "reconnect_by",
            -dt.timedelta(minutes=30),
            "pending",
            "Lapsed on 10 Mar 2026, 13:30: the authorization was not finished in time. Start it again",
        ),
        ("next_check", dt.timedelta(minutes=5, seconds=1), "active", "Next check in 5\xa0minutes"),
    ],
)
def test_deadlines_in_words_say_whether_they_are_ahead_rolling_or_gone(
    kind: str, offset: dt.timedelta, status: str, expected: str
) -> None:
    at = NOW + offset
    deadline = Deadline(kind=kind, at=at, past=at <= NOW, span=dt.timedelta(hours=24) if kind == "rolling" else None)
    connection = m.Connection(status=status)
    assert portal.deadline_words(deadline, connection, NOW) == expected
