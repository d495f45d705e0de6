"""Key rotation end to end: add a key, rotate, remove the old key; every secret still decrypts, the portal works.

The documented procedure (SECURITY.md, "Rotating the encryption key"):

1. prepend the new key to ``TOKEN_ENCRYPTION_KEYS`` and restart every process
   (new secrets are then written under the new key; old ones still read);
2. ``manage.py rotate_encryption_keys`` re-encrypts everything under it;
3. remove the old key and restart.

In process, the connections are real ones made on the sandbox (so after the
switch a check renews and probes with the decrypted secrets). Across
processes (PostgreSQL), a portal process started at step 1 keeps reading
through step 2 without a restart, and a process with only the new key reads
everything after step 3.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from connections import crypto, lifecycle
from connections import models as m
from connections.management.commands.rotate_encryption_keys import RAW, encrypted_fields
from tests.faults.support import (
    Portal,
    SandboxControl,
    connect_bloquo,
    connect_coinify,
    connect_dapi,
    connect_turnqey,
    database_url,
    make_due,
    portal_on_sandbox,
)
from tests.sandbox_client import sandbox_session

PROJECT_DIR = Path(__file__).resolve().parents[2]
OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()

# A portal process that reads every encrypted value each time it is asked
# (one line on stdin), printing a digest per value or the error it hit.
READER = r"""
import hashlib, json, sys, django
django.setup()
from connections.management.commands.rotate_encryption_keys import encrypted_fields
print("READY", flush=True)
for _line in sys.stdin:
    try:
        out = {}
        for model, field in encrypted_fields():
            for pk, value in model.objects.values_list("pk", field.name):
                if value is not None:
                    out[f"{model._meta.label}.{field.name}:{pk}"] = hashlib.sha256(value.encode()).hexdigest()
        print("OK " + json.dumps(out, sort_keys=True), flush=True)
    except Exception as exc:
        print("ERR " + type(exc).__name__, flush=True)
"""


def secrets_by_row() -> dict[str, str]:
    """Every encrypted value, decrypted with the configured keys, as a digest per row and field."""
    out = {}
    for model, field in encrypted_fields():
        for pk, value in model.objects.values_list("pk", field.name):
            if value is not None:
                out[f"{model._meta.label}.{field.name}:{pk}"] = hashlib.sha256(value.encode()).hexdigest()
    return out


def raw_ciphertexts() -> list[str]:
    from django.db.models import TextField
    from django.db.models.functions import Cast

    values = []
    for model, field in encrypted_fields():
        rows = model.objects.annotate(**{RAW: Cast(field.name, TextField())}).values_list(RAW, flat=True)
        values += [v for v in rows if v is not None]
    return values


@pytest.fixture
def old_key_only(settings: Any) -> None:
    # The cipher cache is keyed by the key list, so changing the setting is enough.
    settings.TOKEN_ENCRYPTION_KEYS = [OLD_KEY]


@pytest.fixture
def sandbox(live_server: Any, transactional_db: None, settings: Any, old_key_only: None) -> Iterator[SandboxControl]:
    with sandbox_session(live_server.url, settings) as control:
        yield control


@pytest.fixture
def portal(sandbox: SandboxControl) -> Portal:
    return portal_on_sandbox(sandbox)


def _connect_all(sandbox: SandboxControl, portal: Portal) -> list[m.Connection]:
    return [
        connect_turnqey(sandbox, portal),
        connect_dapi(sandbox, portal),
        connect_coinify(sandbox, portal),
        connect_coinify(sandbox, portal, offline=True),
        connect_bloquo(sandbox, portal),
    ]


def test_add_rotate_remove_keeps_every_secret_readable_and_the_portal_working(
    sandbox: SandboxControl, portal: Portal, settings: Any
) -> None:
    connections = _connect_all(sandbox, portal)
    before = secrets_by_row()
    kinds = set(m.Credential.objects.values_list("kind", flat=True))
    assert {"access", "refresh", "offline", "permanent", "user_secret", "api_key", "app"} <= kinds
    assert any(label.startswith("connections.ProviderApp.client_secret") for label in before)

    # 1. The new key first; the old one still decrypts.
    settings.TOKEN_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    assert secrets_by_row() == before
    # 2. Rotate: everything under the new key, and a second run has nothing to do.
    call_command("rotate_encryption_keys", "--no-progress")
    assert all(crypto.is_current(value) for value in raw_ciphertexts())
    # 3. The old key goes.
    settings.TOKEN_ENCRYPTION_KEYS = [NEW_KEY]
    assert secrets_by_row() == before

    # The portal still works on the re-encrypted secrets: renew (where due) and probe, on every provider.
    lifecycle.clients_forget()
    for connection in connections:
        make_due(connection)
        result = lifecycle.connection_check(connection_id=connection.pk)
        assert result.outcome == lifecycle.Outcome.OK, (connection.provider, result)


def test_removing_the_old_key_before_rotating_is_caught_not_silent(
    sandbox: SandboxControl, portal: Portal, settings: Any
) -> None:
    connect_coinify(sandbox, portal)
    settings.TOKEN_ENCRYPTION_KEYS = [NEW_KEY]
    with pytest.raises(crypto.DecryptionError):
        secrets_by_row()
    with pytest.raises(Exception, match="could not be decrypted"):
        call_command("rotate_encryption_keys", "--no-progress")


# --- Across processes ------------------------------------------------------------------------------


def _env(tmp_path: Path, keys: list[str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DEBUG": "true",
            "VAR_DIR": str(tmp_path / "var"),
            "DATABASE_URL": database_url(),
            "TOKEN_ENCRYPTION_KEYS": ",".join(keys),
        }
    )
    return env


class RunningPortal:
    """A long-lived portal process: asked to read, it reads every secret without restarting."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", READER],
            cwd=PROJECT_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self._line() == "READY"

    def _line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def read(self) -> dict[str, str] | str:
        assert self.process.stdin is not None
        self.process.stdin.write("read\n")
        self.process.stdin.flush()
        line = self._line()
        return json.loads(line[3:]) if line.startswith("OK ") else line

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.mark.postgres
def test_a_running_portal_keeps_reading_through_the_switch(
    sandbox: SandboxControl, portal: Portal, tmp_path: Path
) -> None:
    _connect_all(sandbox, portal)
    before = secrets_by_row()
    running = RunningPortal(_env(tmp_path, [NEW_KEY, OLD_KEY]))  # deployed at step 1
    stale = RunningPortal(_env(tmp_path, [OLD_KEY]))  # a process the step-1 deploy missed
    try:
        assert running.read() == before
        rotated = subprocess.run(
            [sys.executable, "manage.py", "rotate_encryption_keys", "--no-progress"],
            cwd=PROJECT_DIR,
            env=_env(tmp_path, [NEW_KEY, OLD_KEY]),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert rotated.returncode == 0, rotated.stderr
        assert "Rotated" in rotated.stdout
        # No restart: the same process reads the re-encrypted rows.
        assert running.read() == before
        # Why step 1 must reach every process first: one with only the old key cannot read any more.
        assert stale.read() == "ERR DecryptionError"
    finally:
        running.stop()
        stale.stop()
    after_removal = RunningPortal(_env(tmp_path, [NEW_KEY]))  # step 3
    try:
        assert after_removal.read() == before
    finally:
        after_removal.stop()
