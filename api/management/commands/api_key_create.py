"""``manage.py api_key_create --firm SLUG --name NAME [--scope read|write]``: a firm API key, printed once.

The key goes to standard output alone (so ``KEY=$(manage.py api_key_create ...)``
works); what it is goes to standard error. Only its hash is stored: run the
command again for a new key, and revoke the old one in the admin.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from connections.models import Firm

from ...keys import api_key_create
from ...models import ApiKey


class Command(BaseCommand):
    help = "Create an API key for a firm and print it once (only its hash is kept)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--firm", required=True, help="The firm's slug.")
        parser.add_argument("--name", required=True, help="What the key is for, such as 'CRM sync'.")
        parser.add_argument(
            "--scope", choices=ApiKey.Scope.values, default=ApiKey.Scope.READ, help="read (default) or write."
        )

    def handle(self, *args: Any, firm: str, name: str, scope: str, **options: Any) -> None:
        found = Firm.objects.filter(slug=firm).first()
        if found is None:
            raise CommandError(f"No firm with the slug {firm!r}.")
        try:
            created = api_key_create(firm=found, name=name, scope=scope)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(
            f"Created {created.api_key.get_scope_display().lower()} key {name!r} for {found.name} "
            f"(prefix {created.api_key.prefix}). It is shown once, below; store it now."
        )
        self.stdout.write(created.key)
