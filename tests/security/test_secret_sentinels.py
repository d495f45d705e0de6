"""Every flow, run with sentinel secrets, and proof that no secret surfaces anywhere it must not.

The portal is driven as people drive it (Django's test client: sign-in,
connect on each provider, consent pages, callbacks, credential forms, check
now, client links, disconnect, the admin) and as the jobs drive it (sweep,
checks, app tokens, housekeeping, digests), against the sandbox behind a live
server, so every provider call goes over real HTTP.

Secrets are either chosen (distinctive sentinel strings: the apps' client
secrets, the client's Coinify password, a Bloquo key secret, the adviser's
portal password, wrong passwords typed by mistake) or harvested as they
appear (every credential the portal stores, after every step; the Coinify
offline token; Dapi's access code and user secret; each authorization state
and client link token; the encryption keys and SECRET_KEY).

Then none of them may appear in: log records of any logger at DEBUG (message,
arguments, traceback), Celery task arguments, ConnectionEvent rows (message,
details), the portal's database outside encrypted columns (raw SQL, so
ciphertext is what is read), sessions, rendered HTML, the portal's redirect
Locations, the sandbox's request log, exception texts, or email.

Two things are in URLs by design and are allowed only there: the ``state``
in the redirect to the provider's authorize page, and a client link's token
in the link itself (the emailed URL, and the link page's own form, which
posts back to the page's URL).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from celery.app.task import Task
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core import mail
from django.db import connection as db_connection
from django.test import Client
from django.urls import reverse

from connections import lifecycle, tasks
from connections import models as m
from connections.providers.errors import ProviderError
from tests.factories import MembershipFactory, UserFactory, registered_model_admins
from tests.faults.support import COINIFY_PARTNER, SandboxControl, portal_on_sandbox

TAG = uuid.uuid4().hex[:10]
SENTINELS = {
    "turnqey client secret": f"SENTINEL-tq-client-secret-{TAG}",
    "dapi app secret": f"SENTINEL-dapi-app-secret-{TAG}",
    "coinify password": f"SENTINEL-coinify-password-{TAG}",
    "coinify wrong password": f"SENTINEL-coinify-wrong-password-{TAG}",
    "bloquo client secret": f"SENTINEL-bloquo-client-secret-{TAG}",
    "bloquo wrong secret": f"SENTINEL-bloquo-wrong-secret-{TAG}",
    "adviser password": f"SENTINEL-adviser-password-{TAG}",
}
_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_ACTION = re.compile(r'<form method="post" action="([^"]+)"')
_USERNAME = re.compile(r'id="id_username"[^>]*\svalue="([^"]*)"')


@dataclass
class Seen:
    """Everything the flows produced that a secret must not reach."""

    secrets: dict[str, str] = field(default_factory=dict)  # value -> what it is (stored or typed secrets)
    flow_secrets: dict[str, str] = field(default_factory=dict)  # states, access codes, link tokens
    responses: list[tuple[str, Any]] = field(default_factory=list)  # (request path, response)
    enqueued: list[tuple[str, Any, Any]] = field(default_factory=list)
    exception_texts: list[str] = field(default_factory=list)

    def secret(self, value: str, what: str) -> None:
        if value and len(value) >= 6:
            self.secrets[value] = what

    def flow_secret(self, value: str, what: str) -> None:
        if value and len(value) >= 6:
            self.flow_secrets[value] = what

    def harvest(self) -> None:
        """Every credential the portal holds right now (connections' and apps')."""
        for row in m.Credential.objects.all():
            self.secret(row.value, f"{row.kind} credential")


class RecordingClient(Client):
    """A browser whose every response is kept for inspection."""

    seen: Seen

    def request(self, **request: Any) -> Any:
        response = super().request(**request)
        self.seen.responses.append((request.get("PATH_INFO", ""), response))
        return response


def make_browser(seen: Seen, user: Any = None) -> RecordingClient:
    client = RecordingClient()
    client.seen = seen
    if user is not None:
        client.force_login(user)
    return client


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def consent(client: RecordingClient, url: str, *, username: str = "") -> str:
    """Play the user on a provider's consent or Connect page; returns where the provider sends the browser."""
    page = client.get(_path(url))
    assert page.status_code == 200, page.content[:300]
    html = page.content.decode()
    token, action = _CSRF.search(html), _ACTION.search(html)
    assert token
    assert action
    prefilled = _USERNAME.search(html)
    answer = client.post(
        _path(unescape(action.group(1))) if action.group(1).startswith("http") else unescape(action.group(1)),
        {
            "csrfmiddlewaretoken": token.group(1),
            "decision": "approve",
            "username": username or (unescape(prefilled.group(1)) if prefilled else f"user-{TAG}"),
        },
    )
    assert answer.status_code == 302, answer.content[:300]
    return answer["Location"]


