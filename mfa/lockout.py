"""The second factor's lockout, the way django-axes locks passwords.

After ``MFA_FAILURE_LIMIT`` wrong codes in a row for one user (the
authenticator's codes and recovery codes count together; ``AXES_FAILURE_LIMIT``
unless set), every code is refused, right or wrong, for ``MFA_COOLOFF_HOURS``
(``AXES_COOLOFF_TIME`` unless set). A right code before the limit clears the
count; a wrong one more than a cool-off after the last starts it again, as an
axes attempt expires. The count is a row per user (:class:`~mfa.models.CodeFailures`)
changed under its row lock, so concurrent posts and every web process share it.

django-otp's own throttle (a doubling wait after each wrong code, per device)
still applies beneath this; a code it refuses is not checked, so not counted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .models import CodeFailures


def failure_limit() -> int:
    return int(getattr(settings, "MFA_FAILURE_LIMIT", settings.AXES_FAILURE_LIMIT))


def cooloff() -> dt.timedelta:
    hours = getattr(settings, "MFA_COOLOFF_HOURS", settings.AXES_COOLOFF_TIME)
    return hours if isinstance(hours, dt.timedelta) else dt.timedelta(hours=float(hours))


def locked_until(user: Any, *, now: dt.datetime | None = None) -> dt.datetime | None:
    """When the user's lockout ends, while one lasts; ``None`` otherwise."""
    now = now or timezone.now()
    until = CodeFailures.objects.filter(user=user, locked_until__gt=now).values_list("locked_until", flat=True).first()
    return until


@dataclass(frozen=True)
class Failure:
    failures: int  # wrong codes in a row, this one included
    locked_until: dt.datetime | None  # set when this code reached the limit


def failure_record(user: Any, *, now: dt.datetime | None = None) -> Failure:
    """Count one wrong code for ``user``; at the limit, lock them out for the cool-off."""
    now = now or timezone.now()
    with transaction.atomic():
        row, _ = CodeFailures.objects.select_for_update().get_or_create(user=user)
        stale = row.last_failure_at is None or row.last_failure_at <= now - cooloff()
        if stale or (row.locked_until is not None and row.locked_until <= now):
            row.failures, row.locked_until = 0, None  # the last run of failures has expired
        row.failures += 1
        row.last_failure_at = now
        newly_locked = None
        if row.failures >= failure_limit() > 0:
            row.locked_until = newly_locked = now + cooloff()
        row.save(update_fields=["failures", "last_failure_at", "locked_until"])
    return Failure(failures=row.failures, locked_until=newly_locked)


def success_record(user: Any) -> None:
    """A right code: the count starts again."""
    CodeFailures.objects.filter(user=user).delete()
