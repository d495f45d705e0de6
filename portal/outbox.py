"""The development outbox: every email the portal sends, kept as a file and shown at ``/dev/outbox/``.

In development (``DEBUG`` on) with no ``EMAIL_URL`` or ``EMAIL_BACKEND``
set, mail goes to :class:`OutboxEmailBackend`, which writes each message,
whole, as an ``.eml`` file under ``VAR_DIR/outbox`` (web, worker and beat
all write there). Signed-in people read them newest first, links clickable,
so a client link can be sent from the UI and opened in another browser as
the client would. With ``DEBUG`` off every outbox page is a 404, whatever the
settings say, and production refuses this backend at start (it only keeps
mail on the server's disk; see ``portal.settings``).
"""

from __future__ import annotations

import email
import email.policy
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage as ParsedMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

BACKEND = "portal.outbox.OutboxEmailBackend"
# The newest this many messages are kept; older ones are removed as new ones arrive.
KEEP = 500
# A message's name: nanoseconds since the epoch and a random tail, so names sort by time and never collide.
_NAME = re.compile(r"^\d{19,20}-[0-9a-f]{8}$")
_URL = re.compile(r"^\(?https?://", re.IGNORECASE)
PREVIEW_CHARACTERS = 160


def outbox_dir() -> Path:
    return Path(settings.VAR_DIR) / "outbox"


class OutboxEmailBackend(BaseEmailBackend):
    """Keeps each message as ``VAR_DIR/outbox/<time>-<random>.eml`` (written whole, then renamed into place)."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        folder = outbox_dir()
        folder.mkdir(parents=True, exist_ok=True)
        sent = 0
        for message in email_messages:
            if not message.recipients():
                continue
            name = f"{time.time_ns():020d}-{secrets.token_hex(4)}"
            partial = folder / f".{name}.part"
            partial.write_bytes(message.message().as_bytes(linesep="\n"))
            partial.rename(folder / f"{name}.eml")
            sent += 1
        _prune(folder)
        return sent


def _prune(folder: Path) -> None:
    for old in sorted(folder.glob("*.eml"), reverse=True)[KEEP:]:
        old.unlink(missing_ok=True)


@dataclass(frozen=True)
class OutboxMessage:
    """One kept message, as a reader sees it."""

    name: str
    subject: str
    sender: str
    to: str
    sent_at: datetime
    text: str
    html: str

    @property
    def preview(self) -> str:
        """The start of the text, links shown as "(link)" (a cut-off address reads as garbage), words kept whole."""
        shown = ""
        for word in self.text.split():
            word = "(link)" if _URL.match(word) else word
            if len(shown) + len(word) + 1 > PREVIEW_CHARACTERS:
                return f"{shown}…"
            shown = f"{shown} {word}" if shown else word
        return shown


def _parsed(path: Path) -> OutboxMessage:
    parsed: ParsedMessage = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    text_part = parsed.get_body(preferencelist=("plain",))
    html_part = parsed.get_body(preferencelist=("html",))
    try:
        sent_at = parsedate_to_datetime(str(parsed["Date"]))
    except (TypeError, ValueError):
        sent_at = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    return OutboxMessage(
        name=path.stem,
        subject=str(parsed["Subject"] or "(no subject)"),
        sender=str(parsed["From"] or ""),
        to=", ".join(str(v) for v in (parsed.get_all("To") or [])),
        sent_at=sent_at,
        text=text_part.get_content() if text_part is not None else "",
        html=html_part.get_content() if html_part is not None else "",
    )


def outbox_messages(*, limit: int = 100) -> list[OutboxMessage]:
    """The newest ``limit`` messages, newest first."""
    folder = outbox_dir()
    if not folder.is_dir():
        return []
    return [_parsed(path) for path in sorted(folder.glob("*.eml"), reverse=True)[:limit]]


def outbox_message(name: str) -> OutboxMessage:
    """One message by name; :class:`Http404` for a name that is not one (never a path outside the outbox)."""
    path = outbox_dir() / f"{name}.eml"
    if not _NAME.match(name) or not path.is_file():
        raise Http404("No such message in the outbox.")
    return _parsed(path)


def outbox_context(request: HttpRequest) -> dict[str, bool]:
    """``outbox_shown``: whether the header links to the outbox (development only)."""
    return {"outbox_shown": bool(settings.DEBUG)}


def _development_only() -> None:
    if not settings.DEBUG:
        raise Http404("The outbox exists in development only.")


@never_cache
@require_GET
@login_required
def outbox_list(request: HttpRequest) -> HttpResponse:
    _development_only()
    context: dict[str, Any] = {
        "messages_kept": outbox_messages(),
        "collecting": settings.EMAIL_BACKEND == BACKEND,
        "backend": settings.EMAIL_BACKEND,
    }
    return render(request, "dev/outbox.html", context)


@never_cache
@require_GET
@login_required
def outbox_detail(request: HttpRequest, name: str) -> HttpResponse:
    _development_only()
    return render(request, "dev/outbox_message.html", {"message": outbox_message(name)})
