"""What a check can report: its outcomes, its result, and what a provider's error at one stage of it means.

Apart from :mod:`.check` so the demo's histories (:mod:`connections.demo`) can
word a failure exactly as a check would without importing the check itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..logging import redact
from ..providers.errors import ErrorKind, ProviderError
from . import rules


class Outcome:
    """What a check did (``CheckResult.outcome``)."""

    OK = "ok"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    APP_CREDENTIALS_INVALID = "app_credentials_invalid"
    DEFERRED = "deferred"  # no call made: breaker open, rate limit, app flagged or disabled
    SKIPPED = "skipped"  # not claimed: not due, busy elsewhere, pending or disconnected
    ERROR = "error"  # an unexpected exception; the connection was pushed back


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one :func:`connection_check`. ``status`` is empty when the check was skipped."""

    connection_id: int
    outcome: str
    status: str = ""
    renewed: bool = False
    message: str = ""
    next_check_at: datetime | None = None


class LeaseLost(Exception):
    """The connection was reconnected, disconnected or claimed by someone else mid-check."""


@dataclass(frozen=True)
class CheckFailure:
    """What a provider error at one stage of a check means: the rules' happening, the event's details, and
    whether the credentials the call was made with are dead."""

    happened: rules.Happened
    error: str
    details: dict[str, Any]
    forget_credentials: bool = False


def check_failure(exc: ProviderError, *, stage: str) -> CheckFailure:
    """The one translation of a provider's error (at ``stage``: renew, probe, ...) into what a check reports."""
    error = redact(exc.message or str(exc))[:500]
    details: dict[str, Any] = {"stage": stage, "error_kind": str(exc.kind)}
    if exc.status_code is not None:
        details["status_code"] = exc.status_code
    if exc.access_rejected:
        details["access_rejected"] = True
    if exc.kind == ErrorKind.TRANSIENT:
        return CheckFailure(rules.FailedTransiently(retry_after=exc.retry_after, error=error), error, details)
    if exc.kind == ErrorKind.APP_CREDENTIALS_INVALID:
        return CheckFailure(rules.AppRejected(error=error), error, details)
    # A renewal the provider refused for good (invalid_grant and the like):
    # the credentials it was made with are dead and must never be sent again.
    happened = rules.FailedPermanently(
        reason=str(exc.reason or rules.EXPIRED), error=error, from_provider=not exc.nothing_sent
    )
    return CheckFailure(happened, error, details, forget_credentials=stage == "renew")
