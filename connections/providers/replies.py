"""Reading what a provider sent back: typed JSON access and parsers for the values in it.

:class:`JsonObject` wraps one JSON object of a reply; its accessors turn a
missing or mistyped field into a ``transient`` :class:`ProviderError` naming
the provider, the endpoint and the field path, never the value. The parsers
accept exactly the shapes the providers document (amounts as decimal strings,
ISO 8601 timestamps with an offset, ``Retry-After`` in either form) and return
``None`` for anything else, so the caller decides what a bad value means.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any

from connections.logging import redact

from .errors import ProviderError


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); ``None`` if absent or garbage."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT by definition
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def parse_decimal(value: object) -> Decimal | None:
    """A finite ``Decimal`` from a JSON string such as ``"0.50000000"``; ``None`` for anything else.

    Numbers are refused on purpose: the providers send amounts as strings, and a
    JSON float has already lost precision by the time it reaches us.
    """
    if not isinstance(value, str):
        return None
    try:
        number = Decimal(value.strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def parse_timestamp(value: object) -> datetime | None:
    """An aware datetime from ISO 8601 text with an offset; ``None`` for anything else."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Some providers send seven fractional digits (.NET ticks); Python 3.11 takes six.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def clean_provider_text(value: object, *, limit: int = 200) -> str:
    """Provider-supplied words made safe to show: one line, short, secret-shaped parts masked."""
    if not isinstance(value, str):
        return ""
    text = " ".join(value.split())
    text = "".join(ch for ch in text if ch.isprintable())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return redact(text)


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type, as messages name it ("array", "null")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class JsonObject:
    """Typed, validating access to one JSON object of a provider's reply.

    Every accessor raises a ``transient`` :class:`ProviderError` naming the
    provider, endpoint and field path (``result.accounts[0].balance``) when the
    field is missing or of the wrong type. Values never reach a message.
    """

    __slots__ = ("_data", "path", "where")

    def __init__(self, data: Mapping[str, Any], *, where: str, path: str = "") -> None:
        self._data = data
        self.where = where
        self.path = path

    def __repr__(self) -> str:  # the data may hold secrets
        return f"JsonObject(where={self.where!r}, path={self.path!r})"

    def _label(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def missing(self, name: str) -> ProviderError:
        return ProviderError.transient(f"{self.where}: the reply is missing the field '{self._label(name)}'.")

    def mistyped(self, name: str, expected: str, value: object) -> ProviderError:
        return ProviderError.transient(
            f"{self.where}: the field '{self._label(name)}' has the wrong type "
            f"(expected {expected}, got {json_type(value)})."
        )

    def invalid(self, name: str, problem: str) -> ProviderError:
        return ProviderError.transient(f"{self.where}: the field '{self._label(name)}' {problem}.")

    def has(self, name: str) -> bool:
        return name in self._data and self._data[name] is not None

    def raw(self, name: str, default: Any = None) -> Any:
        """The value as parsed, unvalidated (for optional, loosely shaped parts)."""
        return self._data.get(name, default)

    def _get(self, name: str) -> Any:
        if name not in self._data or self._data[name] is None:
            raise self.missing(name)
        return self._data[name]

    def text(self, name: str, *, allow_empty: bool = False) -> str:
        value = self._get(name)
        if not isinstance(value, str):
            raise self.mistyped(name, "a string", value)
        if not allow_empty and not value.strip():
            raise self.invalid(name, "is empty")
        return value

    def optional_text(self, name: str) -> str | None:
        if not self.has(name):
            return None
        value = self._data[name]
        if not isinstance(value, str):
            raise self.mistyped(name, "a string", value)
        return value

    def identifier(self, name: str) -> str:
        """An id sent as a string or an integer (Coinify's user id is a number)."""
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.mistyped(name, "a string or integer id", value)
        text = str(value)
        if not text.strip():
            raise self.invalid(name, "is empty")
        return text

    def integer(self, name: str, *, minimum: int | None = None) -> int:
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.mistyped(name, "an integer", value)
        if minimum is not None and value < minimum:
            raise self.invalid(name, f"is below {minimum}")
        return value

    def boolean(self, name: str) -> bool:
        value = self._get(name)
        if not isinstance(value, bool):
            raise self.mistyped(name, "a boolean", value)
        return value

    def decimal(self, name: str) -> Decimal:
        value = self._get(name)
        number = parse_decimal(value)
        if number is None:
            if isinstance(value, str):
                raise self.invalid(name, "is not a decimal amount")
            raise self.mistyped(name, "a decimal string", value)
        return number

    def obj(self, name: str) -> JsonObject:
        value = self._get(name)
        if not isinstance(value, dict):
            raise self.mistyped(name, "an object", value)
        return JsonObject(value, where=self.where, path=self._label(name))

    def objects(self, name: str) -> list[JsonObject]:
        """A list whose every item is an object."""
        value = self._get(name)
        if not isinstance(value, list):
            raise self.mistyped(name, "an array", value)
        items: list[JsonObject] = []
        for index, item in enumerate(value):
            label = f"{name}[{index}]"
            if not isinstance(item, dict):
                raise self.mistyped(label, "an object", item)
            items.append(JsonObject(item, where=self.where, path=self._label(label)))
        return items
