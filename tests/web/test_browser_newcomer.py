"""The newcomer's path through the demo, in Chromium, as ``make run`` sets it up.

The demo data is what ``seed_demo`` makes (its households, logins and sandbox
subjects), the portal runs in development mode with mail going to the
development outbox, and nothing is done from a command line: the adviser signs
in, sends a reconnect link for the Bloquo connection whose key stopped working,
reads the email in the outbox, and the client opens the link in a browser of
their own, takes a new key pair from the sandbox's sign-in page and reconnects.
Then the adviser starts a connection that the client denies. Every page of the
path passes axe-core's audit. The tests save README screenshots.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from connections import models as m
from connections.demo.world import DEMO_PASSWORD
from portal.outbox import BACKEND as OUTBOX_BACKEND

from .test_browser import _screenshot, axe_violations

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("live_provider_http"),
]

ADVISER = "adviser1"


@pytest.fixture
def demo(live_server: Any, settings: Any, tmp_path: Path) -> str:
    """The demo as ``make run`` serves it: development mode, the outbox, the sandbox's hints, the seeded world."""
    base = live_server.url
    settings.DEBUG = True
    settings.PORTAL_BASE_URL = base
    settings.SANDBOX_BASE_URL = f"{base}/sandbox"
    settings.EMAIL_BACKEND = OUTBOX_BACKEND
    settings.VAR_DIR = tmp_path / "var"
    settings.SANDBOX_SIGN_IN_HINTS = True
    settings.SANDBOX_HINT_PASSWORDS = [DEMO_PASSWORD]
    call_command("seed_demo", verbosity=0)
    return base


def _sign_in(page: Any, base: str) -> None:
    page.goto(f"{base}/login/")
    page.get_by_label("Username").fill(ADVISER)
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")


def _broken_bloquo() -> m.Connection:
    """The demo's Bloquo connection whose key pair the provider no longer accepts (Amara Okafor's)."""
    return m.Connection.objects.select_related("client").get(
        provider_app__provider="bloquo",
        status=m.Status.NEEDS_RECONNECT,
        reason=m.Reason.CREDENTIALS_INVALID,
        client__household__reference="DEMO-001",
    )


def test_a_newcomer_fixes_a_bloquo_connection_through_the_outbox_and_the_sandbox_hints(
    demo: str, browser: Any, page: Any
) -> None:
    base = demo
    connection = _broken_bloquo()
    page.set_default_timeout(20_000)
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    _sign_in(page, base)

    # The household page: the broken card, and the link sent from it.
    page.get_by_role("link", name="Okafor Household").first.click()
    card = page.locator(f"#connection-{connection.pk}")
    expect(card.locator(".badge--needs_reconnect")).to_be_visible()
    card.get_by_role("link", name=re.compile("^Send reconnect link")).click()
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_text(f"Reconnect link sent to {connection.client.email}")).to_be_visible()

    # The email, read in the development outbox: newest first, its link clickable.
    page.get_by_role("link", name="Outbox").click()
    page.get_by_role("heading", name="Outbox").wait_for()
    first_row = page.locator("tbody tr").first
    assert connection.client.email in first_row.inner_text()
    _screenshot(page, "outbox.png")
    first_row.get_by_role("link").click()
    link_url = page.locator("a[href*='/link/']").first.get_attribute("href")
    assert link_url is not None
    assert link_url.startswith(f"{base}/link/")

    # The client, in a browser of their own with no login.
    client_context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    try:
        visitor = client_context.new_page()
        visitor.set_default_timeout(20_000)
        visitor.goto(link_url)
        visitor.get_by_role("heading", name=re.compile("Bloquo")).first.wait_for()
        hints = visitor.get_by_role("link", name="See which test sign-ins and key pairs work")
        assert hints.get_attribute("target") == "_blank"
        with client_context.expect_page() as opened:
            hints.click()
        sign_ins = opened.value
        sign_ins.get_by_role("heading", name="Sandbox sign-ins").wait_for()
        sign_ins.get_by_role("button", name=f"Issue a new secret for {connection.client.name}").first.click()
        issued = sign_ins.get_by_role("status")
        issued.wait_for()
        _screenshot(sign_ins, "sandbox-sign-ins.png")
        client_id, client_secret = (code.inner_text() for code in issued.locator("code.secret").all())
        sign_ins.close()

        visitor.get_by_label("Bloquo client ID").fill(client_id)
        visitor.get_by_label("Bloquo client secret").fill(client_secret)
        visitor.get_by_role("button", name="Connect read-only access").click()
        visitor.get_by_text("Bloquo is connected.").wait_for()
    finally:
        client_context.close()

    connection.refresh_from_db()
    assert connection.status == m.Status.ACTIVE
    assert m.ClientLink.objects.get(connection=connection, status=m.ClientLink.LinkStatus.COMPLETED)
    page.goto(f"{base}/households/{connection.client.household_id}/")
    expect(page.locator(f"#connection-{connection.pk} .badge--active")).to_be_visible()
    assert not [line for line in console if "Content Security Policy" in line or line.startswith("error")]


