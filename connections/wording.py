"""The one place that names things and says them in words.

Sources ("Coinify", "Coinbase via Turnqey"), provider apps ("Turnqey
Sandbox"), statuses and reasons, the sentences events are written in, and
who did something ("scheduled check", "you", "the client through their
link"). Pages, events, emails, admin and the API all come here, so a source is
called the same thing everywhere and a rule's outcome reads the same wherever
it is shown.

Pure functions of plain values: no queries, no clock (``now`` is passed in).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.timesince import timesince, timeuntil

# Status and reason values (connections.models.Status / Reason), spelled out so
# this module can be imported by models.py without a cycle.
ACTIVE, PENDING, DEGRADED, NEEDS_RECONNECT, DISCONNECTED = (
    "active",
    "pending",
    "degraded",
    "needs_reconnect",
    "disconnected",
)
EXPIRED, REVOKED, CREDENTIALS_INVALID, CREDENTIALS_UNREADABLE, TRANSIENT, AUTHORIZATION_ABANDONED = (
    "expired",
    "revoked",
    "credentials_invalid",
    "credentials_unreadable",
    "transient",
    "authorization_abandoned",
)

PROVIDER_NAMES: Mapping[str, str] = {
    "turnqey": "Turnqey",
    "coinify": "Coinify",
    "bloquo": "Bloquo",
    "dapi": "Dapi",
}

PLATFORM_NAMES: Mapping[str, str] = {
    "coinbase": "Coinbase",
    "gemini": "Gemini",
    "kraken": "Kraken",
    "binance": "Binance",
    "bitstamp": "Bitstamp",
    "ledger": "Ledger",
    "metamask": "MetaMask",
    "coinify": "Coinify",
    "bloquo": "Bloquo",
}

ENVIRONMENT_NAMES: Mapping[str, str] = {"sandbox": "Sandbox", "production": "Production"}

STATUS_NAMES: Mapping[str, str] = {
    PENDING: "Pending",
    ACTIVE: "Active",
    DEGRADED: "Degraded",
    NEEDS_RECONNECT: "Needs reconnect",
    DISCONNECTED: "Disconnected",
}

# --- Actors -------------------------------------------------------------------------
# ConnectionEvent.actor_label values for what is not a person. Stored as codes,
# shown through actor_words().
SCHEDULED_CHECK = "job:check"
HOUSEKEEPING = "job:housekeeping"
CLIENT_LINK = "client-link"
ADMIN = "admin"
COMMAND = "command"
API = "api"
REMINDERS = "job:reminders"

ACTOR_NAMES: Mapping[str, str] = {
    SCHEDULED_CHECK: "scheduled check",
    HOUSEKEEPING: "scheduled housekeeping",
    CLIENT_LINK: "the client through their link",
    ADMIN: "an administrator",
    COMMAND: "a maintenance command",
    API: "the firm's API",
    REMINDERS: "scheduled reminders",
}


def person_name(user: Any) -> str:
    """A user as people read it: the full name, else the username."""
    full = user.get_full_name() if hasattr(user, "get_full_name") else ""
    return full or user.get_username()


def actor_words(*, actor: Any = None, actor_label: str = "", viewer: Any = None) -> str:
    """Who did it, in plain words: "you", "admin Jane Doe", "Jane Doe", "scheduled check".

    ``actor`` is the user (or None), ``actor_label`` the stored code; ``viewer``
    is whoever reads the page, so their own actions read "you".
    """
    if actor is not None:
        if viewer is not None and getattr(viewer, "pk", None) == actor.pk:
            return "you"
        name = person_name(actor)
        if actor_label == ADMIN or (actor_label.startswith(f"{ADMIN}:")):
            return f"admin {name}"
        return name
    code = actor_label.split(":", 2)
    if actor_label in ACTOR_NAMES:
        return ACTOR_NAMES[actor_label]
    if code[0] == "command" and len(code) > 1:
        return f"the {code[1].replace('_', ' ')} command"
    if code[0] == "job" and len(code) > 1:
        return f"scheduled {code[1].replace('_', ' ')}"
    if code[0] == API and len(code) > 1:
        return f"the firm's API (key {code[1]})"
    return actor_label.replace("_", " ") or "the portal"


# --- Names ------------------------------------------------------------------------


def provider_name(provider: str) -> str:
    return PROVIDER_NAMES.get(provider, provider.replace("_", " ").title())


def platform_name(platform: str) -> str:
    return PLATFORM_NAMES.get(platform, platform.replace("_", " ").replace("-", " ").title())


def source_name(*, provider: str, platform: str) -> str:
    """THE name of a source: "Coinbase via Turnqey"; just "Coinify" where platform and provider are one."""
    platform_words, provider_words = platform_name(platform), provider_name(provider)
    if platform_words.casefold() == provider_words.casefold():
        return platform_words
    return f"{platform_words} via {provider_words}"


def app_name(*, provider: str, environment: str, name: str = "") -> str:
    """A provider app: "Turnqey Sandbox"; the app's own name only when it adds something."""
    base = f"{provider_name(provider)} {ENVIRONMENT_NAMES.get(environment, environment.title())}"
    if name and name.casefold() not in {environment.casefold(), base.casefold(), provider_name(provider).casefold()}:
        return f"{base} ({name})"
    return base


