"""Where the portal may send a webhook: the URL rules, checked when an endpoint is saved and again at delivery.

A webhook is a request the portal makes to a URL a firm typed, so without
rules it is a way to make the portal call its own network (server-side
request forgery): a database, a cloud metadata service at 169.254.169.254, an
admin page on localhost. In production (``WEBHOOK_REQUIRE_HTTPS`` on,
``WEBHOOK_ALLOW_PRIVATE_ADDRESSES`` off, both the defaults with ``DEBUG``
off):

* the URL is ``https://``, with no user name or password in it;
* every address its host resolves to is a global unicast address: never
  loopback, private (RFC 1918, unique local), shared (100.64/10), link-local,
  multicast, reserved, documentation or unspecified, including IPv4 written
  inside IPv6 (``::ffff:127.0.0.1``);
* the host is resolved again at each delivery, every answer checked, and the
  request goes to the address that was checked (:mod:`.transport`), so a name
  that re-resolves to a private address later (DNS rebinding) is refused
  rather than followed.

Development and the test suite allow ``http://`` and local receivers through
those two settings. (Provider base URLs have their own rule on ProviderApp;
this one is the webhooks' own.)
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from connections import wording

from .. import conf

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(ValueError):
    """The URL may not be delivered to; ``message`` says why in plain words."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Target:
    """A checked delivery target: connect to ``addresses`` (in order), name the host ``host``."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent in the request line
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def address_is_public(address: IPAddress) -> bool:
    """A global unicast address: what a webhook may be sent to in production."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _split(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path and query) of a URL the rules accept in form; raises AddressRefused."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise AddressRefused(wording.webhook_url_malformed()) from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise AddressRefused(wording.webhook_url_malformed())
    if parts.scheme != "https" and conf.require_https():
        raise AddressRefused(wording.webhook_url_https_required())
    if parts.username is not None or parts.password is not None:
        raise AddressRefused(wording.webhook_url_has_credentials())
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path


def _resolve(host: str, port: int) -> tuple[str, ...]:
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return (str(literal),)
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise AddressRefused(wording.webhook_url_unresolvable(host=host)) from None
    found: list[str] = []
    for _family, _type, _proto, _name, sockaddr in answers:
        address = str(sockaddr[0]).split("%", 1)[0]
        if address not in found:
            found.append(address)
    if not found:
        raise AddressRefused(wording.webhook_url_unresolvable(host=host))
    return tuple(found)


def delivery_target(url: str) -> Target:
    """Resolve ``url`` and check every address it resolves to (see the module docstring); raises AddressRefused.

    One private answer refuses the whole name: a name that mixes public and
    private addresses would otherwise be delivered wherever the resolver's
    order put it.
    """
    scheme, host, port, path = _split(url)
    addresses = _resolve(host, port)
    public = all(address_is_public(ipaddress.ip_address(address)) for address in addresses)
    if not public and not conf.allow_private_addresses():
        raise AddressRefused(wording.webhook_url_address_refused(host=host))
    return Target(scheme=scheme, host=host, port=port, path=path, addresses=addresses)


def webhook_url_problems(url: str) -> list[str]:
    """What is wrong with ``url`` as a webhook endpoint under the current settings (empty when nothing)."""
    if len(url) > 500:
        return [wording.webhook_url_malformed()]
    try:
        delivery_target(url)
    except AddressRefused as exc:
        return [exc.message]
    return []
