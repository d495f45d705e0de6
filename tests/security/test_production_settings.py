"""Production settings: ``check --deploy`` is clean, the headers and cookies say what SECURITY.md says, mail leaves.

Everything here runs in a subprocess with ``DEBUG=false`` and the required
environment set, exactly as a deployment starts, so the production branch of
``portal/settings.py`` is what is tested (this test process runs the
development branch).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from cryptography.fernet import Fernet

PROJECT_DIR = Path(__file__).resolve().parents[2]
ONE_YEAR = 365 * 24 * 3600

# Run inside the production process: settings that matter, then real requests
# through Django's test client (https, the public host) to read headers and cookies.
PROBE = r"""
import json, django
django.setup()
from django.conf import settings
from django.core.management import call_command
from django.test import Client, override_settings

call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
get_user_model().objects.create_user("adviser", "adviser@example.test", "correct-horse-battery-9")

out = {name: getattr(settings, name, None) for name in (
    "DEBUG", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "SESSION_COOKIE_SAMESITE", "CSRF_COOKIE_SECURE",
    "CSRF_COOKIE_HTTPONLY", "CSRF_COOKIE_SAMESITE", "X_FRAME_OPTIONS", "SECURE_CONTENT_TYPE_NOSNIFF",
    "SECURE_REFERRER_POLICY", "SANDBOX_ENABLED", "WEBHOOK_REQUIRE_HTTPS", "WEBHOOK_ALLOW_PRIVATE_ADDRESSES")}
out["INSTALLED_APPS"] = list(settings.INSTALLED_APPS)

def cookie(response, name):
    morsel = response.cookies.get(name)
    if morsel is None:
        return None
    return {"secure": bool(morsel["secure"]), "httponly": bool(morsel["httponly"]), "samesite": morsel["samesite"]}

# Static files are served from a collected manifest in production; the probe
# renders pages without running collectstatic.
with override_settings(STORAGES={
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}):
    browser = Client(HTTP_HOST="portal.example.com")
    plain = browser.get("/login/")
    out["http_status"] = plain.status_code
    out["http_location"] = plain.get("Location", "")
    page = browser.get("/login/", secure=True)
    out["login_status"] = page.status_code
    out["headers"] = {k: page.get(k) for k in (
        "Strict-Transport-Security", "Content-Security-Policy", "X-Frame-Options", "Referrer-Policy",
        "X-Content-Type-Options", "Cross-Origin-Opener-Policy")}
    out["csrf_cookie"] = cookie(page, settings.CSRF_COOKIE_NAME)
    token = page.cookies[settings.CSRF_COOKIE_NAME].value
    signed_in = browser.post("/login/", {"username": "adviser", "password": "correct-horse-battery-9",
                                         "csrfmiddlewaretoken": token}, secure=True,
                             HTTP_REFERER="https://portal.example.com/login/")
    out["signin_status"] = signed_in.status_code
    out["session_cookie"] = cookie(signed_in, settings.SESSION_COOKIE_NAME)
    out["sandbox_status"] = browser.get("/sandbox/_control/", secure=True).status_code
    docs = browser.get("/api/v1/docs", secure=True)
    out["docs_status"] = docs.status_code
    out["docs_csp"] = docs.get("Content-Security-Policy")
    out["docs_html"] = docs.content.decode()

from api.webhooks.addresses import webhook_url_problems
out["webhook_url_problems"] = {url: webhook_url_problems(url) for url in (
    "https://127.0.0.1/hooks", "https://10.1.2.3/hooks", "https://169.254.169.254/latest/meta-data/",
    "https://[::1]/hooks", "https://localhost/hooks", "http://93.184.215.14/hooks", "https://93.184.215.14/hooks")}

# A provider app pointed at each of these, validated as the admin would (full_clean).
from django.core.exceptions import ValidationError
from connections.models import ProviderApp
def base_url_errors(url):
    try:
        ProviderApp(provider="turnqey", environment="production", name="probe", base_url=url).full_clean()
    except ValidationError as error:
        return error.message_dict.get("base_url", [])
    return []
out["provider_url_errors"] = {url: base_url_errors(url) for url in (
    "https://api.turnqey.xyz", "http://api.turnqey.xyz", "https://169.254.169.254/latest/meta-data",
    "https://10.0.0.8", "https://127.0.0.1:8000", "https://localhost", "http://127.0.0.1:8000/sandbox/turnqey")}
