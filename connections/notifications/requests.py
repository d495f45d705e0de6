"""Reconnect request emails: the request itself, its reminders, and the note to the adviser when a client says stop.

The request's URL (it carries the client's token) goes into the email to the
client and nowhere else: not into logs, events or the adviser's pages. The
adviser's preview shows the same message with a placeholder in its place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.template.loader import render_to_string

from .. import wording
from ..models import ReconnectRequest
from .common import message_id_of

logger = logging.getLogger("connections.notifications")

# What the adviser's preview shows where the client's own link will be.
PREVIEW_URL = "(the client's personal link)"


@dataclass(frozen=True)
class RequestEmail:
    """A rendered request or reminder: exactly what the client receives."""

    to: str
    subject: str
    text: str
    html: str

    def __repr__(self) -> str:  # the bodies carry the client's link
        return f"RequestEmail(to={self.to!r}, subject={self.subject!r})"


def reconnect_request_email_build(
    *,
    firm_name: str,
    client_name: str,
    to: str,
    sources: list[str],
    url: str,
    stop_url: str,
    expires_at: Any,
    adviser_name: str = "",
    reminder: bool = False,
) -> RequestEmail:
    """The request (or reminder) listing each source to fix, with one link for all of them."""
    context = {
        "firm_name": firm_name,
        "client_name": client_name,
        "sources": sources,
        "url": url,
        "stop_url": stop_url,
        "expires_at": expires_at,
        "adviser_name": adviser_name,
        "reminder": reminder,
    }
    return RequestEmail(
        to=to,
        subject=wording.reconnect_request_subject(firm=firm_name, count=len(sources), reminder=reminder),
        text=render_to_string("email/reconnect_request.txt", context),
        html=render_to_string("email/reconnect_request.html", context),
    )


def reconnect_request_email_send(*, email: RequestEmail) -> str:
    """Send it (django-anymail or SMTP, whichever ``EMAIL_BACKEND`` is). Returns the ESP's message id or ""."""
    message = EmailMultiAlternatives(
        subject=email.subject, body=email.text, from_email=settings.DEFAULT_FROM_EMAIL, to=[email.to]
    )
    message.attach_alternative(email.html, "text/html")
    message.send()
    return message_id_of(message)


def reconnect_request_stopped_send(*, request: ReconnectRequest, recipients: list[str]) -> int:
    """Tell the adviser(s) that the client asked to stop (or said "this is not me"). Returns how many were sent."""
    if not recipients:
        return 0
    context = {
        "request": request,
        "client": request.client,
        "household": request.household,
        "reason": wording.request_stop_reason(request.pause_reason),
        "portal_url": settings.PORTAL_BASE_URL,
    }
    subject = f"{request.client.name} asked to stop the reconnect request"
    body = render_to_string("email/reconnect_request_stopped.txt", context)
    sent = 0
    for to in recipients:
        try:
            sent += EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [to]).send()
        except Exception:
            # The pause itself is stored and shown on the household page; a lost note must not undo it.
            logger.exception("Could not tell an adviser that reconnect request %s was stopped.", request.pk)
    return sent
