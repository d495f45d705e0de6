"""Redirect flows (Turnqey, Dapi): start an authorization, and finish it from the provider's callback."""

from __future__ import annotations

import datetime as dt
import enum
import hmac
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import lifecycle, wording
from ..models import (
    AuthorizationRequest,
    Client,
    ClientLink,
    Connection,
    Household,
    ProviderApp,
    Status,
)
from ..providers.errors import AuthorizationDenied, ProviderError
from .client_links import ClientLinkError, client_link_claim, client_link_complete, client_link_release
from .common import (
    AUTHORIZATION_REQUEST_TTL,
    User,
    actor_user,
    connection_pending_get_or_create,
    grant_land,
    may_still_act,
    provider_calls_take,
    provider_error_words,
    purpose_for,
    sha256_hex,
    source_words,
)

# --- Redirect flows (Turnqey, Dapi) ---------------------------------------------------


@dataclass(frozen=True)
class AuthorizationStarted:
    """Where to send the browser, and the state's hash to bind to the browser session."""

    redirect_url: str
    state_hash: str
    authorization_request: AuthorizationRequest


def authorization_start(
    *,
    provider_app: ProviderApp,
    platform: str,
    household: Household,
    client: Client,
    redirect_uri: str,
    user: User | None = None,
    connection: Connection | None = None,
    client_link: ClientLink | None = None,
    now: dt.datetime | None = None,
) -> AuthorizationStarted:
    """Start a redirect flow and return the provider URL to send the browser to.

    Creates an :class:`AuthorizationRequest` whose ``state`` is 256 random bits,
    stored only as its SHA-256, bound to the starting user (or client link) and
    household, single use and valid for 15 minutes. A new connect also creates
    (or reuses) the pending :class:`Connection` with a ``CREATED`` event; a
    reconnect passes the existing ``connection``. The household's Turnqey
    collection is passed as grouping, so a reconnect stays in it.

    ``redirect_uri`` is the portal's callback for this provider; the app's
    registered redirect URI wins when it has one. Raises :class:`ProviderError`
    when the provider cannot start (nothing is created then) and ``ValueError``
    for a provider without a redirect flow.
    """
    now = now or timezone.now()
    provider_client = lifecycle.client_for_app(app=provider_app)
    if provider_client.flow != "redirect":
        raise ValueError(f"{provider_app.get_provider_display()} has no redirect flow")
    state = secrets.token_urlsafe(32)
    start = provider_client.start_authorization(
        state=state,
        platform=platform,
        identity=str(client.identity),
        grouping=lifecycle.household_grouping(household),
        redirect_uri=provider_app.redirect_uri or redirect_uri,
    )
    purpose = purpose_for(connection)
    with transaction.atomic():
        if connection is None:
            connection = connection_pending_get_or_create(
                household=household, client=client, provider_app=provider_app, platform=platform, user=user
            )
        request = AuthorizationRequest.objects.create(
            state_hash=sha256_hex(state),
            provider_app=provider_app,
            provider=provider_app.provider,
            platform=platform,
            purpose=purpose,
            household=household,
            client=client,
            connection=connection,
            started_by=actor_user(user),
            client_link=client_link,
            checksum=start.checksum,
            created_at=now,
            expires_at=now + AUTHORIZATION_REQUEST_TTL,
        )
    return AuthorizationStarted(
        redirect_url=start.redirect_url, state_hash=request.state_hash, authorization_request=request
    )


class CallbackOutcome(enum.StrEnum):
    APPROVED = "approved"
    DENIED = "denied"
    ERROR = "error"
    EXPIRED = "expired"
    REPLAYED = "replayed"
    UNKNOWN = "unknown"
    WRONG_PROVIDER = "wrong_provider"
    WRONG_SESSION = "wrong_session"
    MISMATCH = "mismatch"
    DUPLICATE = "duplicate"
    REMOVED = "removed"  # the connection was disconnected while the authorization was in flight
    NO_ACCESS = "no_access"  # whoever started it may no longer act on the household
    LINK_GONE = "link_gone"  # the client link was used, withdrawn or expired meanwhile
    BUSY = "busy"  # the app's shared call limit had no room: nothing was sent, and the same reply can be used again


