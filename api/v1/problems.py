"""Problem details (RFC 9457): every error the API answers is ``application/problem+json``.

The body: ``type`` (``about:blank``: the status says what kind of problem),
``title`` (the HTTP status phrase, as the RFC asks with ``about:blank``),
``status``, ``detail`` (plain words from :mod:`connections.wording`, saying
what to do), ``code`` (a stable machine-readable name), and ``errors`` (one
per field, naming it: ``query.limit``, ``body.send_email``, ``header.Idempotency-Key``)
when the input was at fault.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError

from connections import wording

logger = logging.getLogger("api.v1")

PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldProblem(Schema):
    field: str
    message: str


class Problem(Schema):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldProblem] | None = None


class ApiProblem(Exception):
    """Raised anywhere in an operation to answer with a problem body (and these headers)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        errors: Sequence[FieldProblem] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.errors = list(errors)
        self.headers = dict(headers or {})


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    errors: Sequence[FieldProblem] = (),
    headers: Mapping[str, str] | None = None,
) -> HttpResponse:
    problem = Problem(
        title=HTTPStatus(status).phrase, status=status, detail=detail, code=code, errors=list(errors) or None
    )
    response = HttpResponse(
        json.dumps(problem.model_dump(exclude_none=True)), status=status, content_type=PROBLEM_MEDIA_TYPE
    )
    response["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response[name] = value
    return response


class BodyNotJson(ValueError):
    """The request body could not be parsed as JSON (see :class:`api.v1.app.JsonParser`)."""


def _field(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc)


def install(api: NinjaAPI) -> None:
    """Answer every error of ``api`` with a problem body."""

    # Handlers take Any: ninja types each as taking the exception or its class.
    def on_problem(request: HttpRequest, exc: Any) -> HttpResponse:
        return problem_response(exc.status, exc.code, exc.detail, errors=exc.errors, headers=exc.headers)

    def on_unauthenticated(request: HttpRequest, exc: Any) -> HttpResponse:
        return problem_response(
            401, "unauthenticated", wording.api_key_refused(), headers={"WWW-Authenticate": 'Bearer realm="api"'}
        )

    def on_invalid(request: HttpRequest, exc: Any) -> HttpResponse:
        errors = [
            FieldProblem(field=_field(error.get("loc", ())), message=str(error.get("msg", ""))) for error in exc.errors
        ]
        return problem_response(
            422, "invalid_input", wording.api_invalid_input(fields=[e.field for e in errors]), errors=errors
        )

    def on_not_found(request: HttpRequest, exc: Any) -> HttpResponse:
        return problem_response(404, "not_found", wording.api_not_found())

    def on_http_error(request: HttpRequest, exc: Any) -> HttpResponse:
        if isinstance(exc.__cause__, BodyNotJson):
            field = [FieldProblem(field="body", message=wording.api_invalid_json())]
            return problem_response(400, "invalid_json", wording.api_invalid_json(), errors=field)
        status = exc.status_code if 400 <= exc.status_code < 600 else 400
        return problem_response(status, HTTPStatus(status).name.lower(), str(exc))

    def on_error(request: HttpRequest, exc: Any) -> HttpResponse:
        # Logged with its traceback (through the redacting filter); the client
        # gets plain words and no internals.
        logger.error("API %s %s failed.", request.method, request.path, exc_info=exc)
        return problem_response(500, "server_error", wording.api_server_error())

    api.add_exception_handler(ApiProblem, on_problem)
    api.add_exception_handler(AuthenticationError, on_unauthenticated)
    api.add_exception_handler(ValidationError, on_invalid)
    api.add_exception_handler(Http404, on_not_found)
    api.add_exception_handler(HttpError, on_http_error)
    api.add_exception_handler(Exception, on_error)
