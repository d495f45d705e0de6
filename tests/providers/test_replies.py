"""Reading provider replies (providers/replies.py): the value parsers and typed JSON access."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from connections.providers.errors import ErrorKind, ProviderError
from connections.providers.replies import JsonObject, parse_decimal, parse_retry_after, parse_timestamp


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)

    assert parse_retry_after("30") == 30
    assert parse_retry_after("Wed, 15 Jan 2025 12:01:30 GMT", now=now) == 90
    assert parse_retry_after("Wed, 15 Jan 2025 11:00:00 GMT", now=now) == 0
    assert parse_retry_after("tomorrow") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.50000000", Decimal("0.50000000")),
        ("12.000000000000000001", Decimal("12.000000000000000001")),
        (" -3 ", Decimal("-3")),
        (0.5, None),
        (1, None),
        ("NaN", None),
        ("Infinity", None),
        ("1,5", None),
        ("", None),
        (None, None),
    ],
)
def test_balances_are_decimal_strings_only(value: object, expected: Decimal | None) -> None:
    assert parse_decimal(value) == expected


def test_timestamps_need_an_offset_and_accept_seven_fraction_digits() -> None:
    assert parse_timestamp("2024-06-14T13:29:36.8287785+05:30") == datetime(2024, 6, 14, 7, 59, 36, 828778, tzinfo=UTC)
    assert parse_timestamp("2024-06-14T13:29:36Z") == datetime(2024, 6, 14, 13, 29, 36, tzinfo=UTC)
    assert parse_timestamp("2024-06-14T13:29:36") is None
    assert parse_timestamp(12) is None


def test_field_errors_name_provider_endpoint_and_path_but_never_the_value() -> None:
    body = JsonObject({"result": {"items": [{"token": 12345678}]}}, where="Acme (token)")

    with pytest.raises(ProviderError) as info:
        body.obj("result").objects("items")[0].text("token")

    assert info.value.kind == ErrorKind.TRANSIENT
    assert "Acme (token)" in info.value.message
    assert "result.items[0].token" in info.value.message
    assert "12345678" not in info.value.message


def test_booleans_are_not_integers() -> None:
    with pytest.raises(ProviderError):
        JsonObject({"expiresIn": True}, where="Acme").integer("expiresIn")
