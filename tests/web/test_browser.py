"""End to end in Chromium against the live server and the sandbox.

The provider is the sandbox mounted in the same server (``/sandbox/turnqey``):
the adviser signs in, a connection is revoked at the sandbox, a check notices,
the adviser reconnects through the sandbox's consent page and lands back on
the household with the connection active in the same collection. Also the
deny path, and the client-link flow in a fresh browser with no login. The
tests save the screenshots shown in the README into docs/screenshots/.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.core import mail
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import expect

from connections import models as m
from tests.factories import (
    AccountFactory,
    ClientFactory,
    ConnectionEventFactory,
    ConnectionFactory,
    CredentialFactory,
    FirmFactory,
    HouseholdFactory,
    MembershipFactory,
    ProviderAppFactory,
    UserFactory,
)
from tests.sandbox_client import control_headers

from .conftest import PASSWORD

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("live_provider_http"),
]

SCREENSHOTS = Path(settings.BASE_DIR) / "docs" / "screenshots"
TURNQEY_CLIENT_ID = "portal-browser-tests"
TURNQEY_SECRET = "browser-test-client-secret"


@dataclass
class LiveWorld:
    url: str
    adviser: Any
    household: m.Household
    client: m.Client
    app: m.ProviderApp
    connection: m.Connection
    collection: str
    source_account_id: str


def _control(base: str, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{base}/sandbox/_control/{path}", json=payload, headers=control_headers(), timeout=10)
    assert response.status_code in {200, 201}, response.text
    return response.json()


def _scenery(firm: m.Firm, adviser: Any, base: str, nguyen: m.Client) -> None:
    """Other households, so the dashboard looks like a working day. Never checked by these tests."""
    now = timezone.now()
    apps = {
        key: ProviderAppFactory(provider=key, name="sandbox", base_url=f"{base}/sandbox/{key}")
        for key in ("coinify", "bloquo", "dapi")
    }
    rows = [
        ("Okafor Family", "HW-014", "Amara Okafor", "coinify", "coinify", m.Status.NEEDS_RECONNECT, m.Reason.EXPIRED),
        ("Estate of Margaret Hale", "HW-007", "Thomas Hale", "dapi", "binance", m.Status.PENDING, ""),
        ("Lindqvist Family", "HW-022", "Erik Lindqvist", "bloquo", "bloquo", m.Status.DEGRADED, m.Reason.TRANSIENT),
        ("Patel Household", "HW-031", "Priya Patel", "dapi", "kraken", m.Status.ACTIVE, ""),
        ("Moreno García", "HW-019", "Lucía Moreno", "coinify", "coinify", m.Status.ACTIVE, ""),
    ]
    for name, ref, person, provider, platform, status, reason in rows:
        household = HouseholdFactory(firm=firm, name=name, reference=ref, advisers=[adviser])
        client = ClientFactory(household=household, name=person)
        connection = ConnectionFactory(
            client=client,
            provider_app=apps[provider],
            platform=platform,
            status=status,
            reason=reason,
            last_success_at=None if status == m.Status.PENDING else now - timedelta(hours=5 if reason else 0.2),
            degraded_since=now - timedelta(hours=2) if status == m.Status.DEGRADED else None,
            reconnect_by=now + timedelta(minutes=25) if status == m.Status.PENDING else None,
            next_check_at=None
            if status in (m.Status.NEEDS_RECONNECT, m.Status.PENDING)
            else now + timedelta(minutes=9),
        )
        if status != m.Status.PENDING:
            AccountFactory(connection=connection, name="BTC Wallet", currency="BTC", balance=Decimal("0.84210000"))
            CredentialFactory(connection=connection, kind="access", expires_at=now + timedelta(minutes=14))
    # A second, healthy source in the Nguyen household, with its token deadlines.
    coinify = ConnectionFactory(
        client=nguyen,
        provider_app=apps["coinify"],
        platform="coinify",
        last_success_at=now - timedelta(minutes=4),
        next_check_at=now + timedelta(minutes=11),
    )
    CredentialFactory(connection=coinify, kind="access", expires_at=now + timedelta(minutes=12, seconds=30))
    CredentialFactory(connection=coinify, kind="refresh", expires_at=now + timedelta(hours=23))
    AccountFactory(connection=coinify, name="EUR Account", currency="EUR", balance=Decimal("2450.00"))
    AccountFactory(connection=coinify, name="ETH Account", currency="ETH", balance=Decimal("3.10500000"))


@pytest.fixture
def live_world(live_server: Any, settings: Any) -> LiveWorld:
    base = live_server.url
    # The live server is the portal's public address: emailed links lead there.
    settings.PORTAL_BASE_URL = base
    settings.SANDBOX_BASE_URL = f"{base}/sandbox"
    firm = FirmFactory(name="Harbour Wealth")
    adviser = MembershipFactory(
        firm=firm, user=UserFactory(username="alice", first_name="Alice", last_name="Nguyen")
    ).user
    household = HouseholdFactory(firm=firm, name="Nguyen Household", reference="HW-001", advisers=[adviser])
    client = ClientFactory(household=household, name="Linh Nguyen", email="linh@example.test")
    redirect_uri = f"{base}/connect/turnqey/callback/"
    app = ProviderAppFactory(
        provider="turnqey",
        name="sandbox",
        base_url=f"{base}/sandbox/turnqey",
        client_id=TURNQEY_CLIENT_ID,
        client_secret=TURNQEY_SECRET,
        redirect_uri=redirect_uri,
    )
    call_command(
        "sandbox_register_app",
        provider="turnqey",
        client_id=TURNQEY_CLIENT_ID,
        client_secret=TURNQEY_SECRET,
        redirect_uri=redirect_uri,
    )
    # The client approved Coinbase through Turnqey some time ago.
    subject = _control(
        base,
        "subjects",
        {"provider": "turnqey", "client": TURNQEY_CLIENT_ID, "identity": str(client.identity), "platform": "coinbase"},
    )
    household.turnqey_collection = uuid.UUID(subject["collection"])
    household.save()
    connection = ConnectionFactory(
        client=client,
        provider_app=app,
        platform="coinbase",
        external_account_id=subject["source_account_id"],
        grouping={"collection": subject["collection"], "identity": str(client.identity)},
        last_success_at=timezone.now() - timedelta(minutes=20),
    )
    AccountFactory(connection=connection, name="BTC Wallet", currency="BTC", balance=Decimal("0.50000000"))
    ConnectionEventFactory(
        connection=connection,
        kind=m.ConnectionEvent.Kind.CONNECTED,
        to_status="active",
        actor=adviser,
        message="Coinbase via Turnqey: connected.",
        created_at=timezone.now() - timedelta(days=12),
    )
    _scenery(firm, adviser, base, client)
    return LiveWorld(
        url=base,
        adviser=adviser,
        household=household,
        client=client,
        app=app,
        connection=connection,
        collection=subject["collection"],
        source_account_id=subject["source_account_id"],
    )


def _sign_in(page: Any, world: LiveWorld) -> None:
    page.goto(f"{world.url}/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{world.url}/")


def _screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def test_adviser_repairs_a_revoked_connection_in_the_same_collection(live_world: LiveWorld, page: Any) -> None:
    world = live_world
    page.set_default_timeout(20_000)
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    _sign_in(page, world)
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.get_by_role("link", name="Nguyen Household")).to_be_visible()
    _screenshot(page, "dashboard.png")

    # The client revokes access at Coinbase: the sandbox now answers "revoked".
    _control(
        world.url, "actions", {"provider": "turnqey", "action": "revoke", "source_account_id": world.source_account_id}
    )

    page.get_by_role("link", name="Nguyen Household").first.click()
    household_url = page.url
    card = page.locator(f"#connection-{world.connection.pk}")
    card.get_by_role("button", name=re.compile("^Check now")).click()
    # htmx swaps the card in place (the check's note sits inside the card; the
    # no-JavaScript path would reload the page with a message above instead).
    card.locator(".conn__checked").wait_for()
    assert "access was revoked at Coinbase. Ask the client to reconnect." in card.locator(".conn__checked").inner_text()
    expect(card.locator(".badge--needs_reconnect")).to_be_visible()
    assert page.url == household_url
    assert page.locator(".messages").count() == 0
    assert "access was revoked at Coinbase" in page.locator("#live").inner_text()  # announced
    assert not [line for line in console if "Content Security Policy" in line or line.startswith("error")]
    world.connection.refresh_from_db()
    assert world.connection.status == m.Status.NEEDS_RECONNECT
    _screenshot(page, "household.png")

    card.get_by_role("button", name=re.compile("^Reconnect")).click()
    page.wait_for_url(re.compile(r"/sandbox/turnqey/authorize"))
    page.get_by_role("button", name="Approve").click()

    page.wait_for_url(f"{world.url}/households/{world.household.pk}/")
    expect(page.get_by_text("Coinbase via Turnqey reconnected for Linh Nguyen.")).to_be_visible()
    card = page.locator(f"#connection-{world.connection.pk}")
    expect(card.locator(".badge--active")).to_be_visible()
    world.connection.refresh_from_db()
    world.household.refresh_from_db()
    assert world.connection.status == m.Status.ACTIVE
    assert world.connection.external_account_id == world.source_account_id
    assert str(world.household.turnqey_collection) == world.collection
    assert world.connection.grouping.get("collection") == world.collection


def test_adviser_sees_a_clear_page_when_the_client_denies(live_world: LiveWorld, page: Any) -> None:
    world = live_world
    page.set_default_timeout(20_000)
    _sign_in(page, world)
    page.goto(f"{world.url}/households/{world.household.pk}/")
    page.get_by_role("link", name="Connect an account").click()
    page.get_by_label("Client").select_option(label="Linh Nguyen")
    page.get_by_label("Provider").select_option(label="Turnqey (sandbox)")
    page.get_by_label("Platform").select_option("gemini")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/sandbox/turnqey/authorize"))
    page.get_by_role("button", name="Deny").click()
    page.wait_for_url(re.compile(r"/connect/turnqey/callback/"))
    expect(page.get_by_role("heading", name="Access was not granted")).to_be_visible()
    expect(page.get_by_text("nothing was connected")).to_be_visible()
    page.get_by_role("link", name="Back to Nguyen Household").click()
    page.wait_for_url(f"{world.url}/households/{world.household.pk}/")
    assert not m.Connection.objects.filter(platform="gemini", status=m.Status.ACTIVE).exists()
    assert m.AuthorizationRequest.objects.get().outcome == "denied"


def test_client_reconnects_from_the_emailed_link_without_a_login(
    live_world: LiveWorld, browser: Any, page: Any
) -> None:
    world = live_world
    page.set_default_timeout(20_000)
    _control(
        world.url, "actions", {"provider": "turnqey", "action": "revoke", "source_account_id": world.source_account_id}
    )
    _sign_in(page, world)
    page.goto(f"{world.url}/households/{world.household.pk}/")
    card = page.locator(f"#connection-{world.connection.pk}")
    card.get_by_role("button", name=re.compile("^Check now")).click()
    card.locator(".badge--needs_reconnect").wait_for()
    card.get_by_role("link", name=re.compile("^Send reconnect link")).click()
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_text("Reconnect link sent to linh@example.test")).to_be_visible()

    link_url = re.search(r"https?://\S+/link/\S+/", mail.outbox[-1].body).group(0)
    client_context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    try:
        visitor = client_context.new_page()
        visitor.set_default_timeout(20_000)
        visitor.goto(link_url)
        expect(visitor.get_by_role("heading", name="Reconnect your Coinbase account")).to_be_visible()
        expect(visitor.get_by_text("Harbour Wealth asks you to reconnect")).to_be_visible()
        expect(visitor.get_by_text("Read-only.")).to_be_visible()
        _screenshot(visitor, "client-link.png")
        visitor.get_by_role("button", name="Continue to Turnqey").click()
        visitor.wait_for_url(re.compile(r"/sandbox/turnqey/authorize"))
        visitor.get_by_role("button", name="Approve").click()
        visitor.get_by_role("heading", name="Thank you, you are connected").wait_for()
    finally:
        client_context.close()

    world.connection.refresh_from_db()
    assert world.connection.status == m.Status.ACTIVE
    link = m.ClientLink.objects.get()
    assert link.status == m.ClientLink.LinkStatus.COMPLETED
    page.reload()
    expect(page.locator(".link-status--completed").first).to_be_visible()


def test_adviser_connects_through_dapis_connect_page(live_world: LiveWorld, page: Any) -> None:
    world = live_world
    page.set_default_timeout(20_000)
    dapi = m.ProviderApp.objects.get(provider="dapi")
    dapi.redirect_uri = f"{world.url}/connect/dapi/callback/"
    # A changed endpoint forgets the app secret: the admin types one again with it.
    dapi.client_secret = "dapi-browser-app-secret"
    dapi.save()
    call_command(
        "sandbox_register_app",
        provider="dapi",
        client_id=dapi.client_id,
        client_secret=dapi.client_secret,
        redirect_uri=dapi.redirect_uri,
    )
    _sign_in(page, world)
    page.goto(f"{world.url}/households/{world.household.pk}/connect/")
    page.get_by_label("Client").select_option(label="Linh Nguyen")
    page.get_by_label("Provider").select_option(label="Dapi (sandbox)")
    page.get_by_label("Platform").select_option("bitstamp")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/sandbox/dapi/connect"))
    page.get_by_label("Username").fill("linh.bitstamp")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(f"{world.url}/households/{world.household.pk}/")
    expect(page.get_by_text("Bitstamp via Dapi connected for Linh Nguyen.")).to_be_visible()
    connection = m.Connection.objects.get(provider="dapi", platform="bitstamp", client=world.client)
    assert connection.status == m.Status.ACTIVE
    assert set(connection.credentials.values_list("kind", flat=True)) >= {"permanent", "user_secret"}


def test_check_now_past_its_limit_says_why_in_the_card(live_world: LiveWorld, page: Any, settings: Any) -> None:
    """The 429 is swapped into the card like any answer: the adviser reads why, and when to try again."""
    world = live_world
    settings.CHECK_NOW_PER_MINUTE = 1
    page.set_default_timeout(20_000)
    _sign_in(page, world)
    page.goto(f"{world.url}/households/{world.household.pk}/")
    card = page.locator(f"#connection-{world.connection.pk}")
    card.get_by_role("button", name=re.compile("^Check now")).click()
    card.locator(".conn__checked").get_by_text("Checked just now").wait_for()

    card.get_by_role("button", name=re.compile("^Check now")).click()

    card.locator(".conn__checked").get_by_text("Not checked: you asked for 1 check in the last minute").wait_for()
    assert "Try again in about 1 minute." in card.locator(".conn__checked").inner_text()
    assert "Not checked" in page.locator("#live").inner_text()  # announced
    assert page.locator(".messages").count() == 0
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"


def axe_violations(page: Any) -> list[str]:
    """axe-core's WCAG 2.1 A and AA rules (and its best practices) on the page as it stands: "rule: count" each.

    The page's context must allow the injected script (``bypass_csp``): the
    portal's CSP rightly refuses any script it did not serve.
    """
    page.add_script_tag(path=str(AXE))
    return page.evaluate(
        """async () => {
            const result = await axe.run(document, {
                runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]},
            });
            return result.violations.map(v => `${v.id}: ${v.nodes.length} (${v.nodes[0].target})`);
        }"""
    )


def _audit(page: Any) -> list[str]:
    """The checks of an accessibility audit that hold without running the page's script.

    A language, one main landmark, one h1, a title; every visible form control
    with a label; every button and link with a name; no duplicate ids; images
    with alt text. (Playwright's own queries, so they work with JavaScript off.)
    """
    problems: list[str] = []
    if not page.locator("html[lang]").count():
        problems.append("no lang on <html>")
    if page.locator("main").count() != 1:
        problems.append("not exactly one <main>")
    if page.locator("h1").count() != 1:
        problems.append("not exactly one <h1>")
    if not page.title().strip():
        problems.append("no title")
    for control in page.locator("input:not([type=hidden]), select, textarea").all():
        control_id = control.get_attribute("id") or ""
        labelled = (
            (control_id and page.locator(f'label[for="{control_id}"]').count())
            or control.get_attribute("aria-label")
            or control.get_attribute("aria-labelledby")
        )
        if not labelled:
            problems.append(f"unlabelled control {control_id or control.get_attribute('name')}")
    for element in page.locator("button, a[href]").all():
        if not (element.inner_text().strip() or element.get_attribute("aria-label")):
            problems.append(f"nameless {element.evaluate('e => e.outerHTML')[:80]}")
    ids = [i for i in page.locator("[id]").evaluate_all("els => els.map(e => e.id)") if i]
    if len(ids) != len(set(ids)):
        problems.append("duplicate ids")
    if page.locator("img:not([alt])").count():
        problems.append("image without alt")
    return problems


def test_client_fixes_every_connection_from_one_request_without_javascript(
    live_world: LiveWorld, browser: Any, page: Any
) -> None:
    world = live_world
    page.set_default_timeout(20_000)
    _control(
        world.url, "actions", {"provider": "turnqey", "action": "revoke", "source_account_id": world.source_account_id}
    )
    from connections import lifecycle

    lifecycle.connection_check(connection_id=world.connection.pk, force=True)
    world.connection.refresh_from_db()
    assert world.connection.status == m.Status.NEEDS_RECONNECT

    # The adviser: household page, preview of the exact email, send.
    _sign_in(page, world)
    page.goto(f"{world.url}/households/{world.household.pk}/")
    page.get_by_role("link", name="Ask the client to reconnect").click()
    expect(page.get_by_role("heading", name="The email, exactly as sent")).to_be_visible()
    expect(page.get_by_text("Coinbase via Turnqey").first).to_be_visible()
    page.get_by_role("button", name="Send 1 request").click()
    expect(page.get_by_text("Reconnect request sent to Linh Nguyen")).to_be_visible()

    url = re.search(r"https?://\S+/r/\S+/", mail.outbox[-1].body).group(0).replace(settings.PORTAL_BASE_URL, world.url)
    # The audit first, in a browser that runs axe-core on each of the client's pages.
    audit_context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB", bypass_csp=True)
    try:
        auditor = audit_context.new_page()
        auditor.set_default_timeout(20_000)
        auditor.goto(url)
        assert axe_violations(auditor) == []
        request_page = auditor.url
        auditor.goto(f"{request_page}stop/")
        assert axe_violations(auditor) == []
        item = m.ReconnectRequestItem.objects.get()
        auditor.goto(f"{request_page}fix/{item.pk}/")
        assert axe_violations(auditor) == []
    finally:
        audit_context.close()

    visitor_context = browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="en-GB", java_script_enabled=False
    )
    try:
        visitor = visitor_context.new_page()
        visitor.set_default_timeout(20_000)
        visitor.goto(url)
        expect(visitor.get_by_role("heading", name="Reconnect your accounts")).to_be_visible()
        assert "/r/" not in visitor.url  # the token left the address bar
        assert _audit(visitor) == []
        _screenshot(visitor, "reconnect-request.png")
        # Keyboard only: the first Reconnect button is reachable and works with Enter.
        button = visitor.get_by_role("button", name="Reconnect Coinbase via Turnqey")
        button.focus()
        button.press("Enter")
        visitor.wait_for_url(re.compile(r"/sandbox/turnqey/authorize"))
        visitor.get_by_role("button", name="Approve").click()
        visitor.get_by_role("link", name="Back to your list").click()
        expect(visitor.get_by_role("heading", name="Thank you, everything is reconnected")).to_be_visible()
        assert _audit(visitor) == []
        visitor.goto(f"{world.url}/requests/{m.ReconnectRequest.objects.get().pk}/stop/")
        assert _audit(visitor) == []
    finally:
        visitor_context.close()

    world.connection.refresh_from_db()
    assert world.connection.status == m.Status.ACTIVE
    page.reload()
    expect(page.get_by_text("Done: the client fixed 1 of 1.")).to_be_visible()


def test_the_accessibility_audits_catch_what_they_check(page: Any) -> None:
    page.set_content('<html><head><title>x</title></head><body><main><h1>x</h1><input id="q"></main></body></html>')
    assert any(v.startswith("label:") for v in axe_violations(page))
    assert _audit(page) == ["no lang on <html>", "unlabelled control q"]
