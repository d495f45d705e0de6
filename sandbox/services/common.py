"""What every simulator's services share: the error they raise and the readers of control fields.

A :class:`SandboxError` carries a plain message for a 400 (control API) or a
``CommandError`` (commands); it never contains a secret.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from django.db import models

# The largest value the sandbox's integer columns hold (PostgreSQL's integer);
# a larger count, lifetime or delay is refused rather than failing the insert.
MAX_INTEGER = 2**31 - 1


class SandboxError(Exception):
    """A request to the sandbox that cannot be carried out; the message says why."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class IssuedSecretWords:
    """How the sign-in hints page names a secret a simulator issues there, as the provider's own page would."""

    heading: str  # "New key pair", followed by "for <whom>"
    label: str  # the secret's label: "Client secret"


class AppKind(enum.Enum):
    """Whether a provider has partner apps the control API registers, and what a new one needs."""

    # No partner app: each customer brings their own key pair (Bloquo).
    NONE = enum.auto()
    # An id is all there is (Coinify's partner id).
    ID_ONLY = enum.auto()
    # The secret keys a checksum or is checked on exchange, and the provider
    # redirects to the registered URI, so a new app needs both (Turnqey, Dapi).
    WITH_SECRET = enum.auto()


def read_mount(value: object, allowed: tuple[str, ...]) -> str:
    """``value`` as one of the ``allowed`` provider mounts, else a :class:`SandboxError` naming them."""
    if value not in allowed:
        raise SandboxError(f"provider must be one of: {', '.join(allowed)}.")
    return str(value)


def read_text(data: dict[str, Any], name: str, *, required: bool = False) -> str:
    """A string field of a control request, stripped; a number is taken as its digits, null as empty."""
    value = data.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise SandboxError(f"{name} must be a string.")
    value = str(value).strip()
    if required and not value:
        raise SandboxError(f"{name} is required.")
    _refuse_nul(name, value)
    return value


def check_columns(model: type[models.Model], **values: str) -> None:
    """Refuse a value its column cannot store: too long, or with a NUL character.

    Keyword names are the model's field names. Checked before any query:
    PostgreSQL would refuse either with an error that fails the whole request.
    """
    for name, value in values.items():
        _refuse_nul(name, value)
        field = model._meta.get_field(name)
        limit = field.max_length if isinstance(field, models.Field) else None
        if limit is not None and len(value) > limit:
            raise SandboxError(f"{name} must be at most {limit} characters.")


def _refuse_nul(name: str, value: str) -> None:
    # PostgreSQL text cannot hold NUL; the driver refuses even to send it.
    if "\x00" in value:
        raise SandboxError(f"{name} must not contain NUL characters.")


@dataclass(frozen=True)
class Person:
    """Who grants access, as the partner knows them."""

    app_id: str = ""  # Turnqey client id, Coinify partner id, Dapi app key
    name: str = ""
    email: str = ""
    identity: str = ""  # the partner-side identity (Turnqey's ``identity``)
    platform: str = ""
    collection: str = ""  # a Turnqey collection the person's household already has
    password: str = ""  # where the sign-in has one (Coinify); generated when empty

    def require(self, provider: str, *names: str) -> None:
        missing = [name for name in names if not getattr(self, name)]
        if missing:
            raise SandboxError(f"A {provider} grant needs: {', '.join(missing)}.")
