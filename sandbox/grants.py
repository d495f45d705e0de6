"""A person granting a partner app access, answered the way each provider hands the grant over.

What ``manage.py sandbox_grant`` does, for a caller that wants a working
subject without a browser (the portal's demo data, a developer at a shell):

* :func:`grant_answer` creates the subject a person's consent or sign-in would
  create, and answers, in the provider's own documented terms, what the
  partner receives to complete the connect: for a sign-in form the fields
  under the provider's names (Coinify ``email`` and ``password``, Bloquo
  ``clientId`` and ``clientSecret``), for a browser redirect the query
  parameters the provider appends to the app's redirect URI (Turnqey
  ``identity``, ``collection``, ``platform``, ``status``; Dapi
  ``accessCode``, ``connectionID``, ``userSecret``, ``userID``, ``tokenID``);
* :func:`grant_break` breaks the subject the same person names, the way a
  reason says (``revoked``, ``expired``, ``credentials_invalid``), so the
  partner's next call meets that problem. A break a provider cannot suffer
  is refused with the reason why.

A person is named by the partner app (Turnqey client, Coinify partner, Dapi
app key; Bloquo key pairs belong to no app), their name, email and partner
side identity, and the platform: the facts a partner knows of its own client.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from . import clock, services, state
from .models import App, BloquoKey, CoinifyUser, DapiConnection, Provider, Token, TurnqeyAuthorization
from .services import SandboxError

BREAKS = ("revoked", "expired", "credentials_invalid")


@dataclass(frozen=True)
class Person:
    """Who grants access, as the partner knows them."""

    app_id: str = ""  # Turnqey client id, Coinify partner id, Dapi app key
    name: str = ""
    email: str = ""
    identity: str = ""  # the partner-side identity (Turnqey's ``identity``)
    platform: str = ""
    collection: str = ""  # a Turnqey collection the person's household already has
    password: str = ""  # where the sign-in has one (Coinify); generated when empty

    def require(self, provider: str, *names: str) -> None:
        missing = [name for name in names if not getattr(self, name)]
        if missing:
            raise SandboxError(f"A {provider} grant needs: {', '.join(missing)}.")


def grant_answer(*, provider: str, person: Person) -> dict[str, Any]:
    """Create the person's subject at ``provider`` and answer what the partner receives.

    ``{"provider", "fields": {...}}`` for a sign-in form, ``{"provider",
    "params": {...}}`` for a redirect, each with ``"subject"``: the subject's
    ids (no secret), for the control API's actions.
    """
    if provider == Provider.TURNQEY:
        person.require(provider, "app_id", "identity", "platform")
        if not App.objects.filter(provider=Provider.TURNQEY, client_id=person.app_id).exists():
            raise SandboxError("Unknown Turnqey client.")
        authorization = services.turnqey_authorization_grant(
            client_id=person.app_id,
            identity=person.identity,
            platform=person.platform,
            # The consent page's suggestion, so a reconnect through the page signs
            # in as the same account holder.
            username=services.turnqey_default_username(identity=person.identity),
            collection=person.collection,
        )
        params = {
            "identity": person.identity,
            "collection": str(authorization.collection_id),
            "platform": person.platform,
            "status": "success",
        }
        return {
            "provider": provider,
            "params": params,
            "subject": {"source_account_id": authorization.source_account_id},
        }
    if provider == Provider.COINIFY:
        person.require(provider, "app_id", "email")
        password = person.password or secrets.token_urlsafe(12)
        user, _offline, _created = services.coinify_user_create(
            partner_id=person.app_id, email=person.email, password=password
        )
        return {
            "provider": provider,
            "fields": {"email": user.email, "password": password},
            "subject": {"user_id": user.pk},
        }
    if provider in services.BLOQUO_MOUNTS:
        key, client_id, client_secret = services.bloquo_key_create(
            provider=provider, name=person.name, email=person.email
        )
        fields = {"clientId": client_id, "clientSecret": client_secret}
        return {"provider": provider, "fields": fields, "subject": {"customer_id": key.customer_id}}
    if provider == Provider.DAPI:
        # Dapi's Connect page asks for the username at the institution: the email stands in.
        person.require(provider, "app_id", "email")
        with transaction.atomic():
            params = services.dapi_connection_create(
                app_key=person.app_id, username=person.email, snapshot=state.snapshot()
            )
        return {"provider": provider, "params": params, "subject": {"connection_id": params["connectionID"]}}
    raise SandboxError(f"provider must be one of: {', '.join(Provider.values)}.")


def grant_break(*, provider: str, person: Person, how: str) -> dict[str, Any]:
    """Break the subject ``person`` names at ``provider`` (its latest grant) the way ``how`` says.

    Returns ``{"provider", "broken", "affected"}``; raises :class:`SandboxError`
    for an unknown subject (404) or a break the provider cannot suffer.
    """
    if how not in BREAKS:
        raise SandboxError(f"break must be one of: {', '.join(BREAKS)}.")
    action: dict[str, str] | None  # a control API action, or None: done here
    if provider == Provider.TURNQEY:
        action = _turnqey_break(person, how)
    elif provider == Provider.COINIFY:
        action = _coinify_break(person, how)
    elif provider in services.BLOQUO_MOUNTS:
        action = _bloquo_break(provider, person, how)
    elif provider == Provider.DAPI:
        action = _dapi_break(person, how)
    else:
        raise SandboxError(f"provider must be one of: {', '.join(Provider.values)}.")
    affected = 1 if action is None else services.subject_act({"provider": provider, **action})["affected"]
    return {"provider": provider, "broken": how, "affected": affected}


def _turnqey_break(person: Person, how: str) -> dict[str, str]:
    if how == "credentials_invalid":
        raise SandboxError(
            "Turnqey holds no per-connection credentials that could be refused: it reports a platform "
            "account as revoked or expired."
        )
    authorization = TurnqeyAuthorization.objects.filter(
        client_id=person.app_id, identity=person.identity, platform=person.platform
    ).first()
    if authorization is None:
        raise SandboxError("No such Turnqey authorization.", status=404)
    return {"action": "revoke" if how == "revoked" else "expire", "source_account_id": authorization.source_account_id}


def _coinify_break(person: Person, how: str) -> dict[str, str]:
    if how == "credentials_invalid":
        raise SandboxError(
            "Coinify checks the partner's tokens, not the password: a refused password only shows at sign-in."
        )
    user = CoinifyUser.objects.filter(partner_id=person.app_id, email=person.email).first()
    if user is None:
        raise SandboxError("No such Coinify user.", status=404)
    # Revoked: every token dies (the next call is refused, the renewal after it
    # learns why). Expired: the sign-in lapses; an offline token never does.
    return {"action": "revoke" if how == "revoked" else "expire", "user_id": str(user.pk)}


def _bloquo_break(provider: str, person: Person, how: str) -> dict[str, str] | None:
    if how == "expired":
        raise SandboxError("A Bloquo key pair does not expire: a lapsed access token is replaced from the same pair.")
    key = BloquoKey.objects.filter(provider=provider, email=person.email).order_by("-id").first()
    if key is None:
        raise SandboxError("No such Bloquo customer.", status=404)
    if how == "revoked":
        return {"action": "revoke", "customer_id": key.customer_id}
    with transaction.atomic():
        # The customer replaced the pair's secret at Bloquo (the new one is never
        # shown here): the secret on file is refused, and the tokens issued for
        # the old secret end with it.
        services.bloquo_key_create(provider=provider, client_id=key.client_id)
        Token.objects.filter(kind=Token.Kind.BLOQUO_ACCESS, subject=str(key.pk), revoked_at__isnull=True).update(
            revoked_at=clock.now()
        )
    return None


def _dapi_break(person: Person, how: str) -> dict[str, str]:
    if how != "revoked":
        raise SandboxError(
            "A Dapi access token never expires and holds no secret of the user's that could be refused: "
            "only delinking (revoked) breaks it."
        )
    connection = (
        DapiConnection.objects.filter(app_key=person.app_id, username=person.email, delinked_at__isnull=True)
        .order_by("-id")
        .first()
    )
    if connection is None:
        raise SandboxError("No such Dapi connection.", status=404)
    return {"action": "delink", "connection_id": connection.connection_id}
