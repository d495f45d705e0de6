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
