"""``manage.py sandbox_register_app``: tell the sandbox about a partner app (idempotent)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sandbox import services


class Command(BaseCommand):
    help = (
        "Register (or update) a partner app with a sandbox provider: a Turnqey client, a Coinify "
        "partner or a Dapi app. Turnqey and Dapi apps need --client-secret and --redirect-uri when new."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--provider", required=True, choices=services.registrable_providers())
        parser.add_argument("--client-id", required=True, help="Turnqey client id, Coinify partner id, Dapi app key")
        parser.add_argument("--client-secret", default="", help="Turnqey client secret, Dapi app secret")
        parser.add_argument("--redirect-uri", default="", help="Registered redirect URI (Turnqey, Dapi)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = services.app_register(
                provider=options["provider"],
                client_id=options["client_id"].strip(),
                client_secret=options["client_secret"].strip(),
                redirect_uri=options["redirect_uri"].strip(),
            )
        except services.SandboxError as error:
            raise CommandError(error.message) from None
        verb = "Registered" if result.created else "Updated"
        self.stdout.write(f"{verb} {result.provider} app {result.client_id}")
