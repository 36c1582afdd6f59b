"""Backup policy rules (SPEC 3.6) as pure functions: validation, schedules, GFS, weakening.

No Django imports, so models, services, the API and the edit page's preview all share one
implementation and it can be tested and property-checked alone.

Time zones: a schedule lives in the policy's local wall time. A wall time becomes an
instant with ``fold=0`` (see ``_to_utc``), and every calendar judgement (which day a backup
belongs to, what "one month later" means) is made on the local calendar, never in UTC.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
from dataclasses import dataclass
from zoneinfo import ZoneInfo, available_timezones

KINDS = ("standard", "enhanced")
FREQUENCIES = ("hourly", "daily", "weekly")
TAGS = ("daily", "weekly", "monthly", "yearly")
HOURLY_INTERVALS = (4, 6, 8, 12)
DEFAULT_INTERVAL_HOURS = 4
DEFAULT_WINDOW_START = dt.time(8, 0)
DEFAULT_WINDOW_HOURS = 24
INSTANT_RESTORE_MAX_DAYS = {"standard": 5, "enhanced": 30}
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# tag -> (retention field, unit, lowest, highest); SPEC 3.6 ranges.
_TIERS: dict[str, tuple[str, str, int, int]] = {
    "daily": ("daily_days", "day", 7, 9999),
    "weekly": ("weekly_weeks", "week", 1, 5163),
    "monthly": ("monthly_months", "month", 1, 1188),
    "yearly": ("yearly_years", "year", 1, 99),
}


@dataclass(frozen=True)
class Schedule:
    frequency: str  # "hourly" | "daily" | "weekly"
    timezone: str  # IANA name, e.g. "Europe/London"
    time: dt.time  # time of day for daily / weekly runs
    weekdays: tuple[int, ...] = ()  # weekly runs: 0=Monday .. 6=Sunday
    interval_hours: int | None = None  # hourly (enhanced only): 4, 6, 8 or 12; None = 4
    window_start: dt.time | None = None  # hourly: window start; None = 08:00
    window_hours: int | None = None  # hourly: 4..24; None = 24


@dataclass(frozen=True)
class Retention:
    daily_days: int  # 7..9999, never off
    weekly_weeks: int | None = None  # 1..5163, None = tier off
    weekly_weekday: int = 6  # 0=Monday .. 6=Sunday
    monthly_months: int | None = None  # 1..1188
    monthly_day: int = 1  # 1..28
    yearly_years: int | None = None  # 1..99
    yearly_month: int = 1  # 1..12 (yearly point = monthly_day of that month)


# --- validation -------------------------------------------------------------------------


@functools.cache
def _known_timezones() -> frozenset[str]:
    # "localtime" names whatever the host is set to, not a zone a policy can mean.
    return frozenset(available_timezones() - {"localtime"})


def is_known_timezone(name: str) -> bool:
    return name in _known_timezones()


def validate_schedule(kind: str, schedule: Schedule) -> dict[str, str]:
    """Field name -> message for every broken schedule rule; empty when valid."""
    errors: dict[str, str] = {}
    if kind not in KINDS:
        errors["kind"] = "Choose a standard or an enhanced policy."
    if schedule.frequency not in FREQUENCIES:
        errors["schedule.frequency"] = "Choose hourly, daily or weekly backups."
    elif schedule.frequency == "hourly" and kind != "enhanced":
        errors["schedule.frequency"] = "Hourly backups need an enhanced policy."
    if not is_known_timezone(schedule.timezone):
        errors["schedule.timezone"] = (
            f"Unknown time zone {schedule.timezone!r}: use an IANA name such as Europe/London."
        )
    if schedule.frequency == "weekly":
        if not schedule.weekdays:
            errors["schedule.weekdays"] = "Choose at least one weekday for weekly backups."
        elif any(day not in range(7) for day in schedule.weekdays):
            errors["schedule.weekdays"] = "Weekdays run from 0 (Monday) to 6 (Sunday)."
    if schedule.frequency == "hourly":
        if _interval_hours(schedule) not in HOURLY_INTERVALS:
            errors["schedule.interval_hours"] = "Run hourly backups every 4, 6, 8 or 12 hours."
        if not 4 <= _window_hours(schedule) <= 24:
            errors["schedule.window_hours"] = "The backup window lasts 4 to 24 hours."
    return errors


def validate_retention(retention: Retention) -> dict[str, str]:
    """Field name -> message for every retention value outside SPEC 3.6's ranges."""
    errors: dict[str, str] = {}
    for tag, (field, unit, low, high) in _TIERS.items():
        value = retention_for_tag(retention, tag)
        if tag == "daily" and value is None:
            errors[f"retention.{field}"] = "Daily retention cannot be turned off."
        elif value is not None and not low <= value <= high:
            errors[f"retention.{field}"] = f"Keep {tag} points for {low} to {high} {unit}s."
    if retention.weekly_weekday not in range(7):
        errors["retention.weekly_weekday"] = "Choose a weekday from 0 (Monday) to 6 (Sunday)."
    if not 1 <= retention.monthly_day <= 28:
        errors["retention.monthly_day"] = "Choose a day of the month from 1 to 28."
    if not 1 <= retention.yearly_month <= 12:
        errors["retention.yearly_month"] = "Choose a month from 1 to 12."
    return errors


