"""Error pages in the portal's own layout (with the signed-in header where there is a user).

Django renders 400/403/404 from templates by itself; these add what it does
not: a 500 page that still shows who is signed in when it safely can, and a
405 page for a GET on a POST-only action (Django's answer has an empty body).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.template import loader

logger = logging.getLogger("portal.errors")


def server_error(request: HttpRequest) -> HttpResponse:
    """500 in the portal's layout; without the header if rendering it needs what just failed (the database)."""
    try:
        body = loader.render_to_string("500.html", request=request)
    except Exception:
        logger.warning("The full 500 page could not be rendered; the plain one is used.")
        body = loader.render_to_string("500_plain.html")
    return HttpResponse(body, status=500)


class MethodNotAllowedPageMiddleware:
    """Gives a 405 with an empty body (``require_POST`` and friends) the portal's page, keeping ``Allow``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        empty = not getattr(response, "streaming", False) and not response.content  # type: ignore[attr-defined]
        if response.status_code == 405 and empty and not request.path.startswith("/api/"):
            allow = response.get("Allow", "")
            page = HttpResponse(loader.render_to_string("405.html", {"allow": allow}, request=request), status=405)
            page["Allow"] = allow
            return page
        return response
