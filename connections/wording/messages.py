"""What a status and reason say, the sentences events are written in, and the words of links and limits.

Pure functions of plain values, like the rest of ``connections.wording``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.utils import timezone

from .formats import duration, when, window_words
from .names import (
    ACTIVE,
    AUTHORIZATION_ABANDONED,
    CREDENTIALS_INVALID,
    CREDENTIALS_UNREADABLE,
    DEGRADED,
    DISCONNECTED,
    EXPIRED,
    PENDING,
    REVOKED,
    TRANSIENT,
    platform_name,
    provider_name,
    source_name,
    status_name,
)

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


def link_sent(*, email: str, expires_at: datetime, at_open: bool = False) -> str:
    sent = f"Reconnect link sent to {email}; valid until {timezone.localtime(expires_at):%d %b %Y %H:%M}."
    if at_open:
        # The sender stopped between the email and its record; the client's opening the link shows it went.
        return f"{sent} (Recorded when the client opened it: the portal had not recorded the email going out.)"
    return sent


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


def provider_busy(*, source: str, provider: str, callback: bool) -> str:
    """A connect held back by the app's shared call limit: nothing was sent, so nothing is lost.

    The wait is a second or two at most, too short for ``duration``'s minutes.
    """
    again = "Reload this page" if callback else "Try again"
    return (
        f"{source}: {provider_name(provider)} is busy with the portal's other requests right now, so nothing was "
        f"sent to it and nothing changed. {again} in a moment to finish."
    )


def connect_failed(*, source: str, provider: str, kind: str, reason: str, by_client: bool) -> str:
    """A connect the provider did not grant, from its error's ``kind`` and ``reason`` (never its message).

    ``by_client``: the client is reading (their own link), so the next step is
    theirs to take and nothing is asked of "the client"; otherwise the adviser.
    """
    provider_words = provider_name(provider)
    if kind == "app_credentials_invalid":
        if by_client:
            return (
                f"{source}: {provider_words} did not accept the portal's own access, so nothing was connected. "
                "This is not something you can fix: the portal's administrators have been told. Try again later."
            )
        return (
            f"{source}: {provider_words} rejected the portal's own credentials. Nothing was connected; "
            "an administrator has been told and has to fix the provider settings."
        )
    if kind != "reauth_required":
        return (
            f"{source}: {provider_words} could not be reached or answered unexpectedly. Nothing was saved; "
            "try again in a few minutes."
        )
    if reason == CREDENTIALS_INVALID:
        return f"{source}: {provider_words} did not accept these credentials. Check them and try again."
    if reason == EXPIRED:
        return f"{source}: the authorization expired before it could be completed. Start again."
    if reason == REVOKED:
        from_whom = "" if by_client else " from the client"
        return (
            f"{source}: these credentials have been revoked, so nothing was connected. "
            f"Start again with new ones{from_whom}."
        )
    return f"{source}: {provider_words} refused access, so nothing was connected. Start again."


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
