"""The secret-redacting log filter: what it masks, what it leaves, and that every handler has it."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from hypothesis import assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from connections.logging import REDACTED, RedactSecretsFilter, attach_redaction, redact

PROJECT_DIR = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-VALUE-9f8e7d"


# --- redact(): shapes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {SECRET}",
        f"authorization=Bearer {SECRET}",
        f"headers={{'Authorization': 'Bearer {SECRET}'}}",
        f"sent bearer {SECRET} to the provider",
        f"Authorization: Basic {SECRET}",
    ],
)
def test_bearer_tokens_and_authorization_headers_are_masked(text: str) -> None:
    masked = redact(text)
    assert SECRET not in masked
    assert REDACTED in masked


@pytest.mark.parametrize(
    "name",
    [
        "access_token",
        "refresh_token",
        "offline_token",
        "accessToken",
        "client_secret",
        "clientSecret",
        "appSecret",
        "userSecret",
        "accessCode",
        "password",
        "api_key",
        "X-Api-Key",
        "token",
        "SECRET_KEY",
        "TOKEN_ENCRYPTION_KEYS",
        "checksum",
        "state",
        "code",
    ],
)
@pytest.mark.parametrize("shape", ["{name}={value}", "{name}: {value}", "?a=1&{name}={value}&b=2"])
def test_secret_named_key_value_pairs_are_masked(name: str, shape: str) -> None:
    text = shape.format(name=name, value=SECRET)
    if name in {"state", "code"} and ": " in shape:
        text = f'"{name}": "{SECRET}"'  # whole names count in data shapes only
    masked = redact(text)
    assert SECRET not in masked
    assert name in masked  # the name stays, so the line still says what was there


@pytest.mark.parametrize(
    "payload",
    [
        {"token": SECRET},
        {"access_token": SECRET, "token_type": "bearer", "expires_in": 1200},
        {"refresh_token": SECRET + " with spaces, commas and } braces"},
        {"result": {"token": SECRET, "expiresIn": 3599}},
        {"clientId": "public-id", "clientSecret": SECRET},
        {"appSecret": SECRET, "accessCode": SECRET, "connectionID": "c-1"},
    ],
)
def test_json_bodies_have_every_secret_value_masked(payload: dict) -> None:
    for text in (json.dumps(payload), json.dumps(payload, separators=(",", ":")), repr(payload)):
        masked = redact(text)
        assert SECRET not in masked, text


# Every kind a Credential can have (Credential.Kind, IssuedCredential.kind).
CREDENTIAL_KINDS = ["access", "refresh", "offline", "permanent", "app", "api_key", "user_secret"]


@pytest.mark.parametrize("kind", [*CREDENTIAL_KINDS, "access_token", "refresh_token"])
@pytest.mark.parametrize(
    "shape",
    ["{name}={value}", '"{name}": "{value}"', "'{name}': '{value}'", '{{"{name}":"{value}"}}', "a=1&{name}={value}"],
)
def test_credential_kind_names_as_keys_are_masked(kind: str, shape: str) -> None:
    text = shape.format(name=kind, value=SECRET)
    masked = redact(text)
    assert SECRET not in masked
    assert kind in masked


@pytest.mark.parametrize("kind", CREDENTIAL_KINDS)
def test_a_credential_written_out_field_by_field_has_its_value_masked(kind: str) -> None:
    for text in (
        f"IssuedCredential(kind='{kind}', value='{SECRET}', issued_at=None)",
        f"{{'kind': '{kind}', 'value': '{SECRET}'}}",
        f"kind={kind} value={SECRET}",
    ):
        assert SECRET not in redact(text), text


ENCODED_NAMES = ["accessCode", "state", "code", "userSecret", "refresh", "offline", "access_token", "clientSecret"]


@pytest.mark.parametrize("name", ENCODED_NAMES)
@pytest.mark.parametrize("times", [1, 2, 3])
@pytest.mark.parametrize(
    "shape", ["{name}={value}", "a=1&{name}={value}&b=2", '{{"{name}": "{value}"}}', "/x/?{name}={value}"]
)
def test_url_encoded_secret_pairs_are_masked(name: str, times: int, shape: str) -> None:
    """``accessCode%3D…`` and ``%26state%3D…``: a callback URL inside a ``next=`` or a logged redirect."""
    text = shape.format(name=name, value=SECRET)
    for _ in range(times):
        text = quote(text, safe="")
    masked = redact(f"redirecting to /login/?next={text} for the adviser")
    assert SECRET not in masked
    assert name in masked
    assert "for the adviser" in masked


@pytest.mark.parametrize("times", [0, 1, 2])
def test_a_callback_query_is_masked_whole_however_it_is_encoded(times: int) -> None:
    """The identity and collection are not secret-named, but a callback's query string is masked whole."""
    query = urlencode({"state": SECRET, "identity": "client-identity-7", "connectionID": "conn-42", "status": "ok"})
    path = f"/connect/dapi/callback/?{query}"
    for _ in range(times):
        path = quote(path, safe="")
    masked = redact(f'"GET {path} HTTP/1.1" 302' if times == 0 else f"next={path}&then=1")
    for value in (SECRET, "client-identity-7", "conn-42"):
        assert value not in masked
    assert "callback" in masked


