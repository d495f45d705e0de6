"""Rendered pages: no inline script, no inline event handler, a strict CSP, no framing, no referrer where it matters.

The Content Security Policy forbids inline script; these tests make sure no
page depends on it (a page that did would silently break in the browser) and
that the pages whose URL carries a secret (provider callbacks, client links)
are served with ``Referrer-Policy: no-referrer``, so that secret never leaves
in a Referer header.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from connections import models as m
from tests.factories import ConnectionEventFactory, CredentialFactory, registered_model_admins

from .conftest import TURNQEY_SUCCESS, CannedProvider, People, logged_in, start_connect

# <script type="..."> values that are data, never executed.
DATA_SCRIPT_TYPES = {"application/json", "application/ld+json", "text/template"}


class InlineCodeFinder(HTMLParser):
    """Collects what a strict CSP would block or what runs code from markup."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self._in_inline_script = False
        self.meta_referrer: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name.lower(): (value or "") for name, value in attrs}
        for name, value in values.items():
            if name.startswith("on"):
                self.problems.append(f"<{tag} {name}=...> inline event handler")
            if name.startswith(("hx-on", "data-hx-on")):
                self.problems.append(f"<{tag} {name}=...> htmx inline handler")
            if name in {"href", "src", "action", "formaction"} and value.strip().lower().startswith("javascript:"):
                self.problems.append(f"<{tag} {name}=javascript:...>")
        if tag == "script" and not values.get("src") and values.get("type", "").lower() not in DATA_SCRIPT_TYPES:
            self._in_inline_script = True
        if tag == "meta" and values.get("name", "").lower() == "referrer":
            self.meta_referrer = values.get("content")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_inline_script = False

    def handle_data(self, data: str) -> None:
        if self._in_inline_script and data.strip():
            self.problems.append(f"inline <script>: {data.strip()[:60]!r}")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def scan(html: str) -> InlineCodeFinder:
    finder = InlineCodeFinder()
    finder.feed(html)
    finder.close()
    return finder


def csp_directives(response: Any) -> dict[str, list[str]]:
    header = response.get("Content-Security-Policy", "")
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


def test_the_scanner_finds_inline_code() -> None:
    finder = scan(
        '<script>alert(1)</script><script src="/s.js"></script><a onclick="x()">a</a>'
        '<button hx-on:click="y()">b</button><a href="javascript:z()">c</a>'
        '<script type="application/json">{"a": 1}</script>'
    )
    assert len(finder.problems) == 4


# --- the pages -----------------------------------------------------------------------------------------


def _link_url(adviser: Client, connection: m.Connection) -> str:
    mail.outbox.clear()
    response = adviser.post(reverse("connection_link_send", args=[connection.pk]))
    assert response.status_code == 302
    match = re.search(r"https?://[^/\s]+(/link/[^/\s]+/)", mail.outbox[-1].body)
    assert match is not None
    return match.group(1)


@pytest.fixture
def broken(people: People) -> m.Connection:
    connection = people.connection
    m.Connection.objects.filter(pk=connection.pk).update(status=m.Status.NEEDS_RECONNECT, reason=m.Reason.REVOKED)
    CredentialFactory(connection=connection, kind="access", value="page-test-access-token")
    ConnectionEventFactory(connection=connection, message="Checked.", details={"stage": "probe"})
    connection.refresh_from_db()
    return connection


PageGetter = Callable[[People, m.Connection], Any]


def _adviser_get(path: Callable[[People, m.Connection], str]) -> PageGetter:
    return lambda people, connection: logged_in(people.assigned).get(path(people, connection))


def _callback_page(outcome: str) -> PageGetter:
    def get(people: People, connection: m.Connection) -> Any:
        adviser = logged_in(people.assigned)
        state = start_connect(adviser, people.household, people.apps["turnqey"])
        params = {"state": state, **TURNQEY_SUCCESS}
        if outcome == "denied":
            params["status"] = "denied"
        elif outcome == "bad":
            params["extra"] = "1"
        elif outcome == "unknown":
            params["state"] = "not-a-state"
        return adviser.get(f"{reverse('connect_callback', args=['turnqey'])}?{urlencode(params)}")

    return get