def status_name(status: str) -> str:
    return STATUS_NAMES.get(status, status.replace("_", " ").capitalize())


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


# --- Statuses and reasons -------------------------------------------------------------


def status_message(*, provider: str, platform: str, status: str, reason: str) -> str:
    """A status and reason in plain words: names the source and says what to do next."""
    source = source_name(provider=provider, platform=platform)
    platform_words, provider_words = platform_name(platform), provider_name(provider)
    if status == ACTIVE:
        return f"{source}: connected and up to date."
    if status == PENDING:
        if reason == AUTHORIZATION_ABANDONED:
            return f"{source}: the authorization was not finished in time. Start the connection again."
        return f"{source}: waiting for the client to finish authorizing."
    if status == DEGRADED:
        return (
            f"{source}: {provider_words} is having temporary problems; the portal keeps retrying "
            "and shows the last good data meanwhile."
        )
    if status == DISCONNECTED:
        return f"{source}: disconnected on purpose; stored credentials were deleted."
    if reason == REVOKED:
        return f"{source}: access was revoked at {platform_words}. Ask the client to reconnect."
    if reason == EXPIRED:
        return f"{source}: the authorization expired. Ask the client to reconnect."
    if reason == CREDENTIALS_INVALID:
        return f"{source}: the stored credentials were rejected. Ask the client to reconnect with new ones."
    if reason == CREDENTIALS_UNREADABLE:
        return (
            f"{source}: the portal can no longer read this connection's stored credentials (the encryption "
            "key that wrote them is gone). Ask the client to reconnect."
        )
    return f"{source}: needs the client to reconnect."


# --- Event sentences --------------------------------------------------------------------
# One function per kind of sentence; the lifecycle's rules say which, with the
# facts it needs (``facts`` of a rules.EventSpec).


