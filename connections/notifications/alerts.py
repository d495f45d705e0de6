"""The app-credentials alert: the provider rejected the portal's own client id or secret."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection
from django.template.loader import render_to_string

from .. import wording
from ..models import Household, Membership, ProviderApp
from .common import subject_from

logger = logging.getLogger("connections.notifications")


def app_alert_recipients(*, app: ProviderApp) -> list[str]:
    """Firm admins of firms with connections on ``app``, and active staff; addresses, deduplicated."""
    user_model = get_user_model()
    firm_ids = Household.objects.filter(connections__provider_app=app).values("firm_id")
    admins = user_model.objects.filter(
        is_active=True,
        membership__role=Membership.Role.FIRM_ADMIN,
        membership__firm_id__in=firm_ids,
    ).exclude(email="")
    staff = user_model.objects.filter(is_active=True, is_staff=True).exclude(email="")
    return sorted({u.email for u in admins} | {u.email for u in staff})


def app_alert_send(*, app_id: int) -> int:
    """One email per recipient (firms never see each other's addresses). Returns how many were sent."""
    try:
        app = ProviderApp.objects.defer("client_secret").get(pk=app_id)
        recipients = app_alert_recipients(app=app)
        if not recipients:
            return 0
        context = {
            "app": app,
            "app_name": wording.app_name(provider=app.provider, environment=app.environment, name=app.name),
            "provider": wording.provider_name(app.provider),
            "environment": app.get_environment_display(),
            "error": app.last_error,
            "flagged_at": app.credentials_rejected_at,
            "portal_url": settings.PORTAL_BASE_URL,
        }
        subject = subject_from("email/app_credentials_alert_subject.txt", context)
        body = render_to_string("email/app_credentials_alert.txt", context)
        mail = get_connection()
        messages = [
            EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [to], connection=mail) for to in recipients
        ]
        return mail.send_messages(messages) or 0
    except Exception:
        # A mail problem must never break the job that noticed the rejection.
        logger.exception("Could not send the app credentials alert for provider app %s.", app_id)
        return 0
