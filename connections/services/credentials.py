"""Credential forms (Coinify, Bloquo): connect or reconnect from what the client typed, used once."""

from __future__ import annotations

from collections.abc import Mapping

from django.db import IntegrityError, transaction
from django.views.decorators.debug import sensitive_variables

from .. import lifecycle
from ..models import (
    Client,
    ClientLink,
    Connection,
    Household,
    ProviderApp,
    Status,
)
from ..providers.base import ProviderClient
from ..providers.errors import AuthorizationDenied, InvalidCredentialFields, ProviderError
from .client_links import ClientLinkError, client_link_claim, client_link_complete, client_link_release
from .common import (
    User,
    connection_pending_get_or_create,
    grant_land,
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
    try:
        provider_client = lifecycle.client_for_app(app=provider_app)
    except ProviderError as exc:
        source, provider_name = source_words(provider_app=provider_app, platform=platform), provider_app.provider
        raise CredentialsRejected(provider_error_words(exc=exc, source=source, provider_name=provider_name)) from None
    if provider_client.flow != "form":
        raise ValueError(f"{provider_app.get_provider_display()} has no credential form")
    if connection is not None and connection.status == Status.DISCONNECTED:
        raise CredentialsRejected(_removed_words(provider_app=provider_app, platform=platform))
    # A client link is taken before anything is sent, and given back if the connect fails: one
    # completion per link, and none for a link withdrawn or expired meanwhile.
    claim = None
    if client_link is not None:
        try:
            claim = client_link_claim(link=client_link)
        except ClientLinkError as exc:
            raise CredentialsRejected(exc.message) from None
    try:
        target = _connect(
            provider_client=provider_client,
            provider_app=provider_app,
            platform=platform,
            household=household,
            client=client,
            fields=fields,
            user=user,
            connection=connection,
        )
    except BaseException:
        if claim is not None:
            client_link_release(claim=claim)
        raise
    if claim is not None:
        client_link_complete(link=claim.link, connection=target)
    return target


def _removed_words(*, provider_app: ProviderApp, platform: str) -> str:
    return (
        f"{source_words(provider_app=provider_app, platform=platform)}: this connection was removed, so nothing "
        "was connected. To connect the account again, start a new connection from the portal."
    )


@sensitive_variables("fields")
def _connect(
    *,
    provider_client: ProviderClient,
    provider_app: ProviderApp,
    platform: str,
    household: Household,
    client: Client,
    fields: Mapping[str, str],
    user: User | None,
    connection: Connection | None,
) -> Connection:
    source = source_words(provider_app=provider_app, platform=platform)
    provider_name = provider_app.get_provider_display()
    try:
        grant = provider_client.connect_with_credentials(fields=fields, platform=platform)
    except InvalidCredentialFields as exc:
        raise CredentialsRejected(exc.message, field=exc.field) from None
    except AuthorizationDenied as exc:
        raise CredentialsRejected(f"{source}: access was not granted. {exc.message}".strip()) from None
    except ProviderError as exc:
        # `from None`: the provider's exception may carry request details; the
        # message below is all anyone needs.
        raise CredentialsRejected(provider_error_words(exc=exc, source=source, provider_name=provider_name)) from None

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
