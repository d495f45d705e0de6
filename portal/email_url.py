"""``EMAIL_URL``: where mail goes, in one setting, read by ``portal/settings.py``.

Mail servers are django-environ's schemes: ``smtp://`` (plain),
``smtp+tls://`` and ``smtps://`` (both STARTTLS, as django-environ reads
them), ``smtp+ssl://`` (TLS from the first byte, usually port 465), and
``consolemail://`` (``console://`` is the same) for development. An ESP
through django-anymail is ``anymail+<esp>://<credential>@``, with the ESP's
other settings as query parameters, named as anymail names them without the
ESP's prefix::

    anymail+mailgun://API_KEY@?sender_domain=mg.example.com
    anymail+postmark://SERVER_TOKEN@
    anymail+mailjet://API_KEY:SECRET_KEY@

This sets ``EMAIL_BACKEND`` to ``anymail.backends.<esp>.EmailBackend`` and
returns the rest under ``ANYMAIL`` (``MAILGUN_API_KEY``,
``MAILGUN_SENDER_DOMAIN``, ...). Reserved characters in a credential are
percent-encoded (``/`` is ``%2F``). Errors name the scheme, never the URL:
it carries the credential.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import environ

ANYMAIL_PREFIX = "anymail+"

# Each ESP's anymail setting for the credential before the "@" (and, for those that take two, after the ":").
ANYMAIL_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "amazon_ses": (),  # boto3's own credentials (its environment or instance role)
    "brevo": ("API_KEY",),
    "mailersend": ("API_TOKEN",),
    "mailgun": ("API_KEY",),
    "mailjet": ("API_KEY", "SECRET_KEY"),
    "mailtrap": ("API_TOKEN",),
    "mandrill": ("API_KEY",),
    "postal": ("API_KEY",),
    "postmark": ("SERVER_TOKEN",),
    "resend": ("API_KEY",),
    "scaleway": ("SECRET_KEY",),
    "sendgrid": ("API_KEY",),
    "sparkpost": ("API_KEY",),
    "unisender_go": ("API_KEY",),
}

ALIASES = {"console": "consolemail"}


class EmailUrlError(ValueError):
    """An EMAIL_URL that cannot be read; the message names the scheme only."""


def email_settings_from_url(url: str) -> dict[str, Any]:
    """The Django mail settings ``url`` names: ``EMAIL_BACKEND`` and the backend's own, ``ANYMAIL`` for an ESP."""
    scheme, _, rest = url.strip().partition("://")
    if not rest and not url.strip().endswith("://"):
        raise EmailUrlError("EMAIL_URL must look like scheme://..., for example smtp+tls://user:password@host:587.")
    scheme = ALIASES.get(scheme.lower(), scheme.lower())
    if scheme.startswith(ANYMAIL_PREFIX):
        return _anymail_settings(scheme.removeprefix(ANYMAIL_PREFIX), f"{scheme}://{rest}")
    if scheme not in environ.Env.EMAIL_SCHEMES:
        known = ", ".join(f"{name}://" for name in [*environ.Env.EMAIL_SCHEMES, *ALIASES])
        raise EmailUrlError(f"EMAIL_URL scheme {scheme}:// is not one of {known} or anymail+<esp>://.")
    return dict(environ.Env.email_url_config(f"{scheme}://{rest}"))


def _anymail_settings(esp: str, url: str) -> dict[str, Any]:
    if esp not in ANYMAIL_CREDENTIALS:
        raise EmailUrlError(
            f"EMAIL_URL names the ESP {esp!r}, which is not one of {', '.join(sorted(ANYMAIL_CREDENTIALS))}."
        )
    parts = urlsplit(url)
    if parts.hostname:
        # A host would be silently ignored; the ESP's API address is a query parameter (api_url=...).
        raise EmailUrlError(
            f"EMAIL_URL anymail+{esp}:// takes no host: put the credential before the @ and the rest as "
            "query parameters (for example ?sender_domain=...)."
        )
    prefix = esp.upper()
    anymail: dict[str, Any] = {}
    given = [unquote(part) for part in (parts.username, parts.password) if part]
    names = ANYMAIL_CREDENTIALS[esp]
    if len(given) > len(names):
        raise EmailUrlError(f"EMAIL_URL anymail+{esp}:// takes {len(names) or 'no'} credential(s) before the @.")
    for name, value in zip(names, given, strict=False):
        anymail[f"{prefix}_{name}"] = value
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        anymail[f"{prefix}_{key.upper()}"] = value
    return {"EMAIL_BACKEND": f"anymail.backends.{esp}.EmailBackend", "ANYMAIL": anymail}
