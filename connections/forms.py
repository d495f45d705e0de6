"""Forms of the adviser web UI: they validate input; services do the writing."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from django import forms
from django.http import QueryDict

from . import wording
from .models import Client, Household, NotificationSettings, ProviderApp, Status
from .providers import registry
from .providers.base import CredentialForm, ProviderClient
from .selectors import provider_app_options


def provider_client_class(app: ProviderApp) -> type[ProviderClient] | None:
    """The client class for an app's provider, or ``None`` when none is registered."""
    try:
        return registry.client_class(app.provider)
    except KeyError:
        return None


def provider_platforms(app: ProviderApp) -> Sequence[str]:
    cls = provider_client_class(app)
    return tuple(cls.platforms) if cls is not None else ()


class ProviderAppChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: ProviderApp) -> str:
        suffix = "" if obj.environment == "production" else f" ({obj.get_environment_display().lower()})"
        return f"{obj.get_provider_display()}{suffix}"


class SourceForm(forms.Form):
    """What to connect: which client, through which provider app, which platform.

    The platform must be one the chosen provider offers
    (``registry.client_class(provider).platforms``).
    """

    client = forms.ModelChoiceField(queryset=Client.objects.none(), empty_label=None, label="Client")
    provider_app = ProviderAppChoiceField(
        queryset=ProviderApp.objects.none(),
        empty_label=None,
        label="Provider",
        help_text="The data aggregator that reads the account for the portal.",
    )
    platform = forms.ChoiceField(label="Platform", help_text="Where the client holds the account (exchange or wallet).")

    def __init__(self, *args: Any, household: Household, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.household = household
        client_field = self.fields["client"]
        app_field = self.fields["provider_app"]
        platform_field = self.fields["platform"]
        assert isinstance(client_field, forms.ModelChoiceField)
        assert isinstance(app_field, forms.ModelChoiceField)
        assert isinstance(platform_field, forms.ChoiceField)
        client_field.queryset = household.clients.all()
        apps = list(provider_app_options())
        app_field.queryset = provider_app_options()
        # Grouped by provider, so the list itself says which platform goes with which provider.
        groups: dict[str, list[tuple[str, str]]] = {}
        for app in apps:
            groups.setdefault(app.get_provider_display(), [])
            for platform in provider_platforms(app):
                choice = (platform, wording.platform_name(platform))
                if choice not in groups[app.get_provider_display()]:
                    groups[app.get_provider_display()].append(choice)
        platform_field.choices = [(name, choices) for name, choices in groups.items() if choices]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        app: ProviderApp | None = data.get("provider_app")
        platform: str | None = data.get("platform")
        if app is not None and provider_client_class(app) is None:
            self.add_error("provider_app", f"{app.get_provider_display()} is not available in this portal yet.")
        elif app is not None and platform and platform not in provider_platforms(app):
            offered = ", ".join(wording.platform_name(p) for p in provider_platforms(app))
            provider = app.get_provider_display()
            self.add_error(
                "platform", f"{provider} does not connect {wording.platform_name(platform)}. It offers: {offered}."
            )
        return data


class ClientLinkNewForm(SourceForm):
    """A link for the client to make a new connection; the client needs an email address."""

    def clean_client(self) -> Client:
        client: Client = self.cleaned_data["client"]
        if not client.email:
            raise forms.ValidationError(f"{client.name} has no email address; add one before sending a link.")
        return client


class CredentialsForm(forms.Form):
    """A provider's credential form, built from its ``credential_form()``.

    Secret inputs never render their value back (a password typed wrongly is
    typed again, never echoed into the page). ``audience`` is "adviser" (who
    types on the client's behalf) or "client" (their own link): the help is
    spoken to whoever reads it. Fields of a group go together and are shown
    together under the group's heading (:meth:`groups`).
    """

    def __init__(self, *args: Any, layout: CredentialForm, audience: str = "adviser", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.layout = layout
        self.audience = audience
        for spec in layout.fields:
            attrs = {"autocomplete": "off", "spellcheck": "false"}
            if spec.secret or spec.input_type == "password":
                widget: forms.Widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})
                field: forms.Field = forms.CharField(strip=False, max_length=4096)
            elif spec.input_type == "email":
                widget = forms.EmailInput(attrs={"autocomplete": "email"})
                field = forms.EmailField(max_length=254)
            else:
                widget = forms.TextInput(attrs=attrs)
                field = forms.CharField(max_length=4096)
            field.widget = widget
            field.label = spec.label
            field.required = spec.required
            field.help_text = (spec.help_text_for_client if audience == "client" else "") or spec.help_text
            self.fields[spec.name] = field

    @property
    def note(self) -> str:
        """What each choice gives, said before anything is submitted."""
        return (self.layout.note_for_client if self.audience == "client" else "") or self.layout.note

    def groups(self) -> list[tuple[str, list[forms.BoundField]]]:
        """(heading, bound fields) in order: one entry per group, a field without one on its own."""
        grouped: list[tuple[str, list[forms.BoundField]]] = []
        seen: dict[str, list[forms.BoundField]] = {}
        for spec in self.layout.fields:
            bound = self[spec.name]
            if not spec.group:
                grouped.append(("", [bound]))
            elif spec.group in seen:
                seen[spec.group].append(bound)
            else:
                seen[spec.group] = [bound]
                grouped.append((self.layout.groups.get(spec.group, ""), seen[spec.group]))
        return grouped

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors and not any(v for v in data.values()):
            raise forms.ValidationError(self.layout.empty_message)
        return data

    def credential_values(self) -> dict[str, str]:
        """The typed values, empty ones left out, for the provider client."""
        return {k: v for k, v in self.cleaned_data.items() if v}


