"""Client links: a signed, expiring link that lets a client connect or reconnect without a login."""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass
from urllib.parse import urljoin

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core import signing
from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from .. import attempts, lifecycle, notifications, wording
from ..models import (
    Client,
    ClientLink,
    Connection,
    ConnectionEvent,
    Household,
    ProviderApp,
    Status,
)
from ..wording.links import link_email_failed
from .common import (
    CLIENT_LINK_ACTOR,
    CLIENT_LINK_SALT,
    User,
    actor_user,
    client_link_max_age,
    person_throttle,
    sha256_hex,
)

logger = logging.getLogger("connections.client_links")

# A link may still be used in these states; every other one is final.
OPEN_STATES = (ClientLink.LinkStatus.SENT, ClientLink.LinkStatus.OPENED)

# What the client reads about a link that cannot be used (however it was found out).
LINK_INVALID = "This link is not valid. Check that you copied all of it."
LINK_EXPIRED = "This link has expired. Ask your adviser to send a new one."
LINK_WITHDRAWN = "This link was withdrawn. Ask your adviser for a new one."
LINK_USED = (
    "This link was already used to finish the connection, so there is nothing more to do. If something "
    "still is not working, ask your adviser for a new link."
)

# --- Client links ----------------------------------------------------------------------


class ClientLinkError(Exception):
    """A link that cannot be used. ``gone`` is true for one that was valid once (410)."""

    def __init__(self, message: str, *, gone: bool = False, link: ClientLink | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.gone = gone
        self.link = link


class ClientLinkLocked(Exception):
    """The link's credential attempts are spent, so it is locked: nothing was sent to the provider."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LinkEmailFailed(Exception):
    """The link's email could not be sent, so nothing was kept: no link, no event, nothing announced.

    ``message`` says so to the person who asked, and what to do.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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
    now: dt.datetime | None = None,
    actor_label: str = "",
    send_email: bool = True,
) -> ClientLinkCreated:
    """Create a client link for one reconnect (``connection``) or one new connection, and email it.

    The URL carries ``TimestampSigner(salt).sign(random 256-bit token)``; only the
    SHA-256 of the random part is stored. Expires after ``CLIENT_LINK_MAX_AGE_DAYS``
    (7 by default). Sent to the client's email, in plain text and HTML, and
    recorded as ``LINK_SENT`` (naming the link in its details) when it concerns
    an existing connection. ``send_email=False`` creates the link without
    emailing it (the firm's own system delivers the URL); the event says so.
    ``actor_label`` says through what a non-person did it (``wording.API``...).
    The URL is built on ``PORTAL_BASE_URL`` and never on anything a request
    says about itself (its Host header can be forged, and the email would
    then send the client's token to the forger's host). Raises ``ValueError``
    when the link is to be emailed and the client has no email, or the scope
    does not fit the household, and :class:`Throttled` when ``user`` has sent
    ``CLIENT_LINK_SENDS_PER_HOUR`` links in the last hour (nothing is created
    or sent then).

    The email is sent outside any transaction, so a slow mail server holds
    no transaction or row lock open. The link is committed first (so the
    URL in the email names a row every connection can see, while the
    connection's older links still work); once the email went, a second
    short transaction replaces the older links and records ``LINK_SENT``
    (and so the ``client_link.sent`` webhook and the audit row). The event
    waits for the email because the outbox announces it to the firm's
    systems as soon as it commits, and a "sent" announcement cannot be taken
    back. A mail server that refuses (:class:`LinkEmailFailed`) gets the
    link deleted again in its own short transaction: it never reached the
    client as far as the portal knows, nothing was announced, the older
    links were never touched, the sender's attempt is given back, and a
    retry starts clean. If the server took the message but said it did not,
    the client has an email whose link opens as not valid; if the process
    dies between the email and the second transaction, the send goes on the
    record when the client opens the link (:func:`link_email_confirm`).
    """
    now = now or timezone.now()
    if client.household_id != household.pk:
        raise ValueError("The client is not in this household.")
    if send_email and not client.email:
        raise ValueError(wording.link_needs_email(client=client.name))
    if connection is not None:
        if connection.household_id != household.pk or connection.client_id != client.pk:
            raise ValueError("The connection is not this client's.")
        provider_app, platform = connection.provider_app, connection.platform
    if provider_app is None or not platform:
        raise ValueError("Say what the client should connect.")
    sender = actor_user(user)
    # Each send is an email now and provider work later (the client's
    # connect): one adviser may not spend what every firm shares.
    taken = (
        person_throttle(name=attempts.LimitName.LINK_SENDS_PER_USER, person=sender, words=wording.link_sends_throttled)
        if sender is not None
        else None
    )

    raw = secrets.token_urlsafe(32)
    token = _client_link_signer().sign(raw)
    url = urljoin(settings.PORTAL_BASE_URL.rstrip("/") + "/", reverse("client_link", args=[token]))
    link = ClientLink(
        token_hash=sha256_hex(raw),
        household=household,
        client=client,
        connection=connection,
        provider_app=provider_app,
        platform=platform,
        status=ClientLink.LinkStatus.SENT,
        sent_to=client.email,
        created_by=sender,
        created_at=now,
        expires_at=now + client_link_max_age(),
        # Set once the email went (reports.receivers_outbox records the send then).
        sent_at=None if send_email else now,
    )
    if not send_email:
        with transaction.atomic():
            link.save(force_insert=True)
            _link_sent_record(link=link, user=user, actor_label=actor_label, emailed=False)
        return ClientLinkCreated(link=link, url=url)

    link.save(force_insert=True)  # committed (autocommit) before the mail server is asked
    try:
        notifications.client_link_email_send(link=link, url=url, is_reconnect=client_link_is_reconnect(link=link))
    # Whatever the backend raises (SMTP, a socket, an ESP's API error):
    # each means the client did not get the link.
    except Exception as exc:
        logger.warning(
            "Client link for connection %s: the email could not be sent (%s); the link was removed.",
            connection.pk if connection is not None else "(new)",
            type(exc).__name__,
        )
        ClientLink.objects.filter(pk=link.pk).delete()
        if taken is not None:
            attempts.attempts_give_back(taken=taken)
        raise LinkEmailFailed(link_email_failed(email=client.email)) from exc
    if not link_email_confirm(link=link, user=user, actor_label=actor_label, at=now):
        link.refresh_from_db(fields=["sent_at", "status", "opened_at"])  # the client opened it first
    return ClientLinkCreated(link=link, url=url)


