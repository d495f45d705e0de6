"""Webhook deliveries to a real local HTTP receiver, each verified with the ``standardwebhooks`` library.

The connection events are written the way the lifecycle writes them
(``lifecycle.event_record``, committed), so everything after that is the
real path: the commit's signal, the dispatcher, the delivery task, the POST.
A controlled clock moves through the retry schedule and the disable
threshold; the signatures carry the real time (receivers check it).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core import mail
from django.test import Client as Browser

from api import tasks
from api.models import EventType, WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from api.webhooks import services
from api.webhooks.signing import secret_new
from connections import lifecycle
from connections import models as m
from connections import tasks as connection_tasks
from connections.services import client_link_create
from connections.services.client_links import ClientLinkCreated
from tests.e2e.support import Clock
from tests.factories import ClientFactory, ConnectionFactory, HouseholdFactory, MembershipFactory, UserFactory
from tests.webhook_receiver import Answer, Receiver, webhook_receiver

from .conftest import endpoint_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("local_receivers")]

SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000)


@pytest.fixture
def connection(db: None) -> m.Connection:
    household = HouseholdFactory(name="Nguyen Household")
    MembershipFactory(
        firm=household.firm, role=m.Membership.Role.FIRM_ADMIN, user=UserFactory(email="admin@firm.example")
    )
    return ConnectionFactory(client=ClientFactory(household=household, email="linh@example.test"))


def _transition(connection: m.Connection, to_status: str, *, reason: str = "", from_status: str = "") -> None:
    """What the lifecycle stores for a transition: the row's new status and its event, committed."""
    before = from_status or connection.status
    m.Connection.objects.filter(pk=connection.pk).update(status=to_status, reason=reason)
    kind = "recovered" if to_status == m.Status.ACTIVE and before != m.Status.ACTIVE else "check_failed"
    lifecycle.event_record(
        connection=connection,
        kind=kind,
        from_status=before,
        to_status=to_status,
        reason=reason,
        message=f"{connection.source_display}: now {to_status}.",
    )
    connection.status, connection.reason = to_status, reason


def _revoked(connection: m.Connection) -> None:
    _transition(connection, m.Status.NEEDS_RECONNECT, reason=m.Reason.REVOKED)


def test_a_delivery_is_signed_per_standard_webhooks_and_carries_the_envelope(connection: m.Connection) -> None:
    with webhook_receiver(Answer(200)) as receiver:
        made = endpoint_for(connection.household.firm, receiver.url)
        _revoked(connection)
        (request,) = receiver.wait_for(1)

    payload = request.verified(made.secret)
    assert set(payload) == {"type", "id", "timestamp", "data"}
    assert payload["type"] == "connection.needs_reconnect"
    assert payload["id"] == request.headers["webhook-id"]
    assert payload["data"]["connection"]["id"] == connection.pk
    assert payload["data"]["connection"]["status"] == "needs_reconnect"
    assert payload["data"]["connection"]["message"] == (
        "Coinbase via Turnqey: access was revoked at Coinbase. Ask the client to reconnect."
    )
    assert payload["data"]["event"]["to_status"] == "needs_reconnect"
    assert request.headers["Content-Type"] == "application/json"
    assert not request.verifies_with(secret_new())
    assert made.secret not in request.body.decode() + json.dumps(request.headers)

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 1, 200)
    assert delivery.last_latency_ms is not None
    assert WebhookAttempt.objects.get().status_code == 200


@pytest.mark.parametrize(
    ("kind", "from_status", "to_status"),
    [
        ("check_failed", "active", "active"),  # a transient failure below the degraded threshold
        ("check_failed", "degraded", "degraded"),  # still degraded
        ("check_failed", "needs_reconnect", "needs_reconnect"),  # a forced check of a flagged connection
        ("renewed", "active", "active"),
        ("check_succeeded", "active", "active"),
        ("connected", "pending", "active"),
    ],
)
def test_history_the_rules_do_not_report_sends_nothing(
    connection: m.Connection, kind: str, from_status: str, to_status: str
) -> None:
    with webhook_receiver(Answer(200)) as receiver:
        endpoint_for(connection.household.firm, receiver.url)
        lifecycle.event_record(connection=connection, kind=kind, from_status=from_status, to_status=to_status)
        tasks.webhooks_tick()
        assert receiver.wait_for(1, timeout=0.5) == []
    assert not WebhookEvent.objects.exists()


