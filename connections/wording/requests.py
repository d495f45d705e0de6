"""The words of household reconnect requests, open problems and escalations."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from django.utils import timezone

# --- Reconnect requests and notification hygiene ------------------------------------------

REQUEST_STOP_REASONS: Mapping[str, str] = {
    "not_me": "This is not me",
    "stop": "Please stop asking me",
}


def request_stop_reason(code: str) -> str:
    return REQUEST_STOP_REASONS.get(code, "Please stop")


def reconnect_request_subject(*, firm: str, count: int, reminder: bool) -> str:
    what = "your account" if count == 1 else f"{count} accounts"
    return f"{'Reminder: ' if reminder else ''}{firm}: please reconnect {what}"


def request_included(*, email: str, expires_at: datetime) -> str:
    """The LINK_SENT event of a connection that a household reconnect request covers."""
    return (
        f"Asked the client to reconnect in a request sent to {email}; "
        f"valid until {timezone.localtime(expires_at):%d %b %Y %H:%M}."
    )


def request_reminder_sent(*, email: str, number: int) -> str:
    return f"Reminder {number} of the reconnect request sent to {email}."


def request_opened(*, email: str) -> str:
    return f"The client opened the reconnect request sent to {email}."


DELIVERY_TROUBLE: Mapping[str, str] = {
    "bounced": "bounced",
    "complained": "was marked as spam",
    "failed": "could not be sent",
}


def request_replacing(*, delivery: str, sent_to: str, asked_at: datetime) -> str:
    """The preview's note on a request that replaces one whose email never reached the client."""
    trouble = DELIVERY_TROUBLE.get(delivery, "did not arrive")
    return (
        f"Replaces the request of {timezone.localtime(asked_at):%d %b %Y} to {sent_to}, whose email {trouble}; "
        "its link stops working."
    )


def request_undeliverable_again(*, client: str, delivery: str, sent_to: str, at: datetime | None) -> str:
    """Why asking again is refused: the client's address is still the one that bounced or complained."""
    when = f" on {timezone.localtime(at):%d %b %Y}" if at is not None else ""
    if delivery == "complained":
        return (
            f"{client} marked the email to {sent_to} as spam{when}; nothing more is sent to that address. "
            "Correct their address if they gave you another, then ask again."
        )
    return f"The email to {sent_to} bounced{when}: correct {client}'s address, then ask again."


def request_stopped_before(*, client: str, at: datetime, reason: str, sent_to: str) -> str:
    """Why a client is not asked again by default: they stopped an earlier request."""
    said = request_stop_reason(reason)
    head = f"{client} asked on {timezone.localtime(at):%d %b %Y} not to be contacted about this (\u201c{said}\u201d"
    if reason == "not_me":
        return f"{head} from {sent_to}); correct their address, or send anyway only if you are sure it is theirs."
    return f"{head}); send anyway only if they have told you they want to hear about it again."


def request_status_words(
    *, status: str, delivery: str, done: int, total: int, pause_reason: str = "", muted: int = 0
) -> str:
    """What an adviser reads about a request: sent, opened, partly done, done, expired, stopped, bounced.

    ``muted``: its connections the adviser muted (withdrawn from it), never counted as fixed or recovered.
    """
    if status == "superseded":
        trouble = DELIVERY_TROUBLE.get(delivery, "did not arrive")
        return f"Replaced by a new request: this email {trouble}, and its link no longer works."
    if delivery == "bounced":
        return "The email bounced: check the client's address."
    if delivery == "complained":
        return "The client marked the email as spam; no more reminders are sent."
    if delivery == "failed":
        return "The email could not be sent; try again later."
    if status == "sent":
        return "Sent, not opened yet."
    if status == "opened":
        return f"Opened; nothing fixed yet ({total} to do)."
    if status == "partly_done":
        return f"Partly done: {done} of {total} fixed."
    if status == "done":
        recovered = total - done - muted
        rest = [f"{recovered} recovered by itself"] if recovered else []
        rest += [f"{muted} muted, not fixed"] if muted else []
        return f"Done: the client fixed {done} of {total}{'; ' + ', '.join(rest) if rest else ''}."
    if status == "resolved":
        return "Closed: everything recovered without the client."
    if status == "muted":
        if muted >= total:
            return "Closed: every connection in it was muted; nothing was fixed."
        return f"Closed: {muted} of {total} muted, not fixed; the rest recovered without the client."
    if status == "expired":
        return f"Expired with {total - done} of {total} still to fix."
    if status == "paused":
        return f"Stopped by the client (\u201c{request_stop_reason(pause_reason)}\u201d); no more reminders."
    return status.replace("_", " ").capitalize()


def problem_cause_words(cause: str) -> str:
    return {"broken": "needs reconnecting", "degraded": "provider failing", "lapsing": "will lapse soon"}.get(
        cause, cause
    )


def problem_recovered(*, source: str) -> str:
    return f"{source}: connected and up to date again, and it has stayed so."


def escalation_words(*, source: str, household: str, advisers: list[str], opened_at: datetime, now: datetime) -> str:
    who = ", ".join(advisers) if advisers else "no adviser assigned"
    days = max(int((now - opened_at).total_seconds() // 86400), 1)
    return f"{household}: {source} has needed attention for {days} days ({who})."