@pytest.mark.parametrize("times", [1, 2])
def test_an_encoded_client_link_token_is_masked(times: int) -> None:
    token = "q1Yx3bD0mVZ8m3nR5tq2w9y4Hc7Jk1Lp6Ts0Uv8Wx2E:1uBcDe:Zm9vYmFyYmF6cXV4"
    path = f"/link/{token}/"
    for _ in range(times):
        path = quote(path, safe="")
    masked = redact(f"/login/?next={path}")
    assert token.split(":")[0] not in masked
    assert "link" in masked


def test_values_are_masked_whole_up_to_the_closing_quote() -> None:
    masked = redact('{"password": "correct horse battery staple", "email": "a@example.test"}')
    assert "horse" not in masked
    assert "staple" not in masked
    assert '"email": "a@example.test"' in masked


@pytest.mark.parametrize(
    "token",
    [
        Fernet(Fernet.generate_key()).encrypt(b"a provider token").decode(),
        # header.payload.signature, base64url
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ],
)
def test_fernet_and_jwt_shaped_strings_are_masked_wherever_they_appear(token: str) -> None:
    for text in (token, f"stored value {token} for row 7", f"({token})", f"'{token}'"):
        masked = redact(text)
        assert token not in masked
        assert token[10:30] not in masked


def test_password_in_a_url_is_masked_but_the_url_stays_readable() -> None:
    masked = redact(f"could not connect to postgres://portal:{SECRET}@db.internal:5432/portal")
    assert SECRET not in masked
    assert "postgres://portal:" in masked
    assert "@db.internal:5432/portal" in masked


@pytest.mark.parametrize(
    "text",
    [
        "Gone: /link/{token}/",
        "Bad Request: /link/{token}/",
        "<WSGIRequest: POST '/link/{token}/'>",
        "open https://portal.example.com/link/{token}/ to reconnect",
    ],
)
def test_the_token_of_a_client_link_is_masked_in_paths(text: str) -> None:
    token = "q1Yx3bD0mVZ8m3nR5tq2w9y4Hc7Jk1Lp6Ts0Uv8Wx2E:1uBcDe:Zm9vYmFyYmF6cXV4"
    masked = redact(text.format(token=token))
    assert token.split(":")[0] not in masked
    assert "/link/[redacted]/" in masked


def test_a_private_key_block_is_masked() -> None:
    block = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    assert "MIIEvQ" not in redact(f"key:\n{block}\nend")


@pytest.mark.parametrize(
    "text",
    [
        "Coinbase via Turnqey: access was revoked at Coinbase. Ask the client to reconnect.",
        "Coinify (me): unexpected reply HTTP 503: Service Unavailable.",
        "Turnqey (app token): the field 'result.token' has the wrong type (expected a string, got number).",
        "the provider answered with status code: 500",
        "circuit breaker state: open",
        "Invalid email or password.",
        "Check of connection 42 failed unexpectedly (OperationalError); next check pushed back.",
        "https://portal.example.com/households/3/",
        "",
    ],
)
def test_plain_words_pass_unchanged(text: str) -> None:
    assert redact(text) == text


@hsettings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_redact_is_idempotent_and_never_raises(text: str) -> None:
    once = redact(text)
    assert redact(once) == once


@hsettings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(["access_token", "refreshToken", "client_secret", "password", "appSecret", "token"]),
    value=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="\"'\\"), min_size=8),
    quote=st.sampled_from(['"', "'"]),
)
def test_any_quoted_secret_value_is_masked(name: str, value: str, quote: str) -> None:
    text = f"{quote}{name}{quote}: {quote}{value}{quote}"
    assert value not in redact(text)


