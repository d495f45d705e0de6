"""Household reconnect requests through the web UI and the jobs, with the fake provider seam.

What the adviser previews is what the client gets; a connection that recovers
without the client drops out (and a request with nothing left closes, unreminded);
reminders follow the firm's intervals on a controlled clock; the ESP's bounce
report marks the request; the client's "stop" pauses it; a bulk send of 200
households keeps to the firm's hourly limit and shows its progress.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core import mail
from django.test import Client as Browser
from django.urls import reverse
from django.utils import timezone

from connections import jobs, lifecycle, problems, services
from connections import models as m
from tests.e2e.support import Clock
from tests.factories import ClientFactory, ConnectionFactory, HouseholdFactory
from tests.web.conftest import World

from .conftest import emails_to, open_request, request_path

# Transactional: request emails go out when their rows commit, as in production.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    controlled = Clock(timezone.now().replace(microsecond=0))
    monkeypatch.setattr(timezone, "now", controlled.now)
    return controlled


def _broken(world: World, platform: str, **fields: Any) -> m.Connection:
    return ConnectionFactory(
        client=world.client,
        provider_app=fields.pop("provider_app", world.turnqey),
        platform=platform,
        status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.REVOKED,
        next_check_at=None,
        **fields,
    )


def _ask(world: World) -> m.ReconnectRequest:
    results = services.reconnect_requests_create(households=[world.household], user=world.adviser)
    assert [r.outcome for r in results] == ["sent"], results
    request = results[0].request
    assert request is not None
    return request


# --- Asking -------------------------------------------------------------------------------------


def test_the_preview_shows_the_exact_email_and_sending_it_asks_once(adviser_client: Any, world: World) -> None:
    _broken(world, "gemini")
    _broken(world, "kraken", provider_app=world.coinify)
    url = reverse("household_reconnect_request", args=[world.household.pk])

    preview = adviser_client.get(url)
    text = preview.content.decode()
    assert preview.status_code == 200
    assert "linh@example.test" in text
    assert "Gemini via Turnqey" in text
    assert "Kraken via Coinify" in text
    assert "Harbour Wealth: please reconnect 2 accounts" in text  # the subject, as sent
    assert mail.outbox == []

    sent = adviser_client.post(url)
    assert sent.status_code == 302
    assert len(mail.outbox) == 1
    assert mail.outbox[0].subject == "Harbour Wealth: please reconnect 2 accounts"
    again = adviser_client.post(url)
    assert again.status_code == 302
    assert len(mail.outbox) == 1  # one open request per client: no second email
    page = adviser_client.get(reverse("household_detail", args=[world.household.pk])).content.decode()
    assert "Sent, not opened yet." in page
    assert "/r/" not in page  # the client's token is in their email only


def test_healthy_connections_and_another_firms_households_are_never_asked(adviser_client: Any, world: World) -> None:
    # world.connection is active: nothing needs the client.
    assert services.reconnect_requests_create(households=[world.household], user=world.adviser) == []
    foreign = adviser_client.get(reverse("household_reconnect_request", args=[world.foreign_household.pk]))
    assert foreign.status_code == 404
    other = adviser_client.get(reverse("household_reconnect_request", args=[world.other_household.pk]))
    assert other.status_code == 404
    ConnectionFactory(
        client=world.foreign_connection.client,
        provider_app=world.turnqey,
        status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.REVOKED,
        next_check_at=None,
    )
    chosen = adviser_client.get(reverse("reconnect_requests_ask"), {"household": world.foreign_household.pk})
    assert chosen.status_code == 400
    assert mail.outbox == []


def test_a_connection_that_recovers_by_itself_drops_out_and_an_empty_request_closes_unreminded(
    world: World,
    fake_provider: Any,
    clock: Clock,
) -> None:
    gemini, kraken = _broken(world, "gemini"), _broken(world, "kraken")
    request = _ask(world)

    # The provider came back: a check (the adviser's Check now) finds Gemini working again.
    lifecycle.connection_check(connection_id=gemini.pk, force=True)
    clock.advance(timedelta(days=2, minutes=1))
    jobs.reminders_run()

    items = {item.connection_id: item.status for item in request.items.all()}
    assert items == {gemini.pk: "dropped", kraken.pk: "open"}
    reminder = emails_to("linh@example.test")[-1]
    assert reminder.subject.startswith("Reminder:")
    assert "Kraken" in reminder.body
    assert "Gemini" not in reminder.body
    assert m.ClientLink.objects.get(reconnect_item__connection=gemini).status == "cancelled"

    # The adviser reconnects Kraken themselves: nothing is left for the client.
    lifecycle.connection_check(connection_id=kraken.pk, force=True)
    sent = len(mail.outbox)
    clock.advance(timedelta(days=3))
    jobs.reminders_run()
    request.refresh_from_db()
    assert request.status == m.ReconnectRequest.RequestStatus.RESOLVED
    assert len(mail.outbox) == sent  # no reminder for healthy connections


def test_reminders_follow_the_intervals_on_a_controlled_clock(world: World, clock: Clock) -> None:
    _broken(world, "gemini")
    request = _ask(world)
    start = clock.now()

    def reminders_at(moment: datetime) -> int:
        clock.move_to(moment)
        return jobs.reminders_run()["reminders_sent"]

    assert reminders_at(start + timedelta(days=1, hours=23)) == 0
    assert reminders_at(start + timedelta(days=2)) == 1
    assert reminders_at(start + timedelta(days=2, hours=1)) == 0
    assert reminders_at(start + timedelta(days=4, hours=23)) == 0
    assert reminders_at(start + timedelta(days=5)) == 1
    assert reminders_at(start + timedelta(days=6)) == 0  # two intervals, two reminders
    assert reminders_at(start + timedelta(days=8)) == 0  # expired after 7 days
    request.refresh_from_db()
    assert request.reminders_sent == 2
    assert request.status == m.ReconnectRequest.RequestStatus.EXPIRED
    assert len(emails_to("linh@example.test")) == 3


def test_a_firm_sets_its_own_reminder_days_and_a_missed_run_sends_one_reminder(world: World, clock: Clock) -> None:
    m.FirmNotificationPolicy.objects.create(firm=world.firm, reminder_days=[1, 3])
    _broken(world, "gemini")
    request = _ask(world)
    clock.advance(timedelta(days=3, hours=1))  # the job was down through both reminder days
    assert jobs.reminders_run()["reminders_sent"] == 1
    request.refresh_from_db()
    assert request.reminders_sent == 2
    assert len(emails_to("linh@example.test")) == 2


def test_each_reminder_carries_its_own_link_and_the_first_still_works(world: World, clock: Clock) -> None:
    _broken(world, "gemini")
    _ask(world)
    clock.advance(timedelta(days=2))
    jobs.reminders_run()
    first, reminder = emails_to("linh@example.test")
    assert request_path(first) != request_path(reminder)
    for message in (first, reminder):
        page, _ = open_request(Browser(), message)
        assert "Gemini via Turnqey" in page.content.decode()


def test_the_request_pages_serve_only_the_browser_that_opened_the_link(world: World) -> None:
    _broken(world, "gemini")
    request = _ask(world)
    stranger = Browser().get(reverse("reconnect_request_page", args=[request.pk]))
    assert stranger.status_code == 403
    assert "open the link from your email" in stranger.content.decode()
    tampered = Browser().get(request_path(mail.outbox[0])[:-3] + "xx/")
    assert tampered.status_code == 400
    assert Browser().get("/r/not-a-token/").status_code == 400


def test_the_client_can_say_this_is_not_me_which_pauses_the_request_and_tells_the_adviser(
    world: World,
    clock: Clock,
) -> None:
    _broken(world, "gemini")
    request = _ask(world)
    browser = Browser()
    landing = browser.get(request_path(mail.outbox[0]) + "?then=stop")
    assert landing.status_code == 302
    assert browser.get(landing["Location"]).status_code == 200
    stopped = browser.post(landing["Location"], {"reason": "not_me"})
    assert "We have stopped this request" in stopped.content.decode()
    request.refresh_from_db()
    assert (request.status, request.pause_reason) == ("paused", "not_me")
    note = emails_to("alice@example.test")
    assert len(note) == 1
    assert "This is not me" in note[0].body
    clock.advance(timedelta(days=3))
    assert jobs.reminders_run()["reminders_sent"] == 0


def _stop(message: Any, reason: str) -> None:
    browser = Browser()
    landing = browser.get(request_path(message) + "?then=stop")
    assert browser.post(landing["Location"], {"reason": reason}).status_code == 200


def test_a_client_who_said_stop_is_not_asked_again_unless_the_adviser_confirms_and_bulk_skips_them(
    adviser_client: Any,
    world: World,
    clock: Clock,
) -> None:
    _broken(world, "gemini")
    stopped = _ask(world)
    _stop(mail.outbox[0], "stop")
    stopped.refresh_from_db()
    assert (stopped.status, stopped.closed_at) == ("paused", clock.now())  # closed: nothing follows it up
    clock.advance(timedelta(days=3))
    assert jobs.reminders_run()["reminders_sent"] == 0
    sent = len(mail.outbox)  # the request and the note to the adviser
    name = world.client.name
    words = (
        f"{name} asked on {timezone.localtime(stopped.paused_at):%d %b %Y} not to be contacted about this "
        "(\u201cPlease stop asking me\u201d)"
    )
    url = reverse("household_reconnect_request", args=[world.household.pk])

    preview = adviser_client.get(url).content.decode()
    assert words in preview
    assert f"Send to {name} anyway" in preview
    refused = adviser_client.post(url, follow=True).content.decode()
    assert "not to be contacted about this" in refused
    assert len(mail.outbox) == sent

    # Ask all: the bulk preview lists them as skipped, with no way to send anyway, and the send skips them.
    bulk_preview = adviser_client.get(reverse("reconnect_requests_ask"), {"all": "1"}).content.decode()
    assert "Skipped: " + name in bulk_preview
    assert "send_anyway" not in bulk_preview
    adviser_client.post(reverse("reconnect_requests_ask"), {"all": "1", "send_anyway": str(world.client.pk)})
    bulk = m.BulkReconnectSend.objects.get()
    assert (bulk.sent, bulk.skipped) == (0, 1)
    assert bulk.notes[0]["note"].startswith(f"{name} asked on ")
    assert len(mail.outbox) == sent

    # Another household's client id in the field does nothing; ticking this client sends one request.
    adviser_client.post(url, {"send_anyway": ["x", str(world.foreign_connection.client_id)]}, follow=True)
    assert len(mail.outbox) == sent
    adviser_client.post(url, {"send_anyway": str(world.client.pk)}, follow=True)
    assert len(mail.outbox) == sent + 1
    assert mail.outbox[-1].to == ["linh@example.test"]
    # Sent past the stop once, by the adviser's choice: the next ask is the usual "already asked".
    again = adviser_client.get(url).content.decode()
    assert "Already asked on" in again
    assert "not to be contacted" not in again


def test_a_not_me_stands_for_its_address_only(world: World) -> None:
    _broken(world, "gemini")
    _ask(world)
    _stop(mail.outbox[0], "not_me")
    refused = services.reconnect_requests_create(households=[world.household], user=world.adviser)
    assert [r.outcome for r in refused] == ["skipped"]
    assert "\u201cThis is not me\u201d from linh@example.test); correct their address" in refused[0].note
    m.Client.objects.filter(pk=world.client.pk).update(email="linh.right@example.test")
    asked = services.reconnect_requests_create(households=[world.household], user=world.adviser)
    assert [(r.outcome, r.client.email) for r in asked] == [("sent", "linh.right@example.test")]


# --- Muted and snoozed connections ---------------------------------------------------------------------


def test_muted_and_snoozed_connections_are_not_asked_and_ask_all_lists_them_as_skipped(
    adviser_client: Any,
    world: World,
    clock: Clock,
) -> None:
    gemini, kraken = _broken(world, "gemini"), _broken(world, "kraken", provider_app=world.coinify)
    problems.problem_snooze(connection=gemini, until=clock.now() + timedelta(days=1), user=world.adviser)
    problems.connection_mute(connection=kraken, user=world.adviser)
    other = HouseholdFactory(firm=world.firm, name="Ahmed Household", advisers=[world.adviser])
    ConnectionFactory(
        client=ClientFactory(household=other, name="Sami Ahmed", email="sami@example.test"),
        provider_app=world.turnqey,
        status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.REVOKED,
        next_check_at=None,
    )

    # Only the household with something loud to ask about is counted.
    attention = adviser_client.get(reverse("attention_list")).content.decode()
    assert "Ask all 1 household to reconnect" in attention
    preview = adviser_client.get(reverse("reconnect_requests_ask"), {"all": "1"}).content.decode()
    assert "Send 1 request" in preview
    assert "Gemini via Turnqey: skipped, snoozed until" in preview
    assert "Kraken via Coinify: skipped, muted since" in preview
    assert "Skipped: Nothing to ask: Gemini via Turnqey is snoozed until" in preview
    household_preview = adviser_client.get(reverse("household_reconnect_request", args=[world.household.pk]))
    assert "Send 1 request" not in household_preview.content.decode()

    adviser_client.post(reverse("reconnect_requests_ask"), {"all": "1"})
    assert [message.to for message in mail.outbox] == [["sami@example.test"]]
    assert services.reconnect_requests_create(households=[world.household], user=world.adviser)[0].outcome == (
        "skipped"
    )
    assert len(mail.outbox) == 1


def test_reminders_leave_out_a_snoozed_connection_and_withdraw_a_muted_one(world: World, clock: Clock) -> None:
    gemini, kraken = _broken(world, "gemini"), _broken(world, "kraken", provider_app=world.coinify)
    request = _ask(world)
    start = clock.now()
    problems.connection_mute(connection=kraken, user=world.adviser)
    problems.problem_snooze(connection=gemini, until=start + timedelta(days=3), user=world.adviser)

    clock.move_to(start + timedelta(days=2, minutes=1))
    assert jobs.reminders_run()["reminders_sent"] == 0  # Gemini is snoozed, Kraken muted: nothing to remind
    items = {item.connection_id: item.status for item in request.items.all()}
    assert items == {gemini.pk: "open", kraken.pk: "withdrawn"}
    assert m.ClientLink.objects.get(reconnect_item__connection=kraken).status == "cancelled"

    clock.move_to(start + timedelta(days=3, minutes=1))  # the snooze is over: the missed reminder goes once
    assert jobs.reminders_run()["reminders_sent"] == 1
    reminder = emails_to("linh@example.test")[-1]
    assert "Gemini" in reminder.body
    assert "Kraken" not in reminder.body
    page, _ = open_request(Browser(), reminder)
    assert "Nothing to do" in page.content.decode()


def test_a_request_emptied_by_mutes_closes_as_muted_never_resolved_and_tells_no_one_otherwise(
    adviser_client: Any, world: World, clock: Clock
) -> None:
    gemini, kraken = _broken(world, "gemini"), _broken(world, "kraken", provider_app=world.coinify)
    request = _ask(world)
    (first,) = mail.outbox
    m.Membership.objects.update(digest_sent_up_to=clock.now())
    events = m.ConnectionEvent.objects.count()
    clock.advance(timedelta(minutes=5))

    for connection in (gemini, kraken):  # for example, the client closed both accounts at the exchange
        problems.connection_mute(connection=connection, user=world.adviser)
    page = adviser_client.get(reverse("household_detail", args=[world.household.pk])).content.decode()

    request.refresh_from_db()
    assert request.status == m.ReconnectRequest.RequestStatus.MUTED
    assert request.closed_at is not None
    assert {item.status for item in request.items.all()} == {"withdrawn"}
    words = "Closed: every connection in it was muted; nothing was fixed."
    assert request.progress()[2] == words
    assert words in page
    assert "recovered without the client" not in page
    # Nothing was fixed, so nothing announces a fix: no connection event (the webhooks' only source),
    # no email to the client, and the client's link says there is nothing to do, not "thank you".
    assert m.ConnectionEvent.objects.count() == events
    assert mail.outbox == [first]
    refused = Browser().get(request_path(first), follow=True)
    assert refused.status_code == 410
    body = refused.content.decode()
    assert services.reconnect_client.LINK_NOT_NEEDED in body
    assert "reconnected" not in body
    clock.advance(timedelta(days=6))
    assert jobs.reminders_run()["reminders_sent"] == 0

    # The adviser's digest tells the request as it is.
    clock.advance(timedelta(hours=1))
    jobs.digests_send()
    (digest,) = [message for message in mail.outbox if message.to == [world.adviser.email]]
    assert words in digest.body
    assert "recovered" not in digest.body


def test_a_request_partly_muted_says_how_many_were_muted_and_never_that_they_recovered(world: World) -> None:
    gemini, kraken = _broken(world, "gemini"), _broken(world, "kraken", provider_app=world.coinify)
    request = _ask(world)
    problems.connection_mute(connection=gemini, user=world.adviser)
    m.Connection.objects.filter(pk=kraken.pk).update(status=m.Status.ACTIVE, reason="")  # recovered by itself
    services.reconnect_requests_sync(requests=[request])
    request.refresh_from_db()
    assert request.status == m.ReconnectRequest.RequestStatus.MUTED
    assert request.progress()[2] == "Closed: 1 of 2 muted, not fixed; the rest recovered without the client."


# --- Delivery reports ------------------------------------------------------------------------------


def _basic_auth() -> str:
    return "Basic " + base64.b64encode(settings.ANYMAIL["WEBHOOK_SECRET"].encode()).decode()


def test_a_bounce_reported_through_anymails_tracking_webhook_marks_the_request(
    adviser_client: Any,
    world: World,
    settings: Any,
    clock: Clock,
) -> None:
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    _broken(world, "gemini")
    request = _ask(world)
    message_id = request.emails.get().message_id
    assert message_id != ""  # the ESP's id, kept to match its reports
    bounce = {
        "RecordType": "Bounce",
        "Type": "HardBounce",
        "TypeCode": 1,
        "MessageID": message_id,
        "Email": "linh@example.test",
        "BouncedAt": "2026-12-01T10:00:00Z",
        "Description": "The server was unable to deliver your message.",
    }
    url = "/anymail/postmark/tracking/"

    refused = Browser().post(url, json.dumps(bounce), content_type="application/json")
    assert refused.status_code == 400  # no basic auth: anymail refuses it
    request.refresh_from_db()
    assert request.delivery == ""

    accepted = Browser().post(
        url, json.dumps(bounce), content_type="application/json", HTTP_AUTHORIZATION=_basic_auth()
    )
    assert accepted.status_code == 200
    request.refresh_from_db()
    assert request.delivery == m.ReconnectRequest.Delivery.BOUNCED
    page = adviser_client.get(reverse("household_detail", args=[world.household.pk])).content.decode()
    assert "The email bounced: check the client&#x27;s address." in page
    clock.advance(timedelta(days=3))
    assert jobs.reminders_run()["reminders_sent"] == 0  # nobody reminds an address that bounces


def _bounce(message_id: str, address: str) -> Any:
    bounce = {
        "RecordType": "Bounce",
        "Type": "HardBounce",
        "TypeCode": 1,
        "MessageID": message_id,
        "Email": address,
        "BouncedAt": "2026-12-01T10:00:00Z",
        "Description": "The server was unable to deliver your message.",
    }
    return Browser().post(
        "/anymail/postmark/tracking/",
        json.dumps(bounce),
        content_type="application/json",
        HTTP_AUTHORIZATION=_basic_auth(),
    )


def test_a_bounced_request_is_replaced_by_asking_again_once_the_address_is_corrected(
    adviser_client: Any,
    world: World,
    settings: Any,
) -> None:
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    _broken(world, "gemini")
    old = _ask(world)
    old_path = request_path(mail.outbox[0])
    assert _bounce(old.emails.get().message_id, "linh@example.test").status_code == 200
    url = reverse("household_reconnect_request", args=[world.household.pk])
    household = reverse("household_detail", args=[world.household.pk])

    # Same address: the household page says to correct it, and asking again is refused with the reason.
    page = adviser_client.get(household).content.decode()
    assert "Its address is still linh@example.test: correct it, then" in page
    assert f'href="{url}"' in page
    preview = adviser_client.get(url).content.decode()
    assert "Not sent: The email to linh@example.test bounced on 01 Dec 2026: correct Linh" in preview
    adviser_client.post(url)
    assert len(mail.outbox) == 1

    # The address is corrected (as the admin's client form does); the bounced notice now offers to ask again.
    m.Client.objects.filter(pk=world.client.pk).update(email="linh.new@example.test")
    page = adviser_client.get(household).content.decode()
    assert "at linh.new@example.test: this request closes and its link stops working." in page
    preview = adviser_client.get(url).content.decode()
    assert "Replaces the request of" in preview
    assert "whose email bounced; its link stops working." in preview
    sent = adviser_client.post(url, follow=True)
    assert "Reconnect request sent to Linh" in sent.content.decode()

    assert len(mail.outbox) == 2
    assert mail.outbox[1].to == ["linh.new@example.test"]
    old.refresh_from_db()
    assert old.status == m.ReconnectRequest.RequestStatus.SUPERSEDED
    assert old.closed_at is not None
    assert set(m.ClientLink.objects.filter(reconnect_item__request=old).values_list("status", flat=True)) == {
        "cancelled"
    }
    gone = Browser().get(old_path)
    assert gone.status_code == 410
    assert "replaced by a newer email" in gone.content.decode()
    new_page, new = open_request(Browser(), mail.outbox[1])
    assert new.sent_to == "linh.new@example.test"
    assert "Gemini via Turnqey" in new_page.content.decode()
    page = adviser_client.get(household).content.decode()
    assert "Replaced by a new request: this email bounced, and its link no longer works." in page
    # Asked again at once: the new request is open and deliverable, so no third email.
    adviser_client.post(url)
    assert len(mail.outbox) == 2


def test_a_browser_still_on_a_replaced_requests_pages_is_turned_away(world: World, settings: Any) -> None:
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    _broken(world, "gemini")
    old = _ask(world)
    browser = Browser()
    open_request(browser, mail.outbox[0])
    # The ESP could not take the email at all: the same address may be tried again.
    m.ReconnectRequest.objects.filter(pk=old.pk).update(delivery=m.ReconnectRequest.Delivery.FAILED)
    results = services.reconnect_requests_create(households=[world.household], user=world.adviser)
    assert [(r.outcome, r.client.email) for r in results] == [("sent", "linh@example.test")]
    assert "whose email could not be sent" in results[0].note
    stale = browser.get(reverse("reconnect_request_page", args=[old.pk]))
    assert stale.status_code == 410
    assert "replaced by a newer email" in stale.content.decode()


def test_a_complaint_blocks_asking_the_same_address_again(world: World) -> None:
    _broken(world, "gemini")
    old = _ask(world)
    m.ReconnectRequest.objects.filter(pk=old.pk).update(delivery=m.ReconnectRequest.Delivery.COMPLAINED)
    results = services.reconnect_requests_create(households=[world.household], user=world.adviser)
    assert [r.outcome for r in results] == ["skipped"]
    assert "marked the email to linh@example.test as spam" in results[0].note
    old.refresh_from_db()
    assert old.status == m.ReconnectRequest.RequestStatus.SENT
    assert len(mail.outbox) == 1


# --- Bulk ---------------------------------------------------------------------------------------------


def test_every_household_is_asked_in_two_clicks_within_the_firms_hourly_limit(
    client: Any,
    world: World,
    clock: Clock,
    django_assert_max_num_queries: Any,
) -> None:
    client.force_login(world.firm_admin)
    for n in range(200):
        household = HouseholdFactory(firm=world.firm, name=f"Household {n:03d}")
        person = ClientFactory(household=household)
        ConnectionFactory(
            client=person,
            provider_app=world.turnqey,
            status=m.Status.NEEDS_RECONNECT,
            reason=m.Reason.EXPIRED,
            next_check_at=None,
        )
    attention = client.get(reverse("attention_list")).content.decode()
    assert "Ask all 200 households to reconnect" in attention

    # Click one: the preview, in a fixed number of queries however many households it lists.
    with django_assert_max_num_queries(20):
        preview = client.get(reverse("reconnect_requests_ask"), {"all": "1"})
    assert preview.status_code == 200
    text = preview.content.decode()
    assert "Send 200 requests" in text
    # Every recipient, each with the exact email they would get behind a disclosure, not three of them.
    assert text.count('<details class="email-disclosure">') == 200
    for person in m.Client.objects.filter(household__name__startswith="Household "):
        assert f'aria-label="Email to {person.email}"' in text
    assert mail.outbox == []

    # Click two: sent in the background (eager here); the hour's limit holds the second hundred back.
    started = client.post(reverse("reconnect_requests_ask"), {"all": "1"})
    assert started.status_code == 302
    bulk = m.BulkReconnectSend.objects.get()
    assert (bulk.sent, bulk.position, bulk.status) == (100, 100, "throttled")
    assert len(mail.outbox) == 100
    progress = client.get(started["Location"])
    assert progress["Refresh"] == "5"
    assert "100 of 200 households done" in progress.content.decode()

    clock.advance(timedelta(minutes=30))
    jobs.reminders_run()
    assert len(mail.outbox) == 100  # still within the hour
    clock.advance(timedelta(minutes=31))
    jobs.reminders_run()
    bulk.refresh_from_db()
    assert (bulk.sent, bulk.status) == (200, "done")
    assert len({message.to[0] for message in mail.outbox}) == 200
    done = client.get(started["Location"])
    assert "Refresh" not in done
    assert "Reconnect requests sent" in done.content.decode()


# --- Scope, query counts and secrets -----------------------------------------------------------


def test_another_firms_bulk_send_is_a_404_and_an_advisers_own_is_theirs(
    client: Any,
    world: World,
) -> None:
    _broken(world, "gemini")
    bulk = services.reconnect_bulk_start(user=world.adviser, households=[world.household])
    client.force_login(world.adviser)
    assert client.get(reverse("reconnect_bulk", args=[bulk.pk])).status_code == 200
    client.force_login(m.Membership.objects.get(user__username="mallory").user)
    assert client.get(reverse("reconnect_bulk", args=[bulk.pk])).status_code == 404
    client.force_login(world.other_adviser)
    assert client.get(reverse("reconnect_bulk", args=[bulk.pk])).status_code == 404


def test_the_household_pages_query_count_does_not_grow_with_its_requests(
    adviser_client: Any,
    world: World,
    django_assert_num_queries: Any,
) -> None:
    url = reverse("household_detail", args=[world.household.pk])

    def ask_another_client(n: int) -> None:
        person = ClientFactory(household=world.household, name=f"Person {n}")
        ConnectionFactory(
            client=person, provider_app=world.turnqey, status="needs_reconnect", reason="revoked", next_check_at=None
        )
        services.reconnect_requests_create(households=[world.household], user=world.adviser)

    ask_another_client(1)
    adviser_client.get(url)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as one:
        assert adviser_client.get(url).status_code == 200
    for n in range(2, 6):
        ask_another_client(n)
    with django_assert_num_queries(len(one)):
        page = adviser_client.get(url)
    assert page.content.decode().count("Sent, not opened yet.") == 5


def test_a_request_links_token_is_masked_in_logs(world: World, caplog: pytest.LogCaptureFixture) -> None:
    _broken(world, "gemini")
    path = request_path(_ask(world) and mail.outbox[0])
    token = path.split("/")[2]
    with caplog.at_level("WARNING", logger="django.request"):
        Browser().get(path[:-2] + "x/")  # tampered: a 400, which Django logs with its path
    from connections.logging import redact

    assert token not in redact(f"Bad Request: {path}")
    assert token[:-2] not in " ".join(redact(r.getMessage()) for r in caplog.records)
