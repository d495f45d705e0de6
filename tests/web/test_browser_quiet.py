"""In Chromium: snoozing and muting from the household page, then asking the client about what is left.

The adviser snoozes one broken connection for a week and mutes another from
their cards, sees each card say so, wakes the first, previews the request
(the muted one listed as skipped) and sends it: one email, for the woken one
only. Then the attention list's Ask all preview shows that email behind its
disclosure.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail
from playwright.sync_api import expect

from connections import models as m
from tests.factories import (
    ClientFactory,
    ConnectionFactory,
    FirmFactory,
    HouseholdFactory,
    MembershipFactory,
    ProviderAppFactory,
    UserFactory,
)

from .conftest import PASSWORD

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("live_provider_http"),
]


@pytest.fixture
def quiet_world(live_server: Any, settings: Any) -> dict[str, Any]:
    settings.PORTAL_BASE_URL = live_server.url
    firm = FirmFactory(name="Harbour Wealth")
    adviser = MembershipFactory(firm=firm, user=UserFactory(username="alice", first_name="Alice")).user
    household = HouseholdFactory(firm=firm, name="Nguyen Household", advisers=[adviser])
    client = ClientFactory(household=household, name="Linh Nguyen", email="linh@example.test")
    app = ProviderAppFactory(provider="coinify", name="sandbox")
    broken = {
        platform: ConnectionFactory(
            client=client,
            provider_app=app,
            platform=platform,
            status=m.Status.NEEDS_RECONNECT,
            reason=m.Reason.REVOKED,
            next_check_at=None,
        )
        for platform in ("kraken", "gemini")
    }
    return {"url": live_server.url, "household": household, **broken}


def _card(page: Any, connection: m.Connection) -> Any:
    return page.locator(f"#connection-{connection.pk}")


def test_adviser_snoozes_mutes_and_asks_the_client_from_the_household_page(
    quiet_world: dict[str, Any], page: Any
) -> None:
    url, household = quiet_world["url"], quiet_world["household"]
    kraken, gemini = quiet_world["kraken"], quiet_world["gemini"]
    page.set_default_timeout(20_000)
    page.goto(f"{url}/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/")
    page.goto(f"{url}/households/{household.pk}/")

    # Snooze Kraken for a week from its card: the card says until when, and offers Wake now.
    card = _card(page, kraken)
    card.locator("summary", has_text="Snooze").click()
    card.get_by_role("button", name="1 week Kraken for Linh Nguyen").click()
    page.wait_for_url(f"{url}/households/{household.pk}/")
    expect(page.get_by_text("is snoozed until")).to_be_visible()
    card = _card(page, kraken)
    expect(card.get_by_text(re.compile(r"^Snoozed until .*wakes by itself\.$"))).to_be_visible()
    expect(card.get_by_role("button", name="Wake now Kraken for Linh Nguyen")).to_be_visible()

    # Mute Gemini (say the client closed that account): its card says muted, with Unmute.
    _card(page, gemini).get_by_role("button", name="Mute Gemini for Linh Nguyen").click()
    page.wait_for_url(f"{url}/households/{household.pk}/")
    card = _card(page, gemini)
    expect(card.get_by_text(re.compile(r"^Muted .*until you unmute it\.$"))).to_be_visible()
    expect(card.get_by_role("button", name="Unmute Gemini for Linh Nguyen")).to_be_visible()
    assert card.locator("summary", has_text="Snooze").count() == 0

    # Wake Kraken, then ask the client: the preview lists Gemini as skipped, and the email covers Kraken only.
    _card(page, kraken).get_by_role("button", name="Wake now Kraken for Linh Nguyen").click()
    page.wait_for_url(f"{url}/households/{household.pk}/")
    assert _card(page, kraken).get_by_text("Snoozed until").count() == 0
    page.get_by_role("link", name="Ask the client to reconnect").click()
    expect(page.get_by_role("heading", name="The email, exactly as sent")).to_be_visible()
    email = page.locator("pre.email-preview__body")
    assert "Kraken" in email.inner_text()
    assert "Gemini" not in email.inner_text()
    expect(page.get_by_text(re.compile(r"Gemini.*skipped"))).to_be_visible()
    page.get_by_role("button", name="Send 1 request").click()
    expect(page.get_by_text("Reconnect request sent to Linh Nguyen")).to_be_visible()
    (sent,) = mail.outbox
    assert sent.to == ["linh@example.test"]
    assert "Kraken" in sent.body
    assert "Gemini" not in sent.body
    expect(page.get_by_text("Sent, not opened yet.")).to_be_visible()


def test_the_ask_all_preview_shows_each_recipients_email_behind_a_disclosure(
    quiet_world: dict[str, Any], page: Any
) -> None:
    url = quiet_world["url"]
    page.set_default_timeout(20_000)
    page.goto(f"{url}/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{url}/")
    page.goto(f"{url}/attention/")
    page.get_by_role("button", name=re.compile(r"^Ask all")).click()

    email = page.get_by_role("article", name="Email to linh@example.test")
    expect(email).not_to_be_visible()  # folded: the list stays compact
    page.locator("summary", has_text="Show the email").click()
    expect(email).to_be_visible()
    assert "Harbour Wealth: please reconnect 2 accounts" in email.inner_text()
    assert mail.outbox == []