# The HTTP status each outcome is rendered with: an outcome the user chose or
# the provider reported is a normal page; a request that cannot be honoured is not.
CALLBACK_HTTP_STATUS: dict[CallbackOutcome, int] = {
    CallbackOutcome.APPROVED: 200,
    CallbackOutcome.DENIED: 200,
    CallbackOutcome.ERROR: 502,
    CallbackOutcome.EXPIRED: 410,
    CallbackOutcome.REPLAYED: 400,
    CallbackOutcome.UNKNOWN: 400,
    CallbackOutcome.WRONG_PROVIDER: 400,
    CallbackOutcome.WRONG_SESSION: 403,
    CallbackOutcome.MISMATCH: 409,
    CallbackOutcome.DUPLICATE: 409,
    CallbackOutcome.REMOVED: 410,
    CallbackOutcome.NO_ACCESS: 403,
    CallbackOutcome.LINK_GONE: 410,
    CallbackOutcome.BUSY: 503,
}


@dataclass(frozen=True)
class AuthorizationResult:
    outcome: CallbackOutcome
    message: str
    authorization_request: AuthorizationRequest | None = None
    connection: Connection | None = None
    # Seconds until trying again makes sense (BUSY only).
    retry_after: float = 0.0

    @property
    def http_status(self) -> int:
        return CALLBACK_HTTP_STATUS[self.outcome]

    @property
    def client_link(self) -> ClientLink | None:
        return self.authorization_request.client_link if self.authorization_request else None


def _request_outcome_save(*, request: AuthorizationRequest, outcome: str, message: str) -> None:
    AuthorizationRequest.objects.filter(pk=request.pk).update(outcome=outcome, outcome_message=message[:500])
    request.outcome, request.outcome_message = outcome, message[:500]


