from __future__ import annotations

from django import forms


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Code",
        max_length=16,
        strip=True,
        help_text="The 6-digit code your authenticator app shows now, or one of your recovery codes.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autocapitalize": "off", "spellcheck": "false"}),
    )

    def normalised(self) -> str:
        return "".join(self.cleaned_data["code"].split()).lower()


class SetupForm(forms.Form):
    code = forms.CharField(
        label="Code from your app",
        max_length=8,
        strip=True,
        help_text="After adding the portal to your authenticator app, type the 6-digit code it shows.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )
