"""Where a provider app's calls and browsers may go: one rule, held on save and again before every call.

A ProviderApp's URLs decide where the portal sends the app's client secret,
its app token and every connection's tokens, where the worker opens
connections, and where a browser is sent carrying an authorization ``state``.
Whoever may edit the app could otherwise point them at a host of their own
(and collect the secrets) or at an internal one (and make the worker call
it). So a URL is accepted only when all of this holds:

* it is a plain ``http(s)://host[:port][/path]``: printable ASCII without
  spaces or backslashes, no user name or password, no query or fragment, so
  no two URL parsers can disagree about which host it names;
* its host is the sandbox's own (``SANDBOX_BASE_URL``'s host and port) while
  ``SANDBOX_ENABLED`` is on: the portal's own simulator, enabled on purpose;
* or, otherwise: with ``PROVIDER_URLS_STRICT`` on (production: ``DEBUG``
  off) it uses ``https`` and names no internal address (loopback, private,
  link-local such as the cloud metadata address ``169.254.169.254``,
  ``localhost`` and other single-label or ``.internal``-style names, in any
  spelling of an IP address); and its host is listed for the provider and
  environment (:func:`allowed_hosts`: the host of the base URL the
  provider's client documents, unless ``settings.PROVIDER_HOSTS``, read from
  ``PROVIDER_HOSTS_<PROVIDER>_<ENVIRONMENT>``, lists the pair; a ``host`` entry
  allows the scheme's default port, ``host:port`` that port only).

:func:`url_refusal` states the rule. ``ProviderApp.clean()`` applies it to
whatever admins, forms and scripts save, and ``ProviderClient.api_url`` and
``browser_url`` apply it again to every URL a client builds, so a row written
past validation still sends nothing anywhere.

An app's ``redirect_uri`` is the other way round: it is where the provider
sends the client's browser back with the authorization, so it must be the
portal's own address. :func:`redirect_refusal` holds it to the portal's
callback for the provider on ``PORTAL_BASE_URL``'s host and port (and to
``https`` under ``PROVIDER_URLS_STRICT``), with the same plain-URL rule;
``ProviderApp.clean()`` applies it on save, and
``ProviderClient.portal_callback`` again wherever a client sends it to the
provider.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.urls import reverse

# The values of connections.models.Environment (this module imports no models).
ENVIRONMENTS = ("sandbox", "production")
SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443}
# Names that only mean something inside a network: never a provider's.
INTERNAL_SUFFIXES = (".localhost", ".local", ".localdomain", ".internal", ".intranet", ".lan", ".home.arpa", ".corp")
# Printable ASCII, no space, no backslash: what every parser reads the same way.
_PLAIN = re.compile(r"[!-\[\]-~]+")
# Longest host named in a message: a refusal quotes it, and the text is stored and shown.
HOST_SHOWN = 100


@dataclass(frozen=True)
class Origin:
    """Where a URL's requests go: scheme, host (lowercase) and port (the scheme's default when none)."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = DEFAULT_PORTS.get(self.scheme) == self.port
        return f"{self.scheme}://{host}" + ("" if default else f":{self.port}")