def link_email_confirm(
    *, link: ClientLink, user: User, actor_label: str, at: dt.datetime, at_open: bool = False
) -> bool:
    """Put an emailed link's send on the record (its ``sent_at``, its audit row, ``LINK_SENT``), once.

    Two callers may know the email went: the sender, once the mail server
    took it, and :func:`client_link_open`, when the client opens a link whose
    send is not on the record (its sender died between the email and this,
    or is still on its way here). The row is locked and its ``sent_at``
    looked at first, so whichever comes second records nothing; True for the
    one that recorded it. ``at_open``: the send came to be known from the
    client's opening the link, not from the mail server (its event says so).
    """
    with transaction.atomic():
        unconfirmed = ClientLink.objects.select_for_update().filter(pk=link.pk, sent_at__isnull=True)
        if not unconfirmed.exists():
            return False
        link.sent_at = at
        link.save(update_fields=["sent_at"])  # the audit row (reports.receivers_outbox)
        _link_sent_record(link=link, user=user, actor_label=actor_label, emailed=True, at_open=at_open)
    return True


def _link_sent_record(
    *, link: ClientLink, user: User, actor_label: str, emailed: bool, at_open: bool = False
) -> None:
    """The link reached its client (or its firm's system): it replaces the connection's older ones, on the record.

    Only older links are replaced, so of two sends at once for one connection the newer stays live.
    """
    connection = link.connection
    if connection is None:
        return
    # One live link per connection: a new one replaces the older (which says so if opened).
    ClientLink.objects.filter(connection=connection, status__in=OPEN_STATES, created_at__lte=link.created_at).exclude(
        pk=link.pk
    ).update(status=ClientLink.LinkStatus.SUPERSEDED)
    lifecycle.event_record(
        connection=connection,
        kind=ConnectionEvent.Kind.LINK_SENT,
        message=(
            wording.link_sent(email=link.sent_to, expires_at=link.expires_at, at_open=at_open)
            if emailed
            else wording.link_issued(expires_at=link.expires_at)
        ),
        actor=actor_user(user),
        actor_label=actor_label,
        details={"client_link_id": str(link.pk), "emailed": emailed, **({"recorded_at_open": True} if at_open else {})},
    )


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
        raw = signer.unsign(token, max_age=client_link_max_age())
    except signing.SignatureExpired:
        # The signature is genuine but old: find the row to mark it expired.
        try:
            raw = signer.unsign(token)
        except signing.BadSignature:  # pragma: no cover - unsign just verified it
            raw = ""
        link = (
            ClientLink.objects.filter(token_hash=sha256_hex(raw)).select_related("connection").first() if raw else None
        )
        if link is not None:
            client_link_expire(link=link)
        raise ClientLinkError(LINK_EXPIRED, gone=True, link=link) from None
    except signing.BadSignature:
        raise ClientLinkError(LINK_INVALID) from None
    link = (
        ClientLink.objects.select_related("household__firm", "client", "connection", "provider_app", "created_by")
        .defer("provider_app__client_secret")
        .filter(token_hash=sha256_hex(raw))
        .first()
    )
    if link is None:
        raise ClientLinkError(LINK_INVALID)
    if link.status == ClientLink.LinkStatus.COMPLETED:
        raise ClientLinkError(LINK_USED, gone=True, link=link)
    if link.status == ClientLink.LinkStatus.SUPERSEDED:
        raise ClientLinkError(
            "Your adviser has sent you a newer link for this. Please use the most recent email.", gone=True, link=link
        )
    if link.status == ClientLink.LinkStatus.CANCELLED:
        raise ClientLinkError(LINK_WITHDRAWN, gone=True, link=link)
    if link.status == ClientLink.LinkStatus.LOCKED:
        raise ClientLinkError(
            wording.client_link_locked(firm=link.household.firm.name, attempts=link.credential_attempts),
            gone=True,
            link=link,
        )
    if link.status == ClientLink.LinkStatus.EXPIRED or link.expires_at <= now:
        client_link_expire(link=link)
        raise ClientLinkError(LINK_EXPIRED, gone=True, link=link)
    if link.connection is not None and link.connection.status == Status.DISCONNECTED:
        raise ClientLinkError(
            "The connection this link was for has been removed. Ask your adviser for a new link.", gone=True, link=link
        )
    return link


