"""``manage.py sandbox_subject_action '<json>'``: act on a sandbox subject, as the control API does.

The JSON object takes the fields of ``POST /sandbox/_control/actions`` (see
:mod:`sandbox.views.control`), for example::

    manage.py sandbox_subject_action '{"provider": "bloquo", "action": "revoke", "customer_id": "cus_0123"}'

``-`` reads the JSON from standard input. The reply (``{"provider",
"action", "affected"}``) is printed as JSON on standard output; an unknown
subject or a wrong action is a ``CommandError`` with the control API's message.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sandbox import services


class Command(BaseCommand):
    help = "Revoke, expire, deactivate, delink or restore a sandbox subject, from JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("fields", help="a JSON object with provider, action and the subject's id, or - for stdin")

    def handle(self, *args: Any, **options: Any) -> None:
        raw = sys.stdin.read() if options["fields"] == "-" else options["fields"]
        try:
            data = json.loads(raw)
        except ValueError as error:
            raise CommandError(f"Not valid JSON: {error.msg}.") from None
        if not isinstance(data, dict):
            raise CommandError("Give a JSON object.")
        try:
            reply = services.subject_act(data)
        except services.SandboxError as error:
            raise CommandError(error.message) from None
        self.stdout.write(json.dumps(reply))
