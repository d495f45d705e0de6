"""``Idempotency-Key`` on writes: a retried request gets the first reply instead of a second write.

The record is claimed (an INSERT under a unique constraint on key and API
key) before the write runs, so two copies of a request sent at once write
once: the second is a 409 while the first is in flight, and the first's
reply once it is done. The same key with a different request (method, path
or body) is a 422. A write that failed with a server error (a 5xx, such as
a link whose email could not be sent) or was held back by a limit (429)
leaves no record, so its retry runs again; any other reply (success, or a refusal such as a
client without an email address) is kept for ``API_IDEMPOTENCY_TTL_SECONDS``
and replayed, marked ``Idempotent-Replayed: true``. Stored replies are
encrypted (a client link's reply carries its URL).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja.responses import NinjaJSONEncoder
from pydantic import BaseModel

from connections import wording

from .. import conf
from ..models import IdempotencyRecord
from .auth import key_of
from .problems import ApiProblem, FieldProblem, problem_response

HEADER = "Idempotency-Key"
# A record still in flight after this long belongs to a request whose process
# died; the key may be used again.
IN_FLIGHT_STALE = timedelta(minutes=5)

Write = Callable[[], tuple[int, BaseModel]]


def reply(status: int, body: BaseModel) -> HttpResponse:
    """A write's JSON reply: never cached (it may carry a client link's URL)."""
    response = HttpResponse(
        json.dumps(body.model_dump(), cls=NinjaJSONEncoder), status=status, content_type="application/json"
    )
    response["Cache-Control"] = "no-store"
    return response


def _key_valid(key: str) -> bool:
    return 1 <= len(key) <= 255 and all(32 <= ord(ch) < 127 for ch in key)


def _fingerprint(request: HttpRequest) -> str:
    digest = hashlib.sha256()
    for part in (request.method or "", request.path):
        digest.update(part.encode() + b"\n")
    digest.update(request.body)
    return digest.hexdigest()


def idempotent(request: HttpRequest, *, key: str | None, write: Write) -> HttpResponse:
    """Run ``write`` once per (API key, ``key``); without a key, just run it."""
    if key is None:
        return _run(write)
    if not _key_valid(key):
        message = wording.api_idempotency_key_invalid()
        raise ApiProblem(
            400, "invalid_idempotency_key", message, errors=[FieldProblem(field=f"header.{HEADER}", message=message)]
        )
    api_key = key_of(request)
    now = timezone.now()
    mine = IdempotencyRecord.objects.filter(api_key=api_key, key=key)
    # Forget what has outlived its time: an expired reply, a write that never finished.
    mine.filter(created_at__lt=now - conf.idempotency_ttl()).delete()
    mine.filter(status_code__isnull=True, created_at__lt=now - IN_FLIGHT_STALE).delete()
    fingerprint = _fingerprint(request)
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(
                api_key=api_key, key=key, method=request.method or "", path=request.path[:300], fingerprint=fingerprint
            )
    except IntegrityError:
        return _replay(mine.first(), fingerprint)
    try:
        response = _run(write)
    except BaseException:
        record.delete()
        raise
    if response.status_code >= 500 or response.status_code == 429:
        # Nothing was done, and a retry later may succeed: replaying this answer would refuse it for good.
        record.delete()
        return response
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        status_code=response.status_code, response_body=response.content.decode(), completed_at=timezone.now()
    )
    return response


def _run(write: Write) -> HttpResponse:
    try:
        status, body = write()
    except ApiProblem as problem:
        return problem_response(
            problem.status, problem.code, problem.detail, errors=problem.errors, headers=problem.headers
        )
    return reply(status, body)


def _replay(record: IdempotencyRecord | None, fingerprint: str) -> HttpResponse:
    if record is None:  # deleted between the INSERT that failed and this read: the first write failed
        return problem_response(
            409, "idempotency_in_progress", wording.api_idempotency_in_progress(), headers={"Retry-After": "1"}
        )
    if record.fingerprint != fingerprint:
        return problem_response(422, "idempotency_key_reused", wording.api_idempotency_key_reused())
    if record.status_code is None:
        return problem_response(
            409, "idempotency_in_progress", wording.api_idempotency_in_progress(), headers={"Retry-After": "1"}
        )
    content_type = "application/json" if record.status_code < 400 else "application/problem+json"
    response = HttpResponse(record.response_body or "", status=record.status_code, content_type=content_type)
    response["Cache-Control"] = "no-store"
    response["Idempotent-Replayed"] = "true"
    return response