print("PROBE" + json.dumps(out, default=str))
"""


@pytest.fixture(scope="module")
def production_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("production")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "SECURE_", "SANDBOX_", "EMAIL_", "ANYMAIL_", "WEBHOOK_"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DEBUG": "false",
            "VAR_DIR": str(tmp / "var"),
            "SECRET_KEY": "production-" + Fernet.generate_key().decode() + Fernet.generate_key().decode(),
            "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "ALLOWED_HOSTS": "portal.example.com",
            "DATABASE_URL": f"sqlite:///{tmp / 'production.sqlite3'}",
            "PORTAL_BASE_URL": "https://portal.example.com",
            "EMAIL_URL": "smtp+tls://portal:mail-password@mail.example.com:587",
        }
    )
    env.pop("LOG_LEVEL", None)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=180, check=False
    )


@pytest.fixture(scope="module")
def probe(production_env: dict[str, str]) -> dict[str, Any]:
    result = _run(["-c", PROBE], production_env)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("PROBE"))
    return json.loads(line.removeprefix("PROBE"))


def test_check_deploy_is_clean_at_warning_level(production_env: dict[str, str]) -> None:
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_would_catch_a_weakened_setting(production_env: dict[str, str]) -> None:
    """The check above can fail: HSTS switched off in the environment is reported."""
    result = _run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], {**production_env, "SECURE_HSTS_SECONDS": "0"}
    )
    assert result.returncode != 0
    assert "security.W004" in result.stdout + result.stderr


def test_hsts_lasts_at_least_a_year_with_subdomains(probe: dict[str, Any]) -> None:
    assert probe["DEBUG"] is False
    assert probe["SECURE_HSTS_SECONDS"] >= ONE_YEAR
    assert probe["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    header = probe["headers"]["Strict-Transport-Security"]
    assert header is not None
    max_age = int(header.split("max-age=")[1].split(";")[0])
    assert max_age >= ONE_YEAR
    assert "includeSubDomains" in header


def test_plain_http_is_redirected_to_https(probe: dict[str, Any]) -> None:
    assert probe["SECURE_SSL_REDIRECT"] is True
    assert probe["http_status"] == 301
    assert probe["http_location"].startswith("https://portal.example.com/")


def test_cookies_are_secure_httponly_and_samesite_lax(probe: dict[str, Any]) -> None:
    assert probe["login_status"] == 200
    assert probe["signin_status"] == 302
    # Lax, not Strict: the provider's redirect back is a cross-site top-level
    # navigation, and it must carry the session the state is bound to.
    assert probe["session_cookie"] == {"secure": True, "httponly": True, "samesite": "Lax"}
    assert probe["csrf_cookie"] == {"secure": True, "httponly": True, "samesite": "Lax"}


def test_csp_allows_no_inline_script_and_no_framing(probe: dict[str, Any]) -> None:
    headers = probe["headers"]
    directives = {
        part.strip().split()[0]: part.strip().split()[1:] for part in headers["Content-Security-Policy"].split(";")
    }
    assert directives["script-src"] == ["'self'"]
    assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
    assert "'unsafe-eval'" not in headers["Content-Security-Policy"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] in ("same-origin", "no-referrer")
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"


def test_production_refuses_provider_urls_over_http_or_to_internal_addresses(probe: dict[str, Any]) -> None:
    errors = probe["provider_url_errors"]

    assert errors.pop("https://api.turnqey.xyz") == []
    assert any("does not use https" in e for e in errors.pop("http://api.turnqey.xyz"))
    # The sandbox is off in production, so even its default URL is just another internal address.
    assert any("does not use https" in e for e in errors.pop("http://127.0.0.1:8000/sandbox/turnqey"))
    for url, messages in errors.items():
        assert any("an internal address" in e for e in messages), url


def test_the_sandbox_is_off_in_production(probe: dict[str, Any]) -> None:
    assert probe["SANDBOX_ENABLED"] is False
    assert "sandbox" not in probe["INSTALLED_APPS"]
    assert probe["sandbox_status"] == 404


def test_webhooks_refuse_private_addresses_and_plain_http_in_production(probe: dict[str, Any]) -> None:
    assert probe["WEBHOOK_REQUIRE_HTTPS"] is True
    assert probe["WEBHOOK_ALLOW_PRIVATE_ADDRESSES"] is False
    problems = probe["webhook_url_problems"]
    assert problems.pop("https://93.184.215.14/hooks") == []
    assert problems.pop("http://93.184.215.14/hooks") == ["Webhook endpoints must use https://."]
    for url, found in problems.items():
        assert len(found) == 1, url
        assert "private, loopback" in found[0], url


def test_the_api_docs_load_only_the_portals_own_assets_under_the_strict_csp(probe: dict[str, Any]) -> None:
    assert probe["docs_status"] == 200
    assert probe["docs_csp"] == probe["headers"]["Content-Security-Policy"]
    assets = re.findall(r'(?:src|href)="([^"]+)"', probe["docs_html"])
    assert assets
    assert all(asset.startswith("/static/ninja/") for asset in assets), assets



# --- Mail in production --------------------------------------------------------------------------

# Backends that print, file, keep or drop mail: in production a password-reset
# or client link would land in the server's output or disk instead of an inbox.
MAIL_THAT_STAYS = [
    ("EMAIL_URL", "consolemail://"),
    ("EMAIL_URL", "filemail:///tmp/portal-mail"),
    ("EMAIL_URL", "memorymail://"),
    ("EMAIL_URL", "dummymail://"),
    ("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend"),
    ("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend"),
    ("EMAIL_BACKEND", "anymail.backends.console.EmailBackend"),
    ("EMAIL_BACKEND", "portal.outbox.OutboxEmailBackend"),
    ("EMAIL_BACKEND", "anymail.backends.test.EmailBackend"),
]


@pytest.mark.parametrize(("variable", "value"), MAIL_THAT_STAYS)
def test_production_refuses_to_start_with_mail_that_never_leaves_the_server(
    production_env: dict[str, str], variable: str, value: str
) -> None:
    # EMAIL_URL stays set to a real server: an EMAIL_BACKEND that overrides it is refused all the same.
    result = _run(["manage.py", "check"], {**production_env, variable: value})

    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert "ImproperlyConfigured" in message
    assert variable in message
    assert "password-reset" in message


def test_production_refuses_to_start_without_a_mail_server(production_env: dict[str, str]) -> None:
    env = {k: v for k, v in production_env.items() if k != "EMAIL_URL"}

    result = _run(["manage.py", "check"], env)

    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert "not set: EMAIL_URL." in message


class _FakeMailgun(BaseHTTPRequestHandler):
    """Mailgun's send endpoint as django-anymail calls it: records each message, answers "Queued"."""

    received: list[dict[str, str]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.received.append({"path": self.path, "body": body.decode("utf-8", "replace")})
        reply = json.dumps({"id": "<1@mail.example.com>", "message": "Queued. Thank you."}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return


@pytest.fixture
def fake_mailgun() -> Iterator[tuple[str, list[dict[str, str]]]]:
    received: list[dict[str, str]] = []
    handler = type("Handler", (_FakeMailgun,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v3", received
    finally:
        server.shutdown()
        server.server_close()


RESET_PROBE = r"""
import django
django.setup()
from django.core.management import call_command
from django.test import Client, override_settings

call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
get_user_model().objects.create_user("adviser", "adviser@example.test", "correct-horse-battery-9")
with override_settings(STORAGES={
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}):
    reply = Client(HTTP_HOST="portal.example.com").post(
        "/password-reset/", {"email": "adviser@example.test"}, secure=True
    )
print("PROBE", reply.status_code, reply.get("Location", ""))
"""


def test_production_mail_goes_out_through_a_django_anymail_backend(
    production_env: dict[str, str], fake_mailgun: tuple[str, list[dict[str, str]]], tmp_path: Path
) -> None:
    """EMAIL_BACKEND names an anymail ESP, its settings come from ANYMAIL_*; a password reset reaches the ESP."""
    api_url, received = fake_mailgun
    env = {k: v for k, v in production_env.items() if k != "EMAIL_URL"}
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'mail.sqlite3'}",
            "EMAIL_BACKEND": "anymail.backends.mailgun.EmailBackend",
            "ANYMAIL_MAILGUN_API_KEY": "key-for-the-test",
            "ANYMAIL_MAILGUN_API_URL": api_url,
            "DEFAULT_FROM_EMAIL": "Connections portal <portal@mail.example.com>",
        }
    )

    result = _run(["-c", RESET_PROBE], env)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "PROBE 302 /password-reset/sent/" in result.stdout
    assert len(received) == 1
    assert received[0]["path"] == "/v3/mail.example.com/messages"
    message = parse_qs(received[0]["body"])
    assert message["to"] == ["adviser@example.test"]
    link = re.search(r"https?://\S+/password-reset/\S+/\S+/", message["text"][0])
    assert link is not None, message
    # The link went to the mail provider, and nowhere into the server's own output.
    assert link.group(0) not in result.stdout + result.stderr
