"""Production settings: ``check --deploy`` is clean, and the headers and cookies say what SECURITY.md says.

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
from pathlib import Path
from typing import Any

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
print("PROBE" + json.dumps(out, default=str))
"""


@pytest.fixture(scope="module")
def production_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("production")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECURE_", "SANDBOX_", "WEBHOOK_"))}
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


def test_gunicorn_access_log_leaves_out_query_strings() -> None:
    """A callback's query string carries the state, Dapi's access code and user secret: never in a log line.

    Gunicorn's default access log format prints the request line with its
    query string (``%(r)s``); the Procfile must use a format with the path only
    (``%(U)s``) and without the Referer header (``%(f)s``).
    """
    procfile = (PROJECT_DIR / "Procfile").read_text()
    web = next(line for line in procfile.splitlines() if line.startswith("web:"))
    if "--access-logfile" not in web:
        return  # no access log, nothing to leak
    assert "--access-logformat" in web, "gunicorn's default access log format includes query strings"
    log_format = web.split("--access-logformat", 1)[1]
    assert "%(U)s" in log_format
    for leaky in ("%(r)s", "%(q)s", "%(f)s"):
        assert leaky not in log_format