def connect_by_redirect(client: RecordingClient, seen: Seen, household: m.Household, app: m.ProviderApp, platform: str):
    started = client.post(
        reverse("household_connect", args=[household.pk]),
        {"client": household.clients.first().pk, "provider_app": app.pk, "platform": platform},
    )
    assert started.status_code == 302, started.content[:500]
    seen.flow_secret(parse_qs(urlsplit(started["Location"]).query)["state"][0], "authorization state")
    back = consent(client, started["Location"], username=f"{platform}-user-{TAG}")
    params = parse_qs(urlsplit(back).query)
    for name in ("accessCode",):
        if name in params:
            seen.flow_secret(params[name][0], "Dapi access code")
    if "userSecret" in params:
        seen.secret(params["userSecret"][0], "Dapi user secret")
    done = client.get(_path(back))
    assert done.status_code in (200, 302), done.content[:500]
    seen.harvest()
    return done


def connect_by_form(
    client: RecordingClient, household: m.Household, app: m.ProviderApp, platform: str, fields: dict[str, str]
) -> Any:
    source = {"client": household.clients.first().pk, "provider_app": app.pk, "platform": platform}
    started = client.post(reverse("household_connect", args=[household.pk]), source)
    assert started.status_code == 302, started.content[:500]
    form = client.get(started["Location"])
    assert form.status_code == 200
    # The credential form carries the source choice along with the typed credentials.
    return client.post(started["Location"], {**source, **fields})


def _texts_of_logs(records: Iterable[logging.LogRecord]) -> Iterable[tuple[str, str]]:
    formatter = logging.Formatter()
    for record in records:
        parts = [str(record.msg)]
        try:
            parts.append(record.getMessage())
        except Exception:
            parts.append(repr(record.args))
        if record.exc_info and record.exc_info[0] is not None:
            parts.append(formatter.formatException(record.exc_info))
        parts += [record.exc_text or "", record.stack_info or ""]
        yield f"log {record.name}", "\n".join(parts)


def _database_texts() -> Iterable[tuple[str, str]]:
    """Every row of every portal table, as raw SQL returns it (encrypted columns as ciphertext)."""
    with db_connection.cursor() as cursor:
        for table in db_connection.introspection.table_names():
            if table.startswith("sandbox_"):
                continue  # the provider's own store: it holds what it issued, as a provider does
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - table names from introspection
            yield f"table {table}", repr(cursor.fetchall())
    for session in Session.objects.all():
        yield "session", json.dumps(session.get_decoded(), default=str)


def _leaks(texts: Iterable[tuple[str, str]], secrets: dict[str, str]) -> list[str]:
    found = []
    for where, text in texts:
        for value, what in secrets.items():
            if value in text:
                found.append(f"{what} found in {where}")
    return sorted(set(found))


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Seen:
    record = Seen()
    original = Task.apply_async

    def apply_async(self: Task, args: Any = None, kwargs: Any = None, *rest: Any, **options: Any) -> Any:
        record.enqueued.append((self.name, args, kwargs))
        return original(self, args, kwargs, *rest, **options)

    monkeypatch.setattr(Task, "apply_async", apply_async)
    for what, value in SENTINELS.items():
        record.secret(value, what)
    for key in settings.TOKEN_ENCRYPTION_KEYS:
        record.secret(key, "encryption key")
    record.secret(settings.SECRET_KEY, "SECRET_KEY")
    return record


