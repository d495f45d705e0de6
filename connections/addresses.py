"""The address a request came from, behind as many reverse proxies as ``TRUSTED_PROXY_COUNT`` says.

Every limit per address (sign-in through django-axes, credential attempts,
password resets) keys on this, so it must be the client's address and not one
the client chose. ``X-Forwarded-For`` is a list each proxy appends to: the
client can put anything at its start, and only the entries the portal's own
proxies appended are true. With ``TRUSTED_PROXY_COUNT = N`` the client is the
N-th entry from the right (the address the outermost trusted proxy saw);
with 0, the default, the header is ignored and ``REMOTE_ADDR`` is the client.
A request that carries fewer entries than that did not come through every
trusted proxy, so its header proves nothing and ``REMOTE_ADDR`` is used.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def _address(value: str) -> str | None:
    """``value`` as a normalised IP address (``[::1]:443`` and ``1.2.3.4:80`` shapes included), else ``None``."""
    value = value.strip()
    if value.startswith("[") and "]" in value:
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


# What limits per address count under when a request has none (a test's
# request, a misconfigured server): one shared subject, never no limit.
UNKNOWN = "unknown"


def client_address(request: HttpRequest) -> str | None:
    """The client's IP address, or ``None`` when even ``REMOTE_ADDR`` is not one.

    django-axes' ``AXES_CLIENT_IP_CALLABLE`` (which stores it as an address, so never a placeholder).
    """
    remote = _address(str(request.META.get("REMOTE_ADDR", "")))
    trusted = int(getattr(settings, "TRUSTED_PROXY_COUNT", 0) or 0)
    if trusted <= 0:
        return remote
    forwarded = [part for part in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",") if part.strip()]
    if len(forwarded) < trusted:
        return remote
    return _address(forwarded[-trusted]) or remote


def limit_subject(request: HttpRequest) -> str:
    """The client's address as the subject of a limit per address (:data:`UNKNOWN` without one)."""
    return client_address(request) or UNKNOWN
