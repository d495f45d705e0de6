"""Forms of the Integrations pages: a new API key, a webhook endpoint."""

from __future__ import annotations

from typing import Any

from django import forms

from .models import ApiKey, EventType
from .webhooks.addresses import webhook_url_problems
from .webhooks.events import CLIENT_LINK_TYPES


def webhook_url_clean(url: str) -> str:
    """``url`` if a webhook may be sent to it; otherwise the reasons why not, as a form error."""
    problems = webhook_url_problems(url)
    if problems:
        raise forms.ValidationError(problems)
    return url


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the key is for, such as 'CRM sync'.")
    scope = forms.ChoiceField(
        choices=ApiKey.Scope.choices,
        initial=ApiKey.Scope.READ,
        widget=forms.RadioSelect,
        help_text="Read: list households, clients, connections and events. Read and write: also send client "
        "links, check now and disconnect.",
    )


class WebhookEndpointForm(forms.Form):
    url = forms.URLField(
        label="URL",
        max_length=500,
        assume_scheme="https",
        help_text="Where the portal POSTs each event, signed (https, a public address).",
    )
    description = forms.CharField(max_length=200, required=False, help_text="What receives it, such as 'CRM'.")
    event_types = forms.MultipleChoiceField(
        label="Events",
        choices=EventType.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[t for t in EventType.values if t not in CLIENT_LINK_TYPES],
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The same rules the delivery applies, so an endpoint that saves is one that can be sent to.
        self.fields["url"].widget.attrs["autocomplete"] = "url"

    def clean_url(self) -> str:
        return webhook_url_clean(self.cleaned_data["url"])
