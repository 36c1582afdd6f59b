"""Scheduled restore drills (SPEC 3.12): the policy's ``restore_drill``, the dispatcher (one
drill per item per period in the policy's time zone, across DST changes; spread; GFS
rotation), the item page's last drill and Run drill button, and the "drill overdue" filter.
Real PostgreSQL; time moved with ``portal.clock``.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from policies import services as policy_services
from policies.models import Policy
from policies.rules import TAGS
from portal import clock
from portal.gate import DomainError
from portal.models import AuditRecord
from tests.factories import make_vault
from tests.point_world import point_fixture, stores_fixture  # noqa: F401  (fixtures)
from vaults import services as vault_services
from vaults.jobs import requests, runner
from vaults.jobs.drill_schedule import (
    ARCHIVED_WAITS,
    drill_offset,
    drill_slot,
    drills_dispatch,
)
from vaults.models import Job, ProtectedItem, RecoveryPoint, Vault

pytestmark = pytest.mark.django_db

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
HTMX = {"HX-Request": "true"}


def _policy(admin: Any, vault: Vault, every: int | None, tz: str = "UTC", name: str = "p") -> Any:
    return policy_services.policy_create(
        actor=admin,
        vault=vault,
        name=name,
        daily_days=30,
        timezone=tz,
        restore_drill_every_days=every,
    )


def _item(admin: Any, vault: Vault, policy: Policy, tmp_path: Path, name: str = "docs") -> Any:
    source = tmp_path / name
    source.mkdir(exist_ok=True)
    return vault_services.item_protect(
        actor=admin, vault=vault, name=name, source_path=str(source), policy=policy
    )


def _point(item: ProtectedItem, created: datetime, *tags: str, **fields: Any) -> RecoveryPoint:
    fields.setdefault("tier", RecoveryPoint.Tier.VAULT_STANDARD)
    fields.setdefault("expires_at", created + timedelta(days=3650))
    return RecoveryPoint.objects.create(
        vault=item.vault, item=item, created_at=created, tags=list(tags), **fields
    )


def _dispatch(at: datetime) -> list[Job]:
    """A beat run at ``at`` (the gate and the jobs see that time too)."""
    with clock.frozen(at):
        return drills_dispatch()


def _drills(item: ProtectedItem | None = None) -> list[Job]:
    jobs = Job.objects.filter(kind=Job.Kind.DRILL).order_by("slot", "pk")
    return list(jobs.filter(item=item) if item is not None else jobs)


# --- the policy field ----------------------------------------------------------------------


def test_the_api_takes_restore_drill_every_days_or_null_and_refuses_anything_else(
    api: Any, admin: Any, vault: Vault
) -> None:
    url = f"/api/v1/vaults/{vault.name}/policies/"
    base = {"name": "drilled", "retention": {"daily_days": 30}}
    for bad in ({"every_days": 0}, {"every_days": 366}, {"every_days": "x"}, "x", {}, 7):
        answer = api(admin).post(url, {**base, "restore_drill": bad}, format="json")
        assert answer.status_code == 400, (bad, answer.content)
        body = answer.json()
        assert body["code"] == "validation_error" and body["field"].startswith("restore_drill")
        assert "every_days" in body["detail"] or "365" in body["detail"], body
    assert not Policy.objects.filter(name="drilled").exists()

    off = api(admin).post(url, {**base, "name": "off", "restore_drill": None}, format="json")
    assert (off.status_code, off.json()["restore_drill"]) == (201, None)
    made = api(admin).post(url, {**base, "restore_drill": {"every_days": 30}}, format="json")
    assert made.status_code == 201, made.content
    assert made.json()["restore_drill"] == {"every_days": 30}
    assert Policy.objects.get(name="drilled").restore_drill_every_days == 30

    drilled = f"{url}drilled/"
    patch = api(admin).patch(drilled, {"restore_drill": {"every_days": 365}}, format="json")
    assert patch.json()["restore_drill"] == {"every_days": 365}
    record = AuditRecord.objects.filter(operation="policy_update").latest("pk")
    assert record.before["restore_drill"] == {"every_days": 30}
    assert record.after["restore_drill"] == {"every_days": 365}
    refused = api(admin).patch(drilled, {"restore_drill": {"every_days": 0}}, format="json")
    assert (refused.status_code, refused.json()["field"]) == (400, "restore_drill.every_days")
    assert Policy.objects.get(name="drilled").restore_drill_every_days == 365
    cleared = api(admin).patch(drilled, {"restore_drill": None}, format="json")
    assert cleared.json()["restore_drill"] is None
    assert Policy.objects.get(name="drilled").restore_drill_every_days is None
    assert api(admin).get(drilled).json()["restore_drill"] is None


def test_the_database_refuses_a_drill_period_outside_1_to_365(admin: Any, vault: Vault) -> None:
    policy = _policy(admin, vault, 7)
    for bad in (0, 366):
        with pytest.raises(IntegrityError), transaction.atomic():
            Policy.objects.filter(pk=policy.pk).update(restore_drill_every_days=bad)


def test_the_policy_page_sets_and_refuses_the_drill_period(admin: Any, vault: Vault) -> None:
    from tests.test_policy_pages import form_data

    policy = _policy(admin, vault, None)
    client = Client()
    client.force_login(admin)
    url = reverse("vaults:policy-edit", args=[vault.name, policy.pk])
    page = client.get(url).content.decode()
    assert 'name="restore_drill_every_days"' in page and "Restore drills" in page

    save = {"action": "save"}
    refused = client.post(url, {**form_data(policy, restore_drill_every_days=400), **save})
    assert refused.status_code == 400
    assert "Drill every 1 to 365 days" in refused.content.decode()
    saved = client.post(url, {**form_data(policy, restore_drill_every_days=14), **save})
    assert saved.status_code == 302
    policy.refresh_from_db()
    assert policy.restore_drill_every_days == 14
    listed = client.get(reverse("vaults:blade", args=[vault.name, "policies"])).content.decode()
    assert '<th scope="col">Restore drills</th>' in listed and "Every 14 days" in listed


# --- the dispatcher ------------------------------------------------------------------------


def _local_midnight(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=AMSTERDAM).astimezone(UTC)


@pytest.mark.parametrize(
    ("dst_day", "hours"),
    [("2026-03-29", 23), ("2026-10-25", 25)],
    ids=["spring-forward", "fall-back"],
)
def test_one_drill_per_local_day_across_a_dst_change(
    admin: Any, tmp_path: Path, dst_day: str, hours: int
) -> None:
    """Europe/Amsterdam changes clocks on the last Sundays of March and October: the day is
    23 or 25 hours long, and still gets exactly one drill, however often beat runs."""
    vault = make_vault(admin, name="amsterdam")
    item = _item(admin, vault, _policy(admin, vault, 1, "Europe/Amsterdam"), tmp_path)
    dst = datetime.fromisoformat(dst_day)
    _point(item, _local_midnight(dst_day) - timedelta(days=5), "daily")
    days = [(dst + timedelta(days=n)).date().isoformat() for n in (-1, 0, 1)]
    assert drill_slot(1, "Europe/Amsterdam", _local_midnight(days[1])).end - _local_midnight(
        days[1]
    ) == timedelta(hours=hours)

    now = _local_midnight(days[0])
    while now < _local_midnight((dst + timedelta(days=2)).date().isoformat()):
        _dispatch(now)
        _dispatch(now)  # a second beat, or a redelivered message
        now += timedelta(minutes=15)

    jobs = _drills(item)
    assert [job.slot for job in jobs] == [_local_midnight(day) for day in days]
    for job, day in zip(jobs, days, strict=True):
        slot = drill_slot(1, "Europe/Amsterdam", _local_midnight(day))
        moment = slot.moment(drill_offset(item.pk))
        assert moment <= job.created_at < moment + timedelta(minutes=15)
        assert job.requested_by is None and job.recovery_point is not None
    scheduled = AuditRecord.objects.filter(operation="drill_schedule")
    assert scheduled.filter(outcome="allowed").count() == 3


def test_two_dispatchers_cannot_queue_two_drills_for_one_slot(
    admin: Any, vault: Vault, tmp_path: Path, clock: Any
) -> None:
    item = _item(admin, vault, _policy(admin, vault, 7), tmp_path)
    point = _point(item, clock.now() - timedelta(days=1), "daily")
    slot = drill_slot(7, "UTC", clock.now()).start
    first = requests.drill_request(actor=None, point=point, slot=slot)
    # The second dispatcher read "no drill yet" before the first committed: under the vault's
    # row lock it finds the slot taken, and the unique index stands behind that check.
    with pytest.raises(DomainError) as taken:
        requests.drill_request(actor=None, point=point, slot=slot)
    assert taken.value.code == "drill_slot_taken" and taken.value.http_status == 409
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.create(
            kind=Job.Kind.DRILL, item=item, vault=vault, slot=slot, created_at=clock.now()
        )
    assert _drills(item) == [first]


def test_drills_spread_over_the_period_by_item(admin: Any, tmp_path: Path) -> None:
    vault = make_vault(admin, name="many")
    policy = _policy(admin, vault, 1)
    start = datetime(2026, 6, 10, tzinfo=UTC)
    items = [_item(admin, vault, policy, tmp_path, f"item-{n}") for n in range(24)]
    for item in items:
        _point(item, start - timedelta(days=1), "daily")
    offsets = {item.pk: drill_offset(item.pk) for item in items}
    assert offsets == {item.pk: drill_offset(item.pk) for item in items}  # stable
    assert len(set(offsets.values())) == len(items)
    assert all(0 <= fraction < 1 for fraction in offsets.values())

    queued: list[set[int | None]] = []
    for hours in (0, 6, 12, 18, 24 - 1e-6):
        _dispatch(start + timedelta(hours=hours))
        queued.append({job.item_id for job in _drills()})
        expected = {pk for pk, fraction in offsets.items() if fraction * 24 <= hours}
        assert queued[-1] == expected
    assert 0 < len(queued[2]) < len(items)  # not all at once
    assert queued[-1] == set(offsets)  # every one within its day
    assert len(_drills()) == len(items)


def test_successive_slots_rotate_through_the_gfs_classes(
    admin: Any, vault: Vault, tmp_path: Path
) -> None:
    item = _item(admin, vault, _policy(admin, vault, 7), tmp_path)
    start = drill_slot(7, "UTC", datetime(2026, 5, 4, tzinfo=UTC)).start
    old = start - timedelta(days=400)
    yearly = _point(item, old, "yearly", "monthly", "weekly", "daily")
    monthly = _point(item, start - timedelta(days=60), "monthly", "daily")
    weekly = _point(item, start - timedelta(days=9), "weekly", "daily")
    daily = _point(item, start - timedelta(days=1), "daily")
    # Never drilled: expired, soft-deleted or known corrupt points, and the operational tier.
    _point(item, old, "yearly", expires_at=start - timedelta(days=1))
    _point(item, old + timedelta(days=1), "yearly", corrupted_at=start - timedelta(days=2))
    _point(item, start - timedelta(hours=2), "daily", tier=RecoveryPoint.Tier.SNAPSHOT)

    chosen = []
    for period in range(8):
        slot = drill_slot(7, "UTC", start + timedelta(days=7 * period))
        _dispatch(slot.end - timedelta(seconds=1))
        (job,) = [job for job in _drills(item) if job.slot == slot.start]
        chosen.append((job.params["gfs"], job.recovery_point_id))
    classes = [gfs for gfs, _ in chosen]
    first = TAGS.index(classes[0])
    assert classes == [TAGS[(first + n) % 4] for n in range(8)]
    # Within a class, the least recently drilled point, newest first among equals.
    assert dict(chosen[:4]) == {
        "daily": daily.pk,
        "weekly": weekly.pk,
        "monthly": monthly.pk,
        "yearly": yearly.pk,
    }


def test_an_archived_point_is_skipped_and_said_so_until_it_is_rehydrated(
    admin: Any, vault: Vault, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    item = _item(admin, vault, _policy(admin, vault, 1), tmp_path)
    start = datetime(2026, 6, 1, tzinfo=UTC)
    archived = _point(
        item, start - timedelta(days=400), "yearly", tier=RecoveryPoint.Tier.VAULT_ARCHIVE
    )
    with caplog.at_level(logging.INFO, logger="vaults.jobs.drill_schedule"):
        assert _dispatch(start + timedelta(hours=23, minutes=59)) == []
    assert "no point to drill; yearly: archived and not rehydrated" in caplog.text

    daily = _point(item, start - timedelta(days=1), "daily")
    jobs = []
    for day in range(1, 5):
        now = start + timedelta(days=day, hours=23, minutes=59)
        if day == 3:
            RecoveryPoint.objects.filter(pk=archived.pk).update(
                rehydrated_until=now + timedelta(days=10)
            )
        jobs += _dispatch(now)
    by_day = [(job.params["gfs"], job.params["skipped"], job.recovery_point_id) for job in jobs]
    # Days 1 and 2: one of them falls on "yearly", which waits; the daily point goes instead.
    assert {"yearly": ARCHIVED_WAITS} in [skipped for _, skipped, _ in by_day[:2]]
    assert all(point == daily.pk for _, _, point in by_day[:2])
    # Rehydrated from day 3: the yearly point's turn drills it.
    assert (archived.pk, {}) in [(point, skipped) for _, skipped, point in by_day[2:]]


def test_a_policy_without_restore_drill_dispatches_nothing(
    admin: Any, vault: Vault, tmp_path: Path
) -> None:
    item = _item(admin, vault, _policy(admin, vault, None), tmp_path)
    stopped_policy = _policy(admin, vault, 1, name="drilled")
    stopped = _item(admin, vault, stopped_policy, tmp_path, "stopped")
    start = datetime(2026, 6, 1, tzinfo=UTC)
    for each in (item, stopped):
        _point(each, start - timedelta(days=1), "daily")
    vault_services.protection_stop(actor=admin, item=stopped, delete_data=False)
    for hours in range(0, 24 * 10, 5):
        assert _dispatch(start + timedelta(hours=hours)) == []
    assert _drills() == []


def test_a_drill_root_beside_the_restores_holds_every_scheduled_drill(
    admin: Any, vault: Vault, tmp_path: Path, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    item = _item(admin, vault, _policy(admin, vault, 1), tmp_path)
    start = datetime(2026, 6, 1, tzinfo=UTC)
    _point(item, start - timedelta(days=1), "daily")
    settings.HOLDFAST_DRILL_ROOT = Path(settings.HOLDFAST_RESTORE_ROOTS[0]) / "drills"
    with caplog.at_level(logging.WARNING, logger="vaults.jobs.drill_schedule"):
        assert _dispatch(start + timedelta(hours=23, minutes=59)) == []
    assert "scheduled drills wait: HOLDFAST_DRILL_ROOT" in caplog.text
    assert not AuditRecord.objects.filter(operation="drill_schedule").exists()


# --- the item page -------------------------------------------------------------------------


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_run_drill_on_the_item_page_then_the_last_drill_shows(
    operator: Any, reader: Any, point: RecoveryPoint
) -> None:
    item_url = reverse("vaults:item", args=[point.vault.name, point.item_id])
    drill_url = reverse("vaults:point-drill", args=[point.vault.name, point.item_id, point.pk])
    page = _client(operator).get(item_url).content.decode()
    assert f'id="drill-{point.pk}"' in page and "Run drill" in page
    assert 'id="item-last-drill"><span class="muted">None yet' in page
    assert f'id="drill-{point.pk}"' not in _client(reader).get(item_url).content.decode()

    assert _client(reader).post(drill_url, headers=HTMX).status_code == 403
    assert not Job.objects.filter(kind=Job.Kind.DRILL).exists()

    answer = _client(operator).post(drill_url, headers=HTMX)
    job = Job.objects.get(kind=Job.Kind.DRILL)
    assert answer.status_code == 204
    assert answer["HX-Redirect"] == reverse("jobs:detail", args=[job.pk])
    assert (job.requested_by, job.recovery_point_id, job.slot) == (operator, point.pk, None)
    done = runner.job_run(job_id=job.pk)
    assert done is not None and done.status == "completed", done and done.error

    again = _client(operator).post(drill_url)  # without htmx: on to the job's page
    assert again.status_code == 302 and again["Location"].startswith("/jobs/")

    page = _client(reader).get(item_url).content.decode()
    point.refresh_from_db()
    assert point.drill is not None
    last = page.split('id="item-last-drill">', 1)[1].split("</dd>", 1)[0]
    assert "Passed" in last and "4 files" in last
    assert re.search(r'class="drill-duration">\d+\.\d s<', last), last
    assert "Drill passed" in page


def test_a_refused_drill_shows_in_the_points_row(operator: Any, point: RecoveryPoint) -> None:
    RecoveryPoint.objects.filter(pk=point.pk).update(tier=RecoveryPoint.Tier.VAULT_ARCHIVE)
    drill_url = reverse("vaults:point-drill", args=[point.vault.name, point.item_id, point.pk])
    answer = _client(operator).post(drill_url, headers=HTMX)
    assert answer.status_code == 409
    body = answer.content.decode()
    assert 'id="point-refusal"' in body and "rehydrate it first" in body
    assert not Job.objects.filter(kind=Job.Kind.DRILL).exists()


# --- the "drill overdue" filter ------------------------------------------------------------


def _passed_drill(item: ProtectedItem, ended: datetime, status: str = "completed") -> None:
    Job.objects.create(
        kind=Job.Kind.DRILL,
        status=status,
        vault=item.vault,
        item=item,
        created_at=ended - timedelta(minutes=5),
        ended_at=ended,
    )


def test_the_items_filter_finds_items_whose_last_good_drill_is_older_than_their_period(
    api: Any, admin: Any, reader: Any, vault: Vault, tmp_path: Path, clock: Any
) -> None:
    now = clock.now()
    weekly = _policy(admin, vault, 7, name="weekly-drill")
    off = _policy(admin, vault, None, name="no-drill")
    names = ["recent", "stale", "never", "new", "off", "failed-lately"]
    items = {
        name: _item(admin, vault, off if name == "off" else weekly, tmp_path, name)
        for name in names
    }
    ProtectedItem.objects.exclude(name="new").update(created_at=now - timedelta(days=60))
    ProtectedItem.objects.filter(name="new").update(created_at=now - timedelta(days=2))
    _passed_drill(items["recent"], now - timedelta(days=3))
    _passed_drill(items["stale"], now - timedelta(days=9))
    _passed_drill(items["failed-lately"], now - timedelta(days=20))
    _passed_drill(items["failed-lately"], now - timedelta(days=1), status="failed")
    _passed_drill(items["off"], now - timedelta(days=90))

    def listed(state: str) -> list[str]:
        answer = api(reader).get(f"/api/v1/vaults/{vault.name}/items/", {"drill": state})
        assert answer.status_code == 200, answer.content
        return sorted(row["name"] for row in answer.json()["results"])

    assert listed("overdue") == ["failed-lately", "never", "stale"]
    assert listed("ok") == ["new", "recent"]
    assert listed("off") == ["off"]
    assert len(listed("")) == len(names)
    bad = api(reader).get(f"/api/v1/vaults/{vault.name}/items/", {"drill": "late"})
    assert bad.status_code == 400

    client = _client(reader)
    page = client.get(reverse("items"), {"drill": "overdue"}).content.decode()
    assert 'name="drill"' in page
    shown = sorted(name for name in names if f">{name}</a>" in page)
    assert shown == ["failed-lately", "never", "stale"]

    # One query for the filtered rows however many items: the subquery is in the SQL.
    with CaptureQueriesContext(connection) as before:
        client.get(reverse("items"), {"drill": "overdue"})
    for n in range(5):
        _item(admin, vault, weekly, tmp_path, f"more-{n}")
    ProtectedItem.objects.filter(name__startswith="more-").update(
        created_at=now - timedelta(days=30)
    )
    with CaptureQueriesContext(connection) as after:
        page = client.get(reverse("items"), {"drill": "overdue"}).content.decode()
    assert ">more-4</a>" in page
    assert len(after.captured_queries) == len(before.captured_queries)
