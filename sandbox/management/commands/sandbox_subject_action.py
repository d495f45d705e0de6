"""``manage.py sandbox_subject_action '<json>'``: act on a sandbox subject, as the control API does.

The JSON object takes the fields of ``POST /sandbox/_control/actions`` (see
:mod:`sandbox.views.control`), for example::

    manage.py sandbox_subject_action '{"provider": "bloquo", "action": "revoke", "customer_id": "cus_0123"}'

``-`` reads the JSON from standard input. The reply (``{"provider",
"action", "affected"}``) is printed as JSON on standard output; an unknown
subject or a wrong action is a ``CommandError`` with the control API's message.
"""

from __future__ import annotations

from typing import Any

from sandbox import services
from sandbox.management.json_command import JsonObjectCommand


class Command(JsonObjectCommand):
    help = "Revoke, expire, deactivate, delink or restore a sandbox subject, from JSON."
    fields_help = "a JSON object with provider, action and the subject's id, or - for stdin"

    def run(self, data: dict[str, Any]) -> Any:
        return services.subject_act(data)
