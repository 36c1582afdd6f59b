"""Pure tests of policies.rules (SPEC 3.6): no database, no Django."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import replace
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.rules import (
    Retention,
    Schedule,
    backups_per_day,
    expiry_for,
    gfs_tags,
    is_vault_tier_run,
    retention_for_tag,
    retention_longer,
    retention_shorter,
    scheduled_slots,
    validate_instant_restore_days,
    validate_policy,
    validate_retention,
    validate_schedule,
    weaker_reasons,
)

UTC = dt.UTC
LONDON = "Europe/London"
NEW_YORK = "America/New_York"
SYDNEY = "Australia/Sydney"
TIERS = ("daily", "weekly", "monthly", "yearly")
FIELDS = {
    "daily": "daily_days",
    "weekly": "weekly_weeks",
    "monthly": "monthly_months",
    "yearly": "yearly_years",
}


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def daily(at: dt.time, zone: str = LONDON) -> Schedule:
    return Schedule(frequency="daily", timezone=zone, time=at)


def hourly(
    zone: str = LONDON, start: dt.time = dt.time(8), every: int = 4, window: int = 24
) -> Schedule:
    return Schedule(
        frequency="hourly",
        timezone=zone,
        time=dt.time(0),
        interval_hours=every,
        window_start=start,
        window_hours=window,
    )


def weekly(*weekdays: int, zone: str = LONDON, at: dt.time = dt.time(22)) -> Schedule:
    return Schedule(frequency="weekly", timezone=zone, time=at, weekdays=weekdays)


FULL = Retention(
    daily_days=30, weekly_weeks=12, monthly_months=60, yearly_years=10, weekly_weekday=6
)


def local_times(slots: list[dt.datetime], zone: str) -> list[str]:
    return [slot.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z") for slot in slots]


# --- validation -------------------------------------------------------------------------

RETENTION_CASES = [
    ("retention.daily_days", {"daily_days": 6}),
    ("retention.daily_days", {"daily_days": 10000}),
    ("retention.weekly_weeks", {"weekly_weeks": 0}),
    ("retention.weekly_weeks", {"weekly_weeks": 5164}),
    ("retention.monthly_months", {"monthly_months": 0}),
    ("retention.monthly_months", {"monthly_months": 1189}),
    ("retention.yearly_years", {"yearly_years": 0}),
    ("retention.yearly_years", {"yearly_years": 100}),
    ("retention.monthly_day", {"monthly_day": 0}),
    ("retention.monthly_day", {"monthly_day": 29}),
    ("retention.weekly_weekday", {"weekly_weekday": -1}),
    ("retention.weekly_weekday", {"weekly_weekday": 7}),
    ("retention.yearly_month", {"yearly_month": 0}),
    ("retention.yearly_month", {"yearly_month": 13}),
]


@pytest.mark.parametrize(("field", "change"), RETENTION_CASES)
def test_out_of_range_retention_is_refused_on_its_field(field: str, change: dict) -> None:
    errors = validate_retention(replace(FULL, **change))
    assert list(errors) == [field]
    assert errors[field]


@pytest.mark.parametrize(
    "change",
    [
        {"daily_days": 7},
        {"daily_days": 9999},
        {"weekly_weeks": 1},
        {"weekly_weeks": 5163},
        {"monthly_months": 1},
        {"monthly_months": 1188},
        {"yearly_years": 1},
        {"yearly_years": 99},
        {"weekly_weeks": None, "monthly_months": None, "yearly_years": None},
        {"monthly_day": 28, "weekly_weekday": 0, "yearly_month": 12},
    ],
)
def test_retention_at_the_edges_of_its_ranges_is_accepted(change: dict) -> None:
    assert validate_retention(replace(FULL, **change)) == {}


def test_daily_retention_cannot_be_turned_off() -> None:
    errors = validate_retention(replace(FULL, daily_days=None))  # type: ignore[arg-type]
    assert list(errors) == ["retention.daily_days"]


SCHEDULE_CASES = [
    ("enhanced", replace(daily(dt.time(2)), timezone="Mars/Olympus_Mons"), "schedule.timezone"),
    ("enhanced", replace(daily(dt.time(2)), timezone="localtime"), "schedule.timezone"),
    ("enhanced", replace(daily(dt.time(2)), timezone="../etc/passwd"), "schedule.timezone"),
    ("enhanced", replace(daily(dt.time(2)), timezone=""), "schedule.timezone"),
    ("enhanced", hourly(every=5), "schedule.interval_hours"),
    ("enhanced", hourly(every=0), "schedule.interval_hours"),
    ("enhanced", hourly(window=2), "schedule.window_hours"),
    ("enhanced", hourly(window=25), "schedule.window_hours"),
    ("standard", hourly(), "schedule.frequency"),
    ("standard", weekly(), "schedule.weekdays"),
    ("standard", weekly(7), "schedule.weekdays"),
    ("standard", replace(daily(dt.time(2)), frequency="monthly"), "schedule.frequency"),
]


@pytest.mark.parametrize(("kind", "schedule", "field"), SCHEDULE_CASES)
def test_invalid_schedule_is_refused_on_its_field(
    kind: str, schedule: Schedule, field: str
) -> None:
    errors = validate_schedule(kind, schedule)
    assert list(errors) == [field]
    assert errors[field]


@pytest.mark.parametrize(
    ("kind", "schedule"),
    [
        ("standard", daily(dt.time(2), SYDNEY)),
        ("standard", weekly(0, 3)),
        ("enhanced", hourly()),
        ("enhanced", Schedule(frequency="hourly", timezone="UTC", time=dt.time(0))),
        ("enhanced", hourly(every=12, window=4)),
    ],
)
def test_valid_schedules_have_no_errors(kind: str, schedule: Schedule) -> None:
    assert validate_schedule(kind, schedule) == {}


@pytest.mark.parametrize(
    ("kind", "days", "valid"),
    [
        ("standard", 0, False),
        ("standard", 1, True),
        ("standard", 5, True),
        ("standard", 6, False),
        ("enhanced", 0, False),
        ("enhanced", 30, True),
        ("enhanced", 31, False),
    ],
)
def test_instant_restore_days_follow_the_policy_kind(kind: str, days: int, valid: bool) -> None:
    errors = validate_instant_restore_days(kind, days)
    assert (errors == {}) is valid
    if not valid:
        assert list(errors) == ["instant_restore_days"]


def test_weekly_schedule_without_a_weekly_tier_is_refused() -> None:
    errors = validate_policy("standard", weekly(6), replace(FULL, weekly_weeks=None), 2)
    assert list(errors) == ["retention.weekly_weeks"]


# --- schedules across daylight-saving changes -------------------------------------------

DAILY_DST_CASES = [
    # zone, run time, day, expected instant: spring-forward gaps run the gap's length later,
    # fall-back repeats run once, at the first occurrence.
    (LONDON, dt.time(1, 30), dt.date(2024, 3, 31), utc(2024, 3, 31, 1, 30)),  # 02:30 BST
    (LONDON, dt.time(1, 30), dt.date(2024, 10, 27), utc(2024, 10, 27, 0, 30)),  # 01:30 BST
    (LONDON, dt.time(2, 30), dt.date(2024, 3, 31), utc(2024, 3, 31, 1, 30)),  # exists: BST
    (NEW_YORK, dt.time(2, 30), dt.date(2024, 3, 10), utc(2024, 3, 10, 7, 30)),  # 03:30 EDT
    (NEW_YORK, dt.time(1, 30), dt.date(2024, 11, 3), utc(2024, 11, 3, 5, 30)),  # 01:30 EDT
    (NEW_YORK, dt.time(2, 30), dt.date(2024, 11, 3), utc(2024, 11, 3, 7, 30)),  # 02:30 EST
    (SYDNEY, dt.time(2, 30), dt.date(2024, 10, 6), utc(2024, 10, 5, 16, 30)),  # 03:30 AEDT
    (SYDNEY, dt.time(2, 30), dt.date(2024, 4, 7), utc(2024, 4, 6, 15, 30)),  # 02:30 AEDT
    (SYDNEY, dt.time(1, 30), dt.date(2024, 10, 6), utc(2024, 10, 5, 15, 30)),  # 01:30 AEST
]


@pytest.mark.parametrize(("zone", "at", "day", "expected"), DAILY_DST_CASES)
def test_daily_runs_once_a_local_day_across_dst_changes(
    zone: str, at: dt.time, day: dt.date, expected: dt.datetime
) -> None:
    tz = ZoneInfo(zone)
    start = dt.datetime.combine(day - dt.timedelta(days=3), dt.time(0), tz)
    end = dt.datetime.combine(day + dt.timedelta(days=4), dt.time(0), tz)
    slots = scheduled_slots(daily(at, zone), start, end)

    per_day = Counter(slot.astimezone(tz).date() for slot in slots)
    assert len(slots) == 7
    assert set(per_day.values()) == {1}
    assert expected in slots
    for slot in slots:
        if slot.astimezone(tz).date() != day:
            assert slot.astimezone(tz).time() == at
        assert slot.tzinfo == UTC


def test_hourly_window_of_24_hours_every_4_hours_runs_at_the_documented_times() -> None:
    slots = scheduled_slots(hourly("UTC"), utc(2024, 6, 3, 8), utc(2024, 6, 4, 8))
    assert [slot.hour for slot in slots] == [8, 12, 16, 20, 0, 4]


HOURLY_DST_CASES = [
    (
        hourly(LONDON, start=dt.time(1)),
        dt.date(2024, 3, 31),
        ["02:00 BST", "05:00 BST", "09:00 BST", "13:00 BST", "17:00 BST", "21:00 BST"],
    ),
    (
        hourly(LONDON, start=dt.time(1)),
        dt.date(2024, 10, 27),
        ["01:00 BST", "05:00 GMT", "09:00 GMT", "13:00 GMT", "17:00 GMT", "21:00 GMT"],
    ),
    (
        hourly(NEW_YORK, start=dt.time(2), every=6, window=12),
        dt.date(2024, 3, 10),
        ["03:00 EDT", "08:00 EDT"],
    ),
    (
        hourly(NEW_YORK, start=dt.time(1), every=6, window=12),
        dt.date(2024, 11, 3),
        ["01:00 EDT", "07:00 EST"],
    ),
    (
        hourly(SYDNEY, start=dt.time(2), every=8, window=24),
        dt.date(2024, 10, 6),
        ["03:00 AEDT", "10:00 AEDT", "18:00 AEDT"],
    ),
    (
        hourly(SYDNEY, start=dt.time(2), every=8, window=24),
        dt.date(2024, 4, 7),
        ["02:00 AEDT", "10:00 AEST", "18:00 AEST"],
    ),
]


@pytest.mark.parametrize(("schedule", "day", "expected"), HOURLY_DST_CASES)
def test_hourly_window_lands_on_local_times_across_dst_changes(
    schedule: Schedule, day: dt.date, expected: list[str]
) -> None:
    tz = ZoneInfo(schedule.timezone)
    start = dt.datetime.combine(day, dt.time(0), tz)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tz)
    slots = scheduled_slots(schedule, start, end)
    assert [label.split(" ", 1)[1] for label in local_times(slots, schedule.timezone)] == expected


@pytest.mark.parametrize("zone", [LONDON, NEW_YORK, SYDNEY, "Australia/Lord_Howe"])
@pytest.mark.parametrize(
    "schedule_for",
    [
        lambda zone: hourly(zone, start=dt.time(1), every=4, window=24),
        lambda zone: hourly(zone, start=dt.time(0, 30), every=6, window=20),
        lambda zone: daily(dt.time(2, 30), zone),
        lambda zone: weekly(6, zone=zone, at=dt.time(1, 30)),
    ],
)
def test_a_whole_year_of_slots_has_the_right_count_and_no_duplicates(
    zone: str, schedule_for
) -> None:
    schedule = schedule_for(zone)
    tz = ZoneInfo(zone)
    start = dt.datetime(2024, 1, 1, tzinfo=tz)
    end = dt.datetime(2025, 1, 1, tzinfo=tz)
    slots = scheduled_slots(schedule, start, end)

    assert slots == sorted(set(slots))
    assert all(start <= slot < end for slot in slots)
    assert len(slots) == round(366 * backups_per_day(schedule))


@settings(max_examples=40, deadline=None)
@given(
    zone=st.sampled_from(sorted(available_timezones() - {"localtime"})),
    at=st.times(),
    year=st.integers(1995, 2030),
)
def test_daily_slots_keep_their_wall_time_unless_it_does_not_exist(
    zone: str, at: dt.time, year: int
) -> None:
    tz = ZoneInfo(zone)
    start = dt.datetime(year, 1, 1, tzinfo=tz)
    slots = scheduled_slots(daily(at, zone), start, dt.datetime(year + 1, 1, 1, tzinfo=tz))

    assert slots == sorted(set(slots))
    for slot in slots:
        local = slot.astimezone(tz).replace(tzinfo=None)
        if local.time() == at:
            continue
        # Otherwise the scheduled wall time (today's or, past midnight, yesterday's) fell in
        # a spring-forward gap and the run moved later by at most a day, never earlier.
        walls = [dt.datetime.combine(local.date() - dt.timedelta(days=n), at) for n in (0, 1)]
        assert any(
            not _exists(wall, tz) and wall < local <= wall + dt.timedelta(days=1) for wall in walls
        )


def _exists(wall: dt.datetime, tz: ZoneInfo) -> bool:
    return wall.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall


def test_slot_boundaries_are_half_open() -> None:
    schedule = daily(dt.time(2), "UTC")
    assert scheduled_slots(schedule, utc(2024, 1, 1, 2), utc(2024, 1, 2, 2)) == [utc(2024, 1, 1, 2)]


def test_slots_refuse_naive_datetimes() -> None:
    with pytest.raises(ValueError):
        scheduled_slots(daily(dt.time(2)), dt.datetime(2024, 1, 1), utc(2024, 1, 2))


def test_only_the_last_run_of_an_hourly_window_goes_to_the_vault_tier() -> None:
    schedule = hourly(SYDNEY, start=dt.time(8), every=4, window=24)
    tz = ZoneInfo(SYDNEY)
    start = dt.datetime(2024, 4, 5, 8, tzinfo=tz)
    slots = scheduled_slots(schedule, start, start + dt.timedelta(days=4))
    vault = [slot for slot in slots if is_vault_tier_run(schedule, slot)]

    # Each window ends at 04:00 the next local day, even across the April fall back.
    assert len(vault) == 4
    assert {slot.astimezone(tz).time() for slot in vault} == {dt.time(4)}
    assert len(slots) == 24


def test_daily_and_weekly_runs_always_go_to_the_vault_tier() -> None:
    assert is_vault_tier_run(daily(dt.time(2)), utc(2024, 1, 1, 2))
    assert is_vault_tier_run(weekly(0), utc(2024, 1, 1, 22))


def test_backups_per_day_counts_runs_in_the_window() -> None:
    assert backups_per_day(hourly()) == 6
    assert backups_per_day(hourly(every=8, window=12)) == 2
    assert backups_per_day(daily(dt.time(1))) == 1
    assert backups_per_day(weekly(0, 3)) == pytest.approx(2 / 7)


# --- GFS tags ---------------------------------------------------------------------------


def test_sunday_2330_utc_is_a_monday_point_in_sydney() -> None:
    sunday_night_utc = utc(2024, 6, 2, 23, 30)
    assert sunday_night_utc.weekday() == 6
    mondays = replace(FULL, weekly_weekday=0)
    sundays = replace(FULL, weekly_weekday=6)
    assert "weekly" in gfs_tags(sunday_night_utc, mondays, daily(dt.time(9, 30), SYDNEY))
    assert "weekly" not in gfs_tags(sunday_night_utc, sundays, daily(dt.time(9, 30), SYDNEY))
    assert "weekly" in gfs_tags(sunday_night_utc, sundays, daily(dt.time(23, 30), "UTC"))


def test_month_and_year_are_judged_on_the_local_date() -> None:
    schedule = daily(dt.time(1, 30), SYDNEY)
    new_year_in_sydney = utc(2023, 12, 31, 14, 30)
    assert gfs_tags(new_year_in_sydney, FULL, schedule) == {"daily", "monthly", "yearly"}
    # 02:00 UTC on July 1 is still June 30 in New York: not the first of the month there.
    # (June 30, 2024 was a Sunday, so it is a weekly point there instead.)
    tags = gfs_tags(utc(2024, 7, 1, 2), FULL, daily(dt.time(22), NEW_YORK))
    assert tags == {"daily", "weekly"}
    assert gfs_tags(utc(2024, 7, 1, 2), FULL, daily(dt.time(2), "UTC")) == {"daily", "monthly"}


def test_only_tiers_that_are_on_give_tags() -> None:
    daily_only = Retention(daily_days=30)
    assert gfs_tags(utc(2024, 1, 7, 1), daily_only, daily(dt.time(1), "UTC")) == {"daily"}
    yearly_without_monthly = replace(FULL, monthly_months=None)
    tags = gfs_tags(utc(2024, 1, 1, 1), yearly_without_monthly, daily(dt.time(1), "UTC"))
    assert tags == {"daily", "yearly"}


def test_weekly_schedule_runs_are_weekly_points_not_daily_ones() -> None:
    tags = gfs_tags(utc(2024, 1, 10, 22), FULL, weekly(2, zone="UTC"))
    assert tags == {"weekly"}


@settings(max_examples=60, deadline=None)
@given(
    weekdays=st.sets(st.integers(0, 6), min_size=1).map(lambda days: tuple(sorted(days))),
    monthly_day=st.integers(1, 28),
    yearly_month=st.integers(1, 12),
    year=st.integers(2000, 2100),
)
def test_weekly_schedules_make_exactly_one_monthly_point_a_month(
    weekdays: tuple[int, ...], monthly_day: int, yearly_month: int, year: int
) -> None:
    schedule = weekly(*weekdays, zone=SYDNEY)
    retention = replace(FULL, monthly_day=monthly_day, yearly_month=yearly_month)
    tz = ZoneInfo(SYDNEY)
    # December's monthly point may fall in the first days of the next year.
    slots = scheduled_slots(
        schedule, dt.datetime(year, 1, 1, tzinfo=tz), dt.datetime(year + 1, 1, 8, tzinfo=tz)
    )
    tagged = [(slot.astimezone(tz).date(), gfs_tags(slot, retention, schedule)) for slot in slots]

    for month in range(1, 13):
        anchor = dt.date(year, month, monthly_day)
        # The first run on or after the anchor, never two, never none.
        in_reach = [tags for day, tags in tagged if anchor <= day <= anchor + dt.timedelta(days=6)]
        assert [("monthly" in tags) for tags in in_reach].count(True) == 1
        first = in_reach[0]
        assert "monthly" in first
        assert ("yearly" in first) == (month == yearly_month)
    first_anchor = dt.date(year, 1, monthly_day)
    last_reach = dt.date(year, 12, monthly_day) + dt.timedelta(days=6)
    monthly_in_year = [
        day for day, tags in tagged if "monthly" in tags and first_anchor <= day <= last_reach
    ]
    assert len(monthly_in_year) == 12
    assert all(tags >= {"weekly"} and "daily" not in tags for _, tags in tagged)


# --- expiry -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backup_at", "tags", "expected"),
    [
        (utc(2024, 1, 31, 2), {"daily"}, utc(2024, 3, 1, 2)),
        (utc(2024, 1, 31, 2), {"daily", "monthly"}, utc(2029, 1, 31, 2)),
        (utc(2024, 2, 29, 2), {"yearly"}, utc(2034, 2, 28, 2)),
        (utc(2024, 3, 3, 2), {"daily", "weekly"}, utc(2024, 5, 26, 2)),
    ],
)
def test_expiry_is_the_longest_that_the_tags_give(
    backup_at: dt.datetime, tags: set[str], expected: dt.datetime
) -> None:
    assert expiry_for(backup_at, frozenset(tags), FULL, "UTC") == expected


def test_monthly_expiry_clamps_to_the_end_of_the_month() -> None:
    one_month = Retention(daily_days=7, monthly_months=1)
    assert expiry_for(utc(2024, 1, 31), frozenset({"monthly"}), one_month, "UTC") == utc(
        2024, 2, 29
    )
    assert expiry_for(utc(2023, 1, 31), frozenset({"monthly"}), one_month, "UTC") == utc(
        2023, 2, 28
    )


def test_expiry_keeps_the_local_wall_time_across_dst() -> None:
    week = Retention(daily_days=7)
    # 01:30 GMT on March 30 expires at 01:30 BST on April 6, which is 00:30 UTC.
    assert expiry_for(utc(2024, 3, 30, 1, 30), frozenset({"daily"}), week, LONDON) == utc(
        2024, 4, 6, 0, 30
    )


def test_a_point_whose_tiers_are_all_off_falls_back_to_daily_retention() -> None:
    daily_only = Retention(daily_days=10)
    assert expiry_for(utc(2024, 1, 1), frozenset({"weekly"}), daily_only, "UTC") == utc(2024, 1, 11)


def test_unknown_tags_are_refused() -> None:
    with pytest.raises(ValueError):
        expiry_for(utc(2024, 1, 1), frozenset({"hourly"}), FULL, "UTC")


# --- hypothesis: retention arithmetic ---------------------------------------------------

ZONES = st.sampled_from(["UTC", LONDON, NEW_YORK, SYDNEY, "Australia/Lord_Howe", "Asia/Kolkata"])
BACKUP_AT = st.datetimes(
    min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2200, 1, 1), timezones=st.just(UTC)
)
TAG_SETS = st.sets(st.sampled_from(TIERS), min_size=1).map(frozenset)


@st.composite
def retentions(draw: st.DrawFn) -> Retention:
    def tier(low: int, high: int) -> int | None:
        return draw(st.none() | st.integers(low, high))

    return Retention(
        daily_days=draw(st.integers(7, 9999)),
        weekly_weeks=tier(1, 5163),
        weekly_weekday=draw(st.integers(0, 6)),
        monthly_months=tier(1, 1188),
        monthly_day=draw(st.integers(1, 28)),
        yearly_years=tier(1, 99),
        yearly_month=draw(st.integers(1, 12)),
    )


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    frequency = draw(st.sampled_from(["hourly", "daily", "weekly"]))
    if frequency == "hourly":
        return hourly(every=draw(st.sampled_from([4, 6, 8, 12])), window=draw(st.integers(4, 24)))
    if frequency == "weekly":
        return weekly(*draw(st.sets(st.integers(0, 6), min_size=1)))
    return daily(dt.time(1))


@given(backup_at=BACKUP_AT, tags=TAG_SETS, retention=retentions(), zone=ZONES)
def test_expiry_is_always_after_the_backup(
    backup_at: dt.datetime, tags: frozenset[str], retention: Retention, zone: str
) -> None:
    assert expiry_for(backup_at, tags, retention, zone) > backup_at


@given(
    backup_at=BACKUP_AT,
    tags=TAG_SETS,
    retention=retentions(),
    zone=ZONES,
    tag=st.sampled_from(TIERS),
    more=st.integers(1, 500),
)
def test_longer_retention_never_gives_an_earlier_expiry(
    backup_at: dt.datetime,
    tags: frozenset[str],
    retention: Retention,
    zone: str,
    tag: str,
    more: int,
) -> None:
    current = retention_for_tag(retention, tag)
    if current is None:
        return
    longer = replace(retention, **{FIELDS[tag]: current + more})
    assert retention_for_tag(longer, tag) == current + more
    assert expiry_for(backup_at, tags, longer, zone) >= expiry_for(backup_at, tags, retention, zone)


def _tier_weaker(old: Retention, new: Retention) -> bool:
    for tag in TIERS:
        before, after = retention_for_tag(old, tag), retention_for_tag(new, tag)
        if before is not None and (after is None or after < before):
            return True
    return False


@settings(max_examples=300)
@given(
    old_schedule=schedules(),
    new_schedule=schedules(),
    old=retentions(),
    new=retentions(),
)
def test_weaker_means_a_shorter_or_removed_tier_or_fewer_backups(
    old_schedule: Schedule, new_schedule: Schedule, old: Retention, new: Retention
) -> None:
    reasons = weaker_reasons("enhanced", old_schedule, old, "enhanced", new_schedule, new)
    fewer = backups_per_day(new_schedule) < backups_per_day(old_schedule)
    assert bool(reasons) == (_tier_weaker(old, new) or fewer)
    assert len(reasons) == len(retention_shorter(old, new)) + int(fewer)
    assert bool(retention_shorter(old, new)) == _tier_weaker(old, new)


@given(old=retentions(), new=retentions())
def test_longer_is_shorter_in_reverse(old: Retention, new: Retention) -> None:
    assert retention_longer(old, new) == bool(retention_shorter(new, old))
    assert retention_shorter(old, old) == []
    assert not retention_longer(old, old)


def test_weaker_reasons_name_each_change() -> None:
    new = replace(FULL, weekly_weeks=4, yearly_years=None)
    reasons = weaker_reasons("enhanced", hourly(), FULL, "enhanced", daily(dt.time(1)), new)
    assert reasons == [
        "Weekly retention would drop from 12 to 4 weeks.",
        "The yearly tier (10 years) would be removed.",
        "Fewer backups: 1 a day instead of 6 a day.",
    ]


def test_a_stronger_policy_has_no_weaker_reasons() -> None:
    stronger = replace(FULL, daily_days=60, monthly_months=None, yearly_years=None)
    base = replace(FULL, monthly_months=None, yearly_years=None)
    assert (
        weaker_reasons("standard", weekly(0), base, "standard", daily(dt.time(1)), stronger) == []
    )
    assert retention_longer(base, stronger)
