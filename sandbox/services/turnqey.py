"""Turnqey's simulated world: the authorize checksum, consent grants, and authorizations as subjects.

Used by the consent page (:mod:`sandbox.views.turnqey`) and, through the
registry in :mod:`sandbox.services`, by the control API and the commands.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.db import models, transaction

from .. import clock
from ..models import App, Provider, TurnqeyAuthorization, TurnqeyCollection
from .common import AppKind, Person, SandboxError, check_columns, read_text

ACTIONS: tuple[str, ...] = ("revoke", "expire", "restore")
APPS: AppKind = AppKind.WITH_SECRET
# Authorizations first: each belongs to a collection.
MODELS: tuple[type[models.Model], ...] = (TurnqeyAuthorization, TurnqeyCollection)
# [doc] The app token lives one hour.
LIFETIMES: Mapping[str, int] = {"app_token": 3600}


def error_body(*, status: int, message: Any) -> dict[str, Any]:
    """Turnqey's error envelope (docs/provider-assumptions.md): what its endpoints and an injected fault answer."""
    return {"statusCode": status, "isError": True, "responseException": {"exceptionMessage": message}}


def turnqey_checksum(*, secret: str, params: dict[str, str]) -> str:
    """The authorize checksum (assumed, docs/provider-assumptions.md).

    Lowercase hex HMAC-SHA256 keyed by the client secret over
    ``urlencode(sorted(params))`` of every parameter except ``checksum`` that
    has a non-empty value.
    """
    message = urlencode(sorted((k, v) for k, v in params.items() if k != "checksum" and v))
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def turnqey_default_username(*, identity: str) -> str:
    """The username the consent page suggests for an identity (its "usual user")."""
    return "user-" + hashlib.sha256(identity.encode()).hexdigest()[:8]


def turnqey_source_account_id(*, identity: str, platform: str, username: str) -> str:
    """The account holder's id at the platform: stable per (identity, platform, username)."""
    tail = hashlib.sha256(f"{identity}|{platform}|{username}".encode()).hexdigest()[:10]
    return f"{platform[:2].lower()}-user-{tail}"


def turnqey_authorization_grant(
    *, client_id: str, identity: str, platform: str, username: str, collection: str = ""
) -> TurnqeyAuthorization:
    """Record an approved authorization: (identity, platform) becomes active.

    ``collection`` empty creates a new collection (the doc); a UUID the
    sandbox does not know yet is adopted (so a household keeps its
    collection across a sandbox reset); one owned by another client is refused.
    """
    if not (client_id and identity and platform and username):
        raise SandboxError("client, identity, platform and username are required.")
    check_columns(TurnqeyAuthorization, client_id=client_id, identity=identity, platform=platform, username=username)
    with transaction.atomic():
        if collection:
            try:
                collection_id = uuid.UUID(collection)
            except ValueError:
                raise SandboxError("Collection not found.") from None
            group, _ = TurnqeyCollection.objects.get_or_create(id=collection_id, defaults={"client_id": client_id})
            if group.client_id != client_id:
                raise SandboxError("Collection not found.")
        else:
            group = TurnqeyCollection.objects.create(client_id=client_id)
        authorization, _ = TurnqeyAuthorization.objects.update_or_create(
            client_id=client_id,
            identity=identity,
            platform=platform,
            defaults={
                "collection": group,
                "username": username,
                "source_account_id": turnqey_source_account_id(identity=identity, platform=platform, username=username),
                "status": TurnqeyAuthorization.Status.ACTIVE,
            },
        )
    return authorization


def _authorization_dict(a: TurnqeyAuthorization) -> dict[str, Any]:
    return {
        "provider": Provider.TURNQEY.value,
        "client": a.client_id,
        "collection": str(a.collection_id),
        "identity": a.identity,
        "platform": a.platform,
        "username": a.username,
        "source_account_id": a.source_account_id,
        "status": a.status,
    }


# --- As a subject of the control API ------------------------------------------


def subject_create(*, mount: str, data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``client``, ``identity``, ``platform``, optional ``username``, ``collection``: an authorization, consented."""
    client_id = read_text(data, "client", required=True)
    if not App.objects.filter(provider=Provider.TURNQEY, client_id=client_id).exists():
        raise SandboxError("Unknown Turnqey client.")
    identity = read_text(data, "identity", required=True)
    authorization = turnqey_authorization_grant(
        client_id=client_id,
        identity=identity,
        platform=read_text(data, "platform", required=True),
        username=read_text(data, "username") or turnqey_default_username(identity=identity),
        collection=read_text(data, "collection"),
    )
    return _authorization_dict(authorization), True


def subject_list(*, mount: str) -> list[dict[str, Any]]:
    return [_authorization_dict(a) for a in TurnqeyAuthorization.objects.order_by("id")]


def subject_act(*, mount: str, data: dict[str, Any], action: str, at: datetime) -> int:
    """Set the status of the authorization named by ``source_account_id``, or by ``identity`` and ``platform``."""
    source_account_id = read_text(data, "source_account_id")
    if source_account_id:
        rows = TurnqeyAuthorization.objects.filter(source_account_id=source_account_id)
    else:
        identity, platform = read_text(data, "identity"), read_text(data, "platform")
        if not (identity and platform):
            raise SandboxError("Give source_account_id, or identity and platform.")
        rows = TurnqeyAuthorization.objects.filter(identity=identity, platform=platform)
    if client := read_text(data, "client"):
        rows = rows.filter(client_id=client)
    if not rows.exists():
        raise SandboxError("No such Turnqey authorization.", status=404)
    status = {
        "revoke": TurnqeyAuthorization.Status.REVOKED,
        "expire": TurnqeyAuthorization.Status.EXPIRED,
        "restore": TurnqeyAuthorization.Status.ACTIVE,
    }[action]
    return rows.update(status=status, updated_at=clock.now())


# --- Grants without a browser (manage.py sandbox_grant) -------------------------


def grant_answer(*, mount: str, person: Person) -> dict[str, Any]:
    """The person approves at the consent page: the redirect's query parameters."""
    person.require(mount, "app_id", "identity", "platform")
    if not App.objects.filter(provider=Provider.TURNQEY, client_id=person.app_id).exists():
        raise SandboxError("Unknown Turnqey client.")
    authorization = turnqey_authorization_grant(
        client_id=person.app_id,
        identity=person.identity,
        platform=person.platform,
        # The consent page's suggestion, so a reconnect through the page signs
        # in as the same account holder.
        username=turnqey_default_username(identity=person.identity),
        collection=person.collection,
    )
    params = {
        "identity": person.identity,
        "collection": str(authorization.collection_id),
        "platform": person.platform,
        "status": "success",
    }
    return {"params": params, "subject": {"source_account_id": authorization.source_account_id}}


def grant_break(*, mount: str, person: Person, how: str) -> dict[str, str] | None:
    """Turnqey reports a platform account revoked or expired; it holds nothing that could be refused."""
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