def test_an_endpoint_gets_only_the_types_it_chose_and_only_its_own_firms(connection: m.Connection) -> None:
    other_firm_connection = ConnectionFactory()
    with webhook_receiver(Answer(200)) as everything, webhook_receiver(Answer(200)) as recoveries:
        endpoint_for(connection.household.firm, everything.url)
        endpoint_for(connection.household.firm, recoveries.url, types=[EventType.CONNECTION_RECOVERED])
        endpoint_for(other_firm_connection.household.firm, everything.url + "/other")
        _transition(connection, m.Status.DEGRADED, reason=m.Reason.TRANSIENT)
        _transition(connection, m.Status.ACTIVE)
        everything.wait_for(2)
        recoveries.wait_for(1)
    assert everything.types() == ["connection.degraded", "connection.recovered"]
    assert {r.path for r in everything.received} == {"/hooks/portal"}
    assert recoveries.types() == ["connection.recovered"]


def _attempts(delivery: WebhookDelivery) -> list[tuple[int | None, str]]:
    return [(a.status_code, a.error) for a in delivery.attempt_log.order_by("number")]


def test_failures_and_timeouts_are_retried_on_the_schedule_until_it_runs_out(
    connection: m.Connection, clock: Clock, settings: Any
) -> None:
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.3
    script = [Answer(500), Answer(200, delay=1.0), Answer(503), Answer(500), Answer(502), Answer(500), Answer(500)]
    with webhook_receiver(*script) as receiver:
        made = endpoint_for(connection.household.firm, receiver.url)
        _revoked(connection)
        delivery = WebhookDelivery.objects.get()
        for number, delay in enumerate(SCHEDULE[1:], start=1):
            delivery.refresh_from_db()
            assert delivery.attempts == number
            assert delivery.next_attempt_at == clock.now() + timedelta(seconds=delay)
            # A tick before it is due sends nothing.
            clock.advance(timedelta(seconds=delay) - timedelta(seconds=1))
            tasks.webhooks_tick()
            assert len(receiver.wait_for(number + 1, timeout=0.2)) == number
            clock.advance(timedelta(seconds=1))
            tasks.webhooks_tick()
            receiver.wait_for(number + 1)
        received = receiver.wait_for(7)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 7, None)
    codes = [code for code, _ in _attempts(delivery)]
    assert codes == [500, None, 503, 500, 502, 500, 500]
    assert "no reply within 0.3 s" in _attempts(delivery)[1][1]
    assert len(received) == 7
    assert len({r.headers["webhook-id"] for r in received}) == 1
    assert all(r.verifies_with(made.secret) for r in received)


def test_a_retry_that_succeeds_delivers_and_ends_the_failure_streak(connection: m.Connection, clock: Clock) -> None:
    with webhook_receiver(Answer(500), Answer(204)) as receiver:
        endpoint_for(connection.household.firm, receiver.url)
        _revoked(connection)
        endpoint = WebhookEndpoint.objects.get()
        assert endpoint.failing_since == clock.now()
        clock.advance(timedelta(seconds=5))
        tasks.webhooks_tick()
        receiver.wait_for(2)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 2, 204)
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None


def test_a_redirect_is_not_followed(connection: m.Connection) -> None:
    with webhook_receiver(Answer(302, location="/hooks/elsewhere")) as receiver:
        endpoint_for(connection.household.firm, receiver.url)
        _revoked(connection)
        received = receiver.wait_for(2, timeout=1.0)
    assert [r.path for r in received] == ["/hooks/portal"]
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.last_status_code) == ("pending", 302)
    assert delivery.last_error == "redirects are not followed"


def test_a_reply_is_read_only_up_to_the_cap(connection: m.Connection, settings: Any) -> None:
    settings.WEBHOOK_RESPONSE_MAX_BYTES = 8 * 1024
    settings.WEBHOOK_TIMEOUT_SECONDS = 8
    # The receiver answers 200 and then sends a body that never ends.
    with webhook_receiver(Answer(200, drip=True)) as receiver:
        endpoint_for(connection.household.firm, receiver.url)
        _revoked(connection)
        receiver.wait_for(1)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.last_status_code) == ("succeeded", 200)
    assert delivery.last_latency_ms is not None
    assert delivery.last_latency_ms < 4000
    assert len(WebhookAttempt.objects.get().response_excerpt) <= 500


