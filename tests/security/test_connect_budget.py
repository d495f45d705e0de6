"""A connect someone is waiting for keeps to the provider app's shared call limit, and loses nothing when it waits.

The attack is every adviser of every firm connecting at once: the provider's
limit is the portal's, not one person's. A connect takes its calls' tokens
before it sends anything; with none free within the short wait it says the
provider is busy, and nothing was sent, spent or written, so the same reply
(a reload of the callback) or the same form finishes it a moment later.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from connections import models as m

from .conftest import TURNQEY_SUCCESS, CannedProvider, People, logged_in, start_connect


@pytest.fixture(autouse=True)
def database_bucket(settings: Any) -> None:
    settings.RATE_LIMIT_REDIS_URL = ""  # the database bucket, which the test can empty and fill


def bucket_empty(app: m.ProviderApp, *, limit: float = 100) -> None:
    """No token left, and none refills for the rest of the test (the bucket's clock is an hour ahead)."""
    m.ProviderApp.objects.filter(pk=app.pk).update(
        rate_limit_per_second=limit, rate_tokens=0, rate_updated_at=timezone.now() + timedelta(hours=1)
    )


def bucket_refilling(app: m.ProviderApp, *, limit: float) -> None:
    """No token left now; they come back at the app's rate from this moment."""
    m.ProviderApp.objects.filter(pk=app.pk).update(
        rate_limit_per_second=limit, rate_tokens=0, rate_updated_at=timezone.now()
    )


def bucket_full(app: m.ProviderApp, *, limit: float = 100) -> None:
    m.ProviderApp.objects.filter(pk=app.pk).update(rate_limit_per_second=limit, rate_tokens=5, rate_updated_at=None)


def callback(browser: Client, params: dict[str, str]) -> Any:
    return browser.get(f"{reverse('connect_callback', args=['turnqey'])}?{urlencode(params)}")


# --- Redirect flows -----------------------------------------------------------------------------------


def test_a_callback_with_no_token_free_sends_nothing_and_the_same_reply_finishes_later(
    people: People, canned: CannedProvider, settings: Any
) -> None:
    settings.RATE_LIMIT_MAX_WAIT_SECONDS = 0
    app = people.apps["turnqey"]
    adviser = logged_in(people.assigned)
    state = start_connect(adviser, people.household, app)
    request = m.AuthorizationRequest.objects.get(provider_app=app)
    bucket_empty(app)

    busy = callback(adviser, {"state": state, **TURNQEY_SUCCESS})

    assert busy.status_code == 503
    assert int(busy["Retry-After"]) >= 1
    page = busy.content.decode()
    assert "Turnqey is busy with the portal&#x27;s other requests right now" in page
    assert "nothing was sent to it and nothing changed. Reload this page in a moment to finish." in page
    assert canned.completes == 0
    request.refresh_from_db()
    assert request.used_at is None
    assert request.outcome == ""
    connection = request.connection
    assert connection is not None
    connection.refresh_from_db()
    assert connection.status == m.Status.PENDING
    assert not connection.credentials.exists()

    bucket_full(app)
    again = callback(adviser, {"state": state, **TURNQEY_SUCCESS})

    assert again.status_code == 302
    assert canned.completes == 1
    connection.refresh_from_db()
    assert connection.status == m.Status.ACTIVE


def test_a_callback_waits_briefly_for_the_tokens_its_calls_need(people: People, canned: CannedProvider) -> None:
    # Ten calls a second refill a token about every 120 ms: the two Turnqey's connect takes come within the wait.
    app = people.apps["turnqey"]
    adviser = logged_in(people.assigned)
    state = start_connect(adviser, people.household, app)
    bucket_refilling(app, limit=10)

    done = callback(adviser, {"state": state, **TURNQEY_SUCCESS})

    assert done.status_code == 302
    assert canned.completes == 1
    assert people.household.connections.filter(status=m.Status.ACTIVE, provider_app=app).exists()


def test_a_connect_takes_a_token_for_each_call_it_makes(people: People, canned: CannedProvider) -> None:
    app = people.apps["turnqey"]
    adviser = logged_in(people.assigned)
    state = start_connect(adviser, people.household, app)
    bucket_full(app)

    assert callback(adviser, {"state": state, **TURNQEY_SUCCESS}).status_code == 302

    app.refresh_from_db()
    # A burst of five at 100 calls a second; Turnqey's connect makes two calls.
    assert app.rate_tokens == pytest.approx(3, abs=0.5)


# --- Credential forms -----------------------------------------------------------------------------------


def coinify_form(people: People) -> tuple[str, dict[str, Any]]:
    url = reverse("household_connect_credentials", args=[people.household.pk])
    source = {"client": people.client.pk, "provider_app": people.apps["coinify"].pk, "platform": "coinify"}
    return url, {**source, "email": "linh@example.test", "password": "right"}


def test_a_credential_form_with_no_token_free_sends_nothing_and_counts_no_attempt(
    people: People, canned: CannedProvider, settings: Any
) -> None:
    settings.RATE_LIMIT_MAX_WAIT_SECONDS = 0
    settings.CREDENTIAL_FAILURES_PER_USER = 1
    app = people.apps["coinify"]
    url, form = coinify_form(people)
    adviser = logged_in(people.assigned)
    bucket_empty(app)

    busy = adviser.post(url, form)

    assert busy.status_code == 429
    assert int(busy["Retry-After"]) >= 1
    assert "Coinify: Coinify is busy with the portal&#x27;s other requests right now" in busy.content.decode()
    assert canned.connects == 0
    assert not m.Connection.objects.filter(provider_app=app).exclude(status=m.Status.PENDING).exists()
    assert not m.Credential.objects.filter(connection__provider_app=app).exists()

    bucket_full(app)
    done = adviser.post(url, form)

    # The busy answer cost no attempt: a limit of one failure still lets this one through.
    assert done.status_code == 302
    assert canned.connects == 1
    assert m.Connection.objects.filter(provider_app=app, status=m.Status.ACTIVE).count() == 1
