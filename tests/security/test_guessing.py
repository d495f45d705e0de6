"""Guessing through the portal: a client link, the credential forms, sign-in and password reset are no oracle.

Each test plays the attacker: it sends wrong credentials (or reset requests)
the way a script would, from one address or many, and counts what reached the
provider or the mailbox. The limits are the defaults unless a test says
otherwise: a link locks after 5 wrong attempts, a user may get 10 wrong in 15
minutes and an address 20, sign-in locks a user name at one address after 5.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from connections import models as m
from connections import services
from tests.factories import ConnectionFactory, UserFactory
from tests.faults.support import COINIFY_PARTNER, portal_on_sandbox
from tests.sandbox_client import sandbox_session

from .conftest import WRONG_PASSWORD, CannedProvider, People, logged_in

USER_PASSWORD = "correct-horse-battery"  # tests.factories.UserFactory's


def link_path(email_body: str) -> str:
    found = re.search(r"https?://[^/\s]+(/link/[^/\s]+/)", email_body)
    assert found is not None, email_body
    return found.group(1)


def wrong(email: str = "linh@example.test") -> dict[str, str]:
    return {"email": email, "password": WRONG_PASSWORD}


def from_address(address: str) -> dict[str, str]:
    return {"REMOTE_ADDR": address}


@pytest.fixture
def coinify_connection(people: People) -> m.Connection:
    return ConnectionFactory(
        client=people.client,
        provider_app=people.apps["coinify"],
        platform="coinify",
        status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.CREDENTIALS_INVALID,
        external_account_id="source-account-1",
    )


@pytest.fixture
def reconnect_link(people: People, coinify_connection: m.Connection) -> str:
    """The path of a reconnect link for the Coinify connection, as emailed to the client."""
    mail.outbox.clear()
    response = logged_in(people.assigned).post(reverse("connection_link_send", args=[coinify_connection.pk]))
    assert response.status_code == 302
    return link_path(mail.outbox[-1].body)


def new_links(people: People, count: int) -> list[str]:
    adviser = logged_in(people.assigned)
    paths = []
    for _ in range(count):
        mail.outbox.clear()
        response = adviser.post(
            reverse("household_link_new", args=[people.household.pk]),
            {"client": people.client.pk, "provider_app": people.apps["coinify"].pk, "platform": "coinify"},
        )
        assert response.status_code == 302
        paths.append(link_path(mail.outbox[-1].body))
    return paths


# --- A client link ----------------------------------------------------------------------------------


def test_a_client_link_passes_five_wrong_passwords_to_the_provider_then_locks(
    people: People, canned: CannedProvider, coinify_connection: m.Connection, reconnect_link: str
) -> None:
    visitor = Client()
    # Each guess from another address: the link's own limit does not care where they come from.
    statuses = [visitor.post(reconnect_link, wrong(), **from_address(f"198.51.100.{i}")).status_code for i in range(12)]

    assert canned.connects == 5
    assert statuses[:4] == [400] * 4
    assert statuses[4:] == [410] * 8
    # Even the right password is not sent now.
    page = visitor.post(reconnect_link, {"email": "linh@example.test", "password": "the-right-one"})
    assert page.status_code == 410
    assert canned.connects == 5
    text = page.content.decode()
    assert "This link is locked" in text
    assert "wrong sign-in details were entered 5 times" in text
    assert "Ask Harbour Wealth to send you a new link" in text
    assert visitor.get(reconnect_link).status_code == 410

    link = m.ClientLink.objects.get(connection=coinify_connection)
    assert link.status == m.ClientLink.LinkStatus.LOCKED
    locked = coinify_connection.events.filter(kind=m.ConnectionEvent.Kind.LINK_LOCKED)
    assert locked.count() == 1
    assert "locked after 5 wrong sign-in attempts" in locked.get().message
    household = logged_in(people.assigned).get(reverse("household_detail", args=[people.household.pk]))
    assert 'link-status--locked">Locked</span>' in household.content.decode()
    assert "Locked after 5 wrong sign-in attempts" in household.content.decode()


def test_the_attempt_that_locks_a_link_says_so(people: People, canned: CannedProvider, reconnect_link: str) -> None:
    visitor = Client()
    for _ in range(4):
        assert "did not accept these credentials" in visitor.post(reconnect_link, wrong()).content.decode()

    fifth = visitor.post(reconnect_link, wrong())

    assert fifth.status_code == 410
    assert "This link is locked" in fifth.content.decode()


def test_an_incomplete_form_costs_no_attempt(people: People, canned: CannedProvider, reconnect_link: str) -> None:
    visitor = Client()
    for _ in range(10):
        assert visitor.post(reconnect_link, {"email": "linh@example.test"}).status_code == 400  # no password

    assert canned.connects == 0
    assert visitor.post(reconnect_link, {"email": "linh@example.test", "password": "right"}).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_client_link_relays_at_most_five_guesses_to_coinify_itself(live_server: Any, settings: Any) -> None:
    """Over real HTTP: the sandbox's own log of Coinify password grants is the count that matters."""
    settings.PORTAL_BASE_URL = live_server.url
    with sandbox_session(live_server.url, settings) as sandbox:
        portal = portal_on_sandbox(sandbox)
        adviser = UserFactory()
        m.Membership.objects.create(user=adviser, firm=portal.household.firm)
        portal.household.advisers.add(adviser)
        sandbox.subject("coinify", email="victim@example.test", password="the-real-pw-1", partner_id=COINIFY_PARTNER)
        connection = services.credentials_connect(
            provider_app=portal.apps["coinify"],
            platform="coinify",
            household=portal.household,
            client=portal.client,
            fields={"email": "victim@example.test", "password": "the-real-pw-1"},
        )
        path = link_path(
            services.client_link_create(
                household=portal.household, client=portal.client, user=adviser, connection=connection
            ).url
            + " "
        )
        sandbox.clear_log()
        visitor = Client()

        answers = [
            visitor.post(path, wrong("victim@example.test") | {"password": f"guess-{i}"}).status_code for i in range(10)
        ]
        right = visitor.post(path, {"email": "victim@example.test", "password": "the-real-pw-1"})

        guesses = sandbox.requests("coinify", path="/auth", grant_type="password")
        assert len(guesses) == 5
        assert answers == [400, 400, 400, 400, 410, 410, 410, 410, 410, 410]
        assert right.status_code == 410
        assert connection.events.filter(kind=m.ConnectionEvent.Kind.LINK_LOCKED).count() == 1