def test_an_endpoint_failing_for_days_is_disabled_and_its_firm_admins_are_emailed(
    connection: m.Connection, clock: Clock
) -> None:
    with webhook_receiver(Answer(500)) as receiver:
        made = endpoint_for(connection.household.firm, receiver.url)
        _revoked(connection)  # first failure: the streak starts
        clock.advance(timedelta(days=4))
        _transition(connection, m.Status.ACTIVE)
        endpoint = WebhookEndpoint.objects.get()
        assert endpoint.is_enabled
        assert mail.outbox == []

        clock.advance(timedelta(days=1, minutes=1))
        _revoked(connection)
        endpoint.refresh_from_db()
        assert not endpoint.is_enabled
        assert endpoint.disabled_at == clock.now()
        assert not WebhookDelivery.objects.filter(status="pending").exists()

        (email,) = mail.outbox
        assert email.to == ["admin@firm.example"]
        assert "disabled" in email.subject
        assert receiver.url in email.body
        assert made.secret not in email.body

        # Disabled: later events reach the feed, not the endpoint.
        sent = len(receiver.received)
        _transition(connection, m.Status.ACTIVE)
        tasks.webhooks_tick()
        assert len(receiver.wait_for(sent + 1, timeout=0.3)) == sent
    assert WebhookEvent.objects.count() == 4
    assert WebhookDelivery.objects.count() == 3


def test_rotation_signs_with_the_old_and_the_new_secret_until_the_overlap_ends(
    connection: m.Connection, clock: Clock
) -> None:
    with webhook_receiver(Answer(200)) as receiver:
        made = endpoint_for(connection.household.firm, receiver.url)
        rotated = services.endpoint_secret_rotate(endpoint=WebhookEndpoint.objects.get())
        _revoked(connection)
        clock.advance(timedelta(hours=24, seconds=1))
        _transition(connection, m.Status.ACTIVE)
        during, after = receiver.wait_for(2)

    assert rotated.secret != made.secret
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert during.verifies_with(made.secret)
    assert during.verifies_with(rotated.secret)
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert after.verifies_with(rotated.secret)
    assert not after.verifies_with(made.secret)


def test_resend_sends_the_same_event_again_as_a_new_delivery(connection: m.Connection) -> None:
    with webhook_receiver(Answer(200)) as receiver:
        endpoint_for(connection.household.firm, receiver.url)
        _revoked(connection)
        services.delivery_resend(delivery=WebhookDelivery.objects.get())
        first, again = receiver.wait_for(2)
    assert first.headers["webhook-id"] == again.headers["webhook-id"]
    assert WebhookDelivery.objects.filter(manual=True, status="succeeded").count() == 1


def test_client_link_events_name_the_link_and_never_its_token(connection: m.Connection) -> None:
    from django.contrib.auth.models import AnonymousUser

    with webhook_receiver(Answer(200)) as receiver:
        made = endpoint_for(connection.household.firm, receiver.url)
        created = client_link_create(
            household=connection.household, client=connection.client, connection=connection, user=AnonymousUser()
        )
        (request,) = receiver.wait_for(1)
    payload = request.verified(made.secret)
    assert payload["type"] == "client_link.sent"
    assert payload["data"]["client_link"]["id"] == str(created.link.pk)
    assert payload["data"]["client_link"]["status"] == "sent"
    assert created.url.rsplit("/", 2)[-2] not in request.body.decode()
    assert "/link/" not in request.body.decode()


def test_a_late_retry_says_where_the_connection_stands_now(connection: m.Connection, clock: Clock) -> None:
    """Ordering is not promised: a retried "degraded" that arrives after "recovered" carries the current status."""
    receiver: Receiver
    with webhook_receiver(Answer(500), Answer(200)) as receiver:
        made = endpoint_for(connection.household.firm, receiver.url)
        _transition(connection, m.Status.DEGRADED, reason=m.Reason.TRANSIENT)  # fails, retried in 5 s
        _transition(connection, m.Status.ACTIVE)  # delivered at once
        clock.advance(timedelta(seconds=5))
        tasks.webhooks_tick()
        received = receiver.wait_for(3)
    late = received[-1].verified(made.secret)
    assert [json.loads(r.body)["type"] for r in received] == [
        "connection.degraded",
        "connection.recovered",
        "connection.degraded",
    ]
    assert late["data"]["event"]["to_status"] == "degraded"
    assert late["data"]["connection"]["status"] == "active"


# --- The four types the lifecycle's own jobs and the client's link produce ---------------------------


def _link_for(connection: m.Connection) -> ClientLinkCreated:
    return client_link_create(
        household=connection.household, client=connection.client, connection=connection, user=AnonymousUser()
    )


def _path(url: str) -> str:
    return urlsplit(url).path


