"""The integration surface's one email: a webhook endpoint that kept failing was disabled."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection
from django.template.loader import render_to_string

from connections.models import Membership

from .models import WebhookEndpoint

logger = logging.getLogger("api.notifications")


def firm_admin_addresses(*, firm_id: int) -> list[str]:
    """Addresses of the firm's active firm admins, deduplicated."""
    admins = get_user_model().objects.filter(
        is_active=True, membership__firm_id=firm_id, membership__role=Membership.Role.FIRM_ADMIN
    )
    return sorted({user.email for user in admins.exclude(email="")})


def endpoint_disabled_email_send(*, endpoint_id: int) -> int:
    """Tell the firm's admins, one email each (never the signing secret). Returns how many were sent."""
    try:
        endpoint = WebhookEndpoint.objects.select_related("firm").defer("secret", "previous_secret").get(pk=endpoint_id)
        recipients = firm_admin_addresses(firm_id=endpoint.firm_id)
        if not recipients:
            return 0
        context = {
            "endpoint": endpoint,
            "firm": endpoint.firm,
            "reason": endpoint.disabled_reason,
            "portal_url": settings.PORTAL_BASE_URL,
        }
        subject = " ".join(render_to_string("api/email/endpoint_disabled_subject.txt", context).split())
        body = render_to_string("api/email/endpoint_disabled.txt", context)
        mail = get_connection()
        sender = settings.DEFAULT_FROM_EMAIL
        messages = [EmailMessage(subject, body, sender, [to], connection=mail) for to in recipients]
        return mail.send_messages(messages) or 0
    except Exception:
        # A mail problem must not undo the disabling, nor break the worker that noticed.
        logger.exception("Could not email the firm admins about disabled webhook endpoint %s.", endpoint_id)
        return 0
