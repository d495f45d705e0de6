"""What every simulator's services share: the error they raise and the readers of control fields.

A :class:`SandboxError` carries a plain message for a 400 (control API) or a
``CommandError`` (commands); it never contains a secret.
"""

from __future__ import annotations

import enum
from typing import Any


class SandboxError(Exception):
    """A request to the sandbox that cannot be carried out; the message says why."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


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
    return value
