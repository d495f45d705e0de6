"""A small encrypted text field on MultiFernet (see :mod:`connections.crypto`)."""

from __future__ import annotations

from typing import Any

from django.db import models

from . import crypto


class EncryptedTextField(models.TextField):
    """A text column stored as a Fernet token and read back as plaintext.

    Encryption is randomised, so the column cannot be filtered or indexed by
    value; look rows up by their owner instead. ``None`` stays ``NULL``. A value
    that does not decrypt raises :class:`connections.crypto.DecryptionError`
    when the row is loaded: it never comes back as ciphertext or empty.
    """

    description = "Text encrypted at rest (MultiFernet)"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if value is None:
            return None
        return crypto.decrypt(value)

    def get_prep_value(self, value: Any) -> str | None:
        value = super().get_prep_value(value)
        if value is None:
            return None
        return crypto.encrypt(str(value))

    def get_db_prep_save(self, value: Any, connection: Any) -> Any:
        if hasattr(value, "as_sql"):
            # An expression (Value, F, Case from bulk_update...) compiles to SQL
            # itself; its own Value leaves are encrypted through this field.
            # Encrypting the expression object would store its repr.
            return value
        return self.get_prep_value(value)

    def get_lookup(self, lookup_name: str) -> Any:
        # Only NULL checks make sense on randomised ciphertext; anything else
        # would silently match nothing.
        if lookup_name != "isnull":
            return None
        return super().get_lookup(lookup_name)