def authorization_complete(
    *,
    provider: str,
    params: Mapping[str, str],
    user: User | None,
    bound_state_hashes: Collection[str],
    used_state_hashes: Collection[str] = (),
    now: dt.datetime | None = None,
) -> AuthorizationResult:
    """Finish a redirect flow from the provider's callback parameters.

    Checks, in order: the ``state`` names a known request (looked up by hash,
    compared in constant time); the request belongs to the provider in the
    callback URL (mix-up defence); it was started in this browser session
    (``bound_state_hashes``, kept in the session at start) and, for an adviser
    flow, by this user; it was not used before; it has not expired. It is then
    consumed with a conditional UPDATE (``used_at`` set only where it was NULL),
    so of two concurrent callbacks exactly one proceeds and a replay fails.

    Only then is the provider asked to complete the authorization and the grant
    applied through :func:`lifecycle.grant_apply`. A client link is marked
    completed on success. Never raises for an outcome: every one comes back as
    an :class:`AuthorizationResult` with a message in plain words.
    """
    now = now or timezone.now()
    state = params.get("state", "")
    state_hash = sha256_hex(state) if state else ""
    request = (
        AuthorizationRequest.objects.select_related("provider_app", "household", "client", "connection", "client_link")
        .filter(state_hash=state_hash)
        .first()
        if state_hash
        else None
    )
    # Found by the hash of what the browser brought, so a row is a match: no further compare decides anything.
    if request is None:
        return AuthorizationResult(
            CallbackOutcome.UNKNOWN,
            "This authorization link is not valid. Start the connection again from the portal.",
        )
    source = source_words(provider_app=request.provider_app, platform=request.platform)
    if request.provider != provider:
        # Not consumed: the genuine callback for this request may still arrive.
        return AuthorizationResult(
            CallbackOutcome.WRONG_PROVIDER,
            f"This reply did not come from {request.provider_app.get_provider_display()}, which the "
            "authorization was started with, so it was refused. Start the connection again.",
            request,
        )
    if request.used_at is not None and state_hash in used_state_hashes:
        # This browser finished this very authorization before (a reload, the back button).
        return AuthorizationResult(
            CallbackOutcome.REPLAYED,
            f"{source}: this authorization was already used. Nothing more to do here; "
            "if the connection is not working, start it again.",
            request,
        )
    in_session = any(hmac.compare_digest(state_hash, bound) for bound in bound_state_hashes)
    same_user = request.started_by_id is None or (
        user is not None and user.is_authenticated and user.pk == request.started_by_id
    )
    if not in_session or not same_user:
        return AuthorizationResult(
            CallbackOutcome.WRONG_SESSION,
            f"{source}: this authorization was started by someone else or in another browser, so it was "
            "refused. Start the connection again from this browser.",
            request,
        )
    if request.used_at is not None:
        return AuthorizationResult(
            CallbackOutcome.REPLAYED,
            f"{source}: this authorization reply was already used. If the connection is not working, start it again.",
            request,
        )
    if request.expires_at <= now:
        message = (
            f"{source}: the authorization took longer than {int(AUTHORIZATION_REQUEST_TTL.total_seconds() // 60)} "
            "minutes and expired. Start the connection again."
        )
        if AuthorizationRequest.objects.filter(pk=request.pk, used_at__isnull=True).update(
            used_at=now, outcome=AuthorizationRequest.Outcome.EXPIRED, outcome_message=message
        ):
            return AuthorizationResult(CallbackOutcome.EXPIRED, message, request)
        return AuthorizationResult(CallbackOutcome.REPLAYED, f"{source}: this reply was already used.", request)
    # The provider's calls are taken from the app's shared limit before the
    # request is consumed: when they are not free, nothing was sent or
    # written, so the very same reply (a reload) can finish it in a moment.
    wait = provider_calls_take(
        provider_app=request.provider_app, calls=lifecycle.client_class_for(request.provider).connect_calls
    )
    if wait > 0:
        busy = wording.provider_busy(source=source, provider=request.provider, callback=True)
        return AuthorizationResult(CallbackOutcome.BUSY, busy, request, retry_after=wait)
    # Single use: the conditional UPDATE is the claim. A concurrent or repeated
    # callback with the same state updates nothing and is a replay.
    claimed = AuthorizationRequest.objects.filter(pk=request.pk, used_at__isnull=True).update(used_at=now)
    if not claimed:
        return AuthorizationResult(
            CallbackOutcome.REPLAYED, f"{source}: this authorization reply was already used.", request
        )
    request.used_at = now
    return _authorization_finish(request=request, params=params, user=user, now=now)


def _authorization_finish(
    *, request: AuthorizationRequest, params: Mapping[str, str], user: User | None, now: dt.datetime
) -> AuthorizationResult:
    """Everything a completion re-checks now, not only when the flow started, then the provider, then the grant.

    The starter must still be allowed on the household; the connection must
    not have been disconnected meanwhile (disconnected is final); a client
    link is claimed atomically (one completion per link) and given back if
    the completion fails. Only then is the provider asked.
    """
    source = source_words(provider_app=request.provider_app, platform=request.platform)
    connection = request.connection
    assert connection is not None  # authorization_start always binds one

    def refused(outcome: CallbackOutcome, message: str) -> AuthorizationResult:
        _request_outcome_save(request=request, outcome=AuthorizationRequest.Outcome.ERROR, message=message)
        return AuthorizationResult(outcome, message, request, connection)

    if not may_still_act(user_id=request.started_by_id, household=request.household):
        return refused(
            CallbackOutcome.NO_ACCESS,
            f"{source}: you no longer have access to {request.household.name}, so nothing was connected.",
        )
    if connection.status == Status.DISCONNECTED:
        return refused(CallbackOutcome.REMOVED, _removed_words(source))
    claim = None
    if request.client_link is not None:
        try:
            claim = client_link_claim(link=request.client_link, now=now)
        except ClientLinkError as exc:
            return refused(CallbackOutcome.LINK_GONE, f"{exc.message} Nothing was connected.")
    result = _grant_from_provider(request=request, connection=connection, params=params, user=user)
    if claim is not None:
        if result.outcome == CallbackOutcome.APPROVED and result.connection is not None:
            client_link_complete(link=claim.link, connection=result.connection)
        else:
            client_link_release(claim=claim)
    return result


