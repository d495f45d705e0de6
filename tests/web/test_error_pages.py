"""Error pages are the portal's own, in production mode, with the signed-in header where there is a user."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from .conftest import World


@pytest.fixture
def production_errors(settings: Any) -> None:
    """DEBUG off, as in production: Django renders the error templates instead of its debug pages."""
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["testserver"]


def test_a_missing_page_is_the_portals_404_with_the_header(
    adviser_client: Any, world: World, production_errors: None
) -> None:
    response = adviser_client.get("/no-such-page/")
    page = response.content.decode()
    assert response.status_code == 404
    assert "Not found" in page
    assert world.adviser.get_full_name() in page
    assert "Sign out" in page


def test_a_get_on_a_post_only_action_gets_a_page_not_an_empty_body(
    adviser_client: Any, world: World, production_errors: None
) -> None:
    response = adviser_client.get(reverse("connection_check", args=[world.connection.pk]))
    page = response.content.decode()
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert "only works from the button on its page" in page
    assert world.adviser.get_full_name() in page


def test_a_server_error_is_the_portals_500(world: World, production_errors: None, monkeypatch: Any) -> None:
    from connections import views

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(views.pages.selectors, "household_table_page", broken)
    browser = Client(raise_request_exception=False)
    browser.force_login(world.adviser)
    response = browser.get(reverse("dashboard"))
    assert response.status_code == 500
    page = response.content.decode()
    assert "Something went wrong" in page
    assert world.adviser.get_full_name() in page
    assert "a bug" not in page


def test_bad_requests_and_refusals_have_the_portals_pages(
    adviser_client: Any, world: World, production_errors: None
) -> None:
    forbidden = Client().post(reverse("login"), {"username": "x", "password": "y"}, HTTP_X_REQUESTED_WITH="x")
    assert forbidden.status_code in (200, 403)  # a sign-in page or the portal's CSRF page
    csrf = Client(enforce_csrf_checks=True).post(reverse("login"), {"username": "x", "password": "y"})
    assert csrf.status_code == 403
    assert "Adviser portal" in csrf.content.decode()
    bad = adviser_client.get(reverse("connect_callback", args=["turnqey"]), {"state": "s", "nonsense": "1"})
    assert bad.status_code == 400
    assert "Adviser portal" in bad.content.decode()


def test_a_five_thousand_character_search_gets_the_portals_page(
    adviser_client: Any, world: World, production_errors: None
) -> None:
    response = adviser_client.get(reverse("dashboard"), {"q": "x" * 5000})
    assert response.status_code == 200
    assert "Search for up to 100 characters" in response.content.decode()
