"""The vocabularies every model shares (providers, environments, statuses, reasons) and the time-stamped base."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Provider(models.TextChoices):
    TURNQEY = "turnqey", "Turnqey"
    COINIFY = "coinify", "Coinify"
    BLOQUO = "bloquo", "Bloquo"
    DAPI = "dapi", "Dapi"


class Environment(models.TextChoices):
    SANDBOX = "sandbox", "Sandbox"
    PRODUCTION = "production", "Production"


class Status(models.TextChoices):
    """One status vocabulary across providers (docs/architecture.md, "One status vocabulary")."""

    PENDING = "pending", "Pending"
    ACTIVE = "active", "Active"
    DEGRADED = "degraded", "Degraded"
    NEEDS_RECONNECT = "needs_reconnect", "Needs reconnect"
    DISCONNECTED = "disconnected", "Disconnected"


class Reason(models.TextChoices):
    """Why a connection is not simply active. Empty when it is."""

    NONE = "", "—"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"
    CREDENTIALS_INVALID = "credentials_invalid", "Credentials invalid"
    CREDENTIALS_UNREADABLE = "credentials_unreadable", "Stored credentials unreadable"
    TRANSIENT = "transient", "Temporary provider problem"
    AUTHORIZATION_ABANDONED = "authorization_abandoned", "Authorization not finished"


class TimeStamped(models.Model):
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
