"""Issuing and checking tokens, codes and keys.

Values are random; only their SHA-256 digest is stored (:class:`sandbox.models.Token`),
so a value is shown exactly once, in the response that issues it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q

from . import clock
from .models import Token

_ALPHANUMERIC = string.ascii_letters + string.digits


def digest(value: str) -> str:
    """Hex SHA-256 of a value: how tokens and secrets are stored and looked up."""
    return hashlib.sha256(value.encode()).hexdigest()


def random_string(length: int = 64) -> str:
    """A random alphanumeric string, like the refresh tokens in Coinify's doc."""
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_like(claims: dict[str, object]) -> str:
    """A token shaped like a JWT (header.payload.signature), as the docs show.

    The signature is random: the sandbox recognises its tokens by digest, never
    by verifying them, and clients must treat them as opaque.
    """
    header = _b64(json.dumps({"typ": "JWT", "alg": "HS256"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps({**claims, "jti": secrets.token_hex(8)}, separators=(",", ":")).encode())
    return f"{header}.{payload}.{_b64(secrets.token_bytes(32))}"


def issue(kind: str, subject: str, *, value: str, lifetime: int | None, at: datetime | None = None) -> Token:
    """Store the digest of ``value`` as a token of ``kind`` for ``subject``.

    ``lifetime`` in seconds; ``None`` never expires.
    """
    issued = at or clock.now()
    return Token.objects.create(
        kind=kind,
        digest=digest(value),
        subject=subject,
        expires_at=None if lifetime is None else issued + timedelta(seconds=lifetime),
        created_at=issued,
    )


@dataclass(frozen=True)
class TokenRow:
    """What a check needs of a stored token, read in one query."""

    id: int
    subject: str
    expires_at: datetime | None
    used_at: datetime | None
    revoked_at: datetime | None

    def expired(self, at: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= at

    def usable(self, at: datetime) -> bool:
        """Not revoked, not used, not expired."""
        return self.revoked_at is None and self.used_at is None and not self.expired(at)


def find(kind: str, value: str) -> TokenRow | None:
    """The stored token of ``kind`` whose digest matches ``value``, or None."""
    if not value:
        return None
    # Digests are unique per kind: [:1] without first()'s ORDER BY, on every simulated call.
    rows = Token.objects.filter(kind=kind, digest=digest(value)).values_list(
        "id", "subject", "expires_at", "used_at", "revoked_at"
    )[:1]
    row = next(iter(rows), None)
    return TokenRow(*row) if row else None


def bearer(authorization: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or ''."""
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def consume(token_id: int, at: datetime) -> bool:
    """Mark a single-use token used; True for exactly one caller.

    A conditional UPDATE: the database re-checks ``used_at IS NULL`` under the
    row lock, so of any number of concurrent callers exactly one sees a row
    updated (PostgreSQL re-evaluates the WHERE after waiting; SQLite serialises
    writers). No read-then-write race is possible.
    """
    updated = (
        Token.objects.filter(pk=token_id, used_at__isnull=True, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=at))
        .update(used_at=at)
    )
    return updated == 1
