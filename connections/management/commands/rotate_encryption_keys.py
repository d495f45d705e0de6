"""``manage.py rotate_encryption_keys``: re-encrypt every secret under the newest key.

Rotation: prepend a new key to ``TOKEN_ENCRYPTION_KEYS``, deploy, run this
command, then remove the old key. Every :class:`EncryptedTextField` of every
installed model is found generically, so a new encrypted column is covered
without touching this file.

How it works, and why:

- It reads the raw ciphertext (the column cast to text, so the field's
  decrypting ``from_db_value`` never runs) in primary-key order, in batches.
- A value already under the newest key is left alone (``crypto.is_current``);
  the rest go through ``crypto.rotate``. A second run therefore rotates 0.
- Each write is a conditional UPDATE that matches the old ciphertext: if the
  application wrote a new secret meanwhile (a token renewal), that row no
  longer matches and the fresh value is kept, never overwritten with a
  re-encryption of the stale one.
- A value no configured key decrypts is reported by model, field and row id
  (never the value), the rest of the run continues, and the command exits
  non-zero at the end.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, models, transaction
from django.db.models.functions import Cast
from tqdm import tqdm

from connections import crypto
from connections.fields import EncryptedTextField

RAW = "_raw_ciphertext"
# A lost key can make every row fail; list enough to act on, then count.
FAILURES_LISTED = 200


@dataclass
class Tally:
    rotated: int = 0
    current: int = 0
    changed_meanwhile: int = 0
    failures: list[tuple[str, str, Any]] = field(default_factory=list)


def encrypted_fields() -> list[tuple[type[models.Model], EncryptedTextField]]:
    """Every (model, field) pair stored as an EncryptedTextField, each table once."""
    found = []
    for model in apps.get_models():
        opts = model._meta
        if opts.proxy or not opts.managed:
            continue
        # Local fields only: an inherited column belongs to (and is rotated
        # with) the parent model's table.
        for model_field in opts.local_concrete_fields:
            if isinstance(model_field, EncryptedTextField):
                found.append((model, model_field))
    return found


class Command(BaseCommand):
    help = "Re-encrypt every encrypted value under the newest key in TOKEN_ENCRYPTION_KEYS (safe to run twice)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="Rows read and written per batch.")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar on stderr.")

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size: int = options["batch_size"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        database: str = options["database"]
        tally = Tally()
        for model, model_field in encrypted_fields():
            self._rotate_field(
                model,
                model_field,
                database=database,
                batch_size=batch_size,
                tally=tally,
                progress=not options["no_progress"],
            )

        summary = f"Rotated {tally.rotated}, already current {tally.current}"
        if tally.changed_meanwhile:
            summary += f", changed or deleted meanwhile (left as is) {tally.changed_meanwhile}"
        if tally.failures:
            summary += f", could not decrypt {len(tally.failures)}"
        self.stdout.write(summary + ".")
        if tally.failures:
            for label, field_name, pk in tally.failures[:FAILURES_LISTED]:
                self.stderr.write(f"Could not decrypt {label}.{field_name} for row id={pk} with any configured key.")
            if len(tally.failures) > FAILURES_LISTED:
                self.stderr.write(f"... and {len(tally.failures) - FAILURES_LISTED} more.")
            raise CommandError(
                f"{len(tally.failures)} value(s) could not be decrypted with any key in TOKEN_ENCRYPTION_KEYS; "
                "they were left unchanged. Restore the key that encrypted them, or reset those secrets."
            )

    def _rotate_field(
        self,
        model: type[models.Model],
        model_field: EncryptedTextField,
        *,
        database: str,
        batch_size: int,
        tally: Tally,
        progress: bool,
    ) -> None:
        name = model_field.name
        label = model._meta.label
        manager = model._base_manager.using(database)
        # Cast to text: the annotation has a plain TextField output, so the
        # encrypted field's decrypting converter never runs on it.
        raw = manager.filter(**{f"{name}__isnull": False}).annotate(**{RAW: Cast(name, models.TextField())})
        total = raw.count()
        if not total:
            return
        bar = tqdm(total=total, desc=f"{label}.{name}", unit="value", file=sys.stderr, disable=not progress)
        last_pk: Any = None
        try:
            while True:
                page = raw.order_by("pk")
                if last_pk is not None:
                    page = page.filter(pk__gt=last_pk)
                rows = list(page.values_list("pk", RAW)[:batch_size])
                if not rows:
                    break
                last_pk = rows[-1][0]
                with transaction.atomic(using=database):
                    for pk, token in rows:
                        self._rotate_value(manager, name, label, pk, token, tally)
                bar.update(len(rows))
        finally:
            bar.close()

    @staticmethod
    def _rotate_value(manager: models.QuerySet, name: str, label: str, pk: Any, token: str, tally: Tally) -> None:
        if crypto.is_current(token):
            tally.current += 1
            return
        try:
            rotated = crypto.rotate(token)
        except crypto.DecryptionError:
            tally.failures.append((label, name, pk))
            return
        # Conditional on the old ciphertext; the new value is an expression so
        # the field does not encrypt the (already encrypted) token again.
        updated = (
            manager.annotate(**{RAW: Cast(name, models.TextField())})
            .filter(pk=pk, **{RAW: token})
            .update(**{name: models.Value(rotated, output_field=models.TextField())})
        )
        if updated:
            tally.rotated += 1
        else:
            tally.changed_meanwhile += 1
