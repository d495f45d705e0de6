"""The integration surface's secrets (API keys, signing secrets, client-link tokens) never surface where they must not.

One run of everything (a key made with the command, reads and writes over
HTTP, an endpoint made and rotated, deliveries to a real receiver, a retry
and a resend) with every logger at DEBUG; then no secret may appear in any
log record, connection event, webhook body, or database column (read as raw
SQL, so encrypted columns show their ciphertext). The one place a link's
URL may appear is the reply to the write that made it, which is what the
API is for.
"""

from __future__ import annotations

import json
import logging
from io import StringIO
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.apps import apps
from django.core.management import call_command
from django.db import connection as db_connection

from api import tasks
from api.models import WebhookDelivery, WebhookEndpoint
from api.webhooks import services
from connections import lifecycle
from connections import models as m
from tests.factories import ConnectionFactory, MembershipFactory
from tests.webhook_receiver import Answer, webhook_receiver

from .conftest import ALL_TYPES

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("local_receivers")]


def _every_row() -> str:
    """Every row of every table of the portal's own apps, as the database holds it."""
    dump: list[str] = []
    with db_connection.cursor() as cursor:
        for config in ("connections", "api"):
            for model in apps.get_app_config(config).get_models():
                cursor.execute(f"SELECT * FROM {db_connection.ops.quote_name(model._meta.db_table)}")  # noqa: S608
                dump += [repr(row) for row in cursor.fetchall()]
    return "\n".join(dump)


def test_keys_secrets_and_link_tokens_never_surface(live_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    connection = ConnectionFactory(status=m.Status.NEEDS_RECONNECT, reason=m.Reason.REVOKED, next_check_at=None)
    firm = connection.household.firm
    firm.slug = "sentinel-firm"
    firm.save()
    MembershipFactory(firm=firm, role=m.Membership.Role.FIRM_ADMIN)

    out = StringIO()
    call_command("api_key_create", firm="sentinel-firm", name="CRM", scope="write", stdout=out, stderr=StringIO())
    key = out.getvalue().strip()
    headers = {"Authorization": f"Bearer {key}"}
    base = f"{live_server.url}/api/v1"

    with webhook_receiver(Answer(500), Answer(200)) as receiver:
        made = services.endpoint_create(firm=firm, url=receiver.url, event_types=ALL_TYPES)
        link = requests.post(
            f"{base}/connections/{connection.pk}/client-links",
            json={"send_email": False},
            headers={**headers, "Idempotency-Key": "sentinel-1"},
            timeout=10,
        )
        assert link.status_code == 201
        url = link.json()["url"]
        token = urlsplit(url).path.split("/")[2]
        for path in (
            "/connections",
            f"/connections/{connection.pk}",
            f"/connections/{connection.pk}/events",
            "/events",
        ):
            answer = requests.get(base + path, headers=headers, timeout=10)
            assert answer.status_code == 200
            assert token not in answer.text
            assert key not in answer.text
        rotated = services.endpoint_secret_rotate(endpoint=WebhookEndpoint.objects.get())
        lifecycle.event_record(
            connection=connection, kind="recovered", from_status="needs_reconnect", to_status="active"
        )
        services.delivery_resend(delivery=WebhookDelivery.objects.order_by("pk").first())
        tasks.webhooks_tick()
        received = receiver.wait_for(3)

    secrets = {"api key": key, "signing secret": made.secret, "rotated secret": rotated.secret, "link token": token}
    bodies = "\n".join(
        r.body.decode() + json.dumps({k: v for k, v in r.headers.items() if k != "webhook-signature"}) for r in received
    )
    events = "\n".join(f"{e.message} {json.dumps(e.details)} {e.actor_label}" for e in m.ConnectionEvent.objects.all())
    logs = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    rows = _every_row()
    leaks = [
        (name, where)
        for name, secret in secrets.items()
        for where, text in (("logs", logs), ("webhooks", bodies), ("events", events), ("database", rows))
        if secret in text
    ]
    assert leaks == []
    assert len(received) >= 2  # the checks above looked at real deliveries
    assert caplog.records
