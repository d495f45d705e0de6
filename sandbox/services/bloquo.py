"""Bloquo's simulated world: customers' key pairs, as subjects of either mount.

Staging (``bloquo``) and production (``bloquo-production``) are separate apps
with separate key pairs, so every function takes the mount it acts in. The
registry in :mod:`sandbox.services` maps both mounts to this module.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import models, transaction

from .. import clock, tokens
from ..models import BloquoKey, Provider, Token
from .common import AppKind, IssuedSecretWords, Person, SandboxError, check_columns, read_mount, read_text

BLOQUO_MOUNTS = (Provider.BLOQUO, Provider.BLOQUO_PRODUCTION)
ACTIONS: tuple[str, ...] = ("revoke", "expire", "restore")
APPS: AppKind = AppKind.NONE
MODELS: tuple[type[models.Model], ...] = (BloquoKey,)
# [doc] A token lives 3600 seconds, on staging and production alike.
LIFETIMES: Mapping[str, int] = {"access": 3600}
# A customer's new secret, issued as its Bloquo API settings would issue one.
ISSUED_SECRET = IssuedSecretWords(heading="New key pair", label="Client secret")


def is_production_mount(mount: str) -> bool:
    """True for the production mount (its key pairs are a separate world from staging's)."""
    return mount == Provider.BLOQUO_PRODUCTION


def error_body(*, status: int, message: str) -> dict[str, Any]:
    """Bloquo's failure shape (docs/provider-assumptions.md); the status is only the HTTP one."""
    return {"status": False, "message": message}


def bloquo_key_create(
    *, provider: str, client_id: str = "", client_secret: str = "", name: str = "", email: str = ""
) -> tuple[BloquoKey, str, str]:
    """Create (or replace the secret of) a customer's API key pair in one environment.

    Generates the client id and secret when not given. Returns the key with
    the client id and secret in clear, shown only here.
    """
    provider = read_mount(provider, BLOQUO_MOUNTS)
    check_columns(BloquoKey, client_id=client_id, name=name, email=email)
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


# --- As a subject of the control API ------------------------------------------


def subject_create(*, mount: str, data: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Optional ``client_id``, ``client_secret``, ``name``, ``email``: a key pair (generated where not given)."""
    client_id = read_text(data, "client_id")
    existed = bool(client_id) and BloquoKey.objects.filter(provider=mount, client_id=client_id).exists()
    key, client_id, client_secret = bloquo_key_create(
        provider=mount,
        client_id=client_id,
        client_secret=read_text(data, "client_secret"),
        name=read_text(data, "name"),
        email=read_text(data, "email"),
    )
    return {
        "provider": mount,
        "customer_id": key.customer_id,
        "client_id": client_id,
        "client_secret": client_secret,
        "name": key.name,
        "email": key.email,
    }, not existed


def subject_list(*, mount: str) -> list[dict[str, Any]]:
    return [
        {
            "customer_id": k.customer_id,
            "client_id": k.client_id,
            "name": k.name,
            "revoked": k.revoked_at is not None,
        }
        for k in BloquoKey.objects.filter(provider=mount).order_by("id")
    ]


def subject_act(*, mount: str, data: dict[str, Any], action: str, at: datetime) -> int:
    """Revoke the key pair ``customer_id`` (and its tokens), expire its tokens, or restore it."""
    customer_id = read_text(data, "customer_id", required=True)
    key = BloquoKey.objects.filter(provider=mount, customer_id=customer_id).first()
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


# --- Grants without a browser (manage.py sandbox_grant) -------------------------


def grant_answer(*, mount: str, person: Person) -> dict[str, Any]:
    """A new key pair from the customer's API settings: the fields the partner's form posts."""
    key, client_id, client_secret = bloquo_key_create(provider=mount, name=person.name, email=person.email)
    return {
        "fields": {"clientId": client_id, "clientSecret": client_secret},
        "subject": {"customer_id": key.customer_id},
    }


def grant_break(*, mount: str, person: Person, how: str) -> dict[str, str] | None:
    """Revoked: the key is revoked. Credentials invalid: the customer replaced the pair's secret."""
    if how == "expired":
        raise SandboxError("A Bloquo key pair does not expire: a lapsed access token is replaced from the same pair.")
    key = BloquoKey.objects.filter(provider=mount, email=person.email).order_by("-id").first()
    if key is None:
        raise SandboxError("No such Bloquo customer.", status=404)
    if how == "revoked":
        return {"action": "revoke", "customer_id": key.customer_id}
    with transaction.atomic():
        # The new secret is never shown here: the one on file is refused, and
        # the tokens issued for the old secret end with it.
        bloquo_key_create(provider=mount, client_id=key.client_id)
        Token.objects.filter(kind=Token.Kind.BLOQUO_ACCESS, subject=str(key.pk), revoked_at__isnull=True).update(
            revoked_at=clock.now()
        )
    return None
