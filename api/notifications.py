"""The integration surface's one email, a webhook endpoint disabled after failing for days: the row is read here.

The email itself is sent by ``connections.notifications``, with every other
email the portal sends.
"""

from __future__ import annotations

import logging

from connections.notifications import endpoint_disabled_email_send as email_firm_admins

from .models import WebhookEndpoint

logger = logging.getLogger("api.notifications")


def endpoint_disabled_email_send(*, endpoint_id: int) -> int:
    """Tell the firm's admins that the endpoint was disabled (never its signing secret). Returns how many were sent."""
    try:
        endpoint = (
            WebhookEndpoint.objects.select_related("firm").defer("secret", "previous_secret").filter(pk=endpoint_id)
        ).first()
    except Exception:
        # Runs after the disabling committed: a failed read must not break the worker that noticed.
        logger.exception("Could not read disabled webhook endpoint %s to email its firm admins.", endpoint_id)
        return 0
    if endpoint is None:
        return 0
    return email_firm_admins(endpoint=endpoint, firm=endpoint.firm)
