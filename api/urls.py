"""The API at ``/api/v1/`` and the firm admins' Integrations pages at ``/integrations/``."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import include, path, re_path

from connections import wording

from .v1.app import api
from .v1.problems import problem_response


def api_not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any other path under the API: a problem body too, not the portal's HTML 404 page."""
    return problem_response(404, "not_found", wording.api_not_found())


urlpatterns = [
    path("api/v1/", api.urls),
    re_path(r"^api/(?P<rest>.*)$", api_not_found),
    path("integrations/", include(("api.ui_urls", "integrations"))),
]
