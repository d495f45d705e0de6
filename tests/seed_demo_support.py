"""What the `seed_demo` suites share: running the command, reading the world it made."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command

from connections import models as m
from connections.demo import seed as demo_seed
from sandbox.models import BloquoKey, CoinifyUser, DapiConnection, TurnqeyAuthorization


def seed(**options: Any) -> str:
    """Run ``seed_demo``; its standard output."""
    out = StringIO()
    call_command("seed_demo", stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def snapshot() -> dict[str, Any]:
    """Every connections row (by model, as plain values) plus users and adviser assignments."""
    rows: dict[str, Any] = {}
    for model in apps.get_app_config("connections").get_models():
        values = model._base_manager.order_by("pk").values()
        # Encrypted columns read back as plaintext here, so equal snapshots
        # mean equal secrets too.
        rows[model._meta.label] = [dict(v) for v in values]
    rows["users"] = list(
        get_user_model().objects.order_by("pk").values("username", "password", "is_staff", "is_superuser")
    )
    rows["advisers"] = sorted(m.Household.advisers.through.objects.values_list("household_id", "user_id"))
    return rows


def sandbox_subjects() -> dict[str, int]:
    """How many subjects each sandbox provider holds."""
    return {
        "turnqey": TurnqeyAuthorization.objects.count(),
        "coinify": CoinifyUser.objects.count(),
        "bloquo": BloquoKey.objects.count(),
        "dapi": DapiConnection.objects.count(),
    }


def without_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the command as in a deployment without the sandbox app (SANDBOX_ENABLED off)."""
    monkeypatch.setattr(demo_seed.apps, "is_installed", lambda name: name != "sandbox")