def test_no_secret_surfaces_in_any_flow(
    live_server: Any, transactional_db: None, settings: Any, caplog: pytest.LogCaptureFixture, seen: Seen
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    settings.RATE_LIMIT_REDIS_URL = ""
    # The apps' redirect URIs (portal_on_sandbox) must be the portal's own callbacks.
    settings.PORTAL_BASE_URL = "http://testserver"
    sandbox = SandboxControl(live_server.url)
    sandbox.reset()
    portal = portal_on_sandbox(
        sandbox, secrets={"turnqey": SENTINELS["turnqey client secret"], "dapi": SENTINELS["dapi app secret"]}
    )
    apps, household = portal.apps, portal.household
    firm = household.firm
    adviser = UserFactory(username=f"adviser-{TAG}")
    adviser.set_password(SENTINELS["adviser password"])
    adviser.save()
    MembershipFactory(user=adviser, firm=firm)
    household.advisers.add(adviser)
    MembershipFactory(user=UserFactory(username=f"boss-{TAG}"), firm=firm, role=m.Membership.Role.FIRM_ADMIN)
    superuser = UserFactory(username=f"root-{TAG}", is_staff=True, is_superuser=True)
    client_email = household.clients.first().email
    coinify_user = sandbox.subject(
        "coinify", email=client_email, password=SENTINELS["coinify password"], partner_id=COINIFY_PARTNER
    )
    seen.secret(coinify_user["offline_token"], "Coinify offline token")
    bloquo_pair = sandbox.subject("bloquo", client_secret=SENTINELS["bloquo client secret"])
    sandbox.lifetimes("coinify", access=150)  # every check renews
    sandbox.lifetimes("bloquo", access=150)

    # Sign in with a password, as a person does.
    web = make_browser(seen)
    login_page = web.get(reverse("login"))
    assert login_page.status_code == 200
    signed_in = web.post(reverse("login"), {"username": adviser.username, "password": SENTINELS["adviser password"]})
    assert signed_in.status_code == 302
    web.post(reverse("login"), {"username": adviser.username, "password": SENTINELS["coinify wrong password"]})
    web = make_browser(seen, adviser)

    # Connect on each provider: two redirect flows, two credential forms (and typing mistakes).
    connect_by_redirect(web, seen, household, apps["turnqey"], "coinbase")
    connect_by_redirect(web, seen, household, apps["dapi"], "binance")
    wrong = connect_by_form(
        web,
        household,
        apps["coinify"],
        "coinify",
        {"email": client_email, "password": SENTINELS["coinify wrong password"]},
    )
    assert wrong.status_code == 400
    done = connect_by_form(
        web, household, apps["coinify"], "coinify", {"email": client_email, "password": SENTINELS["coinify password"]}
    )
    assert done.status_code == 302, re.sub(r"<[^>]+>", " ", done.content.decode())[-3000:]
    wrong = connect_by_form(
        web,
        household,
        apps["bloquo"],
        "bloquo",
        {"clientId": bloquo_pair["client_id"], "clientSecret": SENTINELS["bloquo wrong secret"]},
    )
    assert wrong.status_code == 400
    done = connect_by_form(
        web,
        household,
        apps["bloquo"],
        "bloquo",
        {"clientId": bloquo_pair["client_id"], "clientSecret": SENTINELS["bloquo client secret"]},
    )
    assert done.status_code == 302, done.content[:500]
    seen.harvest()
    connections = {c.provider: c for c in m.Connection.objects.filter(household=household, status=m.Status.ACTIVE)}
    assert set(connections) == {"turnqey", "dapi", "coinify", "bloquo"}

    # Check now (renew + probe), with and without htmx; then the jobs.
    for connection in connections.values():
        assert web.post(reverse("connection_check", args=[connection.pk])).status_code == 302
        seen.harvest()
        card = web.post(reverse("connection_check", args=[connection.pk]), HTTP_HX_REQUEST="true")
        assert card.status_code == 200
        seen.harvest()
    m.Connection.objects.filter(household=household).update(next_check_at=None)
    m.Connection.objects.filter(household=household, status=m.Status.ACTIVE).update(
        next_check_at="2000-01-01T00:00:00Z"
    )
    swept = tasks.sweep()
    seen.harvest()
    tasks.refresh_app_tokens()
    tasks.housekeeping()
    seen.harvest()
    assert swept == len(connections)
    assert any(name.startswith("connections.check_connection") for name, _a, _k in seen.enqueued), seen.enqueued

    # Revoked at the providers: checks notice, messages explain.
    sandbox.act("coinify", "revoke", user_id=coinify_user["user_id"])
    sandbox.act("bloquo", "revoke", customer_id=bloquo_pair["customer_id"])
    sandbox.act("dapi", "delink", user_id=connections["dapi"].external_account_id)
    for provider in ("coinify", "bloquo", "dapi"):
        result = lifecycle.connection_check(connection_id=connections[provider].pk, force=True)
        seen.exception_texts.append(result.message)
        connections[provider].refresh_from_db()
        assert connections[provider].status == m.Status.NEEDS_RECONNECT, (provider, result)
    # A provider error raised straight from a client, with the secrets it was given.
    for provider in ("coinify", "bloquo", "dapi"):
        state = lifecycle.connection_state(connection=connections[provider])
        client = lifecycle.client_for_app(app=apps[provider])
        for call in (client.renew, client.probe):
            try:
                call(connection=state)
            except ProviderError as exc:
                seen.exception_texts += [str(exc), repr(exc), exc.message]
    tasks.send_digests()

    # The client reconnects through a link: a credential form (Coinify) and a redirect flow (Turnqey).
    sandbox.act("coinify", "restore", user_id=coinify_user["user_id"])
    mail.outbox.clear()
    assert web.post(reverse("connection_link_send", args=[connections["coinify"].pk])).status_code == 302
    link_path = re.search(r"https?://[^/\s]+(/link/[^/\s]+/)", mail.outbox[-1].body).group(1)
    token = link_path.split("/")[2]
    seen.flow_secret(token, "client link token")
    seen.flow_secret(token.split(":")[0], "client link token")
    visitor = make_browser(seen)
    assert visitor.get(link_path).status_code == 200
    assert (
        visitor.post(link_path, {"email": client_email, "password": SENTINELS["coinify wrong password"]}).status_code
        == 400
    )
    assert (
        visitor.post(link_path, {"email": client_email, "password": SENTINELS["coinify password"]}).status_code == 200
    )
    seen.harvest()
    sandbox.act("turnqey", "revoke", identity=str(household.clients.first().identity), platform="coinbase")
    lifecycle.connection_check(connection_id=connections["turnqey"].pk, force=True)
    sandbox.act("turnqey", "restore", identity=str(household.clients.first().identity), platform="coinbase")
    assert web.post(reverse("connection_link_send", args=[connections["turnqey"].pk])).status_code == 302
    link_path = re.search(r"https?://[^/\s]+(/link/[^/\s]+/)", mail.outbox[-1].body).group(1)
    seen.flow_secret(link_path.split("/")[2], "client link token")
    seen.flow_secret(link_path.split("/")[2].split(":")[0], "client link token")
    visitor = make_browser(seen)
    assert visitor.get(link_path).status_code == 200
    onward = visitor.post(link_path)
    assert onward.status_code == 302
    seen.flow_secret(parse_qs(urlsplit(onward["Location"]).query)["state"][0], "authorization state")
    back = consent(visitor, onward["Location"], username=f"coinbase-user-{TAG}")  # the same account as before
    assert visitor.get(_path(back)).status_code == 200
    seen.harvest()
    link_emails = list(mail.outbox)

    # Pages people look at, and the admin.
    for url in (
        reverse("dashboard"),
        reverse("attention_list"),
        reverse("household_detail", args=[household.pk]),
        *[reverse("connection_detail", args=[c.pk]) for c in connections.values()],
    ):
        assert web.get(url).status_code == 200
    staff = make_browser(seen, superuser)
    for model, model_admin in registered_model_admins():
        opts = model._meta
        changelist = staff.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        assert changelist.status_code == 200
        for row in model_admin.get_queryset(changelist.wsgi_request)[:5]:
            staff.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[row.pk]))

    # Disconnect: revoked at the provider where it can be, secrets deleted.
    for provider in ("coinify", "bloquo", "dapi", "turnqey"):
        assert web.post(reverse("connection_disconnect", args=[connections[provider].pk])).status_code == 302
    assert not m.Credential.objects.filter(connection__household=household).exists()

    # --- the proof ------------------------------------------------------------------------------
    assert len(seen.secrets) >= len(SENTINELS) + 8, "the flows should have produced many secrets to look for"
    everything = {**seen.secrets, **seen.flow_secrets}

    assert _leaks(_texts_of_logs(caplog.records), everything) == []
    assert _leaks((("task", repr(entry)) for entry in seen.enqueued), everything) == []
    event_texts = (
        (f"event {e.kind}", f"{e.message}\n{json.dumps(e.details)}\n{e.actor_label}")
        for e in m.ConnectionEvent.objects.all()
    )
    assert _leaks(event_texts, everything) == []
    assert _leaks(_database_texts(), everything) == []
    assert _leaks((("exception", text) for text in seen.exception_texts), everything) == []
    sandbox_paths = (("sandbox request log", row["path"]) for row in sandbox.requests())
    assert _leaks(sandbox_paths, everything) == []

    html_leaks = []
    location_leaks = []
    for path, response in seen.responses:
        if path.startswith("/sandbox/"):
            continue  # the provider's pages, not the portal's
        own_url_secrets = {v: w for v, w in seen.flow_secrets.items() if v in path}
        allowed_here = {v: w for v, w in everything.items() if v not in own_url_secrets}
        if not getattr(response, "streaming", False):
            html_leaks += _leaks([(f"HTML of {path}", response.content.decode(errors="replace"))], allowed_here)
        location = response.get("Location", "")
        if location:
            to_provider = location.startswith(live_server.url + "/sandbox/")
            checked = seen.secrets if to_provider else allowed_here  # the state rides to the provider by design
            location_leaks += _leaks([(f"redirect from {path}", location)], checked)
    assert html_leaks == []
    assert location_leaks == []

    mail_leaks = []
    for message in mail.outbox + link_emails:
        bodies = [message.subject, message.body] + [alt[0] for alt in getattr(message, "alternatives", [])]
        mail_leaks += _leaks([(f"email to {message.to}", "\n".join(bodies))], seen.secrets)
    assert mail_leaks == []
