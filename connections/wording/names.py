"""What things are called: statuses, reasons, providers, platforms, sources, apps and actors.

Pure functions of plain values, like the rest of ``connections.wording``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Status and reason values (connections.models.Status / Reason), spelled out so
# this module can be imported by models.py without a cycle.
ACTIVE, PENDING, DEGRADED, NEEDS_RECONNECT, DISCONNECTED = (
    "active",
    "pending",
    "degraded",
    "needs_reconnect",
    "disconnected",
)
EXPIRED, REVOKED, CREDENTIALS_INVALID, CREDENTIALS_UNREADABLE, TRANSIENT, AUTHORIZATION_ABANDONED = (
    "expired",
    "revoked",
    "credentials_invalid",
    "credentials_unreadable",
    "transient",
    "authorization_abandoned",
)

PLATFORM_NAMES: Mapping[str, str] = {
    "coinbase": "Coinbase",
    "gemini": "Gemini",
    "kraken": "Kraken",
    "binance": "Binance",
    "bitstamp": "Bitstamp",
    "ledger": "Ledger",
    "metamask": "MetaMask",
}

ENVIRONMENT_NAMES: Mapping[str, str] = {"sandbox": "Sandbox", "production": "Production"}

STATUS_NAMES: Mapping[str, str] = {
    PENDING: "Pending",
    ACTIVE: "Active",
    DEGRADED: "Degraded",
    NEEDS_RECONNECT: "Needs reconnect",
    DISCONNECTED: "Disconnected",
}

# --- Actors -------------------------------------------------------------------------
# ConnectionEvent.actor_label values for what is not a person. Stored as codes,
# shown through actor_words().
SCHEDULED_CHECK = "job:check"
HOUSEKEEPING = "job:housekeeping"
CLIENT_LINK = "client-link"
ADMIN = "admin"
COMMAND = "command"
API = "api"
REMINDERS = "job:reminders"

ACTOR_NAMES: Mapping[str, str] = {
    SCHEDULED_CHECK: "scheduled check",
    HOUSEKEEPING: "scheduled housekeeping",
    CLIENT_LINK: "the client through their link",
    ADMIN: "an administrator",
    COMMAND: "a maintenance command",
    API: "the firm's API",
    REMINDERS: "scheduled reminders",
}


def person_name(user: Any) -> str:
    """A user as people read it: the full name, else the username."""
    full = user.get_full_name() if hasattr(user, "get_full_name") else ""
    return full or user.get_username()


def actor_words(*, actor: Any = None, actor_label: str = "", viewer: Any = None) -> str:
    """Who did it, in plain words: "you", "admin Jane Doe", "Jane Doe", "scheduled check".

    ``actor`` is the user (or None), ``actor_label`` the stored code; ``viewer``
    is whoever reads the page, so their own actions read "you".
    """
    if actor is not None:
        if viewer is not None and getattr(viewer, "pk", None) == actor.pk:
            return "you"
        name = person_name(actor)
        if actor_label == ADMIN or (actor_label.startswith(f"{ADMIN}:")):
            return f"admin {name}"
        return name
    code = actor_label.split(":", 2)
    if actor_label in ACTOR_NAMES:
        return ACTOR_NAMES[actor_label]
    if code[0] == "command" and len(code) > 1:
        return f"the {code[1].replace('_', ' ')} command"
    if code[0] == "job" and len(code) > 1:
        return f"scheduled {code[1].replace('_', ' ')}"
    if code[0] == API and len(code) > 1:
        return f"the firm's API (key {code[1]})"
    return actor_label.replace("_", " ") or "the portal"


# --- Names ------------------------------------------------------------------------


def _provider_names() -> Mapping[str, str]:
    # Each provider's client declares its name; imported here, as the clients
    # import this module (and models.py imports it before any client).
    from ..providers.registry import PROVIDER_NAMES

    return PROVIDER_NAMES


def provider_name(provider: str) -> str:
    return _provider_names().get(provider, provider.replace("_", " ").title())


def platform_name(platform: str) -> str:
    """A platform's name; a provider that is its own platform (Coinify's accounts) is named as the provider."""
    named = PLATFORM_NAMES.get(platform) or _provider_names().get(platform)
    return named or platform.replace("_", " ").replace("-", " ").title()


def source_name(*, provider: str, platform: str) -> str:
    """THE name of a source: "Coinbase via Turnqey"; just "Coinify" where platform and provider are one."""
    platform_words, provider_words = platform_name(platform), provider_name(provider)
    if platform_words.casefold() == provider_words.casefold():
        return platform_words
    return f"{platform_words} via {provider_words}"


def app_name(*, provider: str, environment: str, name: str = "") -> str:
    """A provider app: "Turnqey Sandbox"; the app's own name only when it adds something."""
    base = f"{provider_name(provider)} {ENVIRONMENT_NAMES.get(environment, environment.title())}"
    if name and name.casefold() not in {environment.casefold(), base.casefold(), provider_name(provider).casefold()}:
        return f"{base} ({name})"
    return base


def status_name(status: str) -> str:
    return STATUS_NAMES.get(status, status.replace("_", " ").capitalize())
