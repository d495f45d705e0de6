"""What every email shares: subjects from templates, and sending that remembers the ESP's message id."""

from __future__ import annotations

import logging
from typing import Any

from django.core.mail import EmailMessage
from django.template.loader import render_to_string

logger = logging.getLogger("connections.notifications")


def subject_from(template: str, context: dict[str, Any]) -> str:
    return " ".join(render_to_string(template, context).split())


def message_id_of(message: EmailMessage) -> str:
    """The id the ESP gave the message (django-anymail's ``anymail_status``), or "" (plain SMTP).

    Tracking webhooks name messages by this id, so it is what links a bounce
    back to the request it was for.
    """
    status = getattr(message, "anymail_status", None)
    message_id = getattr(status, "message_id", None)
    if message_id is None:
        return ""
    if isinstance(message_id, set):  # one id per recipient; these messages have one recipient
        message_id = next(iter(message_id), "")
    return str(message_id)[:200]
