"""Dapi's simulated world: Connect logins, the access code exchange, and logins as subjects.

Used by the Connect page (:mod:`sandbox.views.dapi`) and, through the registry
in :mod:`sandbox.services`, by the control API and the commands.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import models, transaction

from .. import clock, state, tokens
from ..models import App, DapiConnection, Provider, Token
from .common import AppKind, Person, SandboxError, check_columns, read_text

# ``revoke`` is an alias of ``delink``, so a caller can revoke a subject of any
# provider with one action name.
ACTIONS: tuple[str, ...] = ("delink", "revoke", "expire")
APPS: AppKind = AppKind.WITH_SECRET
MODELS: tuple[type[models.Model], ...] = (DapiConnection,)
# [doc] The access code lives 30 minutes.
LIFETIMES: Mapping[str, int] = {"access_code": 1800}


def error_body(*, status: int, message: str, kind: str = "") -> dict[str, Any]:
    """Dapi's failure shape (docs/provider-assumptions.md): ``kind`` its error type, else ``message`` as one."""
    return {"success": False, "type": kind or message.upper().replace(" ", "_"), "msg": message}


def dapi_user_id(*, app_key: str, username: str) -> str:
    """The Dapi user id of a login: stable per (app, username), so a reconnect returns it unchanged."""
    return hashlib.sha256(f"{app_key}|{username}".encode()).hexdigest()[:32]


def dapi_connection_create(*, app_key: str, username: str, snapshot: state.Snapshot) -> dict[str, str]:
    """A new Connect login: the fields Connect hands back (access code valid 30 minutes by default)."""
    if not (app_key and username):
        raise SandboxError("app_key and username are required.")
    check_columns(DapiConnection, app_key=app_key, username=username)
    if not App.objects.filter(provider=Provider.DAPI, client_id=app_key).exists():
        raise SandboxError("Unknown app key.")
    access_code = str(uuid.uuid4())
    user_secret = secrets.token_urlsafe(48)
    with transaction.atomic():
        connection = DapiConnection.objects.create(
            app_key=app_key,
            connection_id=str(uuid.uuid4()),
            user_id=dapi_user_id(app_key=app_key, username=username),
            username=username,
            user_secret_digest=tokens.digest(user_secret),
            token_id=str(uuid.uuid4()),
        )
        tokens.issue(
            Token.Kind.DAPI_CODE,
            str(connection.pk),
            value=access_code,
            lifetime=snapshot.lifetime(Provider.DAPI, "access_code"),
        )
    return {
        "accessCode": access_code,
        "connectionID": connection.connection_id,
        "userSecret": user_secret,
        "userID": connection.user_id,
        "tokenID": connection.token_id,
    }


def dapi_code_exchange(*, connection_id: str, access_code: str) -> str:
    """Spend a Connect access code for its connection's permanent access token.

    What ``ExchangeToken`` does once the app secret has been checked, for
    callers inside the sandbox (``"exchange": true`` on a Dapi subject). The
    code is single use (conditional UPDATE), exactly as over HTTP.
    """
    connection = DapiConnection.objects.filter(connection_id=connection_id).first()
    row = tokens.find(Token.Kind.DAPI_CODE, access_code)
    if connection is None or row is None or row.subject != str(connection.pk) or connection.delinked_at is not None:
        raise SandboxError("The access code is invalid.")
    at = clock.now()
    with transaction.atomic():
        if not tokens.consume(row.id, at):
            raise SandboxError("The access code has expired or has already been used.")
        access_token = tokens.jwt_like({"sub": connection.user_id, "tokenID": connection.token_id})
        tokens.issue(Token.Kind.DAPI_ACCESS, str(connection.pk), value=access_token, lifetime=None, at=at)
    return access_token


def dapi_identity(connection: DapiConnection) -> dict[str, str]:
    """The identity Dapi's ``identity/get`` answers for a linked connection (assumed shape).

    ``id`` is the user id (the same the Connect page hands back as ``userID``);
    the name is the login's, as the institution would show it.
    """
    return {"id": connection.user_id, "name": connection.username}


# --- As a subject of the control API ------------------------------------------


def subject_create(*, mount: str, data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """``app_key``, ``username``, optional ``exchange``: a Connect login (and its permanent token when exchanged)."""
    exchange = data.get("exchange", False)
    if not isinstance(exchange, bool):
        raise SandboxError("exchange must be true or false.")
    with transaction.atomic():
        result = dapi_connection_create(
            app_key=read_text(data, "app_key", required=True),
            username=read_text(data, "username", required=True),
            snapshot=state.snapshot(),
        )
        reply = {
            "provider": mount,
            "access_code": result["accessCode"],
            "connection_id": result["connectionID"],
            "user_secret": result["userSecret"],
            "user_id": result["userID"],
            "token_id": result["tokenID"],
        }
        if exchange:
            # A caller that cannot reach the sandbox over HTTP (seed_demo, at
            # set-up time) still gets a token the simulator will accept.
            reply["access_token"] = dapi_code_exchange(
                connection_id=result["connectionID"], access_code=result["accessCode"]
            )
    return reply, True


def subject_list(*, mount: str) -> list[dict[str, Any]]:
    return [
        {
            "user_id": c.user_id,
            "connection_id": c.connection_id,
            "app_key": c.app_key,
            "username": c.username,
            "delinked": c.delinked_at is not None,
        }
        for c in DapiConnection.objects.order_by("id")
    ]


def subject_act(*, mount: str, data: dict[str, Any], action: str, at: datetime) -> int:
    """Delink (or revoke) the connections of ``user_id``, ``connection_id`` or ``access_token``; expire their codes."""
    user_id = read_text(data, "user_id")
    connection_id = read_text(data, "connection_id")
    access_token = read_text(data, "access_token")
    if user_id:
        connections = DapiConnection.objects.filter(user_id=user_id)
    elif connection_id:
        connections = DapiConnection.objects.filter(connection_id=connection_id)
    elif access_token:
        row = tokens.find(Token.Kind.DAPI_ACCESS, access_token)
        connections = DapiConnection.objects.filter(pk=int(row.subject) if row else -1)
    else:
        raise SandboxError("Give user_id, connection_id or access_token.")
    ids = [str(pk) for pk in connections.values_list("pk", flat=True)]
    if not ids:
        raise SandboxError("No such Dapi user or connection.", status=404)
    if action == "expire":
        # Access tokens are permanent; what can lapse is a code not yet exchanged.
        return Token.objects.filter(kind=Token.Kind.DAPI_CODE, subject__in=ids, expires_at__gt=at).update(expires_at=at)
    return connections.filter(delinked_at__isnull=True).update(delinked_at=at)


# --- Grants without a browser (manage.py sandbox_grant) -------------------------


def grant_answer(*, mount: str, person: Person) -> dict[str, Any]:
    """The person signs in at Connect (the email stands in for their username): the redirect's parameters."""
    person.require(mount, "app_id", "email")
    with transaction.atomic():
        params = dapi_connection_create(app_key=person.app_id, username=person.email, snapshot=state.snapshot())
    return {"params": params, "subject": {"connection_id": params["connectionID"]}}


def grant_break(*, mount: str, person: Person, how: str) -> dict[str, str] | None:
    """Only delinking breaks a Dapi token (it never expires and holds no secret that could be refused)."""
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
