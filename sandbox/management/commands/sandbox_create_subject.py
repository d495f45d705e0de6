"""``manage.py sandbox_create_subject '<json>'``: seed a sandbox subject, as the control API does.

The JSON object takes the fields of ``POST /sandbox/_control/subjects`` (see
:mod:`sandbox.views.control`), for example::

    manage.py sandbox_create_subject '{"provider": "coinify", "partner_id": "p-1",
                                       "email": "ann@example.test", "password": "pw"}'

``-`` reads the JSON from standard input. The reply (which may hold a freshly
issued offline token or client secret) is printed as JSON on standard output,
for the caller to keep; nothing is logged.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sandbox import services


class Command(BaseCommand):
    help = "Create a sandbox subject (Coinify user, Bloquo key pair, Turnqey authorization, Dapi login) from JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("fields", help="a JSON object with provider-specific fields, or - to read standard input")

    def handle(self, *args: Any, **options: Any) -> None:
        raw = sys.stdin.read() if options["fields"] == "-" else options["fields"]
        try:
            data = json.loads(raw)
        except ValueError as error:
            raise CommandError(f"Not valid JSON: {error.msg}.") from None
        if not isinstance(data, dict):
            raise CommandError("Give a JSON object.")
        try:
            reply, _ = services.subject_create(data)
        except services.SandboxError as error:
            raise CommandError(error.message) from None
        self.stdout.write(json.dumps(reply))
