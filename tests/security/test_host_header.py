"""A forged Host never puts the forger's host into an email or a redirect: URLs are built on ``PORTAL_BASE_URL``.

The attack: an adviser's browser (or the attacker's own, for a password
reset) sends a request whose ``Host`` (or ``X-Forwarded-Host``) names the
attacker's server, and the email the portal sends then carries a working
client-link or reset token on a link to that server, or the provider sends
the client back to that server with the authorization. ``ALLOWED_HOSTS`` is
made permissive here, as a deployment behind a catch-all proxy might have it,
so that only the way links are built stands between the forger and the token.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from .conftest import People, logged_in

PORTAL = "https://portal.example.com"
FORGED = "attacker.example"
FORGED_HEADERS = {"HTTP_HOST": FORGED, "HTTP_X_FORWARDED_HOST": FORGED, "HTTP_X_FORWARDED_PROTO": "http"}


@pytest.fixture(autouse=True)
def permissive_hosts(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["*"]
    settings.PORTAL_BASE_URL = PORTAL


def sent_email_text() -> str:
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    return message.body + "".join(str(content) for content, _ in getattr(message, "alternatives", []))


def test_a_reconnect_link_sent_from_a_forged_host_points_at_the_portal(people: People) -> None:
    adviser = logged_in(people.assigned)

    response = adviser.post(reverse("connection_link_send", args=[people.connection.pk]), **FORGED_HEADERS)

    assert response.status_code == 302
    text = sent_email_text()
    assert FORGED not in text
    links = re.findall(r"https?://[^/\s\"<>]+/link/", text)
    assert links
    assert set(links) == {f"{PORTAL}/link/"}


def test_a_new_connection_link_sent_from_a_forged_host_points_at_the_portal(people: People) -> None:
    adviser = logged_in(people.assigned)

    response = adviser.post(
        reverse("household_link_new", args=[people.household.pk]),
        {"client": people.client.pk, "provider_app": people.apps["coinify"].pk, "platform": "coinify"},
        **FORGED_HEADERS,
    )

    assert response.status_code == 302
    text = sent_email_text()
    assert FORGED not in text
    assert set(re.findall(r"https?://[^/\s\"<>]+/link/", text)) == {f"{PORTAL}/link/"}


def test_a_password_reset_asked_for_through_a_forged_host_links_to_the_portal(people: People) -> None:
    people.assigned.email = "assigned@harbour.test"
    people.assigned.save()
    visitor = Client()

    response = visitor.post(reverse("password_reset"), {"email": "assigned@harbour.test"}, **FORGED_HEADERS)

    assert response.status_code == 302
    text = sent_email_text()
    assert FORGED not in text
    link = re.search(r"(https?://[^/\s]+)(/password-reset/\S+/\S+/)", text)
    assert link is not None, text
    assert link.group(1) == PORTAL
    # And it is a working link, not just a well-formed one.
    page = visitor.get(link.group(2), follow=True)
    assert b"Choose a new password" in page.content


def test_a_dapi_connect_started_through_a_forged_host_sends_the_client_back_to_the_portal(people: People) -> None:
    # The app names no redirect URI of its own, so the portal's callback is the one Dapi is given.
    assert people.apps["dapi"].redirect_uri == ""
    adviser = logged_in(people.assigned)

    response = adviser.post(
        reverse("household_connect", args=[people.household.pk]),
        {"client": people.client.pk, "provider_app": people.apps["dapi"].pk, "platform": "binance"},
        **FORGED_HEADERS,
    )

    assert response.status_code == 302, response.content[:500]
    location = response["Location"]
    assert FORGED not in location
    [redirect_uri] = parse_qs(urlsplit(location).query)["redirectUri"]
    assert redirect_uri == f"{PORTAL}/connect/dapi/callback/"
