"""What the service modules share: names for users and sources, the pending row, error words."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.models import User as AuthUser

from .. import attempts, lifecycle, throttling, wording
from ..models import AuthorizationRequest, Client, Connection, Household, ProviderApp, Status
from ..providers.base import Grant
from ..providers.errors import ProviderError

# Whoever makes a request: a signed-in portal user, or nobody (a client through their link).
User = AuthUser | AnonymousUser

AUTHORIZATION_REQUEST_TTL = dt.timedelta(minutes=15)
CLIENT_LINK_SALT = "connections.client-link"
CLIENT_LINK_ACTOR = wording.CLIENT_LINK


class Throttled(Exception):
    """Too many attempts for now: nothing was done and no provider was called.

    ``message`` says so in plain words and when to try again; ``retry_after``
    is that moment in seconds (for a ``Retry-After`` header).
    """

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


def person_throttle(*, name: attempts.LimitName, person: AuthUser, words: Callable[..., str]) -> attempts.Taken:
    """Take one of ``person``'s attempts under the limit ``name``, or raise :class:`Throttled` when none is left.

    Returns what :func:`attempts.attempts_give_back` needs, for work that then turns out not to count.

    ``words`` is the wording function that says so (given ``limit``, ``window_seconds`` and ``retry_after``).
    """
    limit = attempts.limit(name)
    try:
        return attempts.attempts_take(subjects=[(limit, str(person.pk))])
    except attempts.LimitReached as exc:
        raise Throttled(
            words(limit=limit.attempts, window_seconds=limit.window_seconds, retry_after=exc.retry_after),
            retry_after=exc.retry_after,
        ) from None


def provider_calls_take(*, provider_app: ProviderApp, calls: int) -> float:
    """Take ``calls`` tokens of the app's shared rate limit before a connect sends anything.

    Someone is waiting in the browser, so all of them together wait at most
    ``RATE_LIMIT_MAX_WAIT_SECONDS``. Returns 0.0 once every token is taken,
    else the seconds until the next would be free: then nothing may be sent.
    Tokens already taken are not given back, which can only mean fewer calls.
    """
    budget = float(getattr(settings, "RATE_LIMIT_MAX_WAIT_SECONDS", throttling.DEFAULT_RATE_LIMIT_MAX_WAIT_SECONDS))
    deadline = time.monotonic() + budget
    for _ in range(max(calls, 1)):
        wait = throttling.rate_limit_acquire(app=provider_app, max_wait=max(deadline - time.monotonic(), 0.0))
        if wait > 0:
            return wait
    return 0.0


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def client_link_max_age() -> dt.timedelta:
    return dt.timedelta(days=getattr(settings, "CLIENT_LINK_MAX_AGE_DAYS", 7))


def source_words(*, provider_app: ProviderApp, platform: str) -> str:
    """ "Coinbase via Turnqey" (or just "Coinify"): how every message names a source."""
    return wording.source_name(provider=provider_app.provider, platform=platform)


def actor_user(user: User | None) -> AuthUser | None:
    return user if isinstance(user, AuthUser) and user.is_authenticated else None


# --- Pending connections ------------------------------------------------------------


def connection_pending_get_or_create(
    *, household: Household, client: Client, provider_app: ProviderApp, platform: str, user: User | None
) -> Connection:
    """The connection row a new connect fills in: an unfinished one is reused, else created.

    Reuse keeps a household from collecting one pending row per abandoned attempt.
    """
    existing = (
        Connection.objects.filter(
            household=household,
            client=client,
            provider_app=provider_app,
            platform=platform,
            status=Status.PENDING,
            external_account_id="",
        )
        .order_by("-created_at")
        .first()
    )
    if existing is not None:
        return existing
    actor = actor_user(user)
    return lifecycle.connection_start(
        household=household,
        client=client,
        provider_app=provider_app,
        platform=platform,
        actor=actor,
        actor_label="" if actor else CLIENT_LINK_ACTOR,
    )


def grant_land(
    *,
    connection: Connection,
    grant: Grant,
    purpose: str,
    user: User | None,
) -> Connection:
    """Apply a completed authorization to ``connection``; returns the connection it landed on.

    A connect that finds its pending row already connected to another account
    by a parallel authorization (a second tab) gets a connection of its own,
    so neither account silently replaces the other. Raises what
    :func:`lifecycle.grant_apply` raises otherwise.
    """
    actor = actor_user(user)
    actor_label = "" if actor else CLIENT_LINK_ACTOR
    try:
        return lifecycle.grant_apply(
            connection=connection, grant=grant, purpose=purpose, actor=actor, actor_label=actor_label
        )
    except lifecycle.ConnectedMeanwhile:
        separate = lifecycle.connection_start(
            household=connection.household,
            client=connection.client,
            provider_app=connection.provider_app,
            platform=connection.platform,
            actor=actor,
            actor_label=actor_label,
        )
        return lifecycle.grant_apply(
            connection=separate, grant=grant, purpose=purpose, actor=actor, actor_label=actor_label
        )


def may_still_act(*, user_id: int | None, household: Household) -> bool:
    """Whoever started a flow may still act on the household when it completes (scope can change meanwhile)."""
    if user_id is None:
        return True  # a client's own link: the link itself is checked when it is claimed
    from ..selectors import household_queryset_for  # selectors import services' neighbours

    starter = AuthUser.objects.filter(pk=user_id, is_active=True).first()
    return starter is not None and household_queryset_for(user=starter).filter(pk=household.pk).exists()


def purpose_for(connection: Connection | None) -> str:
    """A connection that once had a source account is being reconnected; anything else is a connect."""
    if connection is not None and connection.external_account_id:
        return AuthorizationRequest.Purpose.RECONNECT
    return AuthorizationRequest.Purpose.CONNECT


def provider_error_words(*, exc: ProviderError, source: str, provider: str, by_client: bool) -> str:
    """What a connect the provider did not grant says to whoever is reading (``by_client``: their own link).

    Built from the error's kind and reason: the provider's own message is
    written for the adviser ("Ask the client to ..."), so it is never shown here.
    """
    return wording.connect_failed(
        source=source, provider=provider, kind=str(exc.kind), reason=str(exc.reason or ""), by_client=by_client
    )
