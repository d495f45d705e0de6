"""Writes to the sandbox's world, shared by the simulators, the control API and the commands.

One module per provider (:mod:`.turnqey`, :mod:`.coinify`, :mod:`.bloquo`,
:mod:`.dapi`) holds that provider's simulated world; :data:`SIMULATORS` maps
each mount to its module, and the functions here (partner apps, subjects)
look the mount up there instead of branching on it. :mod:`.world` holds what
is not any one provider's (lifetimes, fault rules, the request log, reset);
:mod:`.common` the error and field readers they all use.

Adding a provider's simulator is one module that is a :class:`Simulator` and
one line in :data:`SIMULATORS`.

Keyword-only, typed, ``<noun>_<verb>`` names. A :class:`SandboxError` carries a
plain message for a 400 (control API) or a ``CommandError`` (commands); it
never contains a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from django.db import models, transaction

from .. import clock
from ..models import App, Provider
from . import bloquo, coinify, dapi, turnqey
from .common import AppKind, Person, SandboxError, check_columns, read_mount

__all__ = [
    "SIMULATORS",
    "AppResult",
    "SandboxError",
    "Simulator",
    "app_list",
    "app_register",
    "registrable_providers",
    "simulator_for",
    "subject_act",
    "subject_create",
    "subject_list",
]


class Simulator(Protocol):
    """One provider's simulated world as the control API and the commands drive it.

    A provider module is one by defining these names at module level. Every
    function receives the ``mount`` it was reached through (Bloquo's staging
    and production share a module but not a world) and may raise
    :class:`SandboxError`.
    """

    #: What ``POST actions`` accepts for this mount, in the order an error lists them.
    ACTIONS: tuple[str, ...]
    #: Whether the mount has partner apps and what a new one needs.
    APPS: AppKind
    #: The mount's own tables, in an order that deletes cleanly (reset).
    MODELS: tuple[type[models.Model], ...]
    #: Default token lifetimes in seconds, by kind, as the provider's docs fix them.
    LIFETIMES: Mapping[str, int]

    def error_body(self, *, status: int, message: str) -> dict[str, Any]:
        """The provider's own error shape, with ``message`` in it: what an injected ``status`` fault answers."""
        ...

    def subject_create(self, *, mount: str, data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create (or update) a subject from the control fields; returns (reply, created)."""
        ...

    def subject_list(self, *, mount: str) -> list[dict[str, Any]]:
        """The mount's subjects, oldest first, without any secret."""
        ...

    def subject_act(self, *, mount: str, data: dict[str, Any], action: str, at: datetime) -> int:
        """Apply one of :attr:`ACTIONS` at ``at`` (inside a transaction); returns how many rows changed.

        Raises :class:`SandboxError` with status 404 when no subject matches.
        """
        ...

    def grant_answer(self, *, mount: str, person: Person) -> dict[str, Any]:
        """Create the person's subject and answer what the partner receives (``fields`` or ``params``)."""
        ...

    def grant_break(self, *, mount: str, person: Person, how: str) -> dict[str, str] | None:
        """Break the person's subject as ``how`` says: a control action to apply, or None when done."""
        ...


# Mount → that provider's simulator. The order is the one errors list mounts in.
SIMULATORS: dict[str, Simulator] = {
    Provider.TURNQEY: turnqey,
    Provider.COINIFY: coinify,
    Provider.BLOQUO: bloquo,
    Provider.BLOQUO_PRODUCTION: bloquo,
    Provider.DAPI: dapi,
}


def simulator_for(value: object) -> tuple[str, Simulator]:
    """The mount ``value`` names and its simulator; :class:`SandboxError` for an unknown one."""
    mount = read_mount(value, tuple(SIMULATORS))
    return mount, SIMULATORS[mount]


# --- Apps ---------------------------------------------------------------------


def registrable_providers() -> tuple[str, ...]:
    """The mounts that have partner apps (a Turnqey client, a Coinify partner, a Dapi app)."""
    return tuple(str(mount) for mount, simulator in SIMULATORS.items() if simulator.APPS is not AppKind.NONE)


@dataclass(frozen=True)
class AppResult:
    provider: str
    client_id: str
    redirect_uri: str
    has_secret: bool
    created: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "has_secret": self.has_secret,
            "created": self.created,
        }


def app_register(*, provider: str, client_id: str, client_secret: str = "", redirect_uri: str = "") -> AppResult:
    """Register a partner app, or update the one with this client id (idempotent).

    Turnqey and Dapi need a secret (it keys the checksum / is checked on
    exchange) and a redirect URI when first registered; an update keeps
    whatever is not given.
    """
    provider = read_mount(provider, registrable_providers())
    if not client_id:
        raise SandboxError("client_id is required.")
    if redirect_uri and not redirect_uri.startswith(("http://", "https://")):
        raise SandboxError("redirect_uri must be an absolute http(s) URL.")
    check_columns(App, client_id=client_id, client_secret=client_secret, redirect_uri=redirect_uri)
    with transaction.atomic():
        app = App.objects.select_for_update().filter(provider=provider, client_id=client_id).first()
        created = app is None
        if app is None:
            if SIMULATORS[provider].APPS is AppKind.WITH_SECRET and not (client_secret and redirect_uri):
                raise SandboxError(f"A new {provider} app needs client_secret and redirect_uri.")
            app = App(provider=provider, client_id=client_id)
        if client_secret:
            app.client_secret = client_secret
        if redirect_uri:
            app.redirect_uri = redirect_uri
        app.save()
    return AppResult(provider, client_id, app.redirect_uri, bool(app.client_secret), created)


def app_list() -> list[dict[str, Any]]:
    return [
        {
            "provider": a.provider,
            "client_id": a.client_id,
            "redirect_uri": a.redirect_uri,
            "has_secret": bool(a.client_secret),
        }
        for a in App.objects.order_by("provider", "client_id")
    ]


# --- Subjects (control API and the sandbox_* commands) ------------------------


def subject_create(data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create a subject from provider-specific fields; returns (reply, created).

    * coinify: ``partner_id`` (optional when exactly one partner is registered),
      ``email``, ``password`` → ``user_id``, ``offline_token``;
    * bloquo / bloquo-production: optional ``client_id``, ``client_secret``,
      ``name``, ``email`` → ``customer_id``, ``client_id``, ``client_secret``;
    * turnqey: ``client``, ``identity``, ``platform``, optional ``username``,
      ``collection`` → an active authorization, as if consent was given;
    * dapi: ``app_key``, ``username``, optional ``exchange`` (true: also spend
      the access code, as ``ExchangeToken`` would, and add ``access_token``,
      the permanent token) → the Connect result fields.
    """
    mount, simulator = simulator_for(data.get("provider"))
    return simulator.subject_create(mount=mount, data=data)


def subject_list(*, provider: str) -> list[dict[str, Any]]:
    """Subjects of one provider mount, without any secret."""
    mount, simulator = simulator_for(provider)
    return simulator.subject_list(mount=mount)


def subject_act(data: dict[str, Any]) -> dict[str, Any]:
    """Revoke, expire, deactivate, delink or restore one subject; returns how many rows changed.

    Raises :class:`SandboxError` (404) when no subject matches.
    """
    mount, simulator = simulator_for(data.get("provider"))
    action = data.get("action")
    if action not in simulator.ACTIONS:
        raise SandboxError(f"action for {mount} must be one of: {', '.join(simulator.ACTIONS)}.")
    at = clock.now()
    with transaction.atomic():
        affected = simulator.subject_act(mount=mount, data=data, action=str(action), at=at)
    return {"provider": mount, "action": action, "affected": affected}
