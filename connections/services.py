"""Writes for the adviser web UI: keyword-only, typed, ``<noun>_<verb>`` names.

Views validate input and call these. Status transitions are never decided
here: a completed authorization goes through :func:`lifecycle.grant_apply`, a
check through :func:`lifecycle.connection_check`, a disconnect through
:func:`lifecycle.connection_disconnect`, and history through
:func:`lifecycle.event_record`. The only status written here is ``pending`` on
a brand-new connection row, which is its creation, not a transition.

Secrets: the ``state`` of an authorization request and the token of a client
link are handed to the browser and never stored (only their SHA-256). A
password typed into a credential form is passed to the provider once and
dropped: it is never stored, logged, put in an event or rendered back.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from urllib.parse import urljoin

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core import signing
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from . import lifecycle, notifications, wording
from .models import (
    AuthorizationRequest,
    Client,
    ClientLink,
    Connection,
    ConnectionEvent,
    Household,
    ProviderApp,
    Status,
)
from .providers.base import AuthorizationDenied, ErrorKind, FailureReason, InvalidCredentialFields, ProviderError

User = AbstractBaseUser | AnonymousUser

# Long enough to sign in at the source platform, short enough that a leaked
# state is useless soon after.
AUTHORIZATION_REQUEST_TTL = dt.timedelta(minutes=15)
CLIENT_LINK_SALT = "connections.client-link"
CLIENT_LINK_ACTOR = wording.CLIENT_LINK


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _client_link_max_age() -> dt.timedelta:
    return dt.timedelta(days=getattr(settings, "CLIENT_LINK_MAX_AGE_DAYS", 7))


def source_words(*, provider_app: ProviderApp, platform: str) -> str:
    """ "Coinbase via Turnqey" (or just "Coinify"): how every message names a source."""
    return wording.source_name(provider=provider_app.provider, platform=platform)


def _actor_user(user: User | None) -> AbstractBaseUser | None:
    return user if user is not None and user.is_authenticated else None  # type: ignore[return-value]


# --- Pending connections ------------------------------------------------------------


def _connection_pending_get_or_create(
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
    actor = _actor_user(user)
    return lifecycle.connection_start(
        household=household,
        client=client,
        provider_app=provider_app,
        platform=platform,
        actor=actor,
        actor_label="" if actor else CLIENT_LINK_ACTOR,
    )


def _purpose_for(connection: Connection | None) -> str:
    """A connection that once had a source account is being reconnected; anything else is a connect."""
    if connection is not None and connection.external_account_id:
        return AuthorizationRequest.Purpose.RECONNECT
    return AuthorizationRequest.Purpose.CONNECT


def _grouping_for(household: Household) -> dict[str, str]:
    # The household's Turnqey collection, so a new or renewed connection joins
    # the sources the household already has there. Other providers ignore it.
    if household.turnqey_collection:
        return {"collection": str(household.turnqey_collection)}
    return {}


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
        grouping=_grouping_for(household),
        redirect_uri=provider_app.redirect_uri or redirect_uri,
    )
    purpose = _purpose_for(connection)
    with transaction.atomic():
        if connection is None:
            connection = _connection_pending_get_or_create(
                household=household, client=client, provider_app=provider_app, platform=platform, user=user
            )
        request = AuthorizationRequest.objects.create(
            state_hash=_sha256(state),
            provider_app=provider_app,
            provider=provider_app.provider,
            platform=platform,
            purpose=purpose,
            household=household,
            client=client,
            connection=connection,
            started_by=_actor_user(user),
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
}


@dataclass(frozen=True)
class AuthorizationResult:
    outcome: CallbackOutcome
    message: str
    authorization_request: AuthorizationRequest | None = None
    connection: Connection | None = None

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
    state_hash = _sha256(state) if state else ""
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
    app = request.provider_app
    source = source_words(provider_app=app, platform=request.platform)
    provider_name = app.get_provider_display()
    try:
        grant = lifecycle.client_for_app(app=app).complete_authorization(
            params=params, platform=request.platform, identity=str(request.client.identity)
        )
    except AuthorizationDenied as exc:
        outcome = CallbackOutcome.DENIED if exc.outcome == "denied" else CallbackOutcome.ERROR
        if outcome == CallbackOutcome.DENIED:
            message = f"{source}: access was not granted, so nothing was connected. {exc.message}".strip()
        else:
            message = f"{source}: {provider_name} reported an error: {exc.message} Nothing was connected."
        _request_outcome_save(request=request, outcome=outcome.value, message=message)
        return AuthorizationResult(outcome, message, request, request.connection)
    except ProviderError as exc:
        message = _provider_error_words(exc=exc, source=source, provider_name=provider_name)
        _request_outcome_save(request=request, outcome=AuthorizationRequest.Outcome.ERROR, message=message)
        return AuthorizationResult(CallbackOutcome.ERROR, message, request, request.connection)

    connection = request.connection
    assert connection is not None  # authorization_start always binds one
    actor = _actor_user(user)
    try:
        # Not inside an outer atomic block: on a mismatch, grant_apply records
        # RECONNECT_REFUSED before raising, and that event must survive. It also
        # remembers the Turnqey collection on the household when it has none.
        connection = lifecycle.grant_apply(
            connection=connection,
            grant=grant,
            purpose=request.purpose,
            actor=actor,
            actor_label="" if actor else CLIENT_LINK_ACTOR,
        )
    except lifecycle.ReconnectMismatch:
        message = (
            f"{source}: the account that signed in is not the one this connection belongs to, so it was "
            "refused and nothing changed. Please sign in with the original account and try again."
        )
        _request_outcome_save(request=request, outcome=AuthorizationRequest.Outcome.MISMATCH, message=message)
        return AuthorizationResult(CallbackOutcome.MISMATCH, message, request, connection)
    except IntegrityError:
        message = f"{source}: this account is already connected for {request.client.name}. Nothing was added."
        _request_outcome_save(request=request, outcome=AuthorizationRequest.Outcome.ERROR, message=message)
        return AuthorizationResult(CallbackOutcome.DUPLICATE, message, request, connection)

    verb = "reconnected" if request.purpose == AuthorizationRequest.Purpose.RECONNECT else "connected"
    message = f"{source} {verb} for {request.client.name}."
    _request_outcome_save(request=request, outcome=AuthorizationRequest.Outcome.APPROVED, message=message)
    if request.client_link is not None:
        client_link_complete(link=request.client_link, connection=connection, now=now)
    return AuthorizationResult(CallbackOutcome.APPROVED, message, request, connection)


def _provider_error_words(*, exc: ProviderError, source: str, provider_name: str) -> str:
    if exc.kind == ErrorKind.APP_CREDENTIALS_INVALID:
        return (
            f"{source}: {provider_name} rejected the portal's own credentials. Nothing was connected; "
            "an administrator has been told and has to fix the provider settings."
        )
    if exc.kind == ErrorKind.REAUTH_REQUIRED:
        if exc.reason == FailureReason.CREDENTIALS_INVALID:
            return f"{source}: {provider_name} did not accept these credentials. Check them and try again."
        if exc.reason == FailureReason.EXPIRED:
            return f"{source}: the authorization expired before it could be completed. Start again."
        return f"{source}: {provider_name} refused access ({exc.message}). Start again."
    return (
        f"{source}: {provider_name} could not be reached or answered unexpectedly. Nothing was saved; "
        "try again in a few minutes."
    )


# --- Credential forms (Coinify, Bloquo) -----------------------------------------------


ReconnectMismatch = lifecycle.ReconnectMismatch


class CredentialsRejected(Exception):
    """The provider did not accept what was typed (or could not be reached). Nothing changed.

    ``field`` names the form field the message belongs to, or ``None`` for the whole form.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def credentials_connect(
    *,
    provider_app: ProviderApp,
    platform: str,
    household: Household,
    client: Client,
    fields: Mapping[str, str],
    user: User | None = None,
    connection: Connection | None = None,
    client_link: ClientLink | None = None,
) -> Connection:
    """Connect (or, with ``connection``, reconnect) from typed credentials.

    The provider is asked first; only when it grants access are rows written
    (in one transaction: the pending connection with its ``CREATED`` event on a
    new connect, then :func:`lifecycle.grant_apply`). So a refusal changes
    nothing and raises :class:`CredentialsRejected`. A reconnect to a different
    source account raises :class:`lifecycle.ReconnectMismatch` (grant_apply has
    recorded a ``RECONNECT_REFUSED`` event). ``fields`` may hold a password: it
    goes to the provider once and nowhere else.
    """
    source = source_words(provider_app=provider_app, platform=platform)
    provider_name = provider_app.get_provider_display()
    provider_client = lifecycle.client_for_app(app=provider_app)
    if provider_client.flow != "form":
        raise ValueError(f"{provider_name} has no credential form")
    try:
        grant = provider_client.connect_with_credentials(fields=fields, platform=platform)
    except InvalidCredentialFields as exc:
        raise CredentialsRejected(exc.message, field=exc.field) from None
    except AuthorizationDenied as exc:
        raise CredentialsRejected(f"{source}: access was not granted. {exc.message}".strip()) from None
    except ProviderError as exc:
        # `from None`: the provider's exception may carry request details; the
        # message below is all anyone needs.
        raise CredentialsRejected(_provider_error_words(exc=exc, source=source, provider_name=provider_name)) from None

    purpose = _purpose_for(connection)
    actor = _actor_user(user)
    actor_label = "" if actor else CLIENT_LINK_ACTOR
    try:
        if connection is None:
            # A new connection: the row and its grant together or not at all.
            with transaction.atomic():
                target = _connection_pending_get_or_create(
                    household=household, client=client, provider_app=provider_app, platform=platform, user=user
                )
                target = lifecycle.grant_apply(
                    connection=target, grant=grant, purpose=purpose, actor=actor, actor_label=actor_label
                )
        else:
            # A reconnect: no outer atomic block, so the RECONNECT_REFUSED event
            # grant_apply records before raising ReconnectMismatch is kept.
            target = lifecycle.grant_apply(
                connection=connection, grant=grant, purpose=purpose, actor=actor, actor_label=actor_label
            )
    except IntegrityError:
        raise CredentialsRejected(
            f"{source}: this account is already connected for {client.name}. Nothing was added."
        ) from None
    if client_link is not None:
        client_link_complete(link=client_link, connection=target)
    return target


