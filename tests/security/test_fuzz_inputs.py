"""Bad input, generated: callbacks, client links and object ids answer with a refusal, never a server error.

Hypothesis writes the query strings (raw bytes as a browser or an attacker
might send them, and well-formed ones with hostile values), link tokens
(random, and mutations of a genuine one) and form posts. The provider clients
are the real ones, pointed at a closed local port, so their parsing of the
callback runs for real and any network step fails fast as a provider error.

And sequences of attempts against every limit (the store itself, credential
posts to client links from several addresses, "Check now", password resets):
whatever the order and timing, no more than the limit gets through, and the
answer is never a server error.
"""

from __future__ import annotations

import uuid
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

from connections import attempts, lifecycle, services
from connections import models as m

from .conftest import WRONG_PASSWORD, CannedProvider, People, logged_in, start_connect

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


# --- Sequences of attempts against the limits ---------------------------------------------------------

SEQUENCES = hsettings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.django_db
@hsettings(max_examples=150, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=6),
    window=st.sampled_from([1.0, 60.0, 900.0]),
    steps=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=2),  # whose attempt
            st.floats(min_value=0, max_value=1.5),  # time since the previous one, in windows
            st.booleans(),  # handed back (it turned out not to count)?
        ),
        max_size=40,
    ),
)
def test_generated_attempt_sequences_never_put_more_than_the_limit_in_any_window(
    limit: int, window: float, steps: list[tuple[int, float, bool]]
) -> None:
    rule = attempts.Limit(name=f"fuzz-{uuid.uuid4().hex}", attempts=limit, window_seconds=window)
    now = 1_800_000_000.0
    kept: dict[int, list[float]] = {0: [], 1: [], 2: []}  # the attempts that count, per subject
    for who, gap, give_back in steps:
        now += gap * window
        in_window = [t for t in kept[who] if t > now - window]
        try:
            taken = attempts.attempts_take(subjects=[(rule, f"subject-{who}")], now=now)
        except attempts.LimitReached as refused:
            retry_after = refused.retry_after
        else:
            retry_after = 0.0
        if retry_after:
            assert len(in_window) >= limit  # refused only when full
            assert retry_after <= window
            continue
        assert len(in_window) < limit  # granted only when there was room
        if give_back:
            attempts.attempts_give_back(taken=taken)
        else:
            kept[who].append(now)
    for times in kept.values():
        for end in times:
            assert sum(1 for t in times if end - window < t <= end) <= limit


def _fresh_limits() -> None:
    # Each generated sequence starts from nothing (the limits live in the test database here).
    m.AttemptWindow.objects.all().delete()


def test_generated_credential_posts_to_client_links_never_pass_a_limit(
    people: People, canned: CannedProvider, settings: Any
) -> None:
    settings.CREDENTIAL_FAILURES_PER_ADDRESS = 7
    per_link = 5
    posts = st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=2),  # which link
            st.integers(min_value=0, max_value=2),  # from which address
            st.sampled_from(["wrong", "wrong", "wrong", "right", "incomplete", "junk", "get"]),
        ),
        max_size=25,
    )

    @SEQUENCES
    @given(steps=posts)
    def run(steps: list[tuple[int, int, str]]) -> None:
        _fresh_limits()
        links = [
            services.client_link_create(
                household=people.household,
                client=people.client,
                user=people.assigned,
                provider_app=people.apps["coinify"],
                platform="coinify",
            )
            for _ in range(3)
        ]
        paths = [created.url[created.url.index("/link/") :] for created in links]
        _fresh_limits()  # the sends above are the adviser's, not the attacker's
        addresses = [f"198.51.100.{i + 1}" for i in range(3)]
        sent_per_link = [0, 0, 0]
        failed_per_address = [0, 0, 0]
        visitor = Client()
        for which, where, what in steps:
            before = canned.connects
            form = {
                "wrong": {"email": "linh@example.test", "password": WRONG_PASSWORD},
                "right": {"email": "linh@example.test", "password": "the-right-one"},
                "incomplete": {"email": "linh@example.test"},
                "junk": {"junk": "x" * 50},
                "get": {},
            }[what]
            if what == "get":
                response = visitor.get(paths[which], REMOTE_ADDR=addresses[where])
            else:
                response = visitor.post(paths[which], form, REMOTE_ADDR=addresses[where])
            assert response.status_code in {200, 400, 410, 429}, (what, response.status_code)
            sent = canned.connects - before
            sent_per_link[which] += sent
            if sent and what != "right":
                failed_per_address[where] += 1
            if response.status_code == 429:
                assert sent == 0
                assert int(response["Retry-After"]) > 0
        assert all(count <= per_link for count in sent_per_link), sent_per_link
        assert all(count <= 7 for count in failed_per_address), failed_per_address

    run()


def test_generated_check_now_clicks_never_pass_the_per_user_limit(
    people: People, canned: CannedProvider, settings: Any
) -> None:
    settings.CHECK_NOW_PER_MINUTE = 3
    advisers = [logged_in(people.assigned), logged_in(people.firm_admin)]
    url = reverse("connection_check", args=[people.connection.pk])

    @SEQUENCES
    @given(clicks=st.lists(st.tuples(st.integers(min_value=0, max_value=1), st.booleans()), max_size=15))
    def run(clicks: list[tuple[int, bool]]) -> None:
        _fresh_limits()
        probes = [0, 0]
        for who, htmx in clicks:
            before = canned.probes
            response = advisers[who].post(url, **({"HTTP_HX_REQUEST": "true"} if htmx else {}))
            assert response.status_code in ({200, 429} if htmx else {302}), response.status_code
            probes[who] += canned.probes - before
            if response.status_code == 429:
                assert canned.probes == before
        assert probes == [min(3, sum(1 for who, _ in clicks if who == n)) for n in (0, 1)]

    run()


def test_generated_password_resets_answer_by_the_counts_alone(people: People, settings: Any) -> None:
    """Whether an account has the address never changes the answer: only how often it was asked for."""
    people.assigned.email = "assigned@harbour.test"
    people.assigned.save()
    emails = ["assigned@harbour.test", "ASSIGNED@harbour.test", "nobody@nowhere.test", "<script>@x.test"]
    visitor = Client()

    @SEQUENCES
    @given(
        asks=st.lists(
            st.tuples(st.integers(min_value=0, max_value=len(emails) - 1), st.integers(min_value=0, max_value=2)),
            max_size=20,
        )
    )
    def run(asks: list[tuple[int, int]]) -> None:
        _fresh_limits()
        per_address = [0, 0, 0]
        per_email: dict[str, int] = {}
        for which, where in asks:
            email = emails[which]
            key = email.lower()
            response = visitor.post(reverse("password_reset"), {"email": email}, REMOTE_ADDR=f"203.0.113.{where + 1}")
            if "<" in email:  # not an address: the form refuses it before any limit
                assert response.status_code == 200
                continue
            room = per_address[where] < 5 and per_email.get(key, 0) < 3
            assert response.status_code == (302 if room else 429), (email, where, response.status_code)
            if room:
                per_address[where] += 1
                per_email[key] = per_email.get(key, 0) + 1

    run()
