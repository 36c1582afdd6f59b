"""Forms of the portal's pages, and :func:`add_domain_error`, the one way a page puts a
service's refusal on a form."""

from __future__ import annotations

from typing import Any

from django import forms

from .errors import DomainError
from .roles import ROLE_LABELS


def error_sentence(error: DomainError) -> str:
    """The refusal without its ``field:`` prefix, for showing next to that field."""
    return error.detail.removeprefix(f"{error.field}: ") if error.field else error.detail


def add_domain_error(form: Any, error: DomainError, *, keep_field_name: bool = False) -> None:
    """Put a service's refusal on the form field it names, or on the form as a whole.

    Services name fields by their API path (``source.path``, ``retention.daily_days``); the
    form's field is that name, its underscore spelling (``source_path``) or its last part
    (``daily_days``). Next to its field the sentence loses its ``field:`` prefix, unless
    ``keep_field_name`` (the users and Resource Guard pages, and vault creation, show it)."""
    name = error.field or ""
    for candidate in (name, name.replace(".", "_"), name.rpartition(".")[2]):
        if candidate and candidate in form.fields:
            form.add_error(candidate, error.detail if keep_field_name else error_sentence(error))
            return
    form.add_error(None, error.detail)


def refusal_context(form: Any, error: DomainError, key: str) -> dict[str, Any]:
    """Where a page shows a refusal: a ``validation_error`` on the form (the field it names),
    any other refusal (immutability, MUA, a policy in use) in place, under ``key``."""
    if error.code == "validation_error":
        add_domain_error(form, error)
        return {}
    return {key: error}


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
