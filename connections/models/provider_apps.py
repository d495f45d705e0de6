"""The portal's own credentials with a provider: ProviderApp, which loads without its secret and forgets it when
its endpoints move.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import BooleanField, ExpressionWrapper, Q

from .. import wording
from ..fields import EncryptedTextField
from ..providers.endpoints import redirect_refusal, url_refusal
from .base import Environment, Provider, TimeStamped

# --- Providers ----------------------------------------------------------------

# The URLs that say where an app's secrets and its browsers go (see ProviderApp.save).
ENDPOINT_FIELDS = ("base_url", "connect_url", "redirect_uri")


class SecretDeferringManager(models.Manager["ProviderApp"]):
    """Loads ProviderApps without decrypting their client secret until something reads it.

    Pages, forms and lists never need the secret; a provider call reads it
    (``client_secret`` is then fetched and decrypted on first access). So one
    secret that no key decrypts breaks the calls that need it, not every page
    that shows the app's name. (Not the base manager: ``refresh_from_db`` must
    keep reading every column.) Lists that follow a relation defer it themselves
    (``selectors.NO_SECRETS``).
    """

    def get_queryset(self) -> models.QuerySet[ProviderApp]:
        return super().get_queryset().defer("client_secret")


class ProviderApp(TimeStamped):
    """The portal's own credentials with one provider in one environment."""

    class BreakerState(models.TextChoices):
        CLOSED = "closed", "Closed"
        OPEN = "open", "Open"
        HALF_OPEN = "half_open", "Half-open"

    provider = models.CharField(max_length=20, choices=Provider.choices)
    environment = models.CharField(max_length=20, choices=Environment.choices, default=Environment.SANDBOX)
    name = models.CharField(max_length=100)
    base_url = models.URLField(max_length=300, help_text="API base URL, without a trailing slash.")
    connect_url = models.URLField(
        max_length=300, blank=True, help_text="Browser-facing base URL, when it differs from the API base URL."
    )
    client_id = models.CharField(
        max_length=200, blank=True, help_text="Turnqey client id, Coinify partner id, Dapi app key."
    )
    client_secret = EncryptedTextField(
        null=True, blank=True, help_text="Turnqey client secret, Dapi app secret. Write-only."
    )
    redirect_uri = models.URLField(
        max_length=300, blank=True, help_text="Redirect URI registered with the provider for this app."
    )
    is_enabled = models.BooleanField(default=True)
    # Outbound rate limit shared by every worker (token bucket in the database).
    rate_limit_per_second = models.FloatField(default=20.0)
    rate_tokens = models.FloatField(default=20.0)
    rate_updated_at = models.DateTimeField(null=True, blank=True)
    # Circuit breaker across all of this app's connections.
    breaker_state = models.CharField(max_length=12, choices=BreakerState.choices, default=BreakerState.CLOSED)
    breaker_failures = models.PositiveIntegerField(default=0)
    breaker_window_started_at = models.DateTimeField(null=True, blank=True)
    breaker_opened_at = models.DateTimeField(null=True, blank=True)
    # The app's own health: set when the provider rejects our client id/secret.
    credentials_rejected_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)

    objects = SecretDeferringManager()
    # Set by whoever types the client secret in along with an endpoint change
    # (the admin's form does), so the change keeps the secret just entered.
    # Not a column.
    secret_entered: bool = False
    # Set by save() when an endpoint change made it forget the client secret.
    secret_cleared: bool = False

    class Meta:
        ordering = ["provider", "environment", "name"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "environment", "name"], name="providerapp_unique_name"),
        ]

    def __str__(self) -> str:
        return wording.app_name(provider=self.provider, environment=self.environment, name=self.name)

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save; a changed endpoint forgets the client secret and the cached app token.

        The secret was given for the old endpoints: sent to new ones, it would
        reach whoever runs them. So unless a secret was entered with the
        change (``secret_entered``, or a value other than the stored one), it is
        cleared and must be entered again. Every path that saves a model meets
        this: admin, forms and scripts alike.
        """
        update_fields = kwargs.get("update_fields")
        watched = update_fields is None or bool(set(update_fields) & set(ENDPOINT_FIELDS))
        if self.pk is None or not watched:
            super().save(*args, **kwargs)
            return
        with transaction.atomic():
            stored = (
                ProviderApp.objects.filter(pk=self.pk)
                .annotate(has_secret=ExpressionWrapper(Q(client_secret__isnull=False), output_field=BooleanField()))
                .values(*ENDPOINT_FIELDS, "has_secret")
                .first()
            )
            moved = stored is not None and any(stored[name] != getattr(self, name) for name in ENDPOINT_FIELDS)
            if moved and not self._secret_entered_now():
                self.client_secret = None
                if update_fields is not None:
                    kwargs["update_fields"] = [*update_fields, "client_secret"]
                self.secret_cleared = bool(stored and stored["has_secret"])
            super().save(*args, **kwargs)
            if moved:
                # The app token was issued for the old endpoint's client.
                from .connection import Credential  # a credential row points at its app: imported late

                Credential.objects.filter(provider_app_id=self.pk, kind=Credential.Kind.APP).delete()

    def clean(self) -> None:
        """The provider URLs must pass :func:`~connections.providers.endpoints.url_refusal`.

        They decide where the app's client secret, its app token and every
        connection's tokens are sent, and where browsers go with a ``state``.
        ``redirect_uri`` must pass :func:`~connections.providers.endpoints.redirect_refusal`:
        the provider sends the client's browser there with the authorization.
        """
        super().clean()
        errors: dict[str, str] = {}
        for name in ("base_url", "connect_url"):
            value = str(getattr(self, name) or "")
            if not value:
                continue
            refusal = url_refusal(value, provider=self.provider, environment=self.environment)
            if refusal is not None:
                errors[name] = (
                    f"Refused: this URL {refusal}. The portal sends the app's secrets and its clients' tokens "
                    "to this address, so only the provider's own hosts are accepted."
                )
        if self.redirect_uri:
            refusal = redirect_refusal(str(self.redirect_uri), provider=self.provider)
            if refusal is not None:
                errors["redirect_uri"] = (
                    f"Refused: this URL {refusal}. The provider sends clients back to this address with their "
                    "authorization, so only the portal's own callback address is accepted."
                )
        if errors:
            raise ValidationError(errors)

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any) -> ProviderApp:
        instance = super().from_db(db, field_names, values)
        if "client_secret" in field_names:
            # What was stored, so save() can tell a secret typed in from the one loaded.
            instance._loaded_secret = values[list(field_names).index("client_secret")]  # noqa: SLF001 (its own class)
        return instance

    def refresh_from_db(self, using: str | None = None, fields: Any = None, from_queryset: Any = None) -> None:
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)
        if fields is None or "client_secret" in fields:
            self._loaded_secret = self.__dict__.get("client_secret")

    def _secret_entered_now(self) -> bool:
        if self.secret_entered:
            return True
        if "client_secret" not in self.__dict__:  # deferred: nobody touched it
            return False
        current = self.__dict__["client_secret"]
        return bool(current) and current != getattr(self, "_loaded_secret", None)
