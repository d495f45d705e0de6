"""Production settings refuse to start without their secrets and a mail server, naming what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

PROJECT_DIR = Path(__file__).resolve().parent.parent
REQUIRED = ("SECRET_KEY", "TOKEN_ENCRYPTION_KEYS", "ALLOWED_HOSTS", "DATABASE_URL", "EMAIL_URL")
SETUP = "import django; django.setup(); print('started')"


@pytest.fixture
def production_env(tmp_path: Path) -> dict[str, str]:
    """A production environment with every required setting, isolated from this process's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in REQUIRED and k != "EMAIL_BACKEND" and not k.startswith(("DJANGO_", "ANYMAIL_"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DEBUG": "false",
            "VAR_DIR": str(tmp_path / "var"),
            "SECRET_KEY": "production-secret-key-value-for-the-test",
            "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "ALLOWED_HOSTS": "portal.example.com",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.sqlite3'}",
            "EMAIL_URL": "smtp+tls://portal:mail-password-for-the-test@mail.example.com:587",
        }
    )
    return env


def start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SETUP],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_starts_with_every_required_secret_set(production_env: dict[str, str]) -> None:
    result = start(production_env)

    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


@pytest.mark.parametrize("how", ["unset", "blank"])
@pytest.mark.parametrize("missing", REQUIRED)
def test_production_refuses_to_start_without_a_required_secret(
    production_env: dict[str, str], missing: str, how: str
) -> None:
    env = dict(production_env)
    if how == "unset":
        del env[missing]
    else:
        env[missing] = "  "

    result = start(env)

    assert result.returncode != 0
    assert "started" not in result.stdout
    message = result.stderr.strip().splitlines()[-1]
    assert "ImproperlyConfigured" in message
    assert f"not set: {missing}." in message
    # The secrets that are set are neither reported missing nor echoed.
    for present in set(REQUIRED) - {missing}:
        assert present not in message
        assert production_env[present] not in result.stderr


def test_production_names_every_missing_secret_at_once(production_env: dict[str, str]) -> None:
    env = {k: v for k, v in production_env.items() if k not in REQUIRED}

    result = start(env)

    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert all(name in message for name in REQUIRED)


def test_development_needs_no_environment_at_all(production_env: dict[str, str], tmp_path: Path) -> None:
    env = {k: v for k, v in production_env.items() if k not in REQUIRED}
    env["DEBUG"] = "true"

    result = start(env)

    assert result.returncode == 0, result.stderr
    # The development keys were generated into the (git-ignored) var folder.
    assert (tmp_path / "var" / "dev_encryption_key").read_text().strip()
    assert (tmp_path / "var" / "dev_secret_key").read_text().strip()


# --- Port 8000 taken: PORT moves the portal, its links and make run together ---------------------------------


def _development(env: dict[str, str], *, code: str) -> str:
    env = {k: v for k, v in env.items() if k not in REQUIRED}
    env["DEBUG"] = "true"
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.strip()


def test_the_portals_links_follow_port_unless_portal_base_url_says_otherwise(production_env: dict[str, str]) -> None:
    production_env = {
        k: v for k, v in production_env.items() if k not in ("PORT", "PORTAL_BASE_URL", "SANDBOX_BASE_URL")
    }
    show = "from django.conf import settings; print(settings.PORTAL_BASE_URL, settings.SANDBOX_BASE_URL)"
    assert _development(production_env, code=show) == "http://127.0.0.1:8000 http://127.0.0.1:8000/sandbox"
    moved = _development({**production_env, "PORT": "8123"}, code=show)
    assert moved == "http://127.0.0.1:8123 http://127.0.0.1:8123/sandbox"
    named = _development({**production_env, "PORT": "8123", "PORTAL_BASE_URL": "https://portal.test"}, code=show)
    assert named.split()[0] == "https://portal.test"


def test_make_run_hands_its_port_to_the_web_process_and_to_every_link() -> None:
    plan = subprocess.run(
        ["make", "-n", "run", "PORT=8123"], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "honcho start -f Procfile -p 8123" in plan
    makefile = (PROJECT_DIR / "Makefile").read_text()
    assert "run: export PORTAL_BASE_URL ?= http://127.0.0.1:$(PORT)" in makefile
    web = next(line for line in (PROJECT_DIR / "Procfile").read_text().splitlines() if line.startswith("web:"))
    assert "--bind 127.0.0.1:${PORT:-8000}" in web


def test_the_sandbox_hints_name_the_password_the_demo_data_signs_in_with(production_env: dict[str, str]) -> None:
    """The sign-in hints may show a secret only when it is the demo's own (the one ``make run`` prints)."""
    from connections.demo.world import DEMO_PASSWORD

    show = "from django.conf import settings; print(settings.SANDBOX_HINT_PASSWORDS)"
    assert _development(production_env, code=show) == repr([DEMO_PASSWORD])
