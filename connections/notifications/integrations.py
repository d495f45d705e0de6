"""The firm's integrations: a webhook endpoint that kept failing was disabled, and its firm admins are told.

The endpoint is ``api.models.WebhookEndpoint``, which this package does not
import (``api/`` uses ``connections/``, never the other way round): the api
side reads the row and hands it over as a :class:`DisabledEndpoint`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Protocol

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection
from django.template.loader import render_to_string

from ..models import Firm, Membership
from .common import subject_from

logger = logging.getLogger("connections.notifications")


class DisabledEndpoint(Protocol):
    """What the email says of the endpoint; never its signing secret."""

    @property
    def pk(self) -> Any: ...
    @property
    def url(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def disabled_at(self) -> datetime | None: ...
    @property
    def disabled_reason(self) -> str: ...


def firm_admin_addresses(*, firm_id: int) -> list[str]:
    """Addresses of the firm's active firm admins, deduplicated."""
    admins = get_user_model().objects.filter(
        is_active=True, membership__firm_id=firm_id, membership__role=Membership.Role.FIRM_ADMIN
    )
    return sorted({user.email for user in admins.exclude(email="")})


def endpoint_disabled_email_send(*, endpoint: DisabledEndpoint, firm: Firm) -> int:
    """Tell the firm's admins, one email each. Returns how many were sent."""
    try:
        recipients = firm_admin_addresses(firm_id=firm.pk)
        if not recipients:
            return 0
        context = {
            "endpoint": endpoint,
            "firm": firm,
            "reason": endpoint.disabled_reason,
            "portal_url": settings.PORTAL_BASE_URL,
        }
        subject = subject_from("api/email/endpoint_disabled_subject.txt", context)
        body = render_to_string("api/email/endpoint_disabled.txt", context)
        mail = get_connection()
        sender = settings.DEFAULT_FROM_EMAIL
        messages = [EmailMessage(subject, body, sender, [to], connection=mail) for to in recipients]
        return mail.send_messages(messages) or 0
    except Exception:
        # A mail problem must not undo the disabling, nor break the worker that noticed.
        logger.exception("Could not email the firm admins about disabled webhook endpoint %s.", endpoint.pk)
        return 0