# Names the filter must catch, and values as a provider or a browser might produce them.
SECRET_NAMES = st.sampled_from(
    [
        *("access_token", "refreshToken", "clientSecret", "userSecret", "accessCode", "password", "state", "code"),
        *CREDENTIAL_KINDS,
    ]
)
ANY_VALUE = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF, exclude_categories=("Cs",)), min_size=8, max_size=40
)
TOKEN_VALUE = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~:", min_size=8)


@hsettings(max_examples=200, deadline=None)
@given(name=SECRET_NAMES, value=ANY_VALUE, times=st.integers(min_value=0, max_value=3), before=st.booleans())
def test_any_secret_pair_is_masked_however_often_it_was_url_encoded(
    name: str, value: str, times: int, before: bool
) -> None:
    """A query with the pair, encoded ``times`` more times inside another URL's parameter."""
    pairs = [("a", "1"), (name, value)] if before else [(name, value), ("b", "2")]
    text = urlencode(pairs)
    for _ in range(times):
        text = quote(text, safe="")
    line = f"-> /a/?next={text}&x=y"
    assume(value not in f"{line.replace(text, '')} {REDACTED}")
    masked = redact(line)
    # What the value looks like at that depth is gone, and so is the value itself.
    encoded = urlencode([(name, value)]).split("=", 1)[1]
    for _ in range(times):
        encoded = quote(encoded, safe="")
    assert encoded not in masked
    assert value not in masked
    assert redact(masked) == masked


@hsettings(max_examples=150, deadline=None)
@given(name=SECRET_NAMES, value=TOKEN_VALUE, times=st.integers(min_value=1, max_value=3))
def test_any_secret_in_url_encoded_json_is_masked(name: str, value: str, times: int) -> None:
    text = json.dumps({"kind": "grant", name: value, "expires_in": 1200})
    # The key's name stays in the line, so a value that is part of it ("access_t") proves nothing.
    assume(value not in f'body= {{"kind": "grant", "{name}": "", "expires_in": 1200}} {REDACTED}')
    for _ in range(times):
        text = quote(text, safe="")
    masked = redact(f"body={text}")
    assert value not in masked
    assert redact(masked) == masked


@hsettings(max_examples=200, deadline=None)
@given(st.text(alphabet="%253DAaFf&=\"'state:code0123456789x", max_size=80))
def test_redact_is_idempotent_on_percent_soup(text: str) -> None:
    once = redact(text)
    assert redact(once) == once


# --- The filter on log records ------------------------------------------------------------------


def _record(msg: str, *args: object, exc_info: object = None, stack_info: str | None = None) -> logging.LogRecord:
    return logging.LogRecord("connections.test", logging.WARNING, __file__, 1, msg, args, exc_info, None, stack_info)


def _formatted(record: logging.LogRecord) -> str:
    return logging.Formatter("%(levelname)s %(name)s %(message)s").format(record)


def test_filter_masks_secrets_passed_as_format_arguments() -> None:
    record = _record("renewed with %s (refresh_token=%s)", f"Bearer {SECRET}", SECRET)
    assert RedactSecretsFilter().filter(record) is True
    assert SECRET not in _formatted(record)
    assert "renewed with Bearer [redacted]" in _formatted(record)


def test_filter_masks_exception_tracebacks() -> None:
    try:
        raise ValueError(f"provider said: access_token={SECRET}")
    except ValueError:
        record = _record("call failed", exc_info=sys.exc_info())
    RedactSecretsFilter().filter(record)
    text = _formatted(record)
    assert "ValueError" in text
    assert "Traceback" in text
    assert SECRET not in text


def test_filter_masks_chained_exceptions() -> None:
    try:
        try:
            raise KeyError(f"clientSecret={SECRET}")
        except KeyError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError:
        record = _record("boom", exc_info=sys.exc_info())
    RedactSecretsFilter().filter(record)
    text = _formatted(record)
    assert "RuntimeError" in text
    assert SECRET not in text


def test_filter_masks_a_traceback_another_handler_already_formatted() -> None:
    record = _record("boom")
    record.exc_text = f"Traceback (most recent call last):\nValueError: password={SECRET}"
    RedactSecretsFilter().filter(record)
    assert SECRET not in _formatted(record)