def _removed_words(source: str) -> str:
    return (
        f"{source}: this connection was removed while the authorization was in progress, so nothing was "
        "connected. To connect the account again, start a new connection from the portal."
    )


def _grant_from_provider(
    *, request: AuthorizationRequest, connection: Connection, params: Mapping[str, str], user: User | None
) -> AuthorizationResult:
    app = request.provider_app
    source = source_words(provider_app=app, platform=request.platform)
    try:
        grant = lifecycle.client_for_app(app=app).complete_authorization(
            params=params, platform=request.platform, identity=str(request.client.identity)
        )
    except AuthorizationDenied as exc:
        outcome = CallbackOutcome.DENIED if exc.outcome == "denied" else CallbackOutcome.ERROR
        platform = wording.platform_name(request.platform)
        if outcome == CallbackOutcome.DENIED:
            # Whoever was at the consent page pressed Deny: the adviser trying it out, or the client.
            message = f"{source}: access was not granted at {platform}, so nothing was connected."
        else:
            # The provider's sentence already names the source, in the same words as everything else.
            message = f"{exc.message.strip().rstrip('.')}. Nothing was connected."
        _request_outcome_save(request=request, outcome=outcome.value, message=message)
        return AuthorizationResult(outcome, message, request, connection)
    except ProviderError as exc:
        # A client's own link (the request carries it) is read by the client.
        by_client = request.client_link_id is not None
        message = provider_error_words(exc=exc, source=source, provider=app.provider, by_client=by_client)
        _request_outcome_save(request=request, outcome=AuthorizationRequest.Outcome.ERROR, message=message)
        return AuthorizationResult(CallbackOutcome.ERROR, message, request, connection)

    try:
        # Not inside an outer atomic block: on a mismatch, grant_apply records
        # RECONNECT_REFUSED before raising, and that event must survive.
        connection = grant_land(connection=connection, grant=grant, purpose=request.purpose, user=user)
    except lifecycle.ReconnectMismatch:
        message = (
            f"{source}: the account that signed in is not the one this connection belongs to, so it was "
            "refused and nothing changed. Please sign in with the original account and try again."
        )
        _request_outcome_save(request=request, outcome=AuthorizationRequest.Outcome.MISMATCH, message=message)
        return AuthorizationResult(CallbackOutcome.MISMATCH, message, request, connection)
    except lifecycle.GrantRefused:
        message = _removed_words(source)
        _request_outcome_save(request=request, outcome=AuthorizationRequest.Outcome.ERROR, message=message)
        return AuthorizationResult(CallbackOutcome.REMOVED, message, request, connection)
    except IntegrityError:
        message = f"{source}: this account is already connected for {request.client.name}. Nothing was added."
        _request_outcome_save(request=request, outcome=AuthorizationRequest.Outcome.ERROR, message=message)
        return AuthorizationResult(CallbackOutcome.DUPLICATE, message, request, connection)

    verb = "reconnected" if request.purpose == AuthorizationRequest.Purpose.RECONNECT else "connected"
    message = f"{source} {verb} for {request.client.name}."
    _request_outcome_save(request=request, outcome=AuthorizationRequest.Outcome.APPROVED, message=message)
    return AuthorizationResult(CallbackOutcome.APPROVED, message, request, connection)
