"""Every email the portal sends, one module per job.

* :mod:`.alerts`: the app-credentials alert to admins;
* :mod:`.client_links`: the email carrying a single client link;
* :mod:`.integrations`: the firm's integrations (a webhook endpoint disabled
  after failing for days, told to its firm admins);
* :mod:`.requests`: household reconnect requests, their reminders, and the note
  to the adviser when a client says stop;
* :mod:`.digests`: advisers' digests (per-user frequency and time zone).

Each kind has a builder (what goes in it, testable without sending) and a
sender. Messages name sources through :mod:`connections.wording`; none carries
a secret, and a client's link goes only into the email to that client.
Digests read problems and requests (themselves derived from committed
events); nothing here is called from the lifecycle's rules.
"""

from .alerts import app_alert_recipients, app_alert_send
from .client_links import client_link_email_send
from .digests import DIGEST_SETTLE_SECONDS, Digest, DigestItem, digest_for, digests_send
from .integrations import DisabledEndpoint, endpoint_disabled_email_send, firm_admin_addresses
from .requests import (
    PREVIEW_URL,
    RequestEmail,
    reconnect_request_email_build,
    reconnect_request_email_send,
    reconnect_request_stopped_send,
)

__all__ = [
    "DIGEST_SETTLE_SECONDS",
    "PREVIEW_URL",
    "Digest",
    "DigestItem",
    "DisabledEndpoint",
    "RequestEmail",
    "app_alert_recipients",
    "app_alert_send",
    "client_link_email_send",
    "digest_for",
    "digests_send",
    "endpoint_disabled_email_send",
    "firm_admin_addresses",
    "reconnect_request_email_build",
    "reconnect_request_email_send",
    "reconnect_request_stopped_send",
]
