"""Django admin for every model of :mod:`connections.models`.

Rules this module keeps:

- Secrets are never displayed. Credential values are never loaded (the
  querysets defer them, which also spares a decryption per row) and never
  listed; ProviderApp's client secret is a write-only input that renders empty,
  where leaving it empty keeps the stored secret.
- A ProviderApp's endpoints are held to the provider host rule
  (``ProviderApp.clean``), and changing one clears the stored client secret
  (``ProviderApp.save``); the page says so, and shows where calls go.
- Status is decided by :mod:`connections.lifecycle` alone, so a connection's
  status, reason, deadlines and counters are read-only here. Accounts,
  credentials, authorization requests and client links are written by the
  flows that own them and are read-only too.
- ConnectionEvent is permanent history: nobody adds, changes or deletes one
  here. Because its admin refuses deletion, Django's delete confirmation also
  refuses to cascade-delete a connection (or household) that has history.
- Changelists select or prefetch what their columns show, so their query count
  does not grow with the number of rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db import models
from django.db.models import BooleanField, Count, ExpressionWrapper, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from . import models as m
from . import services, wording
from .providers.endpoints import origin_of, url_refusal

admin.site.site_header = "Connections portal administration"
admin.site.site_title = "Connections portal admin"
admin.site.index_title = "Administration"

MASK = "••••••••"
# How many events the connection page shows inline; the full history is one
# click away in the ConnectionEvent changelist, filtered to the connection.
EVENTS_SHOWN_INLINE = 50


class ReadOnlyAdminMixin:
    """View-only for everyone with view permission (superusers included)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(ReadOnlyAdminMixin, admin.TabularInline):
    extra = 0
    max_num = 0
    can_delete = False


def _admin_link(obj: Any, label: str | None = None) -> str:
    """A link to ``obj``'s admin change page ('—' for None)."""
    if obj is None:
        return "—"
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label if label is not None else str(obj))


# --- Inlines ------------------------------------------------------------------


class MembershipInline(admin.TabularInline):
    model = m.Membership
    extra = 0
    autocomplete_fields = ("user",)
    fields = ("user", "role", "digest_sent_up_to")
    readonly_fields = ("digest_sent_up_to",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[m.Membership]:
        return super().get_queryset(request).select_related("user", "firm")


class UserMembershipInline(admin.StackedInline):
    model = m.Membership
    extra = 0
    max_num = 1
    can_delete = True
    autocomplete_fields = ("firm",)
    fields = ("firm", "role", "digest_sent_up_to")
    readonly_fields = ("digest_sent_up_to",)


class ClientInline(admin.TabularInline):
    model = m.Client
    extra = 0
    fields = ("name", "email", "identity")
    readonly_fields = ("identity",)
    show_change_link = True


class ConnectionSummaryInline(ReadOnlyInline):
    """A household's or client's connections, one line each, linking to the connection."""

    model = m.Connection
    fk_name = "household"
    fields = ("client", "provider", "platform", "status", "reason", "last_success_at", "next_check_at")
    readonly_fields = fields
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[m.Connection]:
        return super().get_queryset(request).select_related("client", "household")


class ClientConnectionInline(ConnectionSummaryInline):
    fk_name = "client"


class AccountInline(ReadOnlyInline):
    model = m.Account
    fields = ("name", "currency", "balance", "status", "as_of", "external_id")
    readonly_fields = fields


class MaskedCredentialInline(ReadOnlyInline):
    """Credentials shown by kind and lifetime only; the value is never even loaded."""

    model = m.Credential
    fields = ("kind", "value_masked", "issued_at", "expires_at")
    readonly_fields = fields
    exclude = ("value",)
    verbose_name_plural = "credentials (values are never shown)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[m.Credential]:
        return super().get_queryset(request).defer("value")

    @admin.display(description="value")
    def value_masked(self, obj: m.Credential) -> str:
        return MASK


class ConnectionCredentialInline(MaskedCredentialInline):
    fk_name = "connection"


class AppCredentialInline(MaskedCredentialInline):
    fk_name = "provider_app"


class ConnectionEventInline(ReadOnlyInline):
    """The connection's most recent events (see ConnectionAdmin.get_formset_kwargs)."""

    model = m.ConnectionEvent
    # "by" in plain words (wording.actor_words), never the raw actor label such as "job:check".
    fields = ("created_at", "kind", "from_status", "to_status", "reason", "message", "who")
    readonly_fields = fields
    verbose_name_plural = f"recent events (latest {EVENTS_SHOWN_INLINE})"

    def get_queryset(self, request: HttpRequest) -> QuerySet[m.ConnectionEvent]:
        return super().get_queryset(request).select_related("actor")

    @admin.display(description="by")
    def who(self, obj: m.ConnectionEvent) -> str:
        return wording.actor_words(actor=obj.actor, actor_label=obj.actor_label)


# --- Firms and people ---------------------------------------------------------


def _annotated_count(annotation: str, description: str) -> Callable[[Any, models.Model], int]:
    """A changelist column showing the count ``annotation`` that the admin's ``get_queryset`` adds, sortable by it."""

    @admin.display(description=description, ordering=annotation)
    def column(self: Any, obj: models.Model) -> int:
        return getattr(obj, annotation)

    return column


@admin.register(m.Firm)
class FirmAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "household_count", "member_count", "created_at")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at", "updated_at")
    inlines = (MembershipInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[m.Firm]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                household_total=Count("households", distinct=True),
                member_total=Count("memberships", distinct=True),
            )
        )

    household_count = _annotated_count("household_total", "households")
    member_count = _annotated_count("member_total", "members")


