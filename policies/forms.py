"""Forms for the Backup policies and Backup items blades.

They check types only (a number is a number, a time is a time); the ranges and the rules
that span fields are the services' (``policies.rules``), whose ``validation_error`` comes
back through :meth:`DomainErrorsMixin.add_domain_error` onto the right field.
"""

from __future__ import annotations

from typing import Any

from django import forms

from portal.gate import DomainError
from vaults.models import ProtectedItem, Vault

from .models import WEEKDAYS, Policy

WEEKDAY_CHOICES = [(day, day.capitalize()) for day in WEEKDAYS]
MONTH_CHOICES = [
    (number, name)
    for number, name in enumerate(
        [
            "January", "February", "March", "April", "May", "June", "July", "August",
            "September", "October", "November", "December",
        ],
        start=1,
    )
]  # fmt: skip
INTERVAL_CHOICES = [
    ("", "Default (4 hours)"),
    *((hours, f"{hours} hours") for hours in (4, 6, 8, 12)),
]
# Service field names that are not simply "<group>.<form field>".
FIELD_ALIASES = {"tiering.after_days": "tiering_after_days", "source.path": "source_path"}


def error_sentence(error: DomainError) -> str:
    """The refusal without its ``field:`` prefix, for showing next to that field."""
    prefix = f"{error.field}: "
    return error.detail.removeprefix(prefix) if error.field else error.detail


class DomainErrorsMixin:
    """Put a service's refusal on the form field it names, or on the form as a whole."""

    def add_domain_error(self, error: DomainError) -> None:
        form: Any = self
        name = FIELD_ALIASES.get(error.field or "", (error.field or "").rpartition(".")[2])
        form.add_error(name if name in form.fields else None, error_sentence(error))


def _time_field(**kwargs: Any) -> forms.TimeField:
    widget = forms.TimeInput(attrs={"type": "time"}, format="%H:%M")
    return forms.TimeField(widget=widget, **kwargs)


def _number(label: str, help_text: str = "", *, required: bool = False) -> forms.IntegerField:
    widget = forms.NumberInput(attrs={"inputmode": "numeric"})
    return forms.IntegerField(label=label, help_text=help_text, required=required, widget=widget)


class PolicyForm(DomainErrorsMixin, forms.Form):
    name = forms.CharField(max_length=50)
    kind = forms.ChoiceField(
        choices=Policy.Kind.choices,
        help_text="Enhanced policies also run hourly and keep snapshots up to 30 days.",
    )
    frequency = forms.ChoiceField(label="Backup frequency", choices=Policy.Frequency.choices)
    time = _time_field(label="Time of day", help_text="Daily and weekly backups, local time.")
    weekdays = forms.MultipleChoiceField(
        label="Weekdays (weekly backups)",
        choices=WEEKDAY_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    interval_hours = forms.TypedChoiceField(
        label="Every (hourly backups)",
        choices=INTERVAL_CHOICES,
        coerce=int,
        empty_value=None,
        required=False,
    )
    window_start = _time_field(label="Window starts at (hourly)", required=False)
    window_hours = _number("Window length in hours (hourly)", "4 to 24; empty means 24.")
    timezone = forms.CharField(
        label="Time zone", max_length=64, help_text="An IANA name, e.g. Europe/London."
    )
    instant_restore_days = _number(
        "Instant restore (days)", "Standard: 1 to 5 days; enhanced: 1 to 30.", required=True
    )
    daily_days = _number("Keep daily points (days)", "7 to 9999 days.", required=True)
    weekly_weeks = _number("Keep weekly points (weeks)", "1 to 5163; empty turns the tier off.")
    weekly_weekday = forms.ChoiceField(label="Weekly point on", choices=WEEKDAY_CHOICES)
    monthly_months = _number("Keep monthly points (months)", "1 to 1188; empty turns it off.")
    monthly_day = _number("Monthly point on day", "1 to 28.", required=True)
    yearly_years = _number("Keep yearly points (years)", "1 to 99; empty turns it off.")
    yearly_month = forms.TypedChoiceField(
        label="Yearly point in", choices=MONTH_CHOICES, coerce=int
    )
    tiering_mode = forms.ChoiceField(label="Tiering to archive", choices=Policy.Tiering.choices)
    tiering_after_days = _number("Tier after (days)", "At least 90, when tiering after N days.")

    @classmethod
    def for_policy(cls, policy: Policy, data: Any = None) -> PolicyForm:
        initial = {name: getattr(policy, name) for name in cls.base_fields}
        return cls(data, initial=initial)


class ProtectForm(DomainErrorsMixin, forms.Form):
    name = forms.CharField(max_length=100, help_text="How this item is named in the vault.")
    source_path = forms.CharField(
        label="Directory path",
        max_length=1000,
        help_text="An absolute path readable by the workers, e.g. /srv/data.",
    )
    policy = forms.ModelChoiceField(queryset=Policy.objects.none(), empty_label=None)

    def __init__(self, *args: Any, vault: Vault, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        policy_field: Any = self.fields["policy"]
        policy_field.queryset = vault.policies.all()


class ChangePolicyForm(DomainErrorsMixin, forms.Form):
    policy = forms.ModelChoiceField(
        label="New policy", queryset=Policy.objects.none(), empty_label=None
    )

    def __init__(self, *args: Any, item: ProtectedItem, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        policy_field: Any = self.fields["policy"]
        policy_field.queryset = item.vault.policies.exclude(pk=item.policy_id)


class StopProtectionForm(forms.Form):
    delete_data = forms.BooleanField(required=False)
    confirmation = forms.CharField(required=False, max_length=100)


class RetainUntilForm(forms.Form):
    retain_until = forms.DateTimeField(
        label="Retain until (UTC)",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
