from __future__ import annotations

from django import forms

from .models import Vault


def parse_tags(text: str) -> dict[str, str]:
    """``env=prod, team=storage`` to a dict; a bare word becomes a tag with an empty value."""
    tags: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, _, value = part.partition("=")
        if not key.strip():
            raise forms.ValidationError("Write tags as key=value, separated by commas.")
        tags[key.strip()] = value.strip()
    return tags


class VaultCreateForm(forms.Form):
    name = forms.CharField(max_length=50, help_text="2-50 letters, digits or hyphens.")
    kind = forms.ChoiceField(choices=Vault.Kind.choices)
    region = forms.CharField(max_length=40, help_text="A region label, e.g. westeurope.")
    tags = forms.CharField(required=False, help_text="key=value pairs, separated by commas.")

    def clean_tags(self) -> dict[str, str]:
        return parse_tags(self.cleaned_data.get("tags") or "")


class ImmutabilityForm(forms.Form):
    state = forms.ChoiceField(
        choices=[(Vault.Immutability.ENABLED, "Enabled"), (Vault.Immutability.DISABLED, "Disabled")]
    )


class ConfirmNameForm(forms.Form):
    confirmation = forms.CharField(
        label="Type the vault's name to confirm", max_length=50, required=True
    )