@admin.register(m.Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "firm", "role", "digest_sent_up_to")
    list_filter = ("role", "firm")
    list_select_related = ("user", "firm")
    search_fields = ("user__username", "user__email", "user__first_name", "user__last_name", "firm__name")
    autocomplete_fields = ("user", "firm")
    readonly_fields = ("digest_sent_up_to", "created_at", "updated_at")


@admin.register(m.Household)
class HouseholdAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "reference",
        "firm",
        "adviser_names",
        "client_count",
        "connection_count",
        "needs_reconnect_count",
    )
    list_filter = ("firm",)
    list_select_related = ("firm",)
    search_fields = ("name", "reference", "clients__name", "clients__email")
    autocomplete_fields = ("firm", "advisers")
    readonly_fields = ("turnqey_collection", "created_at", "updated_at")
    inlines = (ClientInline, ConnectionSummaryInline)

    def get_queryset(self, request: HttpRequest) -> QuerySet[m.Household]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                client_total=Count("clients", distinct=True),
                connection_total=Count("connections", distinct=True),
                needs_reconnect_total=Count(
                    "connections", filter=Q(connections__status=m.Status.NEEDS_RECONNECT), distinct=True
                ),
            )
            .prefetch_related("advisers")
        )

    @admin.display(description="advisers")
    def adviser_names(self, obj: m.Household) -> str:
        return ", ".join(user.get_full_name() or user.get_username() for user in obj.advisers.all()) or "—"

    client_count = _annotated_count("client_total", "clients")
    connection_count = _annotated_count("connection_total", "connections")
    needs_reconnect_count = _annotated_count("needs_reconnect_total", "needs reconnect")


