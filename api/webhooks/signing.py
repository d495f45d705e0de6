"""Signing secrets and Standard Webhooks signatures (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``).

The signature is HMAC-SHA256 over ``{id}.{timestamp}.{body}`` with the
secret (``whsec_`` + base64 of 32 random bytes), computed by the
``standardwebhooks`` package itself, so receivers can verify with any of its
implementations. During a rotation's overlap the header carries one
signature per secret, space-separated; a receiver holding either verifies.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's name, not a secret


def secret_new() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature_headers(*, message_id: str, body: str, secrets_: Sequence[str]) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``, signed with each of ``secrets_``.

    The timestamp is the wall clock at sending, not the portal's notion of
    "now": receivers compare it with their own clock to refuse replays (the
    library allows five minutes either way), so it must be the real moment
    the request leaves, whatever time the event itself happened.
    """
    at = datetime.now(UTC).replace(microsecond=0)
    signatures = " ".join(Webhook(secret).sign(message_id, at, body) for secret in secrets_)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
    }