def test_one_address_guessing_across_many_links_is_stopped_at_its_limit(
    people: People, canned: CannedProvider, settings: Any
) -> None:
    settings.CREDENTIAL_FAILURES_PER_ADDRESS = 10
    links = new_links(people, 4)
    attacker = Client()
    answers = []
    for path in links:  # four per link: none locks, the address limit is what stops them
        answers += [attacker.post(path, wrong(), **from_address("203.0.113.9")) for _ in range(4)]

    assert [a.status_code for a in answers[:10]] == [400] * 10
    assert [a.status_code for a in answers[10:]] == [429] * 6
    assert canned.connects == 10
    refused = answers[-1]
    assert 900 - 5 <= int(refused["Retry-After"]) <= 900
    text = refused.content.decode()
    assert "Too many wrong sign-in details were tried from your network in the last 15 minutes" in text
    assert "was not sent to Coinify" in text
    assert "Try again in about 15 minutes" in text
    # Someone else, elsewhere, is not locked out of their own link.
    assert Client().post(links[-1], wrong(), **from_address("192.0.2.44")).status_code == 400
    assert canned.connects == 11


def test_a_right_password_does_not_count_against_the_address(
    people: People, canned: CannedProvider, settings: Any
) -> None:
    settings.CREDENTIAL_FAILURES_PER_ADDRESS = 4
    first, second, third = new_links(people, 3)
    home = Client()
    for _ in range(3):
        assert home.post(first, wrong(), **from_address("192.0.2.8")).status_code == 400
    # A typo-prone client finally gets it right: that attempt is handed back.
    done = home.post(second, {"email": "linh@example.test", "password": "right"}, **from_address("192.0.2.8"))
    assert done.status_code == 200

    assert home.post(third, wrong(), **from_address("192.0.2.8")).status_code == 400  # the fourth failure
    assert home.post(third, wrong(), **from_address("192.0.2.8")).status_code == 429


# --- The adviser's credential forms ----------------------------------------------------------------


def _adviser_forms(people: People, coinify_connection: m.Connection) -> dict[str, tuple[str, dict[str, Any]]]:
    source = {"client": people.client.pk, "provider_app": people.apps["coinify"].pk, "platform": "coinify"}
    return {
        "new connection": (reverse("household_connect_credentials", args=[people.household.pk]), source),
        "reconnect": (reverse("connection_reconnect", args=[coinify_connection.pk]), {}),
    }


@pytest.mark.parametrize("form", ["new connection", "reconnect"])
def test_an_adviser_gets_ten_wrong_credentials_in_fifteen_minutes_from_anywhere(
    people: People, canned: CannedProvider, coinify_connection: m.Connection, form: str
) -> None:
    url, extra = _adviser_forms(people, coinify_connection)[form]
    adviser = logged_in(people.assigned)
    # Spread over many addresses: the limit is the user's.
    statuses = [
        adviser.post(url, {**extra, **wrong()}, **from_address(f"198.51.100.{i}")).status_code for i in range(13)
    ]

    assert statuses == [400] * 10 + [429] * 3
    assert canned.connects == 10
    refused = adviser.post(url, {**extra, "email": "linh@example.test", "password": "right"})
    assert refused.status_code == 429
    assert "tried from your account in the last 15 minutes" in refused.content.decode()
    assert canned.connects == 10
    # A colleague at the same desk is not locked out by it.
    colleague = logged_in(people.firm_admin)
    assert colleague.post(url, {**extra, **wrong()}, **from_address("198.51.100.1")).status_code == 400