def validate_instant_restore_days(kind: str, days: int) -> dict[str, str]:
    """Operational snapshots: 1..5 days on standard policies, 1..30 on enhanced ones."""
    highest = INSTANT_RESTORE_MAX_DAYS.get(kind)
    if highest is None:
        return {"kind": "Choose a standard or an enhanced policy."}
    if not 1 <= days <= highest:
        return {"instant_restore_days": f"Keep instant-restore snapshots 1 to {highest} days."}
    return {}


def validate_policy(
    kind: str, schedule: Schedule, retention: Retention, instant_restore_days: int
) -> dict[str, str]:
    """All three checks, plus the one rule that spans them.

    A weekly schedule's runs are tagged "weekly" instead of "daily" (see ``gfs_tags``), so
    such a policy must keep weekly points or its daily retention would silently apply.
    """
    errors = {
        **validate_schedule(kind, schedule),
        **validate_retention(retention),
        **validate_instant_restore_days(kind, instant_restore_days),
    }
    if schedule.frequency == "weekly" and retention.weekly_weeks is None:
        errors.setdefault(
            "retention.weekly_weeks", "Weekly backups keep weekly points: turn that tier on."
        )
    return errors


# --- schedules --------------------------------------------------------------------------


def _interval_hours(schedule: Schedule) -> int:
    return DEFAULT_INTERVAL_HOURS if schedule.interval_hours is None else schedule.interval_hours


def _window_hours(schedule: Schedule) -> int:
    return DEFAULT_WINDOW_HOURS if schedule.window_hours is None else schedule.window_hours


