"""Backup policies (SPEC 3.6): schedule in a time zone, instant restore, GFS retention, tiering."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import models

from vaults.tallies import policy_rpo_triggers
from vaults.triggers import POLICY_TRIGGERS

from . import rules

# Scheduled restore drills: every 1 to 365 days (a year at most between proofs).
DRILL_DAYS = (1, 365)
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


# The columns a schedule is made of, in schedule_of's order (the dispatcher reads only these).
SCHEDULE_FIELDS = (
    "frequency", "timezone", "time", "weekdays", "interval_hours", "window_start", "window_hours"
)  # fmt: skip


def schedule_of(
    frequency: str,
    timezone: str,
    time: dt.time,
    weekdays: list[str],
    interval_hours: int | None,
    window_start: dt.time | None,
    window_hours: int | None,
) -> rules.Schedule:
    """A policy's schedule from its columns (``SCHEDULE_FIELDS``)."""
    return rules.Schedule(
        frequency=frequency,
        timezone=timezone,
        time=time,
        weekdays=tuple(WEEKDAYS.index(d) for d in weekdays if d in WEEKDAYS),
        interval_hours=interval_hours,
        window_start=window_start,
        window_hours=window_hours,
    )


class Policy(models.Model):
    class Kind(models.TextChoices):
        STANDARD = "standard", "Standard"
        ENHANCED = "enhanced", "Enhanced"

    class Frequency(models.TextChoices):
        HOURLY = "hourly", "Hourly"
        DAILY = "daily", "Daily"
        WEEKLY = "weekly", "Weekly"

    class Tiering(models.TextChoices):
        OFF = "off", "Off"
        AFTER = "after", "After N days"
        RECOMMENDED = "recommended", "Recommended"

    vault = models.ForeignKey("vaults.Vault", on_delete=models.CASCADE, related_name="policies")
    name = models.CharField(max_length=50)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.STANDARD)
    frequency = models.CharField(max_length=10, choices=Frequency.choices, default="daily")
    time = models.TimeField(default=dt.time(22, 0))
    weekdays = models.JSONField(default=list, blank=True)
    interval_hours = models.PositiveSmallIntegerField(null=True, blank=True)
    window_start = models.TimeField(null=True, blank=True)
    window_hours = models.PositiveSmallIntegerField(null=True, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    instant_restore_days = models.PositiveSmallIntegerField(default=2)
    daily_days = models.PositiveIntegerField(default=30)
    weekly_weeks = models.PositiveIntegerField(null=True, blank=True)
    weekly_weekday = models.CharField(max_length=10, default="sunday")
    monthly_months = models.PositiveIntegerField(null=True, blank=True)
    monthly_day = models.PositiveSmallIntegerField(default=1)
    yearly_years = models.PositiveSmallIntegerField(null=True, blank=True)
    yearly_month = models.PositiveSmallIntegerField(default=1)
    tiering_mode = models.CharField(max_length=12, choices=Tiering.choices, default="off")
    tiering_after_days = models.PositiveIntegerField(null=True, blank=True)
    # Scheduled restore drills (SPEC 3.12): one point of each item drilled every N days;
    # null turns them off (vaults/jobs/drill_schedule.py).
    restore_drill_every_days = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["vault", "name"]
        constraints = [
            models.UniqueConstraint(fields=["vault", "name"], name="policy_unique_name_per_vault"),
            models.CheckConstraint(
                condition=models.Q(restore_drill_every_days__isnull=True)
                | models.Q(
                    restore_drill_every_days__gte=DRILL_DAYS[0],
                    restore_drill_every_days__lte=DRILL_DAYS[1],
                ),
                name="policy_restore_drill_days_range",
            ),
        ]
        # PostgreSQL refuses a shorter retention in an immutable vault (vaults/triggers.py).
        triggers = [*POLICY_TRIGGERS, *policy_rpo_triggers()]

    def __str__(self) -> str:
        return self.name

    def schedule(self) -> rules.Schedule:
        return schedule_of(*(getattr(self, name) for name in SCHEDULE_FIELDS))

    def retention(self) -> rules.Retention:
        return rules.Retention(
            daily_days=self.daily_days,
            weekly_weeks=self.weekly_weeks,
            weekly_weekday=WEEKDAYS.index(self.weekly_weekday)
            if self.weekly_weekday in WEEKDAYS
            else 6,
            monthly_months=self.monthly_months,
            monthly_day=self.monthly_day,
            yearly_years=self.yearly_years,
            yearly_month=self.yearly_month,
        )

    def weaker_reasons(self, new: Policy) -> list[str]:
        """How ``new`` (an edited copy of this policy) would be weaker than this one."""
        return rules.weaker_reasons(
            self.kind, self.schedule(), self.retention(), new.kind, new.schedule(), new.retention()
        )

    def retention_shorter(self, new: Policy) -> list[str]:
        return rules.retention_shorter(self.retention(), new.retention())

    def retention_longer(self, new: Policy) -> bool:
        return rules.retention_longer(self.retention(), new.retention())

    def expiry_for(self, created_at: dt.datetime, tags: list[str]) -> dt.datetime:
        return rules.expiry_for(created_at, frozenset(tags), self.retention(), self.timezone)

    def validation_errors(self) -> dict[str, str]:
        errors = rules.validate_policy(
            self.kind, self.schedule(), self.retention(), self.instant_restore_days
        )
        for day in self.weekdays:
            if day not in WEEKDAYS:
                errors["schedule.weekdays"] = f"{day!r} is not a weekday name."
        if self.weekly_weekday not in WEEKDAYS:
            errors["retention.weekly_weekday"] = "Choose a weekday name, e.g. sunday."
        if self.tiering_mode == self.Tiering.AFTER and (self.tiering_after_days or 0) < 90:
            errors["tiering.after_days"] = "Tier to archive at least 90 days after creation."
        low, high = DRILL_DAYS
        every = self.restore_drill_every_days
        if every is not None and not low <= every <= high:
            errors["restore_drill.every_days"] = (
                f"Drill every {low} to {high} days, or turn scheduled drills off (null)."
            )
        return errors

    @property
    def restore_drill(self) -> dict[str, int] | None:
        """The API's ``restore_drill``: ``{"every_days": N}``, or None when drills are off."""
        every = self.restore_drill_every_days
        return None if every is None else {"every_days": every}

    def audit_state(self) -> dict[str, Any]:
        return {
            "policy": self.name,
            "kind": self.kind,
            "frequency": self.frequency,
            "timezone": self.timezone,
            "instant_restore_days": self.instant_restore_days,
            "retention": {
                "daily_days": self.daily_days,
                "weekly_weeks": self.weekly_weeks,
                "monthly_months": self.monthly_months,
                "yearly_years": self.yearly_years,
            },
            "tiering": {"mode": self.tiering_mode, "after_days": self.tiering_after_days},
            "restore_drill": self.restore_drill,
        }
