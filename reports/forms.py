"""Filters and the firm's oversight settings. Choices come from the reader's own firm only."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from django import forms
from django.contrib.auth import get_user_model
from django.utils import timezone

from connections import wording
from connections.models import Firm, Household

from .models import AuditEntry

# The longest date range an export or the audit filter takes, both ends counted.
# A range with no start (everything up to its end, or everything) is the whole
# history, which the streamed exports allow; a range typed with a start is held
# to this, so a mistyped year cannot ask for decades.
MAX_RANGE_DAYS = 366


class DateInput(forms.DateInput):
    input_type = "date"


class DateRangeForm(forms.Form):
    start = forms.DateField(label="From", required=False, widget=DateInput)
    end = forms.DateField(label="To", required=False, widget=DateInput)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if start and end and start > end:
            raise forms.ValidationError("The start date is after the end date.")
        if start:
            last = end or timezone.localdate()
            days = (last - start).days + 1
            if days > MAX_RANGE_DAYS:
                raise forms.ValidationError(
                    f"Choose at most {MAX_RANGE_DAYS} days; from {start:%d %b %Y} "
                    f"to {last:%d %b %Y} is {days} days. Export a longer period a year at a time."
                )
        return data

    def error_words(self) -> str:
        """The form's errors as one sentence, for a CSV link that cannot show a form."""
        return " ".join(str(message) for messages in self.errors.values() for message in messages)

    def range(self) -> tuple[dt.date | None, dt.date | None]:
        if not self.is_bound or not self.is_valid():
            return None, None
        return self.cleaned_data.get("start"), self.cleaned_data.get("end")


class AuditFilterForm(DateRangeForm):
    user = forms.TypedChoiceField(label="Who", required=False, coerce=int, empty_value=None)
    action = forms.ChoiceField(label="Action", required=False)
    household = forms.TypedChoiceField(label="Household", required=False, coerce=int, empty_value=None)

    def __init__(self, *args: Any, firm: Firm, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        users = get_user_model().objects.filter(membership__firm=firm).order_by("first_name", "last_name", "username")
        choices: dict[str, list[tuple[Any, str]]] = {
            "user": [("", "Anyone"), *((u.pk, wording.person_name(u)) for u in users)],
            "action": [("", "Any action"), *AuditEntry.Action.choices],
            "household": [
                ("", "Any household"),
                *Household.objects.filter(firm=firm).order_by("name").values_list("pk", "name"),
            ],
        }
        for name, options in choices.items():
            cast(forms.ChoiceField, self.fields[name]).choices = options

    def filters(self) -> dict[str, Any]:
        if not self.is_bound or not self.is_valid():
            return {}
        data = self.cleaned_data
        found: dict[str, Any] = {}
        if data.get("user"):
            found["actor_id"] = data["user"]
        if data.get("action"):
            found["action"] = data["action"]
        if data.get("household"):
            found["household_id"] = data["household"]
        return found


class FirmSettingsForm(forms.ModelForm):
    class Meta:
        model = Firm
        fields = ["mfa_required", "freshness_window_hours"]
        labels = {
            "mfa_required": "Require a second factor for every member",
            "freshness_window_hours": "Fresh means data at most this many hours old",
        }

    def clean_freshness_window_hours(self) -> int:
        hours = int(self.cleaned_data["freshness_window_hours"])
        if not 1 <= hours <= 24 * 31:
            raise forms.ValidationError("Choose between 1 hour and 744 hours (31 days).")
        return hours
