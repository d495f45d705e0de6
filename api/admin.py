"""Django admin for API keys, webhook endpoints, events, deliveries and idempotency records.

Rules this module keeps (as ``connections.admin`` does):

- A secret is never displayed after the page that made it: an API key is
  shown once, on the page that answers its creation; a signing secret once,
  after creating an endpoint or rotating its secret. Both pages are rendered
  in the reply (no message, no session) and are not cached. Change pages say
  only whether a secret is set; the encrypted columns are never even loaded
  for lists.
- Events, deliveries, attempts and idempotency records are written by the
  dispatcher and the API alone: read-only here. A delivery can be resent.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from connections.admin import ReadOnlyAdminMixin, ReadOnlyInline

from . import keys
from .forms import webhook_url_clean
from .models import (
    ApiKey,
    DispatchCursor,
    EventType,
    IdempotencyRecord,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from .webhooks import services
from .webhooks.signing import secret_new

# Where an admin's own creation leaves its one-time secret for response_add (never a message or session).
_SHOWN_ONCE = "api_admin_secret_shown_once"


def _once(request: HttpRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    response = TemplateResponse(request, template, context)
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


# --- API keys -----------------------------------------------------------------------------------


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "key_prefix", "firm", "scope", "created_at", "last_used_at", "revoked_at")
    list_filter = ("scope", ("revoked_at", admin.EmptyFieldListFilter), "firm")
    search_fields = ("name", "prefix", "firm__name")
    list_select_related = ("firm",)
    actions = ("revoke",)
    autocomplete_fields = ("firm",)

    @admin.display(description="key")
    def key_prefix(self, obj: ApiKey) -> str:
        return f"cpk_{obj.prefix}_…" if obj.prefix else "—"

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ("firm", "name", "scope")
        return (
            "firm",
            "name",
            "scope",
            "key_prefix",
            "created_at",
            "created_by",
            "last_used_at",
            "revoked_at",
            "revoked_by",
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        return ("firm", "scope", "key_prefix", "created_at", "created_by", "last_used_at", "revoked_at", "revoked_by")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: the key's history stays readable

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user  # type: ignore[assignment]
            setattr(request, _SHOWN_ONCE, keys.api_key_fill(obj))
        super().save_model(request, obj, form, change)

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> HttpResponse:
        key = getattr(request, _SHOWN_ONCE, None)
        if key is None:
            return super().response_add(request, obj, post_url_continue)
        context = {**self.admin_site.each_context(request), "title": "API key created", "api_key": obj, "key": key}
        return _once(request, "api/admin/key_created.html", context)

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = sum(keys.api_key_revoke(api_key=api_key, user=request.user) for api_key in queryset)
        self.message_user(request, f"{revoked} key(s) revoked.", messages.SUCCESS)


# --- Webhook endpoints --------------------------------------------------------------------------


class WebhookEndpointForm(forms.ModelForm):
    event_types = forms.MultipleChoiceField(choices=EventType.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = WebhookEndpoint
        fields = ("firm", "url", "description", "event_types", "is_enabled")

    def clean_url(self) -> str:
        return webhook_url_clean(self.cleaned_data["url"])


class AttemptInline(ReadOnlyInline):
    model = WebhookAttempt
    fields = ("number", "started_at", "status_code", "latency_ms", "error", "response_excerpt")
    readonly_fields = fields


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ("url", "firm", "is_enabled", "failing_since", "created_at")
    list_filter = ("is_enabled", "firm")
    search_fields = ("url", "description", "firm__name")
    list_select_related = ("firm",)
    actions = ("rotate_secret", "enable")
    autocomplete_fields = ("firm",)
    readonly_fields = (
        "secret_state",
        "delivery_log",
        "failing_since",
        "disabled_at",
        "disabled_reason",
        "created_at",
        "updated_at",
        "created_by",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookEndpoint]:
        return super().get_queryset(request).defer("secret", "previous_secret")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if obj is None:
            return ("firm", "url", "description", "event_types")
        return ("firm", "url", "description", "event_types", "is_enabled", *self.readonly_fields)

    @admin.display(description="signing secret")
    def secret_state(self, obj: WebhookEndpoint) -> str:
        if obj.previous_secret_expires_at and obj.previous_secret_expires_at > timezone.now():
            return (
                f"set (never shown); the previous one still signs until {obj.previous_secret_expires_at:%Y-%m-%d %H:%M}"
            )
        return "set (never shown); rotate it to get a new one"

    @admin.display(description="delivery log")
    def delivery_log(self, obj: WebhookEndpoint) -> str:
        if obj.pk is None:
            return "-"
        url = reverse("admin:api_webhookdelivery_changelist") + f"?{EndpointFilter.parameter_name}={obj.pk}"
        return format_html('<a href="{}">Deliveries to this endpoint</a>', url)

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool) -> None:
        if not change:
            secret = secret_new()
            obj.secret, obj.created_by = secret, request.user  # type: ignore[assignment]
            setattr(request, _SHOWN_ONCE, secret)
        super().save_model(request, obj, form, change)

    def response_add(
        self, request: HttpRequest, obj: WebhookEndpoint, post_url_continue: str | None = None
    ) -> HttpResponse:
        secret = getattr(request, _SHOWN_ONCE, None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        context = {**self.admin_site.each_context(request), "title": "Signing secret", "secrets": [(obj, secret)]}
        return _once(request, "api/admin/secrets.html", context)

    @admin.action(description="Rotate the signing secret (the old one keeps signing for the overlap)")
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> HttpResponse:
        rotated = [services.endpoint_secret_rotate(endpoint=e) for e in WebhookEndpoint.objects.filter(pk__in=queryset)]
        context = {
            **self.admin_site.each_context(request),
            "title": "New signing secrets",
            "secrets": [(r.endpoint, r.secret) for r in rotated],
        }
        return _once(request, "api/admin/secrets.html", context)

    @admin.action(description="Turn the selected endpoints on again")
    def enable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            services.endpoint_enable(endpoint=endpoint)
        self.message_user(request, "Endpoints turned on.", messages.SUCCESS)


# --- Events, deliveries, records ------------------------------------------------------------------


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("public_id", "type", "firm", "connection", "occurred_at", "created_at")
    list_filter = ("type", "firm")
    search_fields = ("public_id",)
    list_select_related = ("firm", "connection")
    fields = ("public_id", "type", "firm", "connection", "client_link", "source_event", "occurred_at", "created_at")
    readonly_fields = fields


class EndpointFilter(admin.SimpleListFilter):
    """Deliveries to one endpoint. Lists endpoints by URL and firm, reading neither secret column."""

    title = "endpoint"
    parameter_name = "endpoint"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        rows = WebhookEndpoint.objects.order_by("firm__name", "url", "pk").values_list("pk", "url", "firm__name")
        return [(str(pk), f"{url} ({firm})") for pk, url, firm in rows]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if not value.isdigit():
            return queryset.none()
        return queryset.filter(endpoint_id=int(value))


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "event",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "last_latency_ms",
        "last_attempt_at",
        "next_attempt_at",
    )
    list_filter = ("status", "manual", EndpointFilter, ("endpoint__firm", admin.RelatedOnlyFieldListFilter))
    search_fields = ("event__public_id", "endpoint__url")
    list_select_related = ("event", "endpoint")
    inlines = (AttemptInline,)
    actions = ("resend",)
    fields = (
        "event",
        "endpoint",
        "status",
        "manual",
        "attempts",
        "next_attempt_at",
        "last_attempt_at",
        "last_status_code",
        "last_latency_ms",
        "last_error",
        "created_at",
        "finished_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookDelivery]:
        return super().get_queryset(request).defer("endpoint__secret", "endpoint__previous_secret")

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # Read-only rows, but resending is an action on them, not a change.
        actions = super().get_actions(request)
        action = self.get_action("resend")
        if action is not None:
            actions["resend"] = action
        return actions

    @admin.action(description="Resend the selected deliveries")
    def resend(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        sent, refused = 0, 0
        for delivery in queryset:
            try:
                services.delivery_resend(delivery=delivery)
                sent += 1
            except ValueError:
                refused += 1
        self.message_user(request, f"{sent} resent; {refused} refused (endpoint turned off).", messages.SUCCESS)


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("key", "api_key", "method", "path", "status_code", "created_at", "completed_at")
    list_select_related = ("api_key",)
    search_fields = ("key", "path")
    # The stored reply may carry a client link's URL: never shown.
    fields = ("key", "api_key", "method", "path", "status_code", "created_at", "completed_at")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[IdempotencyRecord]:
        return super().get_queryset(request).defer("response_body")


@admin.register(DispatchCursor)
class DispatchCursorAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("__str__", "pending_high", "pending_seen_at", "updated_at")
    fields = ("last_event_id", "pending_high", "pending_seen_at", "updated_at")
    readonly_fields = fields
