"""Credential forms (Coinify, Bloquo): connect or reconnect from what the client typed, used once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction
from django.views.decorators.debug import sensitive_variables

from .. import attempts, lifecycle, wording
from ..models import (
    Client,
    ClientLink,
    Connection,
    Household,
    ProviderApp,
    Status,
)
from ..providers.base import Grant, ProviderClient
from ..providers.errors import AuthorizationDenied, InvalidCredentialFields, ProviderError
from .client_links import (
    ClientLinkError,
    ClientLinkLocked,
    client_link_attempt_take,
    client_link_claim,
    client_link_complete,
    client_link_lock_if_spent,
    client_link_release,
)
from .common import (
    Throttled,
    User,
    actor_user,
    connection_pending_get_or_create,
    grant_land,
    provider_calls_take,
    provider_error_words,
    purpose_for,
    source_words,
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
    address: str = "",
) -> Connection:
    """Connect (or, with ``connection``, reconnect) from typed credentials.

    The provider is asked first; only when it grants access are rows written
    (in one transaction: the pending connection with its ``CREATED`` event on a
    new connect, then :func:`lifecycle.grant_apply`). So a refusal changes
    nothing and raises :class:`CredentialsRejected`. A reconnect to a different
    source account raises :class:`lifecycle.ReconnectMismatch` (grant_apply has
    recorded a ``RECONNECT_REFUSED`` event). ``fields`` may hold a password: it
    goes to the provider once and nowhere else.

    The connect's calls are taken from the app's shared rate limit first,
    waiting briefly; when they are not free, :class:`Throttled` says the
    provider is busy, and nothing was sent, counted or claimed.
    Guessing is limited before anything is sent (see :func:`_attempt_take`):
    per client address (``address``) and per signed-in ``user`` in a rolling
    window (:class:`Throttled`), and per ``client_link`` for good (it locks
    after ``CLIENT_LINK_CREDENTIAL_ATTEMPTS``: :class:`ClientLinkLocked`).
    Every attempt the provider did not accept counts; an accepted one is
    handed back. A client link is then claimed for this one completion (none
    for a link used, withdrawn or expired meanwhile) and given back if the
    connect fails.
    """
    source = source_words(provider_app=provider_app, platform=platform)
    provider_name = provider_app.get_provider_display()
    by_client = client_link is not None
    try:
        provider_client = lifecycle.client_for_app(app=provider_app)
    except ProviderError as exc:
        raise CredentialsRejected(
            provider_error_words(exc=exc, source=source, provider=provider_app.provider, by_client=by_client)
        ) from None
    if provider_client.flow != "form":
        raise ValueError(f"{provider_name} has no credential form")
    if connection is not None and connection.status == Status.DISCONNECTED:
        raise CredentialsRejected(_removed_words(provider_app=provider_app, platform=platform))
    try:
        # An incomplete form is refused here, before it can cost an attempt.
        provider_client.clean_credential_fields(fields)
    except InvalidCredentialFields as exc:
        raise CredentialsRejected(exc.message, field=exc.field) from None
    wait = provider_calls_take(provider_app=provider_app, calls=provider_client.connect_calls)
    if wait > 0:
        # Before any attempt is counted or a link claimed: the same form can simply be sent again.
        raise Throttled(
            wording.provider_busy(source=source, provider=provider_app.provider, callback=False), retry_after=wait
        )
    taken = _attempt_take(provider=provider_app.provider, user=user, address=address, client_link=client_link)
    claim = None
    if client_link is not None:
        try:
            claim = client_link_claim(link=client_link)
        except ClientLinkError as exc:
            attempts.attempts_give_back(taken=taken)
            raise CredentialsRejected(exc.message) from None
    try:
        grant = _grant(provider_client, fields=fields, platform=platform, source=source, by_client=by_client)
        target = _land(
            grant,
            provider_app=provider_app,
            platform=platform,
            household=household,
            client=client,
            user=user,
            connection=connection,
        )
    except _NothingSent as exc:
        attempts.attempts_give_back(taken=taken)  # refused before anything was sent
        _give_back(claim)
        raise CredentialsRejected(exc.message, field=exc.field) from None
    except _ProviderRefused as exc:
        _give_back(claim)
        if _locked_by_this_failure(client_link):
            raise _locked(client_link) from None
        raise CredentialsRejected(exc.message) from None
    except BaseException:
        # A mismatch or a duplicate keeps its attempt: "right password, other account" is an answer too.
        _give_back(claim)
        raise
    attempts.attempts_give_back(taken=taken)  # only failures are limited
    if claim is not None:
        client_link_complete(link=claim.link, connection=target)
    return target


class _NothingSent(CredentialsRejected):
    """The provider client refused the fields before sending anything."""


class _ProviderRefused(CredentialsRejected):
    """The provider (or the road to it) did not grant access."""


def _give_back(claim: Any) -> None:
    if claim is not None:
        client_link_release(claim=claim)


@sensitive_variables("fields")
def _grant(
    provider_client: ProviderClient, *, fields: Mapping[str, str], platform: str, source: str, by_client: bool
) -> Grant:
    try:
        return provider_client.connect_with_credentials(fields=fields, platform=platform)
    except InvalidCredentialFields as exc:
        raise _NothingSent(exc.message, field=exc.field) from None
    except AuthorizationDenied as exc:
        raise _ProviderRefused(f"{source}: access was not granted. {exc.message}".strip()) from None
    except ProviderError as exc:
        # `from None`: the provider's exception may carry request details; the
        # message below is all anyone needs.
        raise _ProviderRefused(
            provider_error_words(exc=exc, source=source, provider=provider_client.key, by_client=by_client)
        ) from None


def _land(
    grant: Grant,
    *,
    provider_app: ProviderApp,
    platform: str,
    household: Household,
    client: Client,
    user: User | None,
    connection: Connection | None,
) -> Connection:
    source = source_words(provider_app=provider_app, platform=platform)
    purpose = purpose_for(connection)
    try:
        if connection is None:
            # A new connection: the row and its grant together or not at all.
            with transaction.atomic():
                target = connection_pending_get_or_create(
                    household=household, client=client, provider_app=provider_app, platform=platform, user=user
                )
                return grant_land(connection=target, grant=grant, purpose=purpose, user=user)
        # A reconnect: no outer atomic block, so the RECONNECT_REFUSED event
        # grant_apply records before raising ReconnectMismatch is kept.
        return grant_land(connection=connection, grant=grant, purpose=purpose, user=user)
    except lifecycle.GrantRefused:
        raise CredentialsRejected(_removed_words(provider_app=provider_app, platform=platform)) from None
    except IntegrityError:
        raise CredentialsRejected(
            f"{source}: this account is already connected for {client.name}. Nothing was added."
        ) from None


def _removed_words(*, provider_app: ProviderApp, platform: str) -> str:
    return (
        f"{source_words(provider_app=provider_app, platform=platform)}: this connection was removed, so nothing "
        "was connected. To connect the account again, start a new connection from the portal."
    )


def _attempt_take(*, provider: str, user: User | None, address: str, client_link: ClientLink | None) -> attempts.Taken:
    """Take an attempt under every limit that applies, or raise without sending anything.

    Without them a client link, or an adviser's form, relays unlimited
    password guesses through the portal's partner credentials.
    """
    subjects = []
    if address:
        subjects.append((attempts.limit(attempts.LimitName.CREDENTIAL_FAILURES_PER_ADDRESS), address))
    actor = actor_user(user)
    if actor is not None:
        subjects.append((attempts.limit(attempts.LimitName.CREDENTIAL_FAILURES_PER_USER), str(actor.pk)))
    try:
        taken = attempts.attempts_take(subjects=subjects)
    except attempts.LimitReached as exc:
        raise Throttled(
            wording.too_many_wrong_credentials(
                provider=provider,
                per_user=exc.limit.name == attempts.LimitName.CREDENTIAL_FAILURES_PER_USER,
                window_seconds=exc.limit.window_seconds,
                retry_after=exc.retry_after,
            ),
            retry_after=exc.retry_after,
        ) from None
    if client_link is not None:
        try:
            client_link_attempt_take(link=client_link)
        except ClientLinkLocked:
            attempts.attempts_give_back(taken=taken)
            raise
    return taken


def _locked_by_this_failure(client_link: ClientLink | None) -> bool:
    """The provider did not accept the credentials: the attempt stays counted, and a spent link locks now."""
    return client_link is not None and client_link_lock_if_spent(link=client_link)


def _locked(client_link: ClientLink | None) -> ClientLinkLocked:
    assert client_link is not None  # only a link locks
    return ClientLinkLocked(
        wording.client_link_locked(firm=client_link.household.firm.name, attempts=client_link.credential_attempts)
    )