# --- Checks and disconnects ------------------------------------------------------------


@dataclass(frozen=True)
class CheckNow:
    """What "Check now" did: the check's outcome (``lifecycle.Outcome``) and plain words for the person."""

    outcome: str
    ok: bool
    message: str


def connection_check_now(*, connection: Connection, user: User) -> CheckNow:
    """Check one connection right away (renew when due, probe), as ``user``, and say what happened.

    The lifecycle decides what the outcome means for the status; a check
    already running elsewhere comes back as not checked.
    """
    result = lifecycle.connection_check(
        connection_id=connection.pk, actor=_actor_user(user), actor_label="", force=True
    )
    connection.refresh_from_db(fields=["status", "reason"])
    message = wording.check_now_words(
        outcome=result.outcome,
        source=connection.source_display,
        provider=connection.provider,
        status_message=connection.status_message,
        error=result.message if result.outcome == lifecycle.Outcome.TRANSIENT else "",
    )
    return CheckNow(outcome=result.outcome, ok=result.outcome == lifecycle.Outcome.OK, message=message)


def connections_check_enqueue(
    *, connection_ids: Collection[int], actor: User | None = None, actor_label: str = wording.ADMIN
) -> int:
    """Queue an immediate check of each connection (one task each, ids only, sent once committed).

    Pending and disconnected connections are left out: there is nothing to
    check. ``actor`` and ``actor_label`` (admin, API) are recorded on the
    events the checks write. Returns how many were queued.
    """
    actor_id = actor.pk if actor is not None and actor.is_authenticated else None
    from .tasks import check_connection  # tasks import services' neighbours; imported at call time

    ids = list(
        Connection.objects.filter(pk__in=list(connection_ids), status__in=sorted(lifecycle.rules.CHECKABLE))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for connection_id in ids:
        transaction.on_commit(
            lambda connection_id=connection_id: check_connection.delay(
                connection_id, force=True, actor_id=actor_id, actor_label=actor_label
            )
        )
    return len(ids)


def connection_disconnect_now(*, connection: Connection, user: User) -> Connection:
    """Disconnect on purpose: the lifecycle revokes at the provider and deletes secrets."""
    return lifecycle.connection_disconnect(connection=connection, actor=_actor_user(user))


# --- Client links ----------------------------------------------------------------------


class ClientLinkError(Exception):
    """A link that cannot be used. ``gone`` is true for one that was valid once (410)."""

    def __init__(self, message: str, *, gone: bool = False, link: ClientLink | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.gone = gone
        self.link = link


def _client_link_signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=CLIENT_LINK_SALT)


@dataclass(frozen=True)
class ClientLinkCreated:
    link: ClientLink
    url: str = ""

    def __repr__(self) -> str:  # the URL carries the token
        return f"ClientLinkCreated(link={self.link.pk})"


def client_link_create(
    *,
    household: Household,
    client: Client,
    user: User,
    connection: Connection | None = None,
    provider_app: ProviderApp | None = None,
    platform: str = "",
    base_url: str = "",
    now: dt.datetime | None = None,
) -> ClientLinkCreated:
    """Create a client link for one reconnect (``connection``) or one new connection, and email it.

    The URL carries ``TimestampSigner(salt).sign(random 256-bit token)``; only the
    SHA-256 of the random part is stored. Expires after ``CLIENT_LINK_MAX_AGE_DAYS``
    (7 by default). Sent to the client's email, in plain text and HTML, and
    recorded as ``LINK_SENT`` when it concerns an existing connection.
    ``base_url`` is the portal's public origin (``PORTAL_BASE_URL`` by default).
    Raises ``ValueError`` when the client has no email or the scope does not fit
    the household.
    """
    now = now or timezone.now()
    if client.household_id != household.pk:
        raise ValueError("The client is not in this household.")
    if not client.email:
        raise ValueError(f"{client.name} has no email address; add one before sending a link.")
    if connection is not None:
        if connection.household_id != household.pk or connection.client_id != client.pk:
            raise ValueError("The connection is not this client's.")
        provider_app, platform = connection.provider_app, connection.platform
    if provider_app is None or not platform:
        raise ValueError("Say what the client should connect.")

    raw = secrets.token_urlsafe(32)
    token = _client_link_signer().sign(raw)
    with transaction.atomic():
        link = ClientLink.objects.create(
            token_hash=_sha256(raw),
            household=household,
            client=client,
            connection=connection,
            provider_app=provider_app,
            platform=platform,
            status=ClientLink.LinkStatus.SENT,
            sent_to=client.email,
            created_by=_actor_user(user),
            created_at=now,
            expires_at=now + _client_link_max_age(),
            sent_at=now,
        )
        if connection is not None:
            lifecycle.event_record(
                connection=connection,
                kind=ConnectionEvent.Kind.LINK_SENT,
                message=wording.link_sent(email=client.email, expires_at=link.expires_at),
                actor=_actor_user(user),
            )
    url = urljoin((base_url or settings.PORTAL_BASE_URL).rstrip("/") + "/", reverse("client_link", args=[token]))
    notifications.client_link_email_send(link=link, url=url, is_reconnect=client_link_is_reconnect(link=link))
    return ClientLinkCreated(link=link, url=url)


def client_link_is_reconnect(*, link: ClientLink) -> bool:
    """A link for a connection that once worked (not one still waiting for its first authorization)."""
    return link.connection is not None and bool(link.connection.external_account_id)


def client_link_resolve(*, token: str, now: dt.datetime | None = None) -> ClientLink:
    """The link a URL token names, if it may still be used.

    Raises :class:`ClientLinkError`: a tampered or unknown token is not ``gone``
    (400); an expired, completed or cancelled link is ``gone`` (410). An open link
    found past its expiry is marked expired (with a ``LINK_EXPIRED`` event).
    """
    now = now or timezone.now()
    signer = _client_link_signer()
    try:
        raw = signer.unsign(token, max_age=_client_link_max_age())
    except signing.SignatureExpired:
        # The signature is genuine but old: find the row to mark it expired.
        try:
            raw = signer.unsign(token)
        except signing.BadSignature:  # pragma: no cover - unsign just verified it
            raw = ""
        link = ClientLink.objects.filter(token_hash=_sha256(raw)).select_related("connection").first() if raw else None
        if link is not None:
            client_link_expire(link=link)
        raise ClientLinkError(
            "This link has expired. Ask your adviser to send a new one.", gone=True, link=link
        ) from None
    except signing.BadSignature:
        raise ClientLinkError("This link is not valid. Check that you copied all of it.") from None
    link = (
        ClientLink.objects.select_related("household__firm", "client", "connection", "provider_app", "created_by")
        .filter(token_hash=_sha256(raw))
        .first()
    )
    if link is None:
        raise ClientLinkError("This link is not valid. Check that you copied all of it.")
    if link.status == ClientLink.LinkStatus.COMPLETED:
        raise ClientLinkError("This link was already used, and the connection is done.", gone=True, link=link)
    if link.status == ClientLink.LinkStatus.CANCELLED:
        raise ClientLinkError("This link was withdrawn. Ask your adviser for a new one.", gone=True, link=link)
    if link.status == ClientLink.LinkStatus.EXPIRED or link.expires_at <= now:
        client_link_expire(link=link)
        raise ClientLinkError("This link has expired. Ask your adviser to send a new one.", gone=True, link=link)
    if link.connection is not None and link.connection.status == Status.DISCONNECTED:
        raise ClientLinkError(
            "The connection this link was for has been removed. Ask your adviser for a new link.", gone=True, link=link
        )
    return link


def client_link_open(*, link: ClientLink, now: dt.datetime | None = None) -> ClientLink:
    """Record that the client opened the link (first time only: a conditional UPDATE)."""
    now = now or timezone.now()
    opened = ClientLink.objects.filter(pk=link.pk, status=ClientLink.LinkStatus.SENT).update(
        status=ClientLink.LinkStatus.OPENED, opened_at=now
    )
    if opened:
        link.status, link.opened_at = ClientLink.LinkStatus.OPENED, now
        if link.connection is not None:
            lifecycle.event_record(
                connection=link.connection,
                kind=ConnectionEvent.Kind.LINK_OPENED,
                message=wording.link_opened(email=link.sent_to),
                actor_label=CLIENT_LINK_ACTOR,
            )
    return link


def client_link_expire(*, link: ClientLink) -> bool:
    """Mark an open link expired (once; a conditional UPDATE). True when this call did it."""
    expired = ClientLink.objects.filter(
        pk=link.pk, status__in=[ClientLink.LinkStatus.SENT, ClientLink.LinkStatus.OPENED]
    ).update(status=ClientLink.LinkStatus.EXPIRED)
    if expired:
        link.status = ClientLink.LinkStatus.EXPIRED
        if link.connection is not None:
            connection = link.connection
            lifecycle.event_record(
                connection=connection,
                kind=ConnectionEvent.Kind.LINK_EXPIRED,
                message=wording.link_expired(source=connection.source_display),
                actor_label=CLIENT_LINK_ACTOR,
            )
    return bool(expired)


def client_link_complete(*, link: ClientLink, connection: Connection, now: dt.datetime | None = None) -> bool:
    """Mark the link completed by ``connection`` (once). True when this call did it."""
    now = now or timezone.now()
    completed = ClientLink.objects.filter(
        pk=link.pk, status__in=[ClientLink.LinkStatus.SENT, ClientLink.LinkStatus.OPENED]
    ).update(status=ClientLink.LinkStatus.COMPLETED, completed_at=now)
    if completed:
        link.status, link.completed_at = ClientLink.LinkStatus.COMPLETED, now
        lifecycle.event_record(
            connection=connection,
            kind=ConnectionEvent.Kind.LINK_COMPLETED,
            message=wording.link_completed(email=link.sent_to),
            actor_label=CLIENT_LINK_ACTOR,
        )
    return bool(completed)
