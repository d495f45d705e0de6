"""Connects and reconnects under way: authorization requests and the signed links sent to clients."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .base import Provider
from .connection import Connection
from .people import Client, Household
from .provider_apps import ProviderApp


class AuthorizationRequest(models.Model):
    """A pending connect or reconnect.

    The ``state`` handed to the provider is never stored: only its SHA-256, so a
    database reader cannot complete someone else's authorization.
    """

    class Purpose(models.TextChoices):
        CONNECT = "connect", "Connect"
        RECONNECT = "reconnect", "Reconnect"

    class Outcome(models.TextChoices):
        PENDING = "", "Pending"
        APPROVED = "approved", "Approved"
        DENIED = "denied", "Denied"
        ERROR = "error", "Provider error"
        EXPIRED = "expired", "Expired"
        MISMATCH = "mismatch", "Different source account"

    state_hash = models.CharField(max_length=64, unique=True)
    provider_app = models.ForeignKey(ProviderApp, on_delete=models.CASCADE, related_name="+")
    provider = models.CharField(max_length=20, choices=Provider.choices)
    platform = models.CharField(max_length=50)
    purpose = models.CharField(max_length=20, choices=Purpose.choices, default=Purpose.CONNECT)
    household = models.ForeignKey(Household, on_delete=models.CASCADE, related_name="authorization_requests")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="+")
    connection = models.ForeignKey(
        Connection, null=True, blank=True, on_delete=models.CASCADE, related_name="authorization_requests"
    )
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    client_link = models.ForeignKey(
        "ClientLink", null=True, blank=True, on_delete=models.SET_NULL, related_name="authorization_requests"
    )
    checksum = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, blank=True, default="")
    outcome_message = models.CharField(max_length=500, blank=True)

    class Meta:
        indexes = [
            # Housekeeping: expire unused requests past their window.
            models.Index(fields=["expires_at"], name="authreq_open_idx", condition=Q(used_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.get_purpose_display()} {self.platform} via {self.provider}"


class ClientLink(models.Model):
    """A signed, expiring link that lets a client connect or reconnect without a login.

    The URL carries a signed token; only its SHA-256 is stored.
    """

    class LinkStatus(models.TextChoices):
        SENT = "sent", "Sent"
        OPENED = "opened", "Opened"
        COMPLETED = "completed", "Completed"
        EXPIRED = "expired", "Expired"
        CANCELLED = "cancelled", "Cancelled"
        SUPERSEDED = "superseded", "Replaced by a newer link"
        # Too many wrong credentials were typed through it (services.client_links).
        LOCKED = "locked", "Locked"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    token_hash = models.CharField(max_length=64, unique=True)
    household = models.ForeignKey(Household, on_delete=models.CASCADE, related_name="client_links")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="links")
    # Set for a reconnect; for a new connection, provider_app + platform say what.
    connection = models.ForeignKey(
        Connection, null=True, blank=True, on_delete=models.CASCADE, related_name="client_links"
    )
    provider_app = models.ForeignKey(ProviderApp, on_delete=models.CASCADE, related_name="+")
    platform = models.CharField(max_length=50)
    status = models.CharField(max_length=20, choices=LinkStatus.choices, default=LinkStatus.SENT)
    sent_to = models.EmailField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # Credential attempts sent to the provider through this link (taken before
    # each is sent, so concurrent posts cannot pass the limit); at the limit the
    # link is locked, so a link is never a way to guess a client's password.
    credential_attempts = models.PositiveSmallIntegerField(default=0)
    locked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["expires_at"],
                name="clientlink_open_idx",
                condition=Q(status__in=["sent", "opened"]),
            ),
        ]

    def __str__(self) -> str:
        return f"Link for {self.client} ({self.get_status_display()})"