def _link_page(kind: str) -> PageGetter:
    def get(people: People, connection: m.Connection) -> Any:
        url = _link_url(logged_in(people.assigned), connection)
        visitor = Client()
        if kind == "tampered":
            return visitor.get(url[:-3] + "x/")
        if kind == "expired":
            m.ClientLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
        if kind == "continue":
            return visitor.post(url)
        return visitor.get(url)

    return get


PAGES: dict[str, PageGetter] = {
    "login": lambda people, connection: Client().get(reverse("login")),
    "password reset": lambda people, connection: Client().get(reverse("password_reset")),
    "dashboard": _adviser_get(lambda p, c: reverse("dashboard")),
    "needs attention": _adviser_get(lambda p, c: reverse("attention_list")),
    "household": _adviser_get(lambda p, c: reverse("household_detail", args=[p.household.pk])),
    "connect": _adviser_get(lambda p, c: reverse("household_connect", args=[p.household.pk])),
    "connection": _adviser_get(lambda p, c: reverse("connection_detail", args=[c.pk])),
    "reconnect": _adviser_get(lambda p, c: reverse("connection_reconnect", args=[c.pk])),
    "disconnect": _adviser_get(lambda p, c: reverse("connection_disconnect", args=[c.pk])),
    "send link": _adviser_get(lambda p, c: reverse("connection_link_send", args=[c.pk])),
    "new link": _adviser_get(lambda p, c: reverse("household_link_new", args=[p.household.pk])),
    "not found": _adviser_get(lambda p, c: reverse("household_detail", args=[p.foreign_household.pk])),
    "no firm": lambda people, connection: logged_in(people.no_membership).get(reverse("dashboard")),
    "admin login": lambda people, connection: Client().get(reverse("admin:login")),
    "admin index": lambda people, connection: logged_in(people.superuser).get(reverse("admin:index")),
    "callback approved": _callback_page("approved"),
    "callback denied": _callback_page("denied"),
    "callback bad parameters": _callback_page("bad"),
    "callback unknown state": _callback_page("unknown"),
    "link": _link_page("open"),
    "link continue": _link_page("continue"),
    "link tampered": _link_page("tampered"),
    "link expired": _link_page("expired"),
}
# Pages whose URL carries a secret, or that a provider redirect lands on.
PRIVATE_PAGES = {name for name in PAGES if name.startswith(("callback", "link"))}


@pytest.mark.parametrize("page_name", sorted(PAGES))
def test_pages_have_no_inline_script_and_a_strict_csp(
    people: People, broken: m.Connection, canned: CannedProvider, page_name: str
) -> None:
    response = PAGES[page_name](people, broken)

    assert response.status_code < 500
    directives = csp_directives(response)
    assert directives.get("script-src") == ["'self'"], response.get("Content-Security-Policy")
    assert directives.get("frame-ancestors") == ["'none'"]
    assert response["X-Frame-Options"] == "DENY"
    if response.get("Content-Type", "").startswith("text/html") and response.content:
        assert scan(response.content.decode()).problems == []


def test_every_admin_page_has_no_inline_script(people: People, broken: m.Connection) -> None:
    """The changelist and one change page of every registered model."""
    superuser = logged_in(people.superuser)
    visited = 0
    for model, model_admin in registered_model_admins():
        opts = model._meta
        changelist = superuser.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        assert changelist.status_code == 200, opts.label
        assert scan(changelist.content.decode()).problems == [], opts.label
        row = model_admin.get_queryset(changelist.wsgi_request).first()
        if row is not None and model_admin.has_view_permission(changelist.wsgi_request, row):
            change = superuser.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[row.pk]))
            assert change.status_code == 200, opts.label
            assert scan(change.content.decode()).problems == [], opts.label
        visited += 1
    assert visited >= 8


@pytest.mark.parametrize("page_name", sorted(PRIVATE_PAGES))
def test_callback_and_link_pages_send_no_referrer(
    people: People, broken: m.Connection, canned: CannedProvider, page_name: str
) -> None:
    response = PAGES[page_name](people, broken)

    assert response["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response.get("Cache-Control", "")
    if response.status_code != 302:
        assert scan(response.content.decode()).meta_referrer == "no-referrer"
