"""One adviser cannot spend the provider budget every firm shares: "Check now" and link sends are limited per user.

The attack is a script (or an impatient double-clicker) hammering "Check now"
or "Send link": past the limit the portal answers with a clear message and a
429 for htmx, says when to try again, and does not call the provider.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.urls import reverse

from connections import models as m

from .conftest import CannedProvider, People, logged_in

HTMX = {"HTTP_HX_REQUEST": "true"}


def test_check_now_is_limited_per_user_and_never_calls_the_provider_past_it(
    people: People, canned: CannedProvider
) -> None:
    adviser = logged_in(people.assigned)
    url = reverse("connection_check", args=[people.connection.pk])

    answers = [adviser.post(url, **HTMX) for _ in range(14)]

    assert [a.status_code for a in answers] == [200] * 10 + [429] * 4
    assert canned.probes == 10
    refused = answers[-1]
    assert 55 <= int(refused["Retry-After"]) <= 60
    card = refused.content.decode()
    assert f'id="connection-{people.connection.pk}"' in card  # the card is swapped in, with the reason
    assert "Not checked: you asked for 10 checks in the last minute" in card
    assert "the provider was not called. Try again in about 1 minute." in card


def test_check_now_without_htmx_redirects_with_the_same_message(people: People, canned: CannedProvider) -> None:
    adviser = logged_in(people.assigned)
    url = reverse("connection_check", args=[people.connection.pk])
    for _ in range(10):
        adviser.post(url)

    refused = adviser.post(url, follow=True)

    assert refused.redirect_chain[-1][0] == reverse("household_detail", args=[people.household.pk])
    assert "Not checked: you asked for 10 checks in the last minute" in refused.content.decode()
    assert canned.probes == 10


def test_one_advisers_checks_do_not_use_up_another_advisers(people: People, canned: CannedProvider) -> None:
    url = reverse("connection_check", args=[people.connection.pk])
    first = logged_in(people.assigned)
    for _ in range(10):
        first.post(url, **HTMX)
    assert first.post(url, **HTMX).status_code == 429

    assert logged_in(people.firm_admin).post(url, **HTMX).status_code == 200
    assert canned.probes == 11


def test_the_check_now_limit_is_a_setting(people: People, canned: CannedProvider, settings: Any) -> None:
    settings.CHECK_NOW_PER_MINUTE = 2
    adviser = logged_in(people.assigned)
    url = reverse("connection_check", args=[people.connection.pk])
    assert [adviser.post(url, **HTMX).status_code for _ in range(3)] == [200, 200, 429]


@pytest.mark.parametrize("route", ["connection_link_send", "household_link_new"])
def test_client_link_sends_are_limited_per_user(people: People, canned: CannedProvider, route: str) -> None:
    adviser = logged_in(people.assigned)
    if route == "connection_link_send":
        url, form = reverse(route, args=[people.connection.pk]), {}
    else:
        url = reverse(route, args=[people.household.pk])
        form = {"client": people.client.pk, "provider_app": people.apps["coinify"].pk, "platform": "coinify"}

    answers = [adviser.post(url, form) for _ in range(23)]

    assert [a.status_code for a in answers] == [302] * 20 + [429] * 3
    assert len(mail.outbox) == 20
    assert m.ClientLink.objects.count() == 20
    refused = answers[-1]
    assert 3590 <= int(refused["Retry-After"]) <= 3600
    assert "Not sent: you sent 20 client links in the last hour" in refused.content.decode()
    # A colleague can still send one.
    assert logged_in(people.firm_admin).post(url, form).status_code == 302
