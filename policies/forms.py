"""The form of the Backup policies blade.

It checks types only (a number is a number, a time is a time); the ranges and the rules
that span fields are the services' (``policies.rules``), whose ``validation_error`` comes
back through ``portal.forms.add_domain_error`` onto the right field.
"""

from __future__ import annotations

from typing import Any

from django import forms

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


def _time_field(**kwargs: Any) -> forms.TimeField:
    widget = forms.TimeInput(attrs={"type": "time"}, format="%H:%M")
    return forms.TimeField(widget=widget, **kwargs)


def _number(label: str, help_text: str = "", *, required: bool = False) -> forms.IntegerField:
    widget = forms.NumberInput(attrs={"inputmode": "numeric"})
    return forms.IntegerField(label=label, help_text=help_text, required=required, widget=widget)


class PolicyForm(forms.Form):
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
    restore_drill_every_days = _number(
        "Restore drill every (days)",
        "1 to 365: one point of each item is restored to scratch and checked once per period, "
        "rotating through daily, weekly, monthly and yearly points. Empty turns drills off.",
    )

    @classmethod
    def for_policy(cls, policy: Policy, data: Any = None) -> PolicyForm:
        initial = {name: getattr(policy, name) for name in cls.base_fields}
        return cls(data, initial=initial)
