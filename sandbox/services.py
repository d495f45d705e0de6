"""Writes to the sandbox's world, shared by the simulators, the control API and the commands.

Keyword-only, typed, ``<noun>_<verb>`` names. A :class:`SandboxError` carries a
plain message for a 400 (control API) or a ``CommandError`` (commands); it
never contains a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.db import transaction
from django.db.models import Q

from . import clock, state, tokens
from .models import (
    App,
    BloquoKey,
    CoinifyUser,
    DapiConnection,
    Fault,
    Lifetime,
    Provider,
    RequestLog,
    SandboxState,
    Token,
    TurnqeyAuthorization,
    TurnqeyCollection,
)

REGISTRABLE = (Provider.TURNQEY, Provider.COINIFY, Provider.DAPI)
BLOQUO_MOUNTS = (Provider.BLOQUO, Provider.BLOQUO_PRODUCTION)


class SandboxError(Exception):
    """A request to the sandbox that cannot be carried out; the message says why."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _provider(value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise SandboxError(f"provider must be one of: {', '.join(allowed)}.")
    return str(value)


def _text(data: dict[str, Any], name: str, *, required: bool = False) -> str:
    value = data.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise SandboxError(f"{name} must be a string.")
    value = str(value).strip()
    if required and not value:
        raise SandboxError(f"{name} is required.")
    return value


# --- Apps ---------------------------------------------------------------------


@dataclass(frozen=True)
class AppResult:
    provider: str
    client_id: str
    redirect_uri: str
    has_secret: bool
    created: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "has_secret": self.has_secret,
            "created": self.created,
        }


def app_register(*, provider: str, client_id: str, client_secret: str = "", redirect_uri: str = "") -> AppResult:
    """Register a partner app, or update the one with this client id (idempotent).

    Turnqey and Dapi need a secret (it keys the checksum / is checked on
    exchange) and a redirect URI when first registered; an update keeps
    whatever is not given.
    """
    provider = _provider(provider, REGISTRABLE)
    if not client_id:
        raise SandboxError("client_id is required.")
    if redirect_uri and not redirect_uri.startswith(("http://", "https://")):
        raise SandboxError("redirect_uri must be an absolute http(s) URL.")
    with transaction.atomic():
        app = App.objects.select_for_update().filter(provider=provider, client_id=client_id).first()
        created = app is None
        if app is None:
            if provider != Provider.COINIFY and not (client_secret and redirect_uri):
                raise SandboxError(f"A new {provider} app needs client_secret and redirect_uri.")
            app = App(provider=provider, client_id=client_id)
        if client_secret:
            app.client_secret = client_secret
        if redirect_uri:
            app.redirect_uri = redirect_uri
        app.save()
    return AppResult(provider, client_id, app.redirect_uri, bool(app.client_secret), created)


def app_list() -> list[dict[str, Any]]:
    return [
        {
            "provider": a.provider,
            "client_id": a.client_id,
            "redirect_uri": a.redirect_uri,
            "has_secret": bool(a.client_secret),
        }
        for a in App.objects.order_by("provider", "client_id")
    ]


# --- Turnqey ------------------------------------------------------------------


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


def _turnqey_dict(a: TurnqeyAuthorization) -> dict[str, Any]:
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


# --- Coinify ------------------------------------------------------------------


def _password_digest(salt: str, password: str) -> str:
    # A fast salted hash is enough for a simulator; it only keeps the plain
    # password out of the table.
    return hashlib.sha256(f"{salt}:{password}".encode()).hexdigest()


def coinify_password_matches(user: CoinifyUser, password: str) -> bool:
    return hmac.compare_digest(user.password_digest, _password_digest(user.password_salt, password))


def coinify_user_create(*, partner_id: str, email: str, password: str) -> tuple[CoinifyUser, str, bool]:
    """Create (or update the password of) a user; returns it with a new offline token.

    Each call issues a fresh offline token; earlier ones stay valid. The
    partner is registered implicitly when unknown.
    """
    if not (partner_id and email and password):
        raise SandboxError("partner_id, email and password are required.")
    salt = secrets.token_hex(8)
    with transaction.atomic():
        App.objects.get_or_create(provider=Provider.COINIFY, client_id=partner_id)
        user, created = CoinifyUser.objects.update_or_create(
            partner_id=partner_id,
            email=email,
            defaults={"password_salt": salt, "password_digest": _password_digest(salt, password)},
        )
        offline = tokens.random_string(60)
        tokens.issue(Token.Kind.COINIFY_OFFLINE, str(user.pk), value=offline, lifetime=None)
    return user, offline, created