def test_the_adviser_forms_count_per_address_too(
    people: People, canned: CannedProvider, coinify_connection: m.Connection, settings: Any
) -> None:
    settings.CREDENTIAL_FAILURES_PER_ADDRESS = 6
    url, extra = _adviser_forms(people, coinify_connection)["new connection"]
    office = "203.0.113.20"
    for user in (people.assigned, people.firm_admin):
        for _ in range(3):
            assert logged_in(user).post(url, {**extra, **wrong()}, **from_address(office)).status_code == 400

    refused = logged_in(people.assigned).post(url, {**extra, **wrong()}, **from_address(office))

    assert refused.status_code == 429
    assert "from your network" in refused.content.decode()
    assert canned.connects == 6


# --- Password reset -------------------------------------------------------------------------------


def _reset(client: Client, email: str, address: str) -> Any:
    return client.post(reverse("password_reset"), {"email": email}, **from_address(address))


def test_password_resets_are_limited_per_address_and_answer_alike_for_any_email(people: People) -> None:
    people.assigned.email = "assigned@harbour.test"
    people.assigned.save()
    attacker = Client()
    asked = ["assigned@harbour.test", *(f"nobody{i}@nowhere.test" for i in range(4))]
    assert [_reset(attacker, email, "203.0.113.30").status_code for email in asked] == [302] * 5

    existing = _reset(attacker, "assigned@harbour.test", "203.0.113.30")
    missing = _reset(attacker, "nobody-else@nowhere.test", "203.0.113.30")

    assert existing.status_code == missing.status_code == 429
    assert existing["Retry-After"] == missing["Retry-After"]
    message = "Too many password resets were asked for from here, or for this email address, in the last hour"
    for response in (existing, missing):
        assert message in response.content.decode()
        assert "try again in about 60 minutes" in response.content.decode()
    assert len(mail.outbox) == 1  # the one account among the first five


def test_password_resets_for_one_email_are_limited_whatever_the_address(people: People) -> None:
    people.assigned.email = "assigned@harbour.test"
    people.assigned.save()
    statuses = [_reset(Client(), "Assigned@Harbour.test", f"198.51.100.{i}").status_code for i in range(5)]

    assert statuses == [302, 302, 302, 429, 429]
    assert len(mail.outbox) == 3


# --- Sign-in (django-axes) ---------------------------------------------------------------------------


def _sign_in(client: Client, username: str, password: str, **headers: str) -> Any:
    return client.post(reverse("login"), {"username": username, "password": password}, **headers)


def test_one_address_failing_against_one_adviser_does_not_lock_out_another(people: People) -> None:
    attacker = Client()
    for _ in range(20):
        _sign_in(attacker, "assigned", "not-the-password", REMOTE_ADDR="203.0.113.40")
    assert _sign_in(attacker, "assigned", USER_PASSWORD, REMOTE_ADDR="203.0.113.40").status_code == 429

    other = _sign_in(Client(), "unassigned", USER_PASSWORD, REMOTE_ADDR="203.0.113.40")

    assert other.status_code == 302
    # And the locked adviser is not locked out everywhere: from their own address they sign in.
    assert _sign_in(Client(), "assigned", USER_PASSWORD, REMOTE_ADDR="192.0.2.50").status_code == 302


def test_a_forged_forwarded_for_header_does_not_escape_the_sign_in_lockout(people: People) -> None:
    """Without trusted proxies (the default) X-Forwarded-For is ignored, so rotating it buys nothing."""
    attacker = Client()
    for i in range(5):
        _sign_in(attacker, "assigned", "guess", REMOTE_ADDR="203.0.113.41", HTTP_X_FORWARDED_FOR=f"10.9.8.{i}")

    locked = _sign_in(attacker, "assigned", USER_PASSWORD, REMOTE_ADDR="203.0.113.41", HTTP_X_FORWARDED_FOR="10.9.9.9")

    assert locked.status_code == 429


def test_behind_a_trusted_proxy_the_lockout_follows_the_client_not_the_proxy(people: People, settings: Any) -> None:
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    attacker = Client()
    for _ in range(5):
        _sign_in(attacker, "assigned", "guess", HTTP_X_FORWARDED_FOR="203.0.113.42", **proxy)

    # Spoofing an entry in front of the one the proxy appended changes nothing.
    spoofed = _sign_in(attacker, "assigned", USER_PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.1, 203.0.113.42", **proxy)
    # The real adviser, through the same proxy from their own address, is not locked out.
    adviser = _sign_in(Client(), "assigned", USER_PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.60", **proxy)

    assert spoofed.status_code == 429
    assert adviser.status_code == 302
    assert m.Membership.objects.exists()  # (the world is the people fixture's)


def test_the_sign_in_lockout_says_how_long_in_words(people: People) -> None:
    attacker = Client()
    for _ in range(5):
        _sign_in(attacker, "assigned", "guess")

    page = _sign_in(attacker, "assigned", USER_PASSWORD)

    assert page.status_code == 429
    text = page.content.decode()
    assert "paused for about 15 minutes" in text
    assert "0:15:00" not in text
