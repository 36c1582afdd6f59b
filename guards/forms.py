from __future__ import annotations

from django import forms

from .models import ResourceGuard


class GuardForm(forms.Form):
    name = forms.CharField(max_length=50)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    protected_operations = forms.MultipleChoiceField(
        choices=ResourceGuard.Operation.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Disabling soft delete and removing the guard are always protected.",
    )


class AccessRequestForm(forms.Form):
    justification = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))
    duration_minutes = forms.TypedChoiceField(
        label="Duration",
        coerce=int,
        choices=[
            (15, "15 minutes"),
            (30, "30 minutes"),
            (60, "1 hour"),
            (120, "2 hours"),
            (240, "4 hours"),
            (480, "8 hours"),
        ],
        initial=60,
    )