def test_a_newcomer_sees_a_clear_page_when_the_client_denies_a_new_connection(demo: str, page: Any) -> None:
    base = demo
    household = m.Household.objects.get(reference="DEMO-003")
    page.set_default_timeout(20_000)
    _sign_in(page, base)
    page.goto(f"{base}/households/{household.pk}/")
    page.get_by_role("link", name="Connect an account").click()
    page.get_by_label("Client").select_option(label="Thomas Hale")
    turnqey = m.ProviderApp.objects.get(provider="turnqey")
    page.get_by_label("Provider").select_option(str(turnqey.pk))
    page.get_by_label("Platform").select_option("coinbase")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/sandbox/turnqey/authorize"))
    page.get_by_role("button", name="Deny").click()
    page.wait_for_url(re.compile(r"/connect/turnqey/callback/"))
    expect(page.get_by_role("heading", name="Access was not granted")).to_be_visible()
    expect(page.get_by_text("nothing was connected")).to_be_visible()
    signed_in = page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard")
    expect(signed_in).to_be_visible()
    page.get_by_role("link", name=f"Back to {household.name}").click()
    page.wait_for_url(f"{base}/households/{household.pk}/")
    assert not m.Connection.objects.filter(
        client__household=household, platform="coinbase", status=m.Status.ACTIVE
    ).exists()


def test_the_advisers_pages_pass_the_accessibility_audit(demo: str, browser: Any) -> None:
    """axe-core on each page an adviser meets first, the demo's data on them (its CSP bypassed for the injection)."""
    base = demo
    connection = _broken_bloquo()
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB", bypass_csp=True)
    try:
        page = context.new_page()
        page.set_default_timeout(20_000)
        _sign_in(page, base)
        page.goto(f"{base}/connections/{connection.pk}/send-link/")
        page.get_by_role("button", name="Send the link").click()
        pages = {
            "dashboard": f"{base}/",
            "dashboard, filtered": f"{base}/?status=needs_reconnect",
            "household": f"{base}/households/{connection.client.household_id}/",
            "connection": f"{base}/connections/{connection.pk}/",
            "connect": f"{base}/households/{connection.client.household_id}/connect/",
            "outbox": f"{base}/dev/outbox/",
            "sandbox sign-ins": f"{base}/sandbox/_hints/",
        }
        found = {}
        for name, url in pages.items():
            page.goto(url)
            found[name] = axe_violations(page)
        page.goto(f"{base}/dev/outbox/")
        page.locator("tbody tr").first.get_by_role("link").click()
        found["outbox message"] = axe_violations(page)
        # The sandbox's consent page, with its sign-in hints, as a connect reaches it.
        page.goto(f"{base}/households/{connection.client.household_id}/connect/")
        page.get_by_label("Provider").select_option(str(m.ProviderApp.objects.get(provider="turnqey").pk))
        page.get_by_label("Platform").select_option("kraken")
        page.get_by_role("button", name="Continue").click()
        page.wait_for_url(re.compile(r"/sandbox/turnqey/authorize"))
        found["sandbox consent"] = axe_violations(page)
    finally:
        context.close()
    assert found == {name: [] for name in found}
