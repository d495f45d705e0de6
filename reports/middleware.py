"""The request an audit row happens in: who and from which address."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase

from .audit import request_context
from .reads import read_record


class AuditContextMiddleware:
    """Makes the request visible to audit receivers (``reports.audit.current_request``) while it is served.

    Receivers of model signals are told what changed, not by whom or from
    where; this is how they know. Once the reply is made, a read that revealed
    client data is recorded (:mod:`.reads`). A streamed export keeps no context while it
    streams: its audit row is written before the first byte.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        with request_context(request):
            response = self.get_response(request)
        # A page or API reply that showed a client's data is on the trail too (reports.reads).
        read_record(request, response)
        return response