def client_link_open(*, link: ClientLink, now: dt.datetime | None = None) -> ClientLink:
    """Record that the client opened the link (first time only: a conditional UPDATE)."""
    now = now or timezone.now()
    if link.sent_at is None:
        # The client holds the emailed token, so the email went: its send goes on the record first.
        sender = link.created_by or AnonymousUser()
        link_email_confirm(link=link, user=sender, actor_label="", at=now, at_open=True)
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
                details={"client_link_id": str(link.pk)},
            )
    return link


def client_link_attempt_limit() -> int:
    return int(getattr(settings, "CLIENT_LINK_CREDENTIAL_ATTEMPTS", 5))


def client_link_attempt_take(*, link: ClientLink) -> None:
    """Take one credential attempt on an open link before the typed credentials are sent anywhere.

    A conditional UPDATE: of concurrent posts, at most the limit's worth get
    through, whatever their timing. Raises :class:`ClientLinkLocked` when the
    attempts are spent (the link is locked, or the last ones are in flight).
    """
    limit = client_link_attempt_limit()
    if limit <= 0:  # switched off
        return
    taken = ClientLink.objects.filter(pk=link.pk, status__in=OPEN_STATES, credential_attempts__lt=limit).update(
        credential_attempts=F("credential_attempts") + 1
    )
    if not taken:
        raise ClientLinkLocked(wording.client_link_locked(firm=link.household.firm.name, attempts=limit))
    link.credential_attempts += 1