def _runs_per_window(schedule: Schedule) -> int:
    # Runs at k * interval while k * interval < window: ceil(window / interval).
    interval = _interval_hours(schedule)
    if interval <= 0:
        raise ValueError("an hourly schedule needs a positive interval")
    return max(0, -(-_window_hours(schedule) // interval))


def _runs_per_week(schedule: Schedule) -> int:
    """Whole runs a week, so comparing RPOs never meets float rounding."""
    if schedule.frequency == "hourly":
        return 7 * _runs_per_window(schedule)
    if schedule.frequency == "weekly":
        return len(set(schedule.weekdays))
    return 7


def backups_per_day(schedule: Schedule) -> float:
    """Average runs a day: hourly counts every run in the window, weekly is len(weekdays)/7."""
    return _runs_per_week(schedule) / 7


def _to_utc(wall: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """Turn a local wall time into a UTC instant, the same way everywhere.

    ``fold=0`` picks the first occurrence of an ambiguous (fall back) wall time, so it runs
    once. A wall time inside a spring-forward gap uses the offset in force before the gap,
    which lands it the gap's length later: 01:30 on the day London skips 01:00-02:00 runs at
    02:30 BST. Callers deduplicate, since a shifted time may meet a real one.
    """
    return wall.replace(tzinfo=zone, fold=0).astimezone(dt.UTC)


def _walls_for_day(schedule: Schedule, day: dt.date) -> list[dt.datetime]:
    """Local wall times of the runs that belong to run-day ``day`` (may spill past midnight)."""
    if schedule.frequency == "hourly":
        at = DEFAULT_WINDOW_START if schedule.window_start is None else schedule.window_start
        start = dt.datetime.combine(day, at).replace(tzinfo=None)
        # Naive arithmetic is wall-clock arithmetic: 08:00 + 16 h is 00:00 whatever DST does.
        step = dt.timedelta(hours=_interval_hours(schedule))
        return [start + k * step for k in range(_runs_per_window(schedule))]
    if schedule.frequency == "weekly" and day.weekday() not in schedule.weekdays:
        return []
    if schedule.frequency not in FREQUENCIES:
        raise ValueError(f"unknown frequency {schedule.frequency!r}")
    return [dt.datetime.combine(day, schedule.time).replace(tzinfo=None)]


def _require_aware(*values: dt.datetime) -> None:
    if any(value.utcoffset() is None for value in values):
        raise ValueError("schedule arithmetic needs time-zone-aware datetimes")


def scheduled_slots(schedule: Schedule, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Every run in [start, end) as sorted, distinct, aware UTC datetimes.

    Runs are generated per local run-day and converted with ``_to_utc``; a day counts from
    two days before ``start`` so that windows spilling past midnight are not missed.
    """
    _require_aware(start, end)
    zone = ZoneInfo(schedule.timezone)
    day = start.astimezone(zone).date() - dt.timedelta(days=2)
    last = end.astimezone(zone).date() + dt.timedelta(days=1)
    slots: set[dt.datetime] = set()
    while day <= last:
        for wall in _walls_for_day(schedule, day):
            instant = _to_utc(wall, zone)
            if start <= instant < end:
                slots.add(instant)
        day += dt.timedelta(days=1)
    return sorted(slots)


def is_vault_tier_run(schedule: Schedule, slot: dt.datetime) -> bool:
    """Whether this run also writes a vault-tier point (SPEC 3.6).

    Hourly: only the last run of a run-day's window, which may fall after local midnight
    (08:00 every 4 h over 24 h ends at 04:00 the next day). Daily and weekly: every run.
    """
    _require_aware(slot)
    if schedule.frequency != "hourly":
        return True
    zone = ZoneInfo(schedule.timezone)
    local_day = slot.astimezone(zone).date()
    for back in range(3):
        walls = _walls_for_day(schedule, local_day - dt.timedelta(days=back))
        if walls and slot == max(_to_utc(wall, zone) for wall in walls):
            return True
    return False


# --- grandfather-father-son tags and expiry ---------------------------------------------


def retention_for_tag(retention: Retention, tag: str) -> int | None:
    """The tier's length in its own unit (days, weeks, months, years); None when off."""
    if tag not in _TIERS:
        raise ValueError(f"unknown GFS tag {tag!r}")
    value: int | None = getattr(retention, _TIERS[tag][0])
    return value


def _weekly_month_anchor(
    day: dt.date, weekdays: tuple[int, ...], monthly_day: int
) -> dt.date | None:
    """For weekly schedules: the monthly anchor this run answers for, if any.

    The monthly point is the first run on or after ``monthly_day``. That run is the one with
    an anchor (day ``monthly_day`` of some month) after the previous run and no later than
    itself. Runs are at most 7 days apart and anchors about 30, so every month gets exactly
    one monthly point, even with several weekdays or when the run falls in the next month.
    """
    previous = day - dt.timedelta(days=7)
    for back in range(1, 7):
        candidate = day - dt.timedelta(days=back)
        if candidate.weekday() in weekdays:
            previous = candidate
            break
    for ahead in range(1, (day - previous).days + 1):
        candidate = previous + dt.timedelta(days=ahead)
        if candidate.day == monthly_day:
            return candidate
    return None


def gfs_tags(backup_at: dt.datetime, retention: Retention, schedule: Schedule) -> frozenset[str]:
    """The GFS tags a vault-tier point earns, judged on its local date in the policy's zone.

    23:30 UTC on a Sunday is Monday in Sydney, so it is a Monday point there.

    Daily and hourly schedules: always "daily"; "weekly" on ``weekly_weekday``; "monthly" on
    ``monthly_day``; "yearly" on ``monthly_day`` of ``yearly_month``.
    Weekly schedules: every run is "weekly" instead of "daily" (a weekly run is not a daily
    point, so daily retention does not apply); "monthly" goes to the first run on or after
    ``monthly_day``. If the weekly tier is off (``validate_policy`` refuses that) the run
    falls back to "daily" so that no point is ever left without an expiry.
    Only tags whose tier is on are returned.
    """
    _require_aware(backup_at)
    day = backup_at.astimezone(ZoneInfo(schedule.timezone)).date()
    tags: set[str] = set()
    anchor: dt.date | None
    if schedule.frequency == "weekly":
        tags.add("weekly" if retention.weekly_weeks is not None else "daily")
        anchor = _weekly_month_anchor(day, schedule.weekdays, retention.monthly_day)
    else:
        tags.add("daily")
        if retention.weekly_weeks is not None and day.weekday() == retention.weekly_weekday:
            tags.add("weekly")
        anchor = day if day.day == retention.monthly_day else None
    if anchor is not None:
        if retention.monthly_months is not None:
            tags.add("monthly")
        if retention.yearly_years is not None and anchor.month == retention.yearly_month:
            tags.add("yearly")
    return frozenset(tags)


def add_months(wall: dt.datetime, months: int) -> dt.datetime:
    """Calendar months later, clamping the day to the month's end (Jan 31 + 1 = Feb 28/29)."""
    index = wall.month - 1 + months
    year, month = wall.year + index // 12, index % 12 + 1
    return wall.replace(
        year=year, month=month, day=min(wall.day, calendar.monthrange(year, month)[1])
    )


def _tier_end(wall: dt.datetime, tag: str, count: int) -> dt.datetime:
    if tag == "daily":
        return wall + dt.timedelta(days=count)
    if tag == "weekly":
        return wall + dt.timedelta(weeks=count)
    if tag == "monthly":
        return add_months(wall, count)
    return add_months(wall, 12 * count)  # yearly: Feb 29 clamps to Feb 28


def expiry_for(
    backup_at: dt.datetime, tags: frozenset[str], retention: Retention, timezone: str
) -> dt.datetime:
    """When a vault-tier point expires: the longest that its tags give it (SPEC 3.6).

    Arithmetic runs on the local calendar at the backup's local wall time, so a daily point
    taken at 01:30 expires at 01:30 local even across a DST change, and "+1 month" means the
    same day next month (clamped). The result goes back to UTC with ``_to_utc``.
    Tags whose tier is now off give nothing; if none is left (a tier removed, or a point
    moved to another policy), the daily tier, which is never off, applies.
    """
    _require_aware(backup_at)
    zone = ZoneInfo(timezone)
    wall = backup_at.astimezone(zone).replace(tzinfo=None)
    ends = []
    for tag in tags:
        count = retention_for_tag(retention, tag)
        if count is not None:
            ends.append(_to_utc(_tier_end(wall, tag, count), zone))
    if not ends:
        ends.append(_to_utc(_tier_end(wall, "daily", retention.daily_days), zone))
    return max(ends)


# --- weaker / longer --------------------------------------------------------------------


def _quantity(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def retention_shorter(old_retention: Retention, new_retention: Retention) -> list[str]:
    """Sentences for every tier that is shorter or removed in ``new_retention``.

    Each tier is compared in its own unit (weeks with weeks, months with months), which is
    exact; no day-count approximation of a month is needed. Immutability looks only at this.
    """
    reasons = []
    for tag, (_field, unit, _low, _high) in _TIERS.items():
        old = retention_for_tag(old_retention, tag)
        new = retention_for_tag(new_retention, tag)
        if old is None:
            continue
        if new is None:
            reasons.append(f"The {tag} tier ({_quantity(old, unit)}) would be removed.")
        elif new < old:
            reasons.append(
                f"{tag.capitalize()} retention would drop from {old} to {_quantity(new, unit)}."
            )
    return reasons


def retention_longer(old_retention: Retention, new_retention: Retention) -> bool:
    """Whether any tier gets longer or is turned on (a retention increase, SPEC 3.2)."""
    return bool(retention_shorter(new_retention, old_retention))


def _describe_rate(schedule: Schedule) -> str:
    per_week = _runs_per_week(schedule)
    if per_week % 7 == 0:
        return f"{per_week // 7} a day"
    return f"{per_week} a week"


def weaker_reasons(
    old_kind: str,
    old_schedule: Schedule,
    old_retention: Retention,
    new_kind: str,
    new_schedule: Schedule,
    new_retention: Retention,
) -> list[str]:
    """Every way the new policy is weaker than the old one (SPEC 3.6); empty if none.

    Weaker means a shorter tier, a removed tier, or fewer backups a day (a worse RPO), which
    is what MUA's ``modify_policy_weaken`` guards. The kinds are taken so callers can pass
    whole policies; a kind change is not itself a weakening (moving an item from enhanced
    back to standard is refused elsewhere).
    """
    reasons = retention_shorter(old_retention, new_retention)
    if _runs_per_week(new_schedule) < _runs_per_week(old_schedule):
        reasons.append(
            f"Fewer backups: {_describe_rate(new_schedule)} instead of "
            f"{_describe_rate(old_schedule)}."
        )
    return reasons
