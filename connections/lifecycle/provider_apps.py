"""The portal's own standing with a provider: a ProviderApp flagged when its credentials are rejected.

A rejection of the app's client id or secret is the portal's problem, never a
client's: the app is flagged, admins are alerted once per incident (the email
goes out after commit, from :mod:`connections.notifications`), and the
clients' connections keep their status.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from ..logging import redact
from ..models import ProviderApp

logger = logging.getLogger("connections.lifecycle")


def app_credentials_rejected(*, app: ProviderApp, message: str, now: datetime | None = None) -> bool:
    """Flag the ProviderApp; on the first flag of an incident, alert firm admins and staff after commit.

    Returns True when this call raised the flag. Connections are not touched.
    """
    now = now or timezone.now()
    text = redact(message)[:500] or "The provider rejected the portal's app credentials."
    newly = ProviderApp.objects.filter(pk=app.pk, credentials_rejected_at__isnull=True).update(
        credentials_rejected_at=now, last_error=text, last_error_at=now
    )
    if not newly:
        ProviderApp.objects.filter(pk=app.pk).update(last_error=text, last_error_at=now)
    app.credentials_rejected_at = app.credentials_rejected_at or now
    app.last_error, app.last_error_at = text, now
    if newly:
        from ..notifications import app_alert_send  # notifications reads rows; imported when needed

        logger.error("Provider app %s: the provider rejected the portal's own credentials.", app.pk)
        transaction.on_commit(lambda: app_alert_send(app_id=app.pk))
    return bool(newly)


def app_credentials_accepted(*, app: ProviderApp) -> None:
    """Clear the flag once the provider accepts the app again (no query unless it was flagged)."""
    if app.credentials_rejected_at is None:
        return
    if ProviderApp.objects.filter(pk=app.pk, credentials_rejected_at__isnull=False).update(
        credentials_rejected_at=None
    ):
        logger.info("Provider app %s: the provider accepts the portal's credentials again.", app.pk)
    app.credentials_rejected_at = None
