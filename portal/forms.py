from __future__ import annotations

from django import forms

from .roles import ROLE_LABELS


class UserCreateForm(forms.Form):
    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False)
    role = forms.ChoiceField(choices=list(ROLE_LABELS.items()))
    password = forms.CharField(widget=forms.PasswordInput, strip=False)
    is_superuser = forms.BooleanField(
        required=False,
        label="Superuser",
        help_text="Security admin and superuser are granted only once another security admin "
        "approves; until then the account is a reader (or keeps the role you chose).",
    )


class UserUpdateForm(forms.Form):
    role = forms.ChoiceField(choices=list(ROLE_LABELS.items()))
    is_active = forms.BooleanField(required=False, label="Active")
    is_superuser = forms.BooleanField(required=False, label="Superuser")


class DecisionForm(forms.Form):
    reason = forms.CharField(required=False, max_length=500)
