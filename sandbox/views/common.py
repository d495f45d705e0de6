"""Helpers shared by the simulator views."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.http import HttpRequest, JsonResponse

from ..state import Snapshot

# The platform names title case does not spell; every other key reads as its
# title ("coinbase" → "Coinbase").
PLATFORM_NAMES: dict[str, str] = {"metamask": "MetaMask"}


def platform_name(platform: str) -> str:
    """The display name of a source platform key (``coinbase`` → ``Coinbase``)."""
    return PLATFORM_NAMES.get(platform.lower(), platform.replace("_", " ").replace("-", " ").title())


def json_response(data: Any, *, status: int = 200, primary: str = "") -> JsonResponse:
    """A JSON reply; ``primary`` names the field a ``missing_field`` fault removes by default."""
    response = JsonResponse(data, status=status, safe=False)
    response.sandbox_primary_field = primary  # type: ignore[attr-defined]
    return response


def read_json(request: HttpRequest) -> dict[str, Any] | None:
    """The request body as a JSON object, or None when it is not one."""
    try:
        data = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def text_field(data: dict[str, Any], name: str) -> str:
    """A non-empty string field of a JSON body, else ''."""
    value = data.get(name)
    return value.strip() if isinstance(value, str) else ""


def lifetime(request: HttpRequest, provider: str, kind: str) -> int:
    """The configured lifetime (seconds) of a token kind, from this request's snapshot."""
    snap: Snapshot = request.sandbox  # type: ignore[attr-defined]
    return snap.lifetime(provider, kind)


def with_query(url: str, params: dict[str, str]) -> str:
    """``url`` with ``params`` appended to its query string (keeping any it has)."""
    separator = "&" if urlsplit(url).query else ("" if url.endswith("?") else "?")
    return f"{url}{separator}{urlencode(params)}"


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL, for a Content-Security-Policy source."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def one(queryset: Any) -> Any:
    """The first row of ``queryset`` or None, without ``first()``'s ORDER BY: for lookups on
    unique keys on every simulated request, where compiling the ordering cost more than the read."""
    return next(iter(queryset[:1]), None)