def test_filter_masks_stack_info() -> None:
    record = _record("here", stack_info=f'Stack (most recent call last):\n  token = "{SECRET}"')
    RedactSecretsFilter().filter(record)
    assert SECRET not in _formatted(record)


def test_filter_keeps_a_record_whose_format_string_is_broken() -> None:
    record = _record(f"token={SECRET} %d", "not a number")
    assert RedactSecretsFilter().filter(record) is True
    assert SECRET not in _formatted(record)


def test_filter_is_safe_to_apply_twice() -> None:
    record = _record("token=%s", SECRET)
    RedactSecretsFilter().filter(record)
    first = _formatted(record)
    RedactSecretsFilter().filter(record)
    assert _formatted(record) == first


# --- Attached to every handler -------------------------------------------------------------------


def test_every_handler_in_settings_logging_has_the_filter() -> None:
    handlers = settings.LOGGING["handlers"]
    assert handlers
    for name, config in handlers.items():
        assert "redact_secrets" in config.get("filters", []), f"handler {name!r} has no redaction filter"
    assert settings.LOGGING["filters"]["redact_secrets"]["()"] == "connections.logging.RedactSecretsFilter"


def _test_harness_handler(handler: logging.Handler) -> bool:
    # pytest's own capture handlers sit on the root logger during a test.
    return type(handler).__module__.startswith("_pytest")


def test_every_handler_configured_in_this_process_has_the_filter() -> None:
    """Django's own default handlers included: no logger keeps an unfiltered one."""
    loggers = [logging.getLogger()] + [
        logger for logger in logging.root.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    seen = 0
    for logger in loggers:
        for handler in logger.handlers:
            if _test_harness_handler(handler) or isinstance(handler, logging.NullHandler):
                continue
            seen += 1
            assert any(isinstance(f, RedactSecretsFilter) for f in handler.filters), (
                f"logger {logger.name!r} has handler {handler!r} without the redaction filter"
            )
    assert seen >= 1


def test_a_secret_logged_anywhere_reaches_the_output_masked() -> None:
    """The configured handler, end to end: a child logger's record, with a traceback, is masked on output."""
    stream = io.StringIO()
    config = {**settings.LOGGING, "disable_existing_loggers": False}
    config["handlers"] = {"console": {**settings.LOGGING["handlers"]["console"], "stream": stream}}
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logging.config.dictConfig(config)
        try:
            raise RuntimeError(f"reply was {{'refresh_token': '{SECRET}'}}")
        except RuntimeError:
            logging.getLogger("connections.some.module").exception("Renewal failed with Bearer %s", SECRET)
    finally:
        root.handlers, root.level = saved
        logging.config.dictConfig({**settings.LOGGING, "disable_existing_loggers": False})
    output = stream.getvalue()
    assert "Renewal failed with Bearer [redacted]" in output
    assert "RuntimeError" in output
    assert SECRET not in output


def test_celery_handlers_get_the_filter_too() -> None:
    """Celery adds handlers to its task logger in a worker; the signal receivers filter them."""
    from celery.signals import after_setup_task_logger

    logger = logging.getLogger("celery.task.redaction-test")
    handler = logging.StreamHandler(io.StringIO())
    logger.addHandler(handler)
    try:
        after_setup_task_logger.send(sender=None, logger=logger, loglevel=logging.INFO, logfile=None, format="")
        assert any(isinstance(f, RedactSecretsFilter) for f in handler.filters)
        attach_redaction(logger)  # idempotent
        assert sum(isinstance(f, RedactSecretsFilter) for f in handler.filters) == 1
    finally:
        logger.removeHandler(handler)


def test_runserver_request_lines_are_masked_in_development(tmp_path: Path) -> None:
    """A callback's query string (state, access code, user secret) never reaches the console in clear."""
    script = (
        "import django, logging; django.setup(); "
        "logging.getLogger('django.server').info("
        "'\"GET /connect/dapi/callback/?state=%s&accessCode=%s&userSecret=%s HTTP/1.1\" 302 0', "
        f"'{SECRET}', '{SECRET}', '{SECRET}')"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update({"DJANGO_SETTINGS_MODULE": "portal.settings", "DEBUG": "true", "VAR_DIR": str(tmp_path / "var")})
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "/connect/dapi/callback/" in output
    assert SECRET not in output
