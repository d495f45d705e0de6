"""The API's interactive docs in Chromium: rendered under the portal's strict CSP, nothing loaded from elsewhere.

Swagger UI is django-ninja's copy, served from the portal's static files; a
CDN, an inline script or the online validator badge would each show up here
as a CSP violation or a request to another host.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("live_provider_http"),
]


def test_the_docs_render_in_chromium_without_a_csp_violation(live_server: Any, page: Any) -> None:
    messages: list[str] = []
    elsewhere: list[str] = []
    page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
    page.on(
        "request",
        lambda request: (
            elsewhere.append(request.url)
            if urlsplit(request.url).netloc != urlsplit(live_server.url).netloc and not request.url.startswith("data:")
            else None
        ),
    )
    page.set_default_timeout(20_000)
    page.goto(f"{live_server.url}/api/v1/docs")
    page.locator(".swagger-ui .info .title").wait_for()
    assert "Connections portal API" in page.locator(".swagger-ui .info .title").inner_text()
    page.locator(".opblock-summary-path", has_text="/api/v1/connections").first.wait_for()
    assert page.locator(".opblock").count() >= 12
    violations = [line for line in messages if "Content Security Policy" in line or line.startswith("error")]
    assert violations == []
    assert elsewhere == []
