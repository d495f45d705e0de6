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

from typing import Any

from sandbox import services
from sandbox.management.json_command import JsonObjectCommand


class Command(JsonObjectCommand):
    help = "Create a sandbox subject (Coinify user, Bloquo key pair, Turnqey authorization, Dapi login) from JSON."
    fields_help = "a JSON object with provider-specific fields, or - to read standard input"

    def run(self, data: dict[str, Any]) -> Any:
        reply, _ = services.subject_create(data)
        return reply
