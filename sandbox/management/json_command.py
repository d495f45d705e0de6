"""A management command that takes one JSON object (or ``-`` for standard input) and prints a JSON reply.

The sandbox's subject commands are thin doors onto the control API's services:
:class:`JsonObjectCommand` reads and checks the object, hands it to
:meth:`JsonObjectCommand.run`, turns a :class:`sandbox.services.SandboxError`
into a ``CommandError`` with the same message, and writes the reply as JSON on
standard output (nothing is logged: a reply may hold a freshly issued secret).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sandbox import services


class JsonObjectCommand(BaseCommand):
    """Subclasses set ``fields_help`` and implement :meth:`run`."""

    fields_help = "a JSON object, or - to read standard input"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("fields", help=self.fields_help)

    def run(self, data: dict[str, Any]) -> Any:
        """The reply for ``data`` (a JSON object); may raise ``SandboxError``."""
        raise NotImplementedError

    def handle(self, *args: Any, **options: Any) -> None:
        raw = sys.stdin.read() if options["fields"] == "-" else options["fields"]
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as error:
            raise CommandError(f"Not valid JSON: {error.msg}.") from None
        if not isinstance(data, dict):
            raise CommandError("Give a JSON object.")
        try:
            reply = self.run(data)
        except services.SandboxError as error:
            raise CommandError(error.message) from None
        self.stdout.write(json.dumps(reply))