class HouseholdFilterForm(forms.Form):
    """Dashboard table: search and roll-up status."""

    STATUS_CHOICES = [
        ("", "Any health"),
        (Status.NEEDS_RECONNECT, "Needs reconnect"),
        (Status.DEGRADED, "Degraded"),
        (Status.PENDING, "Pending"),
        (Status.ACTIVE, "Active"),
        ("none", "No connections"),
    ]

    q = forms.CharField(
        required=False,
        max_length=100,
        label="Search",
        strip=True,
        error_messages={"max_length": "Search for up to 100 characters: a name, a reference or a client."},
    )
    status = forms.ChoiceField(required=False, choices=STATUS_CHOICES, label="Health")

    def search_values(self) -> tuple[str, str]:
        if not self.is_valid():
            return "", ""
        return self.cleaned_data["q"], self.cleaned_data["status"]


# --- Provider callbacks --------------------------------------------------------------

MAX_PARAM_LENGTH = 2048
MAX_QUERY_STRING = 8192
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")



def callback_parameters(provider: str) -> frozenset[str]:
    """The parameters ``provider``'s callback may carry, as its client declares them (empty: no callback).

    Read from the registry at each call, never copied at import: the registry
    is the one provider seam. Anything else, a parameter given twice, or an
    oversized value is refused with 400.
    """
    client_class = registry.PROVIDERS.get(provider)
    return client_class.callback_parameters if client_class is not None else frozenset()


class CallbackParametersInvalid(Exception):
    """The callback's query string is not one the provider sends."""


def callback_params_clean(*, provider: str, query: QueryDict, query_string: str) -> Mapping[str, str]:
    """The callback's parameters as a plain dict, or :class:`CallbackParametersInvalid`.

    Never echoes a value in the error: parameters can carry codes and secrets.
    """
    allowed = callback_parameters(provider)
    if len(query_string) > MAX_QUERY_STRING:
        raise CallbackParametersInvalid("The reply is too long.")
    params: dict[str, str] = {}
    for name, values in query.lists():
        if name not in allowed:
            raise CallbackParametersInvalid("The reply has a parameter the provider does not send.")
        if len(values) != 1:
            raise CallbackParametersInvalid("The reply repeats a parameter.")
        if len(values[0]) > MAX_PARAM_LENGTH:
            raise CallbackParametersInvalid("The reply has an oversized parameter.")
        if _CONTROL_CHARACTERS.search(values[0]):
            # No provider sends these (NUL cannot even be stored); refused before anything reads the value.
            raise CallbackParametersInvalid("The reply has a parameter with characters no provider sends.")
        params[name] = values[0]
    if not params.get("state"):
        raise CallbackParametersInvalid("The reply has no state.")
    return params


# --- Notifications: digest preferences, snoozes, the client's "stop" -----------------------------


class NotificationSettingsForm(forms.ModelForm):
    """How often a user gets the digest, at what local time, in which time zone."""

    class Meta:
        model = NotificationSettings
        fields = ["digest", "daily_at", "time_zone"]
        labels = {"digest": "Digest", "daily_at": "Daily digest at (your local time)", "time_zone": "Time zone"}
        widgets = {
            "digest": forms.RadioSelect,
            "daily_at": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        }
        help_texts = {"time_zone": 'A zone name such as "Europe/London" or "America/New_York".'}

    def clean_time_zone(self) -> str:
        import zoneinfo

        name = (self.cleaned_data.get("time_zone") or "").strip()
        if name not in zoneinfo.available_timezones():
            raise forms.ValidationError('Not a time zone this portal knows; try a name like "Europe/London".')
        return name


class SnoozeForm(forms.Form):
    """Snooze a connection's problem (1 day, 1 week, until a date), mute or unmute the connection, or wake it."""

    ACTIONS = (
        ("day", "Snooze 1 day"),
        ("week", "Snooze 1 week"),
        ("until", "Snooze until"),
        ("mute", "Mute until it works again"),
        ("unmute", "Unmute"),
        ("wake", "Wake now"),
    )
    action = forms.ChoiceField(choices=ACTIONS)
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), label="Until")

    def clean(self) -> dict[str, Any]:
        from django.utils import timezone

        cleaned = super().clean() or {}
        if cleaned.get("action") == "until":
            until = cleaned.get("until")
            if until is None:
                self.add_error("until", "Choose the date to snooze until.")
            elif until <= timezone.localdate():
                self.add_error("until", "Choose a date after today.")
        return cleaned


class RequestStopForm(forms.Form):
    """The client's answer on the "stop" page."""

    reason = forms.ChoiceField(
        choices=[("not_me", wording.REQUEST_STOP_REASONS["not_me"]), ("stop", wording.REQUEST_STOP_REASONS["stop"])],
        widget=forms.RadioSelect,
        label="What should we tell your adviser?",
    )