def origin_of(url: str) -> Origin | None:
    """The origin a URL's requests go to; ``None`` when it has none a request could use."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES or not parts.hostname:
        return None
    return Origin(scheme=scheme, host=parts.hostname.lower(), port=port or DEFAULT_PORTS[scheme])


def host_entry(url: str) -> str | None:
    """The ``host`` (or ``host:port``, off the scheme's default port) a URL's requests go to, as host lists spell it."""
    origin = origin_of(url) if url else None
    if origin is None:
        return None
    host = f"[{origin.host}]" if ":" in origin.host else origin.host
    return host if DEFAULT_PORTS[origin.scheme] == origin.port else f"{host}:{origin.port}"


def documented_hosts(provider: str, environment: str) -> list[str]:
    """The hosts the provider's client documents for an environment (none for a provider the registry lacks)."""
    # Imported here: the clients import this module.
    from .registry import PROVIDERS

    client = PROVIDERS.get(provider)
    return client.documented_hosts(environment) if client is not None else []


def allowed_hosts(provider: str, environment: str) -> list[str]:
    """The hosts the provider's apps may call in an environment, read now.

    ``settings.PROVIDER_HOSTS[provider][environment]`` when the deployment
    lists the pair (``PROVIDER_HOSTS_<PROVIDER>_<ENVIRONMENT>``, even empty),
    else the ones the provider documents; a pair neither names allows nothing.
    """
    configured = getattr(settings, "PROVIDER_HOSTS", {}) or {}
    listed = (configured.get(provider) or {}).get(environment)
    if listed is None:
        listed = documented_hosts(provider, environment)
    return [str(entry).strip().lower() for entry in listed if str(entry).strip()]


def host_table() -> dict[str, dict[str, list[str]]]:
    """:func:`allowed_hosts` for every registered provider and environment, and for every pair the settings list."""
    from .registry import PROVIDERS

    configured = getattr(settings, "PROVIDER_HOSTS", {}) or {}
    pairs = {(provider, environment) for provider in PROVIDERS for environment in ENVIRONMENTS}
    pairs |= {(provider, environment) for provider, listed in configured.items() for environment in listed}
    table: dict[str, dict[str, list[str]]] = {}
    for provider, environment in sorted(pairs):
        table.setdefault(provider, {})[environment] = allowed_hosts(provider, environment)
    return table


def _entry_matches(entry: str, origin: Origin) -> bool:
    try:
        parts = urlsplit(f"//{entry}")
        port = parts.port
    except ValueError:
        return False
    if (parts.hostname or "") != origin.host:
        return False
    return origin.port == (port if port is not None else DEFAULT_PORTS[origin.scheme])


def _sandbox_origin() -> Origin | None:
    if not getattr(settings, "SANDBOX_ENABLED", False):
        return None
    return origin_of(str(getattr(settings, "SANDBOX_BASE_URL", "") or ""))


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address a host spells, in any form a resolver accepts (``10.1``, ``0x7f000001``...)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        # inet_aton reads the short, octal and hexadecimal forms that
        # ip_address refuses but getaddrinfo (and so requests) would connect to.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def is_internal(host: str) -> bool:
    """True for a host that names this machine or a private network rather than a provider on the internet."""
    name = host.lower().rstrip(".")
    address = _address(name)
    if address is None:
        # A single-label name is resolved through the local search domains.
        return "." not in name or name == "localhost" or name.endswith(INTERNAL_SUFFIXES)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def _shown(host: str) -> str:
    return host if len(host) <= HOST_SHOWN else host[: HOST_SHOWN - 1] + "…"


def _listing(hosts: Sequence[str]) -> str:
    return ", ".join(hosts) if hosts else "none yet"


def _plain_refusal(text: str) -> str | None:
    """Why ``text`` is not a plain ``http(s)://host[:port][/path]`` (see the module docstring), else ``None``."""
    if not text:
        return "is empty"
    if not _PLAIN.fullmatch(text):
        return "holds spaces, backslashes or characters outside plain ASCII"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (reading it validates the port)
    except ValueError:
        return "is not a URL the portal can call"
    if origin_of(text) is None:
        return "is not an http:// or https:// URL with a host"
    if "@" in parts.netloc:
        return "carries a user name or password"
    if parts.query or parts.fragment or "?" in text or "#" in text:
        return "carries a query or fragment (give the base URL only)"
    return None


def callback_path(provider: str) -> str:
    """The path of the portal's callback for ``provider`` (connections/urls.py, ``connect_callback``)."""
    return reverse("connect_callback", args=[provider])


def redirect_refusal(url: str, *, provider: str) -> str | None:
    """Why ``provider`` may not send browsers back to ``url`` with an authorization; ``None`` when it may.

    Only the portal's own callback for that provider qualifies: its origin
    (``PORTAL_BASE_URL``'s host and port), since anywhere else whoever runs
    that host receives the client's authorization code or tokens; and its
    path, since any other page of the portal (an open redirect, a page that
    shows its query) could hand them on. Plain words that complete "this URL ...".
    """
    text = url.strip()
    refusal = _plain_refusal(text)
    if refusal is not None:
        return refusal
    origin = origin_of(text)
    portal = origin_of(str(getattr(settings, "PORTAL_BASE_URL", "") or ""))
    assert origin is not None  # _plain_refusal refused every URL without one
    if getattr(settings, "PROVIDER_URLS_STRICT", False) and origin.scheme != "https":
        return "does not use https, which production requires"
    if portal is None or (origin.host, origin.port) != (portal.host, portal.port):
        shown = _shown(origin.host) + ("" if origin.port == DEFAULT_PORTS[origin.scheme] else f":{origin.port}")
        return f"points at {shown}, which is not the portal's own address ({portal or 'PORTAL_BASE_URL is not set'})"
    expected = callback_path(provider)
    if urlsplit(text).path != expected:
        return f"is not the portal's {provider.title()} callback ({expected} on {portal})"
    return None


def url_refusal(url: str, *, provider: str, environment: str) -> str | None:
    """Why the portal may not call (or send a browser to) ``url`` for this provider and environment.

    ``None`` when it may. Otherwise plain words that complete "this URL ..."
    ("points at evil.example, which is not ..."), naming the host but never
    anything else the URL carries.
    """
    text = url.strip()
    refusal = _plain_refusal(text)
    if refusal is not None:
        return refusal
    origin = origin_of(text)
    assert origin is not None  # _plain_refusal refused every URL without one
    if origin == _sandbox_origin():
        return None
    host = _shown(origin.host)
    if getattr(settings, "PROVIDER_URLS_STRICT", False):
        if origin.scheme != "https":
            return "does not use https, which production requires"
        if is_internal(origin.host):
            return f"points at {host}, an internal address"
    hosts = allowed_hosts(provider, environment)
    if not any(_entry_matches(entry, origin) for entry in hosts):
        variable = f"PROVIDER_HOSTS_{provider.upper()}_{environment.upper()}"
        return (
            f"points at {host}{'' if origin.port == DEFAULT_PORTS[origin.scheme] else f':{origin.port}'}, "
            f"which is not a {provider.title()} {environment} host the portal may call "
            f"(allowed: {_listing(hosts)}; set {variable} to change that)"
        )
    return None