def test_a_link_the_client_opens_sends_client_link_opened_once(connection: m.Connection) -> None:
    with webhook_receiver(Answer(200)) as receiver:
        made = endpoint_for(connection.household.firm, receiver.url)
        created = _link_for(connection)
        browser = Browser()
        assert browser.get(_path(created.url)).status_code == 200
        assert browser.get(_path(created.url)).status_code == 200  # opened again: said once
        tasks.webhooks_tick()
        received = receiver.wait_for(3, timeout=0.5)

    assert [r.verified(made.secret)["type"] for r in received] == ["client_link.sent", "client_link.opened"]
    opened = received[1].verified(made.secret)["data"]
    assert opened["event"]["kind"] == "link_opened"
    assert opened["client_link"]["id"] == str(created.link.pk)
    assert opened["client_link"]["status"] == "opened"
    assert opened["client_link"]["opened_at"] is not None
    assert opened["connection"]["id"] == connection.pk


def test_a_link_past_its_expiry_sends_client_link_expired_from_housekeeping(
    connection: m.Connection, clock: Clock
) -> None:
    with webhook_receiver(Answer(200)) as receiver:
        made = endpoint_for(connection.household.firm, receiver.url)
        created = _link_for(connection)
        clock.advance(timedelta(days=7, minutes=1))
        connection_tasks.housekeeping.delay()
        clock.advance(timedelta(minutes=5))
        connection_tasks.housekeeping.delay()  # already expired: nothing more to say
        tasks.webhooks_tick()
        received = receiver.wait_for(3, timeout=0.5)

    assert [r.verified(made.secret)["type"] for r in received] == ["client_link.sent", "client_link.expired"]
    expired = received[1].verified(made.secret)["data"]
    assert expired["event"]["kind"] == "link_expired"
    assert expired["client_link"]["id"] == str(created.link.pk)
    assert expired["client_link"]["status"] == "expired"


def test_a_link_found_expired_when_opened_sends_client_link_expired(connection: m.Connection, clock: Clock) -> None:
    with webhook_receiver(Answer(200)) as receiver:
        made = endpoint_for(connection.household.firm, receiver.url)
        created = _link_for(connection)
        clock.advance(timedelta(days=7, minutes=1))  # before housekeeping has run
        assert Browser().get(_path(created.url)).status_code == 410
        received = receiver.wait_for(2)

    expired = received[1].verified(made.secret)
    assert expired["type"] == "client_link.expired"
    assert expired["data"]["client_link"]["status"] == "expired"


def test_a_hard_deadline_coming_near_sends_deadline_approaching_with_the_deadline(
    connection: m.Connection, clock: Clock
) -> None:
    deadline = clock.now() + timedelta(days=3)
    m.Connection.objects.filter(pk=connection.pk).update(reconnect_by=deadline, reconnect_by_rolls=False)
    with webhook_receiver(Answer(200)) as receiver:
        made = endpoint_for(connection.household.firm, receiver.url)
        connection_tasks.housekeeping.delay()  # three days out: not near yet
        tasks.webhooks_tick()
        assert receiver.wait_for(1, timeout=0.3) == []
        clock.advance(timedelta(days=1, hours=1))  # inside the 48-hour window
        connection_tasks.housekeeping.delay()
        clock.advance(timedelta(minutes=5))
        connection_tasks.housekeeping.delay()  # the same deadline is announced once
        tasks.webhooks_tick()
        received = receiver.wait_for(2, timeout=0.5)

    (request,) = received
    payload = request.verified(made.secret)
    assert payload["type"] == "connection.deadline_approaching"
    assert payload["data"]["event"]["kind"] == "deadline_warning"
    assert datetime.fromisoformat(payload["data"]["event"]["deadline"]) == deadline
    assert datetime.fromisoformat(payload["data"]["connection"]["reconnect_by"]) == deadline
    assert payload["data"]["connection"]["status"] == "active"
    assert payload["data"]["client_link"] is None


def test_a_reconnect_requests_client_link_sent_names_the_link_behind_each_item(connection: m.Connection) -> None:
    from connections.services import reconnect_requests_create

    _revoked(connection)
    with webhook_receiver(Answer(200)) as receiver:
        made = endpoint_for(connection.household.firm, receiver.url)
        [result] = reconnect_requests_create(households=[connection.household], actor_label="api:test")
        assert result.outcome == "sent"
        tasks.webhooks_tick()
        received = receiver.wait_for(2, timeout=0.5)

    sent = [r.verified(made.secret) for r in received if r.verified(made.secret)["type"] == "client_link.sent"]
    assert len(sent) == 1
    item = m.ReconnectRequestItem.objects.get(request__client=connection.client, connection=connection)
    assert sent[0]["data"]["client_link"]["id"] == str(item.client_link_id)
    assert sent[0]["data"]["connection"]["id"] == connection.pk