def coinify_grant_issue(*, user: CoinifyUser, snapshot: state.Snapshot) -> dict[str, Any]:
    """A fresh access and refresh token for a user, as the ``/auth`` reply."""
    access_lifetime = snapshot.lifetime(Provider.COINIFY, "access")
    access = tokens.jwt_like({"sub": str(user.pk), "partnerId": user.partner_id})
    refresh = tokens.random_string(64)
    at = clock.now()
    tokens.issue(Token.Kind.COINIFY_ACCESS, str(user.pk), value=access, lifetime=access_lifetime, at=at)
    tokens.issue(
        Token.Kind.COINIFY_REFRESH,
        str(user.pk),
        value=refresh,
        lifetime=snapshot.lifetime(Provider.COINIFY, "refresh"),
        at=at,
    )
    return {"access_token": access, "token_type": "bearer", "expires_in": access_lifetime, "refresh_token": refresh}


# --- Bloquo -------------------------------------------------------------------


def bloquo_key_create(
    *, provider: str, client_id: str = "", client_secret: str = "", name: str = "", email: str = ""
) -> tuple[BloquoKey, str, str]:
    """Create (or replace the secret of) a customer's API key pair in one environment.

    Generates the client id and secret when not given. Returns the key with
    the client id and secret in clear, shown only here.
    """
    provider = _provider(provider, BLOQUO_MOUNTS)
    client_id = client_id or "bq_" + secrets.token_hex(8)
    client_secret = client_secret or secrets.token_urlsafe(32)
    with transaction.atomic():
        key = BloquoKey.objects.select_for_update().filter(provider=provider, client_id=client_id).first()
        if key is None:
            customer_id = "cus_" + secrets.token_hex(8)
            key = BloquoKey(
                provider=provider,
                client_id=client_id,
                customer_id=customer_id,
                name=name or f"Customer {customer_id[-4:]}",
                email=email or f"{customer_id}@example.test",
            )
        elif name or email:
            key.name = name or key.name
            key.email = email or key.email
        key.secret_digest = tokens.digest(client_secret)
        key.revoked_at = None
        key.save()
    return key, client_id, client_secret


# --- Dapi ---------------------------------------------------------------------


def dapi_user_id(*, app_key: str, username: str) -> str:
    """The Dapi user id of a login: stable per (app, username), so a reconnect returns it unchanged."""
    return hashlib.sha256(f"{app_key}|{username}".encode()).hexdigest()[:32]


def dapi_connection_create(*, app_key: str, username: str, snapshot: state.Snapshot) -> dict[str, str]:
    """A new Connect login: the fields Connect hands back (access code valid 30 minutes by default)."""
    if not (app_key and username):
        raise SandboxError("app_key and username are required.")
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


# --- Subjects (control API and sandbox_create_subject) ------------------------