def event_sentence(
    *,
    kind: str,
    source: str,
    provider: str,
    platform: str,
    from_status: str,
    to_status: str,
    reason: str,
    facts: Mapping[str, Any],
) -> str:
    """The message of an event the lifecycle's rules asked for (see ``rules.EventSpec``)."""
    error = facts.get("error") or ""
    because = f" ({error})" if error else ""
    if kind == "created":
        return authorization_started(source=source)
    if kind in ("connected", "reconnected"):
        return connected(
            source=source,
            reconnect=kind == "reconnected",
            deadline=facts.get("deadline"),
            deadline_rolls=bool(facts.get("deadline_rolls")),
        )
    if kind == "disconnected":
        return disconnected(source=source, provider=provider, revoke_error=facts.get("revoke_error") or "")
    if kind == "recovered":
        if facts.get("by_client"):
            return f"{source}: connected and up to date again after the client's reconnect."
        if facts.get("by_reconnect"):
            return f"{source}: connected and up to date again after the reconnect."
        return f"{source}: connected and up to date. Recovered from {status_name(from_status).lower()}."
    if kind == "check_failed":
        if facts.get("interrupted"):
            return (
                f"{source}: an internal error interrupted the check; it will be tried again at "
                f"{when(facts.get('next_check_at'))}."
            )
        if facts.get("app_rejected"):
            return (
                f"{source}: {provider_name(provider)} rejected the portal's own app credentials. "
                "Administrators have been alerted; the client need not do anything."
            )
        if to_status == DEGRADED and from_status != DEGRADED:
            return status_message(provider=provider, platform=platform, status=to_status, reason=reason) + because
        if to_status != from_status or reason not in ("", TRANSIENT):
            return status_message(provider=provider, platform=platform, status=to_status, reason=reason)
        if facts.get("next_check_at") is not None:
            return f"{source}: the check failed for now{because}; retrying at {when(facts['next_check_at'])}."
        return f"{source}: the check failed for now{because}."
    if kind == "status_changed" and facts.get("deadline") is not None:
        return (
            f"{source}: the sign-in lapsed at {when(facts['deadline'])} without being renewed. "
            "Ask the client to reconnect."
        )
    return status_message(provider=provider, platform=platform, status=to_status, reason=reason)


def renewed(*, source: str, access_expires_at: datetime | None) -> str:
    until = f" until {when(access_expires_at)}" if access_expires_at else ""
    return f"{source}: credentials renewed ahead of expiry; access is valid{until}."


def connected(*, source: str, reconnect: bool, deadline: datetime | None, deadline_rolls: bool) -> str:
    verb = "reconnected" if reconnect else "connected"
    if deadline is None:
        return f"{source}: {verb}."
    if deadline_rolls:
        return f"{source}: {verb}. The sign-in keeps renewing itself; the client is needed only if renewals stop."
    return f"{source}: {verb}. The client must reconnect by {when(deadline)}."


def reconnect_refused(*, source: str, platform: str) -> str:
    platform_words = platform_name(platform)
    return (
        f"{source}: the reconnect signed in to a different {platform_words} account than the one this "
        "connection belongs to, so it was refused and nothing was changed. Ask the client to sign in to "
        f"{platform_words} with the original account and reconnect again."
    )


def disconnected(*, source: str, provider: str, revoke_error: str) -> str:
    sentence = f"{source}: disconnected on purpose; stored credentials were deleted."
    if revoke_error:
        sentence += f" Revoking at {provider_name(provider)} failed ({revoke_error})."
    return sentence


def authorization_started(*, source: str) -> str:
    return f"{source}: authorization started."


def authorization_not_finished() -> str:
    """The outcome of an authorization request that ran out of time unused."""
    return "The authorization was not finished in time."


def deadline_warning(*, source: str, deadline: datetime, pending: bool) -> str:
    if pending:
        return (
            f"{source}: the authorization must be finished by {when(deadline)}; after that the client has to "
            "start the connection again."
        )
    return (
        f"{source}: access lapses at {when(deadline)} unless it is renewed before then; if it lapses, the "
        "client must reconnect."
    )


def link_needs_email(*, client: str) -> str:
    return f"{client} has no email address; add one before sending a link."


def link_issued(*, expires_at: datetime) -> str:
    return (
        "Reconnect link created for the firm's own systems to deliver (not emailed by the portal); "
        f"valid until {timezone.localtime(expires_at):%d %b %Y %H:%M}."
    )


def link_sent(*, email: str, expires_at: datetime) -> str:
    return f"Reconnect link sent to {email}; valid until {timezone.localtime(expires_at):%d %b %Y %H:%M}."


def link_opened(*, email: str) -> str:
    return f"The client opened the reconnect link sent to {email}."


def link_expired(*, source: str) -> str:
    return f"{source}: the link sent to the client expired before it was used."


