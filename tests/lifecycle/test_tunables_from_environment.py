"""Lifecycle tunables come from the environment (LIFECYCLE_<NAME>), and a wrong one stops the portal at start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from connections.checks import lifecycle_tunables_check

PROJECT_DIR = Path(__file__).resolve().parents[2]


def test_a_lifecycle_variable_in_the_environment_sets_its_tunable() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LIFECYCLE_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings", LIFECYCLE_CHECK_LEASE_SECONDS="7", LIFECYCLE_DEGRADED_AFTER="5"
    )
    script = (
        "import django; django.setup(); from connections.lifecycle import tunables; "
        "t = tunables(); print(t.check_lease_seconds, t.degraded_after, t.probe_interval_seconds)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["7.0", "5", "900"]


def test_a_name_that_is_no_tunable_is_refused_naming_it(settings: Any) -> None:
    settings.LIFECYCLE_CHECK_LEASE = "7"  # the tunable is LIFECYCLE_CHECK_LEASE_SECONDS

    errors = lifecycle_tunables_check()

    assert [e.id for e in errors] == ["connections.E003"]
    assert "LIFECYCLE_CHECK_LEASE is not a lifecycle tunable" in errors[0].msg
    assert "LIFECYCLE_CHECK_LEASE_SECONDS" in (errors[0].hint or "")


def test_a_value_that_is_no_number_is_refused(settings: Any) -> None:
    settings.LIFECYCLE_DEGRADED_AFTER = "three"

    errors = lifecycle_tunables_check()

    assert [(e.id, e.msg) for e in errors] == [("connections.E004", "LIFECYCLE_DEGRADED_AFTER must be a number.")]


def test_the_defaults_pass() -> None:
    assert lifecycle_tunables_check() == []