def client_link_lock_if_spent(*, link: ClientLink, now: dt.datetime | None = None) -> bool:
    """After a failed attempt: lock the link once its attempts are spent. True when this call locked it.

    Locked once (a conditional UPDATE), with a ``LINK_LOCKED`` event on the
    link's connection, so the adviser sees it in the history as well as on
    the household page.
    """
    now = now or timezone.now()
    limit = client_link_attempt_limit()
    if limit <= 0:
        return False
    locked = ClientLink.objects.filter(pk=link.pk, status__in=OPEN_STATES, credential_attempts__gte=limit).update(
        status=ClientLink.LinkStatus.LOCKED, locked_at=now
    )
    if not locked:
        return False
    link.status, link.locked_at = ClientLink.LinkStatus.LOCKED, now
    if link.connection is not None:
        lifecycle.event_record(
            connection=link.connection,
            kind=ConnectionEvent.Kind.LINK_LOCKED,
            message=wording.link_locked(email=link.sent_to, attempts=limit),
            actor_label=CLIENT_LINK_ACTOR,
        )
    return True


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
                details={"client_link_id": str(link.pk)},
            )
    return bool(expired)


@dataclass(frozen=True)
class LinkClaim:
    """A link taken for one completion: what to give back if the completion fails."""

    link: ClientLink
    previous_status: str
    at: dt.datetime


def client_link_claim(*, link: ClientLink, now: dt.datetime | None = None) -> LinkClaim:
    """Take the link for one completion, before the provider is asked: open, unexpired, not withdrawn.

    One conditional UPDATE from sent/opened to completed, so of two
    authorizations started from one link exactly one completes, and a link
    withdrawn or expired while an authorization was in flight completes none.
    Raises :class:`ClientLinkError` (gone) when the link cannot be taken; give
    it back with :func:`client_link_release` if the completion then fails.
    """
    now = now or timezone.now()
    previous = link.status
    claimed = ClientLink.objects.filter(pk=link.pk, status__in=OPEN_STATES, expires_at__gt=now).update(
        status=ClientLink.LinkStatus.COMPLETED, completed_at=now
    )
    if not claimed:
        link.refresh_from_db(fields=["status", "expires_at", "completed_at"])
        if link.status == ClientLink.LinkStatus.COMPLETED:
            raise ClientLinkError(LINK_USED, gone=True, link=link)
        if link.status == ClientLink.LinkStatus.CANCELLED:
            raise ClientLinkError(LINK_WITHDRAWN, gone=True, link=link)
        raise ClientLinkError(LINK_EXPIRED, gone=True, link=link)
    link.status, link.completed_at = ClientLink.LinkStatus.COMPLETED, now
    return LinkClaim(link=link, previous_status=previous, at=now)


def client_link_release(*, claim: LinkClaim) -> None:
    """Give a claimed link back (the completion failed: wrong account, provider error, denied)."""
    link = claim.link
    ClientLink.objects.filter(pk=link.pk, status=ClientLink.LinkStatus.COMPLETED, completed_at=claim.at).update(
        status=claim.previous_status, completed_at=None
    )
    link.status, link.completed_at = claim.previous_status, None


def client_link_complete(*, link: ClientLink, connection: Connection) -> None:
    """Record that the client completed the (claimed) link with ``connection``."""
    lifecycle.event_record(
        connection=connection,
        kind=ConnectionEvent.Kind.LINK_COMPLETED,
        message=wording.link_completed(email=link.sent_to),
        actor_label=CLIENT_LINK_ACTOR,
        details={"client_link_id": str(link.pk)},
    )