def link_completed(*, email: str) -> str:
    return f"The client completed the link sent to {email}."


def link_locked(*, email: str, attempts: int) -> str:
    return (
        f"The link sent to {email} was locked after {attempts} wrong sign-in attempts, so nobody can try more "
        "with it. Send the client a new link if they still need to connect."
    )


# --- Limits on attempts -----------------------------------------------------------------


def client_link_locked(*, firm: str, attempts: int) -> str:
    """What the client reads on a locked link."""
    return (
        f"This link is locked: wrong sign-in details were entered {attempts} times, so to protect the account it "
        f"cannot be used any more. Ask {firm} to send you a new link."
    )


def too_many_wrong_credentials(*, provider: str, per_user: bool, window_seconds: float, retry_after: float) -> str:
    where = "from your account" if per_user else "from your network"
    return (
        f"Too many wrong sign-in details were tried {where} in the last {window_words(window_seconds)}, so this "
        f"attempt was not sent to {provider_name(provider)}. Try again in {duration(retry_after)}."
    )


def check_now_throttled(*, limit: int, window_seconds: float, retry_after: float) -> str:
    return (
        f"Not checked: you asked for {limit} check{'s' if limit != 1 else ''} in the last "
        f"{window_words(window_seconds)}, the most the portal "
        f"allows one person, so the provider was not called. Try again in {duration(retry_after)}."
    )


def link_sends_throttled(*, limit: int, window_seconds: float, retry_after: float) -> str:
    return (
        f"Not sent: you sent {limit} client link{'s' if limit != 1 else ''} in the last "
        f"{window_words(window_seconds)}, the most the portal "
        f"allows one person. Try again in {duration(retry_after)}."
    )


def password_resets_throttled(*, window_seconds: float, retry_after: float) -> str:
    # The same words whether or not an account has that address, so they reveal nothing.
    return (
        "Too many password resets were asked for from here, or for this email address, in the last "
        f"{window_words(window_seconds)}. No email was sent this time; try again in {duration(retry_after)}."
    )


def check_now_words(*, outcome: str, source: str, provider: str, status_message: str, error: str = "") -> str:
    """What a person-triggered check did, truthfully (``outcome`` is a ``lifecycle.Outcome`` value)."""
    because = f" ({error})" if error else ""
    if outcome == "skipped":
        return "Not checked: a check of this connection is already running. Reload in a moment."
    if outcome == "deferred":
        return (
            f"Not checked: calls to {provider_name(provider)} are paused for a short while (the provider is "
            "failing or rate limited). The portal retries by itself."
        )
    if outcome == "error":
        return (
            f"{source}: the check could not be completed because of an internal error. Nothing changed; "
            "the portal tries again later."
        )
    if outcome == "transient":
        return (
            f"Checked just now: {provider_name(provider)} did not answer properly{because}. The portal retries "
            f"by itself and keeps showing the last good data. {status_message}"
        )
    if outcome == "app_credentials_invalid":
        return (
            f"Checked just now: {provider_name(provider)} rejected the portal's own app credentials. "
            "Administrators have been alerted; the client need not do anything."
        )
    return f"Checked just now. {status_message}"


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


def request_status_words(*, status: str, delivery: str, done: int, total: int, pause_reason: str = "") -> str:
    """What an adviser reads about a request: sent, opened, partly done, done, expired, stopped, bounced."""
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
        return f"Done: the client fixed {done} of {total}{'' if done == total else ', the rest recovered by itself'}."
    if status == "resolved":
        return "Closed: everything recovered without the client."
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


# --- The firm's API and webhooks ----------------------------------------------------------
# What the API's replies and problem bodies (RFC 9457) say, and the integration
# pages' sentences. The API names an actor "api:<key prefix>" (actor_words).


def api_actor(*, key_prefix: str) -> str:
    """The ``actor_label`` of something a firm's API key did (the key's public prefix, never the key)."""
    return f"{API}:{key_prefix}"


def api_key_refused() -> str:
    return (
        "This request needs a valid API key, sent as 'Authorization: Bearer <key>'. "
        "The key was missing, unknown or revoked."
    )


