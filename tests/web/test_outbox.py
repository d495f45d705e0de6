"""The development outbox: every email the portal sends is kept and readable at /dev/outbox/, never in production."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from connections import models as m
from portal import outbox

from .conftest import World

PROJECT_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture
def collecting(settings: Any, tmp_path: Path) -> Path:
    """Development, mail kept in this test's own outbox."""
    settings.DEBUG = True
    settings.VAR_DIR = tmp_path
    settings.EMAIL_BACKEND = outbox.BACKEND
    return tmp_path / "outbox"


def test_a_client_link_sent_from_the_ui_is_in_the_outbox_with_its_link_clickable(
    collecting: Path, adviser_client: Any, world: World, broken: m.Connection
) -> None:
    sent = adviser_client.post(reverse("connection_link_send", args=[broken.pk]))
    assert sent.status_code == 302

    listing = adviser_client.get(reverse("dev_outbox"))
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "linh@example.test" in page
    assert "Harbour Wealth" in page  # the subject
    name = re.search(r'href="/dev/outbox/([^/"]+)/"', page)
    assert name is not None

    message = adviser_client.get(reverse("dev_outbox_message", args=[name.group(1)])).content.decode()
    link = re.search(rf'<a href="({re.escape(settings.PORTAL_BASE_URL)}/link/[^"]+/)"', message)
    assert link is not None, message
    # Opened where the client would open it: another browser, nobody signed in.
    opened = Client().get(link.group(1).removeprefix(settings.PORTAL_BASE_URL))
    assert opened.status_code == 200
    assert "Harbour Wealth" in opened.content.decode()


def test_messages_are_listed_newest_first_and_a_password_reset_lands_there_too(
    collecting: Path, adviser_client: Any, world: World, broken: m.Connection
) -> None:
    adviser_client.post(reverse("connection_link_send", args=[broken.pk]))
    Client().post(reverse("password_reset"), {"email": world.adviser.email})

    kept = outbox.outbox_messages()

    assert len(kept) == 2
    assert kept[0].to == world.adviser.email  # the reset, sent last, comes first
    assert f"{settings.PORTAL_BASE_URL}/password-reset/" in kept[0].text
    assert kept[1].to == "linh@example.test"
    assert sorted(p.name for p in collecting.iterdir()) == sorted(f"{k.name}.eml" for k in kept)


def test_with_debug_off_every_outbox_page_is_a_404(settings: Any, adviser_client: Any, tmp_path: Path) -> None:
    settings.DEBUG = False
    settings.VAR_DIR = tmp_path
    settings.EMAIL_BACKEND = outbox.BACKEND
    outbox.OutboxEmailBackend().send_messages([_message()])
    name = outbox.outbox_messages()[0].name

    assert adviser_client.get(reverse("dev_outbox")).status_code == 404
    assert adviser_client.get(reverse("dev_outbox_message", args=[name])).status_code == 404


def test_the_outbox_is_for_signed_in_people_only(collecting: Path, client: Client) -> None:
    response = client.get(reverse("dev_outbox"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", ["..", "..%2F..%2Fdb.sqlite3", "00000000000000000000-zzzzzzzz", "x" * 30])
def test_a_name_that_is_no_message_is_a_404(collecting: Path, adviser_client: Any, name: str) -> None:
    (collecting.parent / "secret.eml").write_text("Subject: not for you\n\nno")
    assert adviser_client.get(f"/dev/outbox/{name}/").status_code == 404


def test_when_mail_goes_elsewhere_the_outbox_says_so(collecting: Path, settings: Any, adviser_client: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    page = adviser_client.get(reverse("dev_outbox")).content.decode()
    assert "not to this outbox" in page


def _message() -> Any:
    from django.core.mail import EmailMessage

    return EmailMessage("Hello", "Body https://example.test/x", "portal@localhost", ["someone@example.test"])


def _email_backend(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "EMAIL_", "ANYMAIL_"))}
    clean.update(DJANGO_SETTINGS_MODULE="portal.settings", DEBUG="true", **env)
    out = subprocess.run(
        [sys.executable, "-c", "from portal import settings; print(settings.EMAIL_BACKEND)"],
        cwd=PROJECT_DIR,
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_development_without_mail_settings_keeps_mail_in_the_outbox_and_a_mail_url_still_wins() -> None:
    assert _email_backend() == outbox.BACKEND
    assert _email_backend(EMAIL_URL="smtp://127.0.0.1:2525") == "django.core.mail.backends.smtp.EmailBackend"


def test_the_list_previews_a_message_in_whole_words_with_its_links_named_not_cut() -> None:
    from datetime import UTC, datetime

    from portal.outbox import PREVIEW_CHARACTERS, OutboxMessage

    text = "Hello Ada, open this link: https://portal.test/link/abc123/ " + "and then some more words " * 20
    message = OutboxMessage(name="x", subject="s", sender="f", to="t", sent_at=datetime.now(UTC), text=text, html="")

    assert message.preview.startswith("Hello Ada, open this link: (link) and then")
    assert "https" not in message.preview
    assert len(message.preview) <= PREVIEW_CHARACTERS + 1
    assert message.preview.endswith("…")
    assert message.preview[:-1].split()[-1] in {"and", "then", "some", "more", "words"}  # a whole word
