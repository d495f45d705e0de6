"""The sandbox answered by this very process, for provider calls made while no web server runs.

``seed_demo`` runs before the web server starts (``make run``), yet the demo's
connections must be made through the real provider clients, which speak HTTP
to ``settings.SANDBOX_BASE_URL``. While :func:`sandbox_in_process` is active,
the providers' shared session hands every request under that URL to this
process's own Django request handler (the one a web server would hand it to)
and turns the reply into the ``requests.Response`` the server's would have
been. The clients build the real requests and the sandbox's views answer
them, on the caller's database connection and inside its transaction, so a
seed that fails leaves no half-made subjects behind. (On PostgreSQL the
sandbox's request log lets its transaction commit without waiting for the WAL
flush; here that transaction is the caller's, which is fine for demo data.)
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.test import Client
from django.urls import reverse
from requests import PreparedRequest, Response
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

from connections.providers.transport import shared_session as provider_session

# Set by the test client from the body and the content_type argument.
_BODY_HEADERS = frozenset({"content-type", "content-length"})


class SandboxInProcess(BaseAdapter):
    """A ``requests`` transport that serves ``base_url`` from the sandbox mounted in this process."""

    def __init__(self, *, base_url: str) -> None:
        super().__init__()
        self.base_path = urlsplit(base_url).path.rstrip("/")
        # Where the portal's URLconf mounts the sandbox ("/sandbox"), whatever
        # path SANDBOX_BASE_URL names (a separate sandbox server's, say).
        self.mount_path = reverse("sandbox:control").removesuffix("/_control/")

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        url = urlsplit(request.url or "")
        path = self.mount_path + url.path.removeprefix(self.base_path)
        if url.query:
            path = f"{path}?{url.query}"
        body = request.body or b""
        headers = {name: value for name, value in request.headers.items() if name.lower() not in _BODY_HEADERS}
        # A client per request: a provider's cookie must not ride along with the
        # next call (the shared session keeps none either), and CSRF is enforced
        # as a server would.
        reply = Client(enforce_csrf_checks=True, raise_request_exception=False).generic(
            request.method or "GET",
            path,
            data=body.encode() if isinstance(body, str) else body,
            content_type=request.headers.get("Content-Type", ""),
            secure=url.scheme == "https",
            headers={**headers, "Host": url.netloc},
        )
        response = Response()
        response.status_code = reply.status_code
        response.reason = reply.reason_phrase
        response.headers = CaseInsensitiveDict(dict(reply.items()))
        response.encoding = get_encoding_from_headers(response.headers)
        content = b"".join(reply.streaming_content) if reply.streaming else reply.content  # type: ignore[attr-defined]
        response.raw = io.BytesIO(content)
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        """Nothing to release: no socket was opened."""


@contextmanager
def sandbox_in_process() -> Iterator[None]:
    """For the duration of the block, provider calls to ``SANDBOX_BASE_URL`` are served in this process."""
    session = provider_session()
    prefix = settings.SANDBOX_BASE_URL.rstrip("/") + "/"
    previous = session.adapters.get(prefix)
    # The refusals and failures the sandbox answers here are ones the caller
    # asked it for; a server would note them in its own log, not as the
    # portal's request errors.
    request_log = logging.getLogger("django.request")
    was_disabled, request_log.disabled = request_log.disabled, True
    session.mount(prefix, SandboxInProcess(base_url=settings.SANDBOX_BASE_URL))
    try:
        yield
    finally:
        request_log.disabled = was_disabled
        if previous is not None:
            session.mount(prefix, previous)
        else:
            session.adapters.pop(prefix, None)
