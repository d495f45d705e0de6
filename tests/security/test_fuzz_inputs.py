"""Bad input, generated: callbacks, client links and object ids answer with a refusal, never a server error.

Hypothesis writes the query strings (raw bytes as a browser or an attacker
might send them, and well-formed ones with hostile values), link tokens
(random, and mutations of a genuine one) and form posts. The provider clients
are the real ones, pointed at a closed local port, so their parsing of the
callback runs for real and any network step fails fast as a provider error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from connections import lifecycle
from connections import models as m

from .conftest import People, logged_in, start_connect

EXAMPLES = 150
FUZZ = hsettings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CALLBACK_PROVIDERS = ("turnqey", "dapi")
CALLBACK_NAMES = {
    "turnqey": ["state", "identity", "collection", "platform", "status", "error_description"],
    "dapi": ["state", "accessCode", "connectionID", "userSecret", "userID", "tokenID", "error", "error_description"],
}
# A refusal (400) or, with a genuine state, one of the outcomes a person can see.
NO_STATE_STATUSES = {302, 400}
WITH_STATE_STATUSES = {200, 302, 400, 403, 409, 410, 502}
LINK_STATUSES = {400, 404, 410}

hostile_text = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        [
            "",
            "success",
            "denied",
            "error",
            "access_denied",
            "<script>alert(1)</script>",
            "' OR 1=1 --",
            "../../etc/passwd",
            "%00",
            "\x00",
            "a" * 3000,
            "https://evil.example/",
            "coinbase",
            "00000000-0000-0000-0000-000000000000",
        ]
    ),
)


def raw_query(names: list[str]) -> st.SearchStrategy[str]:
    """A query string as bytes on the wire (decoded as WSGI does, latin-1), or built from hostile pairs."""
    pairs = st.lists(st.tuples(st.one_of(st.sampled_from(names), st.text(max_size=12)), hostile_text), max_size=8)
    return st.one_of(
        st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
        pairs.map(lambda p: urlencode(p)),
        pairs.map(lambda p: "&".join(f"{k}={v}" for k, v in p).encode("utf-8").decode("latin-1")),
    )


@pytest.fixture
def unreachable_providers(people: People, settings: Any, allow_hosts: Callable[..., None]) -> People:
    """Real clients, a closed port: every network step fails at once as a provider error."""
    settings.PROVIDER_CONNECT_TIMEOUT = 0.5
    for provider in m.Provider.values:
        allow_hosts(provider, "sandbox", "127.0.0.1:9")
    m.ProviderApp.objects.update(base_url="http://127.0.0.1:9", connect_url="")
    lifecycle.clients_forget()
    for app in people.apps.values():
        app.refresh_from_db()
    return people


def _callback(client: Client, provider: str, query: str) -> Any:
    return client.get(reverse("connect_callback", args=[provider]), QUERY_STRING=query)


@pytest.mark.parametrize("provider", CALLBACK_PROVIDERS)
@pytest.mark.parametrize("signed_in", [True, False], ids=["adviser", "anonymous"])
def test_generated_callback_query_strings_get_a_redirect_or_a_400(
    unreachable_providers: People, provider: str, signed_in: bool
) -> None:
    browser = logged_in(unreachable_providers.assigned) if signed_in else Client()

    @FUZZ
    @given(query=raw_query(CALLBACK_NAMES[provider]))
    def run(query: str) -> None:
        response = _callback(browser, provider, query)
        assert response.status_code in NO_STATE_STATUSES, (query, response.status_code)

    run()
    assert m.AuthorizationRequest.objects.filter(used_at__isnull=False).count() == 0


@pytest.mark.parametrize("provider", CALLBACK_PROVIDERS)
def test_generated_parameters_around_a_genuine_state_never_break_the_callback(
    unreachable_providers: People, provider: str
) -> None:
    people = unreachable_providers
    browser = logged_in(people.assigned)
    app = people.apps[provider]
    # Starting needs no network for Dapi; Turnqey's start is pure too (a signed URL).
    platform = "coinbase" if provider == "turnqey" else "binance"
    names = [n for n in CALLBACK_NAMES[provider] if n != "state"]

    @FUZZ
    @given(
        params=st.dictionaries(st.sampled_from(names), hostile_text, max_size=len(names)),
        extra=st.lists(st.tuples(st.text(min_size=1, max_size=10), hostile_text), max_size=2),
    )
    def run(params: dict[str, str], extra: list[tuple[str, str]]) -> None:
        state = start_connect(browser, people.household, app, platform=platform)
        query = urlencode([("state", state), *params.items(), *extra])
        response = _callback(browser, provider, query)
        assert response.status_code in WITH_STATE_STATUSES, (query, response.status_code)

    run()


@pytest.fixture
def genuine_link(people: People) -> str:
    """The path of a working reconnect link for a redirect-flow connection."""
    adviser = logged_in(people.assigned)
    mail.outbox.clear()
    response = adviser.post(reverse("connection_link_send", args=[people.connection.pk]))
    assert response.status_code == 302
    body = mail.outbox[-1].body
    start = body.index("/link/")
    return body[start : body.index("/", start + len("/link/")) + 1]


def test_generated_link_tokens_are_refused(people: People, genuine_link: str) -> None:
    visitor = Client()

    @FUZZ
    @given(token=st.one_of(st.text(min_size=1, max_size=400), st.binary(min_size=1, max_size=200).map(bytes.hex)))
    def run(token: str) -> None:
        response = visitor.get(f"/link/{quote(token, safe='')}/")
        assert response.status_code in LINK_STATUSES, (token, response.status_code)

    run()


def test_mutated_link_tokens_are_refused(people: People, genuine_link: str) -> None:
    token = genuine_link.split("/")[2]
    visitor = Client()
    assert visitor.get(genuine_link).status_code == 200

    @FUZZ
    @given(
        position=st.integers(min_value=0, max_value=len(token) - 1),
        replacement=st.text(min_size=0, max_size=3),
        cut=st.integers(min_value=0, max_value=len(token)),
    )
    def run(position: int, replacement: str, cut: int) -> None:
        mutated = (token[:position] + replacement + token[position + 1 :])[: max(cut, 1)]
        response = visitor.get(f"/link/{quote(mutated, safe='')}/")
        if mutated == token:
            assert response.status_code == 200
        else:
            assert response.status_code in LINK_STATUSES, (mutated, response.status_code)

    run()


def test_generated_posts_to_a_credential_link_never_break_it(people: People, canned: Any) -> None:
    adviser = logged_in(people.assigned)
    mail.outbox.clear()
    response = adviser.post(
        reverse("household_link_new", args=[people.household.pk]),
        {"client": people.client.pk, "provider_app": people.apps["coinify"].pk, "platform": "coinify"},
    )
    assert response.status_code == 302
    body = mail.outbox[-1].body
    start = body.index("/link/")
    path = body[start : body.index("/", start + len("/link/")) + 1]
    visitor = Client()

    @FUZZ
    @given(form=st.dictionaries(st.sampled_from(["email", "password", "offline_token", "junk"]), hostile_text))
    def run(form: dict[str, str]) -> None:
        response = visitor.post(path, form)
        assert response.status_code in {200, 400, 410}, (form, response.status_code)

    run()


@pytest.mark.parametrize(
    "route", ["household_detail", "connection_detail", "connection_reconnect", "connection_link_send"]
)
def test_generated_object_ids_are_not_found_never_a_crash(people: People, route: str) -> None:
    adviser = logged_in(people.firm_admin)
    firm = people.firm_admin.membership.firm
    # What the firm admin may open on this route: households for the household
    # page, connections for the rest. Every other id must be a 404.
    if route == "household_detail":
        known = set(m.Household.objects.filter(firm=firm).values_list("pk", flat=True))
    else:
        known = set(m.Connection.objects.filter(household__firm=firm).values_list("pk", flat=True))

    @hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(pk=st.integers(min_value=0, max_value=2**70))
    def run(pk: int) -> None:
        response = adviser.get(reverse(route, args=[pk]))
        assert response.status_code in ({200, 302} if pk in known else {404}), (pk, response.status_code)

    run()
