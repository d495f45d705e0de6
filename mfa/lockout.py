"""The second factor's lockout, the way django-axes locks passwords: per user and address.

After ``MFA_FAILURE_LIMIT`` wrong codes in a row for one user from one
address (the authenticator's codes and recovery codes count together;
``AXES_FAILURE_LIMIT`` unless set), every code from that address is refused,
right or wrong, for ``MFA_COOLOFF_HOURS`` (``AXES_COOLOFF_TIME`` unless set).
The user signing in from another address is not held up by it, so whoever
types wrong codes cannot lock the real user out from anywhere. A right code
before the limit clears the count for its address; a wrong one more than a
cool-off after the last starts it again, as an axes attempt expires. The
address is the one axes and the audit trail use (``AXES_CLIENT_IP_CALLABLE``).

Beside the per-address counts, the user has one across every address: at
``MFA_USER_FAILURE_CEILING`` wrong codes (four addresses' worth unless set)
every code is refused from everywhere for the cool-off. Without it, a
guesser with many addresses (an IPv6 range, a botnet) would get the limit's
worth of guesses at a six-digit code per address per cool-off, with no end.
Only someone who already has the user's password reaches this step, so
being locked out by the ceiling means the password is known to someone
else: the lockout row says so, and the password needs changing anyway.

The counts are rows (:class:`~mfa.models.CodeFailures`) changed under their
row locks, always the address's first, so concurrent posts and every web
process share them. django-otp's own throttle (a doubling wait after each
wrong code, per device) still applies beneath this; a code it refuses is
not checked, so not counted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from axes.helpers import get_client_ip_address
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.http import HttpRequest
from django.utils import timezone

from .models import EVERY_ADDRESS, CodeFailures


def failure_limit() -> int:
    return int(getattr(settings, "MFA_FAILURE_LIMIT", settings.AXES_FAILURE_LIMIT))


def user_failure_ceiling() -> int:
    return int(getattr(settings, "MFA_USER_FAILURE_CEILING", 4 * failure_limit()))


def cooloff() -> dt.timedelta:
    hours = getattr(settings, "MFA_COOLOFF_HOURS", settings.AXES_COOLOFF_TIME)
    return hours if isinstance(hours, dt.timedelta) else dt.timedelta(hours=float(hours))


def address_of(request: HttpRequest) -> str:
    """The address a code came from, as axes sees it ("" when it cannot tell: those share one count)."""
    return str(get_client_ip_address(request) or "")[: CodeFailures._meta.get_field("address").max_length]


def locked_until(user: Any, *, address: str, now: dt.datetime | None = None) -> dt.datetime | None:
    """When the lockout on ``user`` at ``address`` (or on every address) ends, while one lasts; ``None`` otherwise."""
    now = now or timezone.now()
    return CodeFailures.objects.filter(user=user, address__in=[address, EVERY_ADDRESS], locked_until__gt=now).aggregate(
        until=Max("locked_until")
    )["until"]


@dataclass(frozen=True)
class Failure:
    failures: int  # wrong codes in a row from this address, this one included
    locked_until: dt.datetime | None  # set when this code reached a limit
    address: str
    everywhere: bool = False  # the lockout is the user's across every address (the ceiling)
    failures_everywhere: int = 0


def _count(row: CodeFailures, *, now: dt.datetime, limit: int) -> dt.datetime | None:
    """One more wrong code on ``row``; the lockout's end when this one reached ``limit``."""
    stale = row.last_failure_at is None or row.last_failure_at <= now - cooloff()
    if stale or (row.locked_until is not None and row.locked_until <= now):
        row.failures, row.locked_until = 0, None  # the last run of failures has expired
    row.failures += 1
    row.last_failure_at = now
    newly_locked = None
    if row.failures >= limit > 0 and row.locked_until is None:
        row.locked_until = newly_locked = now + cooloff()
    row.save(update_fields=["failures", "last_failure_at", "locked_until"])
    return newly_locked


def failure_record(user: Any, *, address: str, now: dt.datetime | None = None) -> Failure:
    """Count one wrong code for ``user`` from ``address``; at a limit, lock them out there (or everywhere)."""
    now = now or timezone.now()
    with transaction.atomic():
        here, _ = CodeFailures.objects.select_for_update().get_or_create(user=user, address=address)
        everywhere, _ = CodeFailures.objects.select_for_update().get_or_create(user=user, address=EVERY_ADDRESS)
        here_locked = _count(here, now=now, limit=failure_limit())
        everywhere_locked = _count(everywhere, now=now, limit=user_failure_ceiling())
    return Failure(
        failures=here.failures,
        locked_until=everywhere_locked or here_locked,
        address=address,
        everywhere=everywhere_locked is not None,
        failures_everywhere=everywhere.failures,
    )


def success_record(user: Any, *, address: str) -> None:
    """A right code: the count at its address starts again, and so does the user's across addresses.

    Counts at other addresses stay: a right code from here says nothing about the codes typed there.
    """
    CodeFailures.objects.filter(user=user, address__in=[address, EVERY_ADDRESS]).delete()
