"""Cursors: opaque to clients, a small JSON object in base64url to the API.

Lists are keyset-paged (the rows after the cursor's in the list's order), so
a page never shows a row twice or skips one that was there when the listing
began, and page 100 costs what page 1 does. A cursor the API did not make is a 400 naming the parameter.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from connections import wording

from .problems import ApiProblem, FieldProblem

DEFAULT_LIMIT = 100
MAX_LIMIT = 500


def cursor_encode(**values: Any) -> str:
    raw = json.dumps(values, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_decode(value: str | None, *, name: str = "cursor", keys: tuple[str, ...] = ("id",)) -> dict[str, Any] | None:
    """The values of a cursor this API made (an integer for each of ``keys``), ``None`` when none was given.

    Anything else is a 400 problem naming the parameter.
    """
    if value is None or value == "":
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (ValueError, binascii.Error):
        decoded = None
    if not isinstance(decoded, dict) or not all(type(decoded.get(key)) is int for key in keys):
        message = wording.api_invalid_cursor(name=name)
        raise ApiProblem(400, "invalid_cursor", message, errors=[FieldProblem(field=f"query.{name}", message=message)])
    return decoded
