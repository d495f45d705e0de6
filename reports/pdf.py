"""The household status report as PDF: WeasyPrint over an HTML template, offline.

WeasyPrint would fetch any URL a template names (an image, a stylesheet, a
font) over the network. :class:`StaticOnlyFetcher` serves the portal's own
static files and refuses everything else, so rendering a PDF never opens a
connection and a value in the page can never make it fetch one.
"""

from __future__ import annotations

import datetime as dt
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.contrib.staticfiles import finders
from django.template.loader import render_to_string
from django.utils import timezone
from weasyprint import HTML
from weasyprint.urls import URLFetcher, URLFetcherResponse

from connections import selectors, wording
from connections.models import ConnectionEvent, Household

# Pages resolve relative URLs against this made-up origin; only its /static/ path is served.
BASE_URL = "https://report.invalid/"
RECENT_EVENTS = 25


class RefusedFetch(ValueError):
    """A URL the PDF renderer may not load."""


class StaticOnlyFetcher(URLFetcher):
    """Serves ``BASE_URL`` + ``STATIC_URL`` paths from the static files finders; refuses every other URL."""

    def __init__(self) -> None:
        super().__init__(allowed_protocols=(), allow_redirects=False)
        self.refused: list[str] = []

    def fetch(self, url: str, headers: Any = None) -> URLFetcherResponse:
        parts = urlsplit(url)
        prefix = "/" + settings.STATIC_URL.strip("/") + "/"
        if f"{parts.scheme}://{parts.netloc}/" != BASE_URL or not parts.path.startswith(prefix):
            self.refused.append(url)
            raise RefusedFetch(f"not a static file of the portal: {url[:80]}")
        relative = unquote(parts.path[len(prefix) :])
        found = finders.find(relative) if ".." not in Path(relative).parts else None
        if not found or isinstance(found, list):
            self.refused.append(url)
            raise RefusedFetch(f"no such static file: {relative[:80]}")
        path = Path(found)
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return URLFetcherResponse(url, path.read_bytes(), {"Content-Type": mime})


@dataclass(frozen=True)
class HouseholdReport:
    pdf: bytes
    filename: str
    connections: int


def household_report(*, user: Any, household: Household, now: dt.datetime | None = None) -> HouseholdReport:
    """The report of ``household`` as ``user`` may see it (the household came through their scope)."""
    now = now or timezone.now()
    page = selectors.household_page(user=user, household=household)
    connections = [*page.connections, *page.disconnected]
    events = list(
        ConnectionEvent.objects.filter(connection__household=household)
        .select_related("actor", "connection")
        .order_by("-created_at", "-id")[:RECENT_EVENTS]
    )
    html = render_to_string(
        "reports/household_report.html",
        {
            "household": household,
            "firm": household.firm,
            "connections": [(c, selectors.connection_deadlines(connection=c, now=now)) for c in connections],
            "events": [(e, wording.actor_words(actor=e.actor, actor_label=e.actor_label)) for e in events],
            "generated_at": now,
            "generated_by": user,
        },
    )
    pdf = HTML(string=html, base_url=BASE_URL, url_fetcher=StaticOnlyFetcher()).write_pdf()
    assert pdf is not None
    return HouseholdReport(
        pdf=pdf, filename=f"household-{household.pk}-{timezone.localdate(now):%Y%m%d}.pdf", connections=len(connections)
    )
