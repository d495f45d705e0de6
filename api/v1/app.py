"""The ``/api/v1/`` application: django-ninja, typed schemas, OpenAPI 3.1 at ``openapi.json``, docs at ``docs``.

What this adds to ninja's defaults:

* problem bodies for every error (:mod:`.problems`), and the OpenAPI schema
  says so: every 4xx/5xx reply is ``application/problem+json``, a 429 names
  ``Retry-After``;
* conditional GETs: every successful read carries an ``ETag`` (a hash of the
  body) and ``Cache-Control: private, no-cache``; ``If-None-Match`` with
  that ETag gets ``304 Not Modified``, so a sync that polls an object pays
  nothing for what did not change;
* a JSON parser whose failure names the body (a 400 problem, not ninja's
  bare message);
* the Swagger UI served from the app's own static files (``ninja`` is an
  installed app), without the online validator badge, so the docs page loads
  nothing from elsewhere and keeps the portal's strict CSP.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotModified
from ninja import NinjaAPI, Swagger
from ninja.openapi.schema import OpenAPISchema
from ninja.parser import Parser
from ninja.types import DictStrAny

from . import problems, reads, reconnect, writes
from .auth import read_key

DESCRIPTION = """\
The firm's connections to its clients' crypto data, for the firm's other systems (CRM, reporting, planning).

**Authentication.** Send a firm API key as `Authorization: Bearer <key>`. A key sees exactly its firm.
Keys are made by a firm admin (Integrations page) or with `manage.py api_key_create`; a `read` key may
only read, a `write` key may also create client links and household reconnect requests, check and
disconnect.

**Errors** are RFC 9457 problem bodies (`application/problem+json`) with a plain `detail`, a stable
`code`, and `errors` naming each invalid field. **Rate limits:** per key, on every request; and, as for a
person, on link emails (`CLIENT_LINK_SENDS_PER_HOUR`) and checks (`CHECK_NOW_PER_MINUTE`). Over one,
`429` with `Retry-After`, and nothing was sent or checked.

**Lists** are `{"items": [...], "next_cursor": ...}` in a stable order: connections and clients by
household, then id; households and the event feed by id; a connection's history newest first. For the
next page pass `next_cursor` back as `cursor`, exactly as received (it is opaque: build none); a page
never repeats or skips a row while rows are added. **Incremental sync:** `GET /connections?changed_since=...`,
then keep `next_changed_since`; single objects carry an `ETag` for `If-None-Match`.

**Writes** accept an `Idempotency-Key` header: a retry with the same key gets the first reply and does
not, say, email the client twice. A write that failed (a `5xx`, such as `503 email_failed` when the
mail server refused a link's email: nothing was kept) or was held back (`429`) may be retried with the
same key.

**Webhooks** are signed per Standard Webhooks; `GET /events?after=<id>` replays the same events.
"""


class JsonParser(Parser):
    def parse_body(self, request: HttpRequest) -> DictStrAny:
        try:
            data: DictStrAny = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise problems.BodyNotJson(str(exc)) from exc
        return data


def _etag(content: bytes) -> str:
    return f'"{hashlib.sha256(content).hexdigest()[:32]}"'


def _matches(header: str, etag: str) -> bool:
    candidates = {part.strip().removeprefix("W/") for part in header.split(",")}
    return "*" in candidates or etag in candidates


class PortalApi(NinjaAPI):
    def create_response(
        self,
        request: HttpRequest,
        data: Any,
        *,
        status: int | None = None,
        temporal_response: HttpResponse | None = None,
    ) -> HttpResponse:
        response = super().create_response(request, data, status=status, temporal_response=temporal_response)
        if request.method not in ("GET", "HEAD") or response.status_code != 200:
            response["Cache-Control"] = "no-store"
            return response
        etag = _etag(response.content)
        response["Cache-Control"] = "private, no-cache"
        if _matches(request.headers.get("If-None-Match", ""), etag):
            not_modified = HttpResponseNotModified()
            not_modified["ETag"], not_modified["Cache-Control"] = etag, response["Cache-Control"]
            return not_modified
        response["ETag"] = etag
        return response

    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: DictStrAny | None = None
    ) -> OpenAPISchema:
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        for operations in schema.get("paths", {}).values():
            for method, operation in operations.items():
                for code, answer in operation.get("responses", {}).items():
                    _document(method, int(code), answer)
        return schema


def _document(method: str, code: int, answer: dict[str, Any]) -> None:
    """Problem replies are problem+json; name the headers the API sends with a reply."""
    content = answer.get("content", {})
    if code >= 400 and "application/json" in content:
        content[problems.PROBLEM_MEDIA_TYPE] = content.pop("application/json")
    headers = answer.setdefault("headers", {})
    if code == 429:
        headers["Retry-After"] = {"description": "Seconds until the key may send again.", "schema": {"type": "integer"}}
    if code == 401:
        headers["WWW-Authenticate"] = {"description": "Bearer.", "schema": {"type": "string"}}
    if method == "get" and code == 200:
        headers["ETag"] = {
            "description": "A hash of the body: send it as If-None-Match to get 304 when nothing changed.",
            "schema": {"type": "string"},
        }
    if not headers:
        del answer["headers"]


api = PortalApi(
    title="Connections portal API",
    version="1",
    description=DESCRIPTION,
    urls_namespace="api-v1",
    auth=read_key,
    parser=JsonParser(),
    docs=Swagger(settings={"validatorUrl": None, "tryItOutEnabled": False}),
)
problems.install(api)
api.add_router("", reads.router)
api.add_router("", writes.router)
api.add_router("", reconnect.router)