@admin.register(m.Client)
class ClientAdmin(admin.ModelAdmin):
    list_display = ("name", "email", "household", "firm", "connection_count")
    list_filter = ("household__firm",)
    list_select_related = ("household", "household__firm")
    search_fields = ("name", "email", "household__name", "=identity")
    autocomplete_fields = ("household",)
    readonly_fields = ("identity", "created_at", "updated_at")
    inlines = (ClientConnectionInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[m.Client]:
        return super().get_queryset(request).annotate(connection_total=Count("connections"))

    @admin.display(description="firm", ordering="household__firm__name")
    def firm(self, obj: m.Client) -> m.Firm:
        return obj.household.firm

    connection_count = _annotated_count("connection_total", "connections")


# --- Provider apps ------------------------------------------------------------


class ProviderAppAdminForm(forms.ModelForm):
    """ProviderApp form whose client secret is write-only.

    The model field is excluded, so the stored secret never enters the form
    (not as initial data, not in the rendered input). A non-empty input
    replaces the secret; an empty one keeps the current secret.
    """

    client_secret = forms.CharField(
        label="Client secret",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )

    class Meta:
        model = m.ProviderApp
        # Excluded, not listed: an explicit field list would let the admin's
        # fieldsets pull the model field (and its plaintext initial) back in.
        exclude = ("client_secret",)  # noqa: DJ006

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # An exists() query, not the instance's attribute: it tells whether a
        # secret is set without decrypting it.
        has_secret = bool(
            self.instance.pk and m.ProviderApp.objects.filter(pk=self.instance.pk, client_secret__isnull=False).exists()
        )
        self.fields["client_secret"].help_text = (
            "A secret is set. It is never shown; leave this empty to keep it, or type a new one to replace it."
            if has_secret
            else "No secret is set. Type one to set it (write-only: it is never shown again)."
        )

    def save(self, commit: bool = True) -> m.ProviderApp:
        new_secret = self.cleaned_data.get("client_secret")
        if new_secret:
            self.instance.client_secret = new_secret
            # Typed in with this change: an endpoint change keeps it (ProviderApp.save).
            self.instance.secret_entered = True
        return super().save(commit=commit)


@admin.register(m.ProviderApp)
class ProviderAppAdmin(admin.ModelAdmin):
    form = ProviderAppAdminForm
    # Provider endpoints are https in production; a scheme-less entry means https.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = (
        "__str__",
        "provider",
        "environment",
        "is_enabled",
        "health",
        "breaker_state",
        "credentials_rejected_at",
        "last_error_at",
        "calls_go_to",
        "secret_set",
        "connection_count",
    )
    list_filter = ("provider", "environment", "is_enabled", "breaker_state")
    search_fields = ("name", "provider", "client_id", "base_url")
    readonly_fields = (
        "calls_go_to",
        "health",
        "rate_tokens",
        "rate_updated_at",
        "breaker_state",
        "breaker_failures",
        "breaker_window_started_at",
        "breaker_opened_at",
        "credentials_rejected_at",
        "last_error",
        "last_error_at",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("provider", "environment", "name", "is_enabled")}),
        (
            "Endpoints",
            {
                "fields": ("calls_go_to", "base_url", "connect_url", "redirect_uri"),
                "description": (
                    "Only the provider's own hosts are accepted (settings.PROVIDER_HOSTS). Changing any of these "
                    "clears the stored client secret, which was given for the old endpoints: type it again below."
                ),
            },
        ),
        ("App credentials", {"fields": ("client_id", "client_secret")}),
        ("Rate limit", {"fields": ("rate_limit_per_second", "rate_tokens", "rate_updated_at")}),
        (
            "Health",
            {
                "fields": (
                    "health",
                    "breaker_state",
                    "breaker_failures",
                    "breaker_window_started_at",
                    "breaker_opened_at",
                    "credentials_rejected_at",
                    "last_error",
                    "last_error_at",
                )
            },
        ),
        ("Timestamps", {"fields": ("created_at", "updated_at"), "classes": ("collapse",)}),
    )
    inlines = (AppCredentialInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[m.ProviderApp]:
        # The secret is deferred: lists and pages never decrypt it. Saving a
        # deferred instance writes only loaded fields, so an untouched secret
        # is left exactly as stored.
        return (
            super()
            .get_queryset(request)
            .defer("client_secret")
            .annotate(
                has_client_secret=ExpressionWrapper(Q(client_secret__isnull=False), output_field=BooleanField()),
                connection_total=Count("connections"),
            )
        )

    @admin.display(description="health")
    def health(self, obj: m.ProviderApp) -> str:
        if obj.pk is None:
            return "—"
        if obj.credentials_rejected_at:
            return f"App credentials rejected since {obj.credentials_rejected_at:%Y-%m-%d %H:%M}"
        if obj.breaker_state == m.ProviderApp.BreakerState.OPEN:
            return "Circuit breaker open: calls paused"
        if obj.breaker_state == m.ProviderApp.BreakerState.HALF_OPEN:
            return "Circuit breaker half-open: probing"
        if not obj.is_enabled:
            return "Disabled"
        return "OK"

    @admin.display(description="calls go to")
    def calls_go_to(self, obj: m.ProviderApp) -> str:
        """Where the app's requests (and, when it differs, its browsers) go, as scheme, host and port."""
        if not obj.base_url:
            return "—"
        places = [("", obj.base_url)] + ([("browsers: ", obj.connect_url)] if obj.connect_url else [])
        shown = []
        for label, url in places:
            origin = origin_of(url)
            refused = url_refusal(url, provider=obj.provider, environment=obj.environment) is not None
            shown.append(f"{label}{origin or 'no usable host'}" + (" (refused: nothing is sent)" if refused else ""))
        return "; ".join(shown)

    def save_model(self, request: HttpRequest, obj: m.ProviderApp, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if obj.secret_cleared:
            self.message_user(
                request,
                f"{obj}: the endpoints changed, so the stored client secret was cleared (it was given for the old "
                "ones). Type it again to use this app.",
                messages.WARNING,
            )

    @admin.display(description="secret set", boolean=True)
    def secret_set(self, obj: m.ProviderApp) -> bool:
        return bool(getattr(obj, "has_client_secret", False))

    @admin.display(description="connections", ordering="connection_total")
    def connection_count(self, obj: m.ProviderApp) -> int:
        return getattr(obj, "connection_total", 0)


# --- Connections --------------------------------------------------------------


@admin.register(m.Connection)
class ConnectionAdmin(admin.ModelAdmin):
    """Connections are created by the connect flow and changed by the lifecycle.

    Only the label is editable here. "Check now" queues an immediate check of
    each selected connection (``services.connections_check_enqueue``).
    """

    list_display = (
        "__str__",
        "household",
        "client",
        "provider",
        "platform",
        "status",
        "reason",
        "last_success_at",
        "next_check_at",
        "reconnect_by",
    )
    list_filter = ("status", "reason", "provider", "provider_app__environment", "household__firm")
    # Note: a select_related() in get_queryset would make Django skip this.
    list_select_related = ("household", "client")
    search_fields = (
        "household__name",
        "client__name",
        "client__email",
        "platform",
        "label",
        "=external_account_id",
    )
    actions = ("check_now",)
    fieldsets = (
        (None, {"fields": ("household", "client", "provider_app", "provider", "platform", "label")}),
        (
            "Status",
            {"fields": ("status", "reason", "status_message", "last_error", "consecutive_failures", "degraded_since")},
        ),
        (
            "Deadlines",
            {"fields": ("last_success_at", "last_checked_at", "next_check_at", "reconnect_by")},
        ),
        (
            "Source account and history",
            {
                "fields": (
                    "external_account_id",
                    "grouping",
                    "connected_at",
                    "disconnected_at",
                    "created_by",
                    "history_link",
                    "lease_owner",
                    "lease_until",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )
    # Status belongs to the lifecycle: every field shown is read-only but the label.
    readonly_fields = tuple(str(name) for _, options in fieldsets for name in options["fields"] if name != "label")
    inlines = (ConnectionCredentialInline, AccountInline, ConnectionEventInline)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A connection exists because a client authorized it; see the connect flow.
        return False

    def get_formset_kwargs(
        self, request: HttpRequest, obj: m.Connection | None, inline: Any, prefix: str
    ) -> dict[str, Any]:
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, ConnectionEventInline) and obj is not None and obj.pk:
            # A long-lived connection has thousands of events; the page shows
            # the latest few and links to the rest.
            recent = list(obj.events.order_by("-created_at", "-id").values_list("pk", flat=True)[:EVENTS_SHOWN_INLINE])
            kwargs["queryset"] = kwargs["queryset"].filter(pk__in=recent)
        return kwargs

    @admin.display(description="status in plain words")
    def status_message(self, obj: m.Connection) -> str:
        return obj.status_message if obj.pk else "—"

    @admin.display(description="history")
    def history_link(self, obj: m.Connection) -> str:
        if obj.pk is None:
            return "—"
        total = obj.events.count()
        url = reverse("admin:connections_connectionevent_changelist")
        url += "?" + urlencode({"connection__id__exact": obj.pk})
        return format_html('<a href="{}">All {} event(s)</a>', url, total)

    @admin.action(description="Check now (renew if due and probe)")
    def check_now(self, request: HttpRequest, queryset: QuerySet[m.Connection]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        queued = services.connections_check_enqueue(connection_ids=ids, actor=request.user)
        skipped = len(ids) - queued
        note = f" {skipped} pending or disconnected connection(s) have nothing to check." if skipped else ""
        self.message_user(request, f"Check queued for {queued} connection(s).{note}", messages.SUCCESS)


class CredentialProviderFilter(admin.SimpleListFilter):
    """One "provider" filter over both owners (a connection's or an app's): two filters would share one title."""

    title = "provider"
    parameter_name = "provider"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(m.Provider.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[m.Credential]) -> QuerySet[m.Credential]:
        value = self.value()
        if not value:
            return queryset
        return queryset.filter(Q(connection__provider=value) | Q(provider_app__provider=value))


@admin.register(m.Credential)
class CredentialAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Metadata only: which secret exists for whom, and its lifetime. Never the value."""

    list_display = ("__str__", "owner", "kind", "value_masked", "issued_at", "expires_at", "expired")
    list_filter = ("kind", CredentialProviderFilter)
    list_select_related = ("connection", "provider_app")
    search_fields = ("connection__household__name", "connection__client__name", "connection__platform")
    fields = ("connection", "provider_app", "kind", "value_masked", "issued_at", "expires_at", "created_at")
    readonly_fields = fields
    exclude = ("value",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[m.Credential]:
        return super().get_queryset(request).defer("value")

    @admin.display(description="owner")
    def owner(self, obj: m.Credential) -> str:
        return _admin_link(obj.connection or obj.provider_app)

    @admin.display(description="value")
    def value_masked(self, obj: m.Credential) -> str:
        return MASK

    @admin.display(description="expired", boolean=True)
    def expired(self, obj: m.Credential) -> bool:
        return obj.is_expired()


@admin.register(m.Account)
class AccountAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Accounts come from provider checks; they are not edited by hand."""

    list_display = ("name", "currency", "balance_shown", "household", "connection", "status", "as_of")
    list_filter = ("currency", "status", "connection__provider")
    list_select_related = ("connection", "connection__household")
    search_fields = ("name", "currency", "=external_id", "connection__household__name")
    readonly_fields = ("balance_shown",)
    exclude = ("balance",)

    @admin.display(description="balance", ordering="balance")
    def balance_shown(self, obj: m.Account) -> str:
        return wording.amount(obj.balance, obj.currency)

    @admin.display(description="household", ordering="connection__household__name")
    def household(self, obj: m.Account) -> m.Household:
        return obj.connection.household


# --- Flows and history --------------------------------------------------------


@admin.register(m.AuthorizationRequest)
class AuthorizationRequestAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Pending and past connect/reconnect requests. The state hash is not shown."""

    list_display = (
        "created_at",
        "purpose",
        "provider",
        "platform",
        "household",
        "client",
        "started_by",
        "expires_at",
        "used_at",
        "outcome",
    )
    list_filter = ("purpose", "provider", "outcome", ("used_at", admin.EmptyFieldListFilter))
    list_select_related = ("household", "client", "started_by")
    search_fields = ("household__name", "client__name", "platform")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    exclude = ("state_hash", "checksum")


@admin.register(m.ClientLink)
class ClientLinkAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Links sent to clients. The token hash is not shown."""

    list_display = (
        "created_at",
        "client",
        "household",
        "platform",
        "status",
        "sent_to",
        "expires_at",
        "opened_at",
        "completed_at",
    )
    list_filter = ("status",)
    list_select_related = ("client", "household")
    search_fields = ("sent_to", "client__name", "household__name", "platform")
    date_hierarchy = "created_at"
    exclude = ("token_hash",)


@admin.register(m.ConnectionEvent)
class ConnectionEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Permanent history: viewable, never added, changed or deleted here."""

    list_display = (
        "created_at",
        "connection",
        "household",
        "kind",
        "from_status",
        "to_status",
        "reason",
        "who",
        "message",
    )
    list_filter = ("kind", "to_status", "reason", "connection__provider")
    list_select_related = ("connection", "connection__household", "actor")
    search_fields = ("message", "actor_label", "connection__household__name", "connection__client__name")
    # The change page too says who in plain words, never the raw actor label such as "job:check".
    fields = ("created_at", "connection", "kind", "from_status", "to_status", "reason", "message", "who", "details")
    readonly_fields = fields
    date_hierarchy = "created_at"
    # Counting a large history on every page view is the slow part of this
    # changelist; the filtered count is enough.
    show_full_result_count = False

    @admin.display(description="household", ordering="connection__household__name")
    def household(self, obj: m.ConnectionEvent) -> m.Household:
        return obj.connection.household

    @admin.display(description="by")
    def who(self, obj: m.ConnectionEvent) -> str:
        return wording.actor_words(actor=obj.actor, actor_label=obj.actor_label)


@admin.register(m.PeriodicJobRun)
class PeriodicJobRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Which periodic job ran for which slot, and whether it finished. Written by the jobs only."""

    list_display = ("job", "slot_start", "owner", "started_at", "finished_at")
    list_filter = ("job",)
    search_fields = ("job", "owner")
    date_hierarchy = "slot_start"
    show_full_result_count = False


@admin.register(m.AttemptWindow)
class AttemptWindowAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Recent attempts under the limits on what people try (connections.attempts), by keyed hash only.

    Read-only, but a row may be deleted: that lifts its limit at once (for an
    adviser locked out of the credential form after a typo storm, say).
    """

    list_display = ("name", "attempts_in_window", "expires_at")
    list_filter = ("name",)
    fields = ("name", "key", "attempts_in_window", "expires_at")
    readonly_fields = fields
    show_full_result_count = False

    @admin.display(description="attempts in the window")
    def attempts_in_window(self, obj: m.AttemptWindow) -> int:
        return len(obj.hits)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(getattr(request.user, "is_superuser", False))
# --- Reconnect requests and notifications ---------------------------------------


@admin.register(m.FirmNotificationPolicy)
class FirmNotificationPolicyAdmin(admin.ModelAdmin):
    """A firm's reminder days, escalation age and hourly limit for bulk requests."""

    list_display = ("firm", "reminder_days", "escalate_after_days", "requests_per_hour")
    list_select_related = ("firm",)
    autocomplete_fields = ("firm",)


@admin.register(m.NotificationSettings)
class NotificationSettingsAdmin(admin.ModelAdmin):
    list_display = ("user", "digest", "daily_at", "time_zone")
    list_select_related = ("user",)
    list_filter = ("digest",)
    autocomplete_fields = ("user",)


class ReconnectRequestItemInline(ReadOnlyInline):
    model = m.ReconnectRequestItem
    fields = ("connection", "status", "done_at")
    readonly_fields = fields


class ReconnectRequestEmailInline(ReadOnlyInline):
    # The token's hash stays out of the admin, like a client link's.
    model = m.ReconnectRequestEmail
    fields = ("kind", "sent_at", "message_id", "delivery", "delivery_at")
    readonly_fields = fields


@admin.register(m.ReconnectRequest)
class ReconnectRequestAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What was asked of which client, and how far it got. Written by the portal only."""

    list_display = ("client", "household", "status", "delivery", "created_at", "reminders_sent", "expires_at")
    list_filter = ("status", "delivery")
    list_select_related = ("client", "household")
    search_fields = ("client__name", "household__name", "sent_to")
    date_hierarchy = "created_at"
    inlines = (ReconnectRequestItemInline, ReconnectRequestEmailInline)
    show_full_result_count = False


@admin.register(m.ReconnectRequestItem)
class ReconnectRequestItemAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("connection", "request", "status", "done_at")
    list_select_related = ("connection", "request", "request__client")
    list_filter = ("status",)


@admin.register(m.ReconnectRequestEmail)
class ReconnectRequestEmailAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("request", "kind", "sent_at", "delivery", "delivery_at")
    list_select_related = ("request", "request__client")
    list_filter = ("kind", "delivery")
    exclude = ("token_hash",)


@admin.register(m.BulkReconnectSend)
class BulkReconnectSendAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "firm", "created_by", "status", "position", "sent", "skipped", "created_at")
    list_select_related = ("firm", "created_by")
    list_filter = ("status",)


@admin.register(m.ConnectionProblem)
class ConnectionProblemAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Notification problems: derived from the connections' events by the jobs, never edited."""

    list_display = ("connection", "cause", "opened_at", "announced_at", "closed_at", "resolution", "occurrences")
    list_select_related = ("connection",)
    list_filter = ("cause", "resolution")
    date_hierarchy = "opened_at"


# --- Users: show their firm membership ------------------------------------------

User = get_user_model()


class PortalUserAdmin(UserAdmin):
    inlines = (*UserAdmin.inlines, UserMembershipInline)
    list_display = (*UserAdmin.list_display, "firm_role")  # type: ignore[misc]
    list_select_related = ("membership", "membership__firm")

    @admin.display(description="firm and role")
    def firm_role(self, obj: Any) -> str:
        membership = getattr(obj, "membership", None)
        if membership is None:
            return "—"
        return f"{membership.firm} ({membership.get_role_display()})"


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, PortalUserAdmin)
