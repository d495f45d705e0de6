"""The sandbox's own world: provider apps, subjects, issued tokens, faults, log.

Everything lives in these tables (app label ``sandbox``) so the web process,
Celery workers, a separate ``run_sandbox`` server and the tests all see one
world. Nothing here refers to the portal's own models.

Bearer tokens, refresh tokens, codes and secrets the sandbox must only *check*
are stored as SHA-256 digests. Secrets it must *use* (a Turnqey client secret
keys the authorize checksum; a Dapi app secret is compared) are stored as given:
this is a simulator for development and tests, never a place for real secrets.
"""

from __future__ import annotations

import uuid

from django.db import models


class Provider(models.TextChoices):
    """A mount point of the sandbox. Bloquo staging and production are separate apps."""

    TURNQEY = "turnqey", "Turnqey"
    COINIFY = "coinify", "Coinify"
    BLOQUO = "bloquo", "Bloquo (staging)"
    BLOQUO_PRODUCTION = "bloquo-production", "Bloquo (production)"
    DAPI = "dapi", "Dapi"


class SandboxState(models.Model):
    """One row whose ``version`` changes whenever faults or lifetimes change.

    Each process caches faults and lifetimes and rereads them only when this
    version differs, so evaluating faults costs one primary-key read per
    request. The version is a random string rather than a counter so that a
    rolled-back change (tests) can never reuse a version another process cached.
    """

    version = models.CharField(max_length=32, default="")

    def __str__(self) -> str:
        return f"sandbox state {self.version}"


class App(models.Model):
    """A partner application registered with a provider (Turnqey, Coinify, Dapi)."""

    provider = models.CharField(max_length=20, choices=Provider.choices)
    client_id = models.CharField(max_length=200, help_text="Turnqey client id, Coinify partner id, Dapi app key.")
    client_secret = models.CharField(max_length=300, blank=True)
    redirect_uri = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["provider", "client_id"], name="sandbox_app_unique")]

    def __str__(self) -> str:
        return f"{self.provider}:{self.client_id}"


class Lifetime(models.Model):
    """An override of one token lifetime (seconds) for one provider mount."""

    provider = models.CharField(max_length=20, choices=Provider.choices)
    kind = models.CharField(max_length=20)
    seconds = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["provider", "kind"], name="sandbox_lifetime_unique")]

    def __str__(self) -> str:
        return f"{self.provider} {self.kind}: {self.seconds}s"


class Fault(models.Model):
    """A rule that makes matching requests misbehave, for a count or a time.

    ``remaining`` (null: unlimited) is consumed with a conditional UPDATE, so
    concurrent requests never take more than ``count`` between them.
    """

    class Kind(models.TextChoices):
        STATUS = "status", "Error status"
        LATENCY = "latency", "Latency"
        TIMEOUT = "timeout", "Hang (timeout)"
        TRUNCATED_JSON = "truncated_json", "Truncated JSON"
        HTML = "html", "HTML page"
        MISSING_FIELD = "missing_field", "Missing field"
        TRICKLE = "trickle", "Trickle (one byte at a time)"

    provider = models.CharField(max_length=20, choices=Provider.choices)
    path_prefix = models.CharField(max_length=200, blank=True)
    method = models.CharField(max_length=10, blank=True)
    grant_type = models.CharField(max_length=30, blank=True, help_text="Coinify /auth only: match one grant type.")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    retry_after = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    hang_seconds = models.FloatField(null=True, blank=True)
    # trickle: the pause before each byte of the reply after the first.
    interval_seconds = models.FloatField(null=True, blank=True)
    field = models.CharField(max_length=200, blank=True)
    process = models.BooleanField()
    remaining = models.PositiveIntegerField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.provider}{self.path_prefix} {self.kind}"


