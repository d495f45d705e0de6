"""Firm oversight in Chromium: setting up the second factor, and the freshness page (its README screenshot)."""

from __future__ import annotations

import datetime as dt
import math
import random
from base64 import b32decode
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone
from django_otp.oath import TOTP

from connections import models as m
from reports import jobs
from reports.models import FreshnessSnapshot
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

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(settings.BASE_DIR) / "docs" / "screenshots"

# What the page must offer everyone: every image described, every control labelled, every chart titled.
ACCESSIBILITY_PROBLEMS = """() => {
  const problems = [];
  for (const img of document.querySelectorAll('img')) if (!img.hasAttribute('alt')) problems.push('img without alt');
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
    const labelled = (el.id && document.querySelector(`label[for="${el.id}"]`)) || el.getAttribute('aria-label');
    if (!labelled) problems.push(`unlabelled ${el.name}`);
  }
  for (const svg of document.querySelectorAll('svg[role=img]')) {
    const ids = (svg.getAttribute('aria-labelledby') || '').split(' ').filter(Boolean);
    if (!ids.length || !ids.every((id) => document.getElementById(id))) problems.push('chart without title');
  }
  if (!document.querySelector('h1')) problems.push('no h1');
  const ids = [...document.querySelectorAll('[id]')].map((el) => el.id);
  for (const id of new Set(ids)) if (ids.filter((other) => other === id).length > 1) problems.push(`id ${id} twice`);
  return problems;
}"""


def _sign_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_a_member_of_a_firm_that_requires_it_sets_up_the_second_factor(live_server: Any, page: Any) -> None:
    firm = FirmFactory(name="Harbour Wealth", mfa_required=True)
    MembershipFactory(firm=firm, user=UserFactory(username="alice", first_name="Alice"))
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))

    _sign_in(page, live_server.url, "alice")

    page.wait_for_url("**/account/security/setup/**")
    assert page.get_by_role("heading", name="Set up a second factor").is_visible()
    assert page.get_by_alt_text("QR code to add the portal to your authenticator app").is_visible()
    assert page.evaluate(ACCESSIBILITY_PROBLEMS) == []
    key = page.locator(".secret-key").inner_text().strip()
    code = TOTP(b32decode(key)).token()  # what the phone's app shows
    page.get_by_label("Code from your app").fill(f"{code:06d}")
    page.get_by_role("button", name="Turn on").click()

    assert page.get_by_role("heading", name="Second factor is on").is_visible()
    assert page.locator(".recovery-codes li").count() == 10
    page.get_by_role("link", name="I have kept them, continue").click()
    page.wait_for_url(f"{live_server.url}/")
    assert page.get_by_role("heading", name="Dashboard").is_visible()
    assert not [line for line in console if "Content Security Policy" in line or line.startswith("error")]


def _working_day(firm: m.Firm, advisers: list[Any], rng: random.Random) -> None:
    now = timezone.now()
    apps = [
        ProviderAppFactory(provider=p, environment=e, name=e)
        for p, e in (
            ("turnqey", "production"),
            ("coinify", "production"),
            ("bloquo", "production"),
            ("dapi", "sandbox"),
        )
    ]
    names = [
        "Nguyen",
        "Okoro",
        "Fischer",
        "Haddad",
        "Kowalski",
        "Mensah",
        "Rossi",
        "Tanaka",
        "Varga",
        "Walsh",
        "Yilmaz",
    ]
    platforms = {
        "turnqey": ["coinbase", "kraken", "gemini"],
        "coinify": ["coinify"],
        "bloquo": ["bloquo"],
        "dapi": ["binance"],
    }
    for i, name in enumerate(names):
        household = HouseholdFactory(firm=firm, name=f"{name} Household", advisers=[advisers[i % len(advisers)]])
        client = ClientFactory(household=household, name=f"{rng.choice(['Ana', 'Ben', 'Chen', 'Dara', 'Eli'])} {name}")
        for _ in range(rng.randint(1, 3)):
            app = rng.choice(apps)
            status = rng.choices(["active", "degraded", "needs_reconnect"], weights=[8, 1, 1])[0]
            hours = rng.choice([0.2, 1, 3, 8]) if status == "active" else rng.choice([30, 50, 130])
            ConnectionFactory(
                client=client,
                provider_app=app,
                platform=rng.choice(platforms[app.provider]),
                status=status,
                reason="revoked" if status == "needs_reconnect" else ("transient" if status == "degraded" else ""),
                last_success_at=now - dt.timedelta(hours=hours),
            )
    today = timezone.localdate()
    FreshnessSnapshot.objects.bulk_create(
        FreshnessSnapshot(
            firm=firm,
            day=today - dt.timedelta(days=d),
            window_hours=24,
            households=11,
            households_with_data=11,
            households_fresh=max(0, min(11, round(5.5 + 1.5 * math.sin(d / 7) - d / 40 + rng.uniform(-0.8, 0.8)))),
            needs_reconnect=rng.randint(1, 4),
            degraded=rng.randint(0, 3),
        )
        for d in range(1, 90)
        if d not in (40, 41)  # a gap: the beat was down those days
    )
    jobs.freshness_snapshot_take()


def test_firm_admin_reads_the_freshness_page(live_server: Any, page: Any) -> None:
    firm = FirmFactory(name="Harbour Wealth")
    advisers = [
        MembershipFactory(firm=firm, user=UserFactory(username=n, first_name=n.title(), last_name="Adviser")).user
        for n in ("alice", "bob", "chidi")
    ]
    MembershipFactory(firm=firm, user=UserFactory(username="carol", first_name="Carol"), role="firm_admin")
    _working_day(firm, advisers, random.Random(16))
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))

    _sign_in(page, live_server.url, "carol")
    page.get_by_role("link", name="Data freshness").click()

    page.wait_for_url("**/reports/freshness/")
    assert page.get_by_role("heading", name="Data freshness", level=1).is_visible()
    chart = page.get_by_role("img", name="Share of households whose every connection is fresh, last 90 days")
    assert chart.is_visible()
    assert page.locator(".chart__dot").count() == 88  # 87 earlier days and today
    assert page.get_by_role("heading", name="By adviser").is_visible()
    assert page.evaluate(ACCESSIBILITY_PROBLEMS) == []
    assert not [line for line in console if "Content Security Policy" in line or line.startswith("error")]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "freshness.png"), full_page=True)

    page.get_by_text("The figures as a table").click()
    assert page.locator("details.data-table table tbody tr").count() == 88