def api_scope_refused(*, scope: str) -> str:
    return f"This API key may only read. Changes need a key with the '{scope}' scope; a firm admin can create one."


def api_rate_limited(*, retry_after: int) -> str:
    return f"Too many requests with this API key. Try again in {retry_after} second{'s' if retry_after != 1 else ''}."


def api_not_found() -> str:
    return "Nothing with this id is visible to this API key."


def api_invalid_input(*, fields: list[str]) -> str:
    return f"The request has {len(fields)} invalid field{'s' if len(fields) != 1 else ''}: {', '.join(fields)}."


def api_invalid_json() -> str:
    return "The request body is not valid JSON."


def api_invalid_cursor(*, name: str) -> str:
    return f"'{name}' is not a value this API returned; leave it out to start from the beginning."


def api_unknown_event(*, event_id: str) -> str:
    return f"'{event_id}' is not an event of this firm's feed (or it is older than the feed keeps)."


def api_idempotency_key_invalid() -> str:
    return "An Idempotency-Key must be 1 to 255 printable ASCII characters."


def api_idempotency_key_reused() -> str:
    return (
        "This Idempotency-Key was already used for a different request. "
        "Use a new key for a new request; repeat the original request to get its result."
    )


def api_idempotency_in_progress() -> str:
    return "A request with this Idempotency-Key is still being processed. Repeat it in a moment to get its result."


def api_server_error() -> str:
    return "The portal could not complete this request because of an internal error. It was logged; try again later."


def api_check_queued(*, source: str) -> str:
    return f"{source}: a check was queued. Its outcome shows in the connection's status and events."


def api_check_refused(*, source: str, status: str) -> str:
    if status == PENDING:
        return f"{source}: not checked, because the client has not finished authorizing yet."
    return api_disconnected(source=source)


def api_disconnected(*, source: str) -> str:
    return f"{source}: disconnected on purpose, which is final. Connect the source anew instead."


def webhook_url_https_required() -> str:
    return "Webhook endpoints must use https://."


def webhook_url_malformed() -> str:
    return "Enter a full URL such as https://crm.example.com/hooks/portal."


def webhook_url_has_credentials() -> str:
    return "Leave user names and passwords out of the URL; every delivery is signed instead."


def webhook_url_address_refused(*, host: str) -> str:
    return (
        f"{host} is (or resolves to) a private, loopback, link-local or reserved address. "
        "Webhooks are only delivered to public internet addresses."
    )


def webhook_url_unresolvable(*, host: str) -> str:
    return f"{host} could not be resolved. Check the host name."


def webhook_delivery_dropped() -> str:
    return "Not sent: the endpoint was disabled."


def webhook_endpoint_disabled(*, url: str, failing_since: datetime) -> str:
    return (
        f"Webhook deliveries to {url} have failed continuously since {when(failing_since)}, so the portal "
        "stopped sending to it. Fix the receiver, then enable the endpoint again on the Integrations page; "
        "events missed meanwhile can be read from GET /api/v1/events."
    )


def api_key_revoked(*, name: str) -> str:
    return f"The API key '{name}' was revoked. Requests with it are refused from now on."


def webhook_endpoint_enabled(*, url: str) -> str:
    return f"Deliveries to {url} are on again. Events missed while it was off can be read from GET /api/v1/events."


def webhook_endpoint_disabled_by_person(*, url: str) -> str:
    return f"Deliveries to {url} are off until you enable the endpoint again."


def webhook_endpoint_paused_reason() -> str:
    return "Disabled by a firm admin."


def webhook_delivery_resent(*, event_type: str) -> str:
    return f"The {event_type} event is being sent again, with the same id and a fresh retry schedule."


def webhook_secret_rotated(*, until: datetime) -> str:
    return (
        "A new signing secret is shown below, once. Deliveries are signed with both the new and the previous "
        f"secret until {when(until)}: switch your receiver to the new one before then."
    )