class RequestLog(models.Model):
    """One request a simulator answered. Never holds a secret: no bodies, no query strings."""

    provider = models.CharField(max_length=20)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=300)
    status = models.PositiveSmallIntegerField()
    grant_type = models.CharField(max_length=30, blank=True)
    fault = models.CharField(max_length=20, blank=True)
    at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["provider", "at"], name="sandbox_log_provider_at")]

    def __str__(self) -> str:
        return f"{self.method} {self.provider}{self.path} {self.status}"


class Token(models.Model):
    """Any token, code or key the sandbox issued and later checks, by digest.

    ``subject`` names who it was issued to: a Turnqey client id, a Coinify user
    id, a Bloquo key id, a Dapi connection id. Single use (refresh tokens,
    access codes) is enforced by a conditional UPDATE of ``used_at``.
    """

    class Kind(models.TextChoices):
        TURNQEY_APP = "turnqey_app", "Turnqey app token"
        COINIFY_ACCESS = "coinify_access", "Coinify access token"
        COINIFY_REFRESH = "coinify_refresh", "Coinify refresh token"
        COINIFY_OFFLINE = "coinify_offline", "Coinify offline token"
        BLOQUO_ACCESS = "bloquo_access", "Bloquo access token"
        DAPI_CODE = "dapi_code", "Dapi access code"
        DAPI_ACCESS = "dapi_access", "Dapi access token"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    digest = models.CharField(max_length=64, unique=True)
    subject = models.CharField(max_length=100)
    expires_at = models.DateTimeField(null=True, blank=True)
    used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["kind", "subject"], name="sandbox_token_subject")]

    def __str__(self) -> str:
        return f"{self.kind} for {self.subject}"


class TurnqeyCollection(models.Model):
    """A Turnqey collection: the grouping a partner uses for one household."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    client_id = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return str(self.id)


class TurnqeyAuthorization(models.Model):
    """One (identity, platform) authorization of a Turnqey client, and its accounts' status."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"

    client_id = models.CharField(max_length=200)
    collection = models.ForeignKey(TurnqeyCollection, on_delete=models.CASCADE, related_name="authorizations")
    identity = models.CharField(max_length=200)
    platform = models.CharField(max_length=50)
    username = models.CharField(max_length=200)
    source_account_id = models.CharField(max_length=100, db_index=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client_id", "identity", "platform"], name="sandbox_turnqey_auth_unique")
        ]
        indexes = [models.Index(fields=["client_id", "identity"], name="sandbox_turnqey_identity")]

    def __str__(self) -> str:
        return f"{self.identity} at {self.platform} ({self.status})"


class CoinifyUser(models.Model):
    """A Coinify end user of one partner."""

    partner_id = models.CharField(max_length=200)
    email = models.CharField(max_length=254)
    password_salt = models.CharField(max_length=32)
    password_digest = models.CharField(max_length=64)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["partner_id", "email"], name="sandbox_coinify_user_unique")]

    def __str__(self) -> str:
        return self.email


class BloquoKey(models.Model):
    """A Bloquo customer's API key pair, in one environment (staging or production)."""

    provider = models.CharField(max_length=20, choices=Provider.choices)
    client_id = models.CharField(max_length=200)
    secret_digest = models.CharField(max_length=64)
    customer_id = models.CharField(max_length=40, unique=True)
    name = models.CharField(max_length=200)
    email = models.CharField(max_length=254)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["provider", "client_id"], name="sandbox_bloquo_key_unique")]

    def __str__(self) -> str:
        return f"{self.provider}:{self.customer_id}"


class DapiConnection(models.Model):
    """One Dapi Connect login: a user at an institution, linked to one app."""

    app_key = models.CharField(max_length=200)
    connection_id = models.CharField(max_length=40, unique=True)
    user_id = models.CharField(max_length=100, db_index=True)
    username = models.CharField(max_length=200)
    user_secret_digest = models.CharField(max_length=64)
    token_id = models.CharField(max_length=40)
    delinked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.connection_id
