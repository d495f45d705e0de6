"""The providers' origins in a page's CSP ``form-action``: kept per process, never staler than promised."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from connections import models as m
from connections import selectors
from connections.selectors import pages

from .conftest import World


@pytest.fixture(autouse=True)
def _origins_forgotten() -> Any:
    selectors.provider_form_action_origins_forget()
    yield
    selectors.provider_form_action_origins_forget()


def _form_action(client: Any, world: World) -> str:
    response = client.get(reverse("household_detail", args=[world.household.pk]))
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    return next(part for part in policy.split(";") if "form-action" in part)


def test_an_app_saved_in_this_process_reaches_the_next_pages_form_action_at_once(
    adviser_client: Any, world: World
) -> None:
    assert "https://connect.newhost.example" not in _form_action(adviser_client, world)

    app = m.ProviderApp.objects.get(pk=world.turnqey.pk)
    app.connect_url = "https://connect.newhost.example/authorize"
    app.save()

    assert "https://connect.newhost.example" in _form_action(adviser_client, world)


def test_a_change_this_process_did_not_see_is_read_once_the_kept_origins_run_out(
    adviser_client: Any, world: World, monkeypatch: Any
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(pages.time, "monotonic", lambda: clock[0])
    before = _form_action(adviser_client, world)
    # Another process's change: no signal reaches this one.
    m.ProviderApp.objects.filter(pk=world.turnqey.pk).update(connect_url="https://connect.elsewhere.example/go")

    clock[0] += pages.ORIGINS_LIFETIME_SECONDS - 1
    assert _form_action(adviser_client, world) == before
    clock[0] += 2
    assert "https://connect.elsewhere.example" in _form_action(adviser_client, world)
