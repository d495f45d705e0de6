"""Encryption of secrets at rest with cryptography's MultiFernet.

Keys come from ``settings.TOKEN_ENCRYPTION_KEYS`` (newest first). The newest
key encrypts; every listed key decrypts, which is what makes rotation possible:
prepend a new key, run ``manage.py rotate_encryption_keys``, then drop the old.

A value that does not decrypt raises :class:`DecryptionError`. It never comes
back as ciphertext or as an empty string: failing open would hand a provider a
garbage token or, worse, make a lost key look like a missing credential.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver


class DecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


@lru_cache(maxsize=1)
def _fernets(keys: tuple[str, ...]) -> tuple[MultiFernet, Fernet]:
    if not keys:
        raise ImproperlyConfigured("TOKEN_ENCRYPTION_KEYS is empty: at least one Fernet key is required.")
    try:
        fernets = [Fernet(key.strip().encode()) for key in keys]
    except (ValueError, TypeError) as exc:
        # Never echo the key itself.
        raise ImproperlyConfigured(
            "TOKEN_ENCRYPTION_KEYS holds a value that is not a valid Fernet key (32 url-safe base64-encoded bytes)."
        ) from exc
    return MultiFernet(fernets), fernets[0]


def _keys() -> tuple[str, ...]:
    return tuple(k for k in settings.TOKEN_ENCRYPTION_KEYS if k.strip())


def encrypt(plaintext: str) -> str:
    """Encrypt ``plaintext`` with the newest key; returns a url-safe token."""
    multi, _ = _fernets(_keys())
    return multi.encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    """Decrypt a token with any configured key, or raise :class:`DecryptionError`."""
    multi, _ = _fernets(_keys())
    try:
        return multi.decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError, ValueError) as exc:
        raise DecryptionError(
            "A stored secret could not be decrypted with any key in TOKEN_ENCRYPTION_KEYS "
            "(wrong or removed key, or corrupted value)."
        ) from exc


def is_current(token: str) -> bool:
    """True when ``token`` is already encrypted under the newest key."""
    _, newest = _fernets(_keys())
    try:
        newest.decrypt(token.encode("ascii"))
    except (InvalidToken, ValueError):
        return False
    return True


def rotate(token: str) -> str:
    """Re-encrypt a token under the newest key (raises if no key decrypts it)."""
    multi, _ = _fernets(_keys())
    try:
        return multi.rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, ValueError) as exc:
        raise DecryptionError("A stored secret could not be decrypted for rotation.") from exc


@receiver(setting_changed)
def _reset_keys(*, setting: str, **kwargs: object) -> None:
    if setting == "TOKEN_ENCRYPTION_KEYS":
        _fernets.cache_clear()
