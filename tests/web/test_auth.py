"""Sign in, sign out, password reset, lockout, and safe ``next`` handling."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail
from django.urls import reverse

from .conftest import PASSWORD, World


def test_adviser_signs_in_and_lands_on_the_dashboard(client: Any, world: World) -> None:
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD}, follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == reverse("dashboard")
    assert b"Needs attention" in response.content


def test_wrong_password_shows_an_error_and_no_session(client: Any, world: World) -> None:
    response = client.post(reverse("login"), {"username": "alice", "password": "nope-nope-nope"})
    assert response.status_code == 200
    assert b'role="alert"' in response.content
    assert "_auth_user_id" not in client.session


def test_sign_out_needs_a_post(adviser_client: Any) -> None:
    assert adviser_client.get(reverse("logout")).status_code == 405
    response = adviser_client.post(reverse("logout"))
    assert response.status_code == 302
    assert adviser_client.get(reverse("dashboard")).status_code == 302


def test_login_ignores_a_next_that_leaves_the_site(client: Any, world: World) -> None:
    response = client.post(
        reverse("login") + "?next=https://evil.example/steal",
        {"username": "alice", "password": PASSWORD, "next": "https://evil.example/steal"},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")


def test_password_reset_sends_a_working_link(client: Any, world: World) -> None:
    world.adviser.email = "alice@harbour.test"
    world.adviser.save()
    response = client.post(reverse("password_reset"), {"email": "alice@harbour.test"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    link = re.search(r"https?://[^/]+(/password-reset/\S+/)", mail.outbox[0].body)
    assert link is not None
    page = client.get(link.group(1), follow=True)
    assert b"Choose a new password" in page.content
    form_url = page.redirect_chain[-1][0]
    done = client.post(form_url, {"new_password1": "a-new-long-passphrase", "new_password2": "a-new-long-passphrase"})
    assert done.status_code == 302
    signed_in = client.post(reverse("login"), {"username": "alice", "password": "a-new-long-passphrase"})
    assert signed_in.status_code == 302
    assert signed_in["Location"] == reverse("dashboard")


def test_unknown_email_for_password_reset_reveals_nothing(client: Any, world: World) -> None:
    response = client.post(reverse("password_reset"), {"email": "nobody@nowhere.test"}, follow=True)
    assert b"Check your email" in response.content
    assert mail.outbox == []


@pytest.mark.django_db
def test_repeated_failed_logins_lock_the_account_out(client: Any, world: World, settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        client.post(reverse("login"), {"username": "alice", "password": "bad-password-x"})
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 429
    assert b"Too many failed sign-in attempts" in response.content
    assert "_auth_user_id" not in client.session


def test_send_link_ignores_a_next_that_leaves_the_site(adviser_client: Any, world: World) -> None:
    response = adviser_client.post(
        reverse("connection_link_send", args=[world.connection.pk]), {"next": "https://evil.example/"}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("household_detail", args=[world.household.pk])


def test_pages_load_htmx_from_a_static_file_without_inline_script(adviser_client: Any) -> None:
    body = adviser_client.get(reverse("dashboard")).content.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", body, flags=re.S)
    assert scripts, "htmx is loaded"
    assert all('src="' in attrs and not content.strip() for attrs, content in scripts)
    assert "htmx-2" in body
    assert 'name="htmx-config"' in body
    assert '"includeIndicatorStyles": false' in body
    assert 'hx-headers=\'{"X-CSRFToken": "' in body
    assert " style=" not in body  # CSP style-src 'self': no inline styles either
