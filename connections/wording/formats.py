"""Times, spans, deadlines and amounts in words: "in 12 minutes", "Reconnect by 14:30", "1,234.50".

Pure functions of plain values: no queries, no clock (``now`` is passed in).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.timesince import timesince, timeuntil

from .names import ACTIVE, DEGRADED, PENDING

# --- Times --------------------------------------------------------------------------


def relative(moment: datetime | None, now: datetime) -> str:
    """ "in 12 minutes", "3 hours ago", "just now"."""
    if moment is None:
        return "never"
    delta = (moment - now).total_seconds()
    if abs(delta) < 60:
        return "just now" if delta <= 0 else "in less than a minute"
    if delta > 0:
        return f"in {timeuntil(moment, now, depth=1)}"
    return f"{timesince(moment, now, depth=1)} ago"


def clock(moment: datetime | None, now: datetime) -> str:
    """A wall-clock time: "14:30" today, "tomorrow 14:30", "yesterday 09:10", else "14 Mar 2025, 14:30"."""
    if moment is None:
        return "—"
    now_local, local = timezone.localtime(now), timezone.localtime(moment)
    days = (local.date() - now_local.date()).days
    hhmm = local.strftime("%H:%M")
    if days == 0:
        return hhmm
    if days == 1:
        return f"tomorrow {hhmm}"
    if days == -1:
        return f"yesterday {hhmm}"
    return f"{local.day} {local:%b %Y}, {hhmm}"


def date_words(moment: datetime) -> str:
    """A moment as a date people read: "23 Nov 2026, 14:30"."""
    local = timezone.localtime(moment)
    return f"{local.day} {local:%b %Y}, {local:%H:%M}"


def when(moment: datetime | None) -> str:
    """A moment as an event sentence writes it: "2026-12-01 14:30 UTC"."""
    if moment is None:
        return "never"
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z")


def duration(seconds: float) -> str:
    """A span in words: "about 15 minutes", "about 2 hours", "about 3 days"."""
    minutes = max(round(seconds / 60), 1)
    if minutes < 90:
        return f"about {minutes} minute{'s' if minutes != 1 else ''}"
    hours = round(minutes / 60)
    if hours < 36:
        return f"about {hours} hours"
    days = round(hours / 24)
    return f"about {days} days"


def window_words(seconds: float) -> str:
    """A limit's window, for "in the last …": "minute", "15 minutes", "hour", "2 hours"."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{max(round(seconds), 1)} seconds"
    if minutes == 1:
        return "minute"
    if minutes % 60 == 0:
        hours = minutes // 60
        return "hour" if hours == 1 else f"{hours} hours"
    return f"{minutes} minutes"


# --- Deadlines ---------------------------------------------------------------------------


def deadline_label(kind: str) -> str:
    """The name of a deadline row on the connection page."""
    return {
        "renews": "Access token",
        "token_expires": "Access token",
        "rolling": "Sign-in",
        "reconnect_by": "Reconnect by",
        "next_check": "Next check",
    }.get(kind, kind.replace("_", " ").capitalize())


def deadline_words(
    *,
    kind: str,
    at: datetime,
    now: datetime,
    status: str,
    past: bool,
    urgent: bool,
    span: Any = None,
    rolls: bool = False,
) -> str:
    """One deadline in plain words, true to whether it is hard, rolling, coming or gone.

    A rolling sign-in is not a deadline while it renews; a deadline that went
    by reads "Expired on ..." with the next step, never as if still ahead.
    """
    if kind == "renews":
        if past:
            return f"Access token lapsed {relative(at, now)}; the portal renews it at the next check"
        return f"Access renews {relative(at, now)}"
    if kind == "token_expires":
        return f"Access token expired {relative(at, now)}" if past else f"Access token expires {relative(at, now)}"
    if kind == "rolling":
        hours = round(span.total_seconds() / 3600) if span is not None else 24
        return f"Keeps renewing itself; needs the client only if renewals stop for {hours} hours"
    if kind == "reconnect_by":
        if past and status == PENDING:
            return f"Lapsed on {date_words(at)}: the authorization was not finished in time. Start it again"
        if past:
            return f"Expired on {date_words(at)}: ask the client to reconnect"
        if urgent and rolls and status in (ACTIVE, DEGRADED):
            return f"Renewals have stopped: reconnect by {clock(at, now)} ({relative(at, now)}), or access lapses"
        return f"Reconnect by {clock(at, now)} ({relative(at, now)})"
    if kind == "next_check":
        return "Next check due now" if past else f"Next check {relative(at, now)}"
    return f"{deadline_label(kind)} {clock(at, now)}"


# --- Amounts -----------------------------------------------------------------------------

# Decimal places a balance is shown with. Fiat and stablecoins to the cent;
# crypto to what its holders read (satoshis for BTC); anything else up to 8,
# trailing zeros dropped but never fewer than 2.
CURRENCY_PLACES: Mapping[str, int] = {
    "USD": 2, "EUR": 2, "GBP": 2, "CHF": 2, "AED": 2, "USDC": 2, "USDT": 2, "DAI": 2,
    "BTC": 8, "ETH": 8, "SOL": 6, "DOT": 6, "ADA": 6, "XRP": 6, "LTC": 8,
}  # fmt: skip
FIXED_PLACES = frozenset({"USD", "EUR", "GBP", "CHF", "AED", "USDC", "USDT", "DAI"})
DEFAULT_PLACES = 8


def amount(value: Any, currency: str = "") -> str:
    """A balance as people read it: thousands separated, the currency's precision, no float noise.

    ``0.500000000000000000`` BTC reads "0.50"; ``1234.5`` USD "1,234.50";
    ``0.123456789`` BTC "0.12345679" (rounded half-even to satoshis).
    """
    from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

    if value is None or value == "":
        return "—"
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError):
        return str(value)
    code = currency.upper()
    places = CURRENCY_PLACES.get(code, DEFAULT_PLACES)
    number = number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    if code not in FIXED_PLACES:
        exponent = number.normalize().as_tuple().exponent
        used = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        places = max(2, min(places, used))
    return f"{number:,.{places}f}"