def subject_create(data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create a subject from provider-specific fields; returns (reply, created).

    * coinify: ``partner_id`` (optional when exactly one partner is registered),
      ``email``, ``password`` → ``user_id``, ``offline_token``;
    * bloquo / bloquo-production: optional ``client_id``, ``client_secret``,
      ``name``, ``email`` → ``customer_id``, ``client_id``, ``client_secret``;
    * turnqey: ``client``, ``identity``, ``platform``, optional ``username``,
      ``collection`` → an active authorization, as if consent was given;
    * dapi: ``app_key``, ``username``, optional ``exchange`` (true: also spend
      the access code, as ``ExchangeToken`` would, and add ``access_token``,
      the permanent token) → the Connect result fields.
    """
    provider = _provider(data.get("provider"), tuple(Provider.values))
    if provider == Provider.COINIFY:
        partner_id = _text(data, "partner_id")
        if not partner_id:
            partners = list(App.objects.filter(provider=Provider.COINIFY).values_list("client_id", flat=True)[:2])
            if len(partners) != 1:
                raise SandboxError("partner_id is required (no single Coinify partner is registered).")
            partner_id = partners[0]
        user, offline, created = coinify_user_create(
            partner_id=partner_id,
            email=_text(data, "email", required=True),
            password=_text(data, "password", required=True),
        )
        return {
            "provider": provider,
            "user_id": user.pk,
            "email": user.email,
            "partner_id": user.partner_id,
            "offline_token": offline,
        }, created
    if provider in BLOQUO_MOUNTS:
        client_id = _text(data, "client_id")
        existed = bool(client_id) and BloquoKey.objects.filter(provider=provider, client_id=client_id).exists()
        key, client_id, client_secret = bloquo_key_create(
            provider=provider,
            client_id=client_id,
            client_secret=_text(data, "client_secret"),
            name=_text(data, "name"),
            email=_text(data, "email"),
        )
        return {
            "provider": provider,
            "customer_id": key.customer_id,
            "client_id": client_id,
            "client_secret": client_secret,
            "name": key.name,
            "email": key.email,
        }, not existed
    if provider == Provider.TURNQEY:
        client_id = _text(data, "client", required=True)
        if not App.objects.filter(provider=Provider.TURNQEY, client_id=client_id).exists():
            raise SandboxError("Unknown Turnqey client.")
        identity = _text(data, "identity", required=True)
        authorization = turnqey_authorization_grant(
            client_id=client_id,
            identity=identity,
            platform=_text(data, "platform", required=True),
            username=_text(data, "username") or turnqey_default_username(identity=identity),
            collection=_text(data, "collection"),
        )
        return _turnqey_dict(authorization), True
    exchange = data.get("exchange", False)
    if not isinstance(exchange, bool):
        raise SandboxError("exchange must be true or false.")
    with transaction.atomic():
        result = dapi_connection_create(
            app_key=_text(data, "app_key", required=True),
            username=_text(data, "username", required=True),
            snapshot=state.snapshot(),
        )
        reply = {
            "provider": provider,
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


def subject_list(*, provider: str) -> list[dict[str, Any]]:
    """Subjects of one provider mount, without any secret."""
    provider = _provider(provider, tuple(Provider.values))
    if provider == Provider.TURNQEY:
        return [_turnqey_dict(a) for a in TurnqeyAuthorization.objects.order_by("id")]
    if provider == Provider.COINIFY:
        return [
            {"user_id": u.pk, "email": u.email, "partner_id": u.partner_id, "deactivated": u.deactivated_at is not None}
            for u in CoinifyUser.objects.order_by("id")
        ]
    if provider in BLOQUO_MOUNTS:
        return [
            {
                "customer_id": k.customer_id,
                "client_id": k.client_id,
                "name": k.name,
                "revoked": k.revoked_at is not None,
            }
            for k in BloquoKey.objects.filter(provider=provider).order_by("id")
        ]
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


# --- Acting on subjects -------------------------------------------------------

ACTIONS: dict[str, tuple[str, ...]] = {
    Provider.TURNQEY: ("revoke", "expire", "restore"),
    Provider.COINIFY: ("revoke", "expire", "deactivate", "restore"),
    Provider.BLOQUO: ("revoke", "expire", "restore"),
    Provider.BLOQUO_PRODUCTION: ("revoke", "expire", "restore"),
    Provider.DAPI: ("delink", "revoke", "expire"),
}


def subject_act(data: dict[str, Any]) -> dict[str, Any]:
    """Revoke, expire, deactivate, delink or restore one subject; returns how many rows changed.

    Raises :class:`SandboxError` (404) when no subject matches.
    """
    provider = _provider(data.get("provider"), tuple(Provider.values))
    action = data.get("action")
    if action not in ACTIONS[provider]:
        raise SandboxError(f"action for {provider} must be one of: {', '.join(ACTIONS[provider])}.")
    at = clock.now()
    with transaction.atomic():
        if provider == Provider.TURNQEY:
            affected = _turnqey_act(data, str(action))
        elif provider == Provider.COINIFY:
            affected = _coinify_act(data, str(action), at)
        elif provider in BLOQUO_MOUNTS:
            affected = _bloquo_act(provider, data, str(action), at)
        else:
            affected = _dapi_act(data, str(action), at)
    return {"provider": provider, "action": action, "affected": affected}


def _turnqey_act(data: dict[str, Any], action: str) -> int:
    source_account_id = _text(data, "source_account_id")
    if source_account_id:
        rows = TurnqeyAuthorization.objects.filter(source_account_id=source_account_id)
    else:
        identity, platform = _text(data, "identity"), _text(data, "platform")
        if not (identity and platform):
            raise SandboxError("Give source_account_id, or identity and platform.")
        rows = TurnqeyAuthorization.objects.filter(identity=identity, platform=platform)
    if client := _text(data, "client"):
        rows = rows.filter(client_id=client)
    if not rows.exists():
        raise SandboxError("No such Turnqey authorization.", status=404)
    status = {
        "revoke": TurnqeyAuthorization.Status.REVOKED,
        "expire": TurnqeyAuthorization.Status.EXPIRED,
        "restore": TurnqeyAuthorization.Status.ACTIVE,
    }[action]
    return rows.update(status=status, updated_at=clock.now())


def _coinify_act(data: dict[str, Any], action: str, at: Any) -> int:
    user_id = _text(data, "user_id", required=True)
    user = CoinifyUser.objects.filter(pk=int(user_id) if user_id.isdigit() else -1).first()
    if user is None:
        raise SandboxError("No such Coinify user.", status=404)
    subject = str(user.pk)
    if action == "deactivate":
        CoinifyUser.objects.filter(pk=user.pk).update(deactivated_at=at)
        return 1
    if action == "restore":
        CoinifyUser.objects.filter(pk=user.pk).update(deactivated_at=None)
        return 1
    if action == "revoke":
        # Refresh and offline tokens die, and so do live access tokens, so the
        # next call is refused and the renewal that follows learns "revoked".
        return Token.objects.filter(
            kind__in=[Token.Kind.COINIFY_REFRESH, Token.Kind.COINIFY_OFFLINE, Token.Kind.COINIFY_ACCESS],
            subject=subject,
            revoked_at__isnull=True,
        ).update(revoked_at=at)
    # expire: refresh and access tokens lapse now; an offline token never expires.
    return (
        Token.objects.filter(kind__in=[Token.Kind.COINIFY_REFRESH, Token.Kind.COINIFY_ACCESS], subject=subject)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=at))
        .update(expires_at=at)
    )


def _bloquo_act(provider: str, data: dict[str, Any], action: str, at: Any) -> int:
    customer_id = _text(data, "customer_id", required=True)
    key = BloquoKey.objects.filter(provider=provider, customer_id=customer_id).first()
    if key is None:
        raise SandboxError("No such Bloquo customer.", status=404)
    live = Token.objects.filter(kind=Token.Kind.BLOQUO_ACCESS, subject=str(key.pk))
    if action == "restore":
        BloquoKey.objects.filter(pk=key.pk).update(revoked_at=None)
        return 1
    if action == "revoke":
        BloquoKey.objects.filter(pk=key.pk).update(revoked_at=at)
        live.filter(revoked_at__isnull=True).update(revoked_at=at)
        return 1
    return live.filter(expires_at__gt=at).update(expires_at=at)


def _dapi_act(data: dict[str, Any], action: str, at: Any) -> int:
    user_id = _text(data, "user_id")
    connection_id = _text(data, "connection_id")
    access_token = _text(data, "access_token")
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


# --- Lifetimes, faults, log, reset --------------------------------------------


def lifetimes_get() -> dict[str, dict[str, int]]:
    return state.snapshot().lifetimes


def lifetimes_set(data: dict[str, Any]) -> dict[str, int]:
    """Set some token lifetimes (seconds) of one provider mount; returns that provider's lifetimes."""
    provider = _provider(data.get("provider"), tuple(Provider.values))
    kinds = state.DEFAULT_LIFETIMES[provider]
    changes = {k: v for k, v in data.items() if k != "provider"}
    if not changes:
        raise SandboxError(f"Give at least one of: {', '.join(kinds)}.")
    for kind, seconds in changes.items():
        if kind not in kinds:
            raise SandboxError(f"Lifetimes for {provider} are: {', '.join(kinds)}.")
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0:
            raise SandboxError(f"{kind} must be a whole number of seconds, 0 or more.")
    with transaction.atomic():
        for kind, seconds in changes.items():
            Lifetime.objects.update_or_create(provider=provider, kind=kind, defaults={"seconds": seconds})
        state.bump()
    return dict(state.snapshot().lifetimes[provider])


FAULT_DEFAULT_PROCESS: dict[str, bool] = {
    Fault.Kind.STATUS: False,
    Fault.Kind.LATENCY: True,
    Fault.Kind.TIMEOUT: False,
    Fault.Kind.TRUNCATED_JSON: True,
    Fault.Kind.HTML: True,
    Fault.Kind.MISSING_FIELD: True,
}


def _number(data: dict[str, Any], name: str, *, minimum: float = 0, integer: bool = True) -> Any:
    value = data.get(name)
    if value is None:
        return None
    allowed = (int,) if integer else (int, float)
    if not isinstance(value, allowed) or isinstance(value, bool) or value < minimum:
        raise SandboxError(f"{name} must be a {'whole ' if integer else ''}number of at least {minimum:g}.")
    return value


def fault_create(data: dict[str, Any]) -> dict[str, Any]:
    """Add a fault rule; see :mod:`sandbox.faults` for what each kind does."""
    provider = _provider(data.get("provider"), tuple(Provider.values))
    kind = data.get("kind")
    if kind not in Fault.Kind.values:
        raise SandboxError(f"kind must be one of: {', '.join(Fault.Kind.values)}.")
    status = _number(data, "status", minimum=100)
    if status is not None and status > 599:
        raise SandboxError("status must be an HTTP status code.")
    latency_ms = _number(data, "latency_ms")
    hang_seconds = _number(data, "hang_seconds", integer=False)
    if kind == Fault.Kind.LATENCY and latency_ms is None:
        raise SandboxError("A latency fault needs latency_ms.")
    if kind == Fault.Kind.TIMEOUT and hang_seconds is None:
        raise SandboxError("A timeout fault needs hang_seconds.")
    count = _number(data, "count", minimum=1)
    seconds = _number(data, "seconds", minimum=0, integer=False)
    process = data.get("process", FAULT_DEFAULT_PROCESS[kind])
    if not isinstance(process, bool):
        raise SandboxError("process must be true or false.")
    path = _text(data, "path")
    if path and not path.startswith("/"):
        raise SandboxError("path must start with / (the path beneath the provider, e.g. /auth).")
    with transaction.atomic():
        fault = Fault.objects.create(
            provider=provider,
            path_prefix=path,
            method=_text(data, "method").upper(),
            grant_type=_text(data, "grant_type"),
            kind=kind,
            status=status,
            retry_after=_number(data, "retry_after"),
            latency_ms=latency_ms,
            hang_seconds=hang_seconds,
            field=_text(data, "field"),
            process=process,
            remaining=count,
            expires_at=clock.now() + timedelta(seconds=seconds) if seconds is not None else None,
        )
        state.bump()
    return fault_dict(fault)


def fault_dict(fault: Fault) -> dict[str, Any]:
    at = clock.now()
    return {
        "id": fault.id,
        "provider": fault.provider,
        "path": fault.path_prefix,
        "method": fault.method,
        "grant_type": fault.grant_type,
        "kind": fault.kind,
        "status": fault.status,
        "retry_after": fault.retry_after,
        "latency_ms": fault.latency_ms,
        "hang_seconds": fault.hang_seconds,
        "field": fault.field,
        "process": fault.process,
        "remaining": fault.remaining,
        "expires_at": fault.expires_at.isoformat() if fault.expires_at else None,
        "active": (fault.remaining is None or fault.remaining > 0)
        and (fault.expires_at is None or fault.expires_at > at),
    }


def fault_list() -> list[dict[str, Any]]:
    return [fault_dict(f) for f in Fault.objects.order_by("id")]


def fault_delete(*, fault_id: int | None = None) -> int:
    """Delete one fault rule, or all of them; returns how many."""
    with transaction.atomic():
        rows = Fault.objects.all() if fault_id is None else Fault.objects.filter(pk=fault_id)
        deleted, _ = rows.delete()
        state.bump()
    return deleted


def request_log_list(
    *,
    provider: str = "",
    path: str = "",
    since: Any = None,
    after: int | None = None,
    method: str = "",
    grant_type: str = "",
) -> list[dict[str, Any]]:
    """Logged requests, oldest first, filtered (path is a prefix, since an aware datetime)."""
    rows = RequestLog.objects.order_by("id")
    if provider:
        rows = rows.filter(provider=provider)
    if path:
        rows = rows.filter(path__startswith=path)
    if since is not None:
        rows = rows.filter(at__gte=since)
    if after is not None:
        rows = rows.filter(id__gt=after)
    if method:
        rows = rows.filter(method=method.upper())
    if grant_type:
        rows = rows.filter(grant_type=grant_type)
    return [
        {
            "id": r.id,
            "provider": r.provider,
            "method": r.method,
            "path": r.path,
            "status": r.status,
            "grant_type": r.grant_type,
            "fault": r.fault,
            "at": r.at.isoformat(),
        }
        for r in rows
    ]


def request_log_clear() -> int:
    deleted, _ = RequestLog.objects.all().delete()
    return deleted


def sandbox_reset(*, keep_apps: bool = False) -> None:
    """Everything back to empty (registered apps too, unless ``keep_apps``); lifetimes to defaults."""
    with transaction.atomic():
        for model in (
            Token,
            TurnqeyAuthorization,
            TurnqeyCollection,
            CoinifyUser,
            BloquoKey,
            DapiConnection,
            Fault,
            Lifetime,
            RequestLog,
        ):
            model.objects.all().delete()
        if not keep_apps:
            App.objects.all().delete()
        SandboxState.objects.all().delete()
        state.bump()
