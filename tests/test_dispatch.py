"""The set-based backup dispatcher (vaults/jobs/dispatch.py, issue 20): statements constant
in the number of items, the slots the schedules say across DST changes and nothing else,
one audit record per tick naming what it created, the same rules as before under the vaults'
locks, racing dispatchers that each create and audit only their own jobs, and one run of
each periodic task at a time."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from policies import rules as policy_rules
from policies import services as policy_services
from portal import clock
from portal.models import AuditRecord
from portal.periodic import LOCK_CLASS, lock_key
from tests.conftest import make_user
from tests.dbroles import postgres_only, tcp_settings
from tests.factories import make_vault
from vaults import services as vault_services
from vaults import tasks
from vaults.jobs import dispatch
from vaults.jobs.schedules import backups_dispatch
from vaults.models import Job, ProtectedItem

SLOT = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)


@pytest.fixture
def queue(settings: Any, worker_id: str) -> str:
    """A queue of this test's own, which no worker reads: sent jobs wait there."""
    settings.HOLDFAST_TASK_QUEUE = f"holdfast-dispatch-{worker_id}-{uuid.uuid4().hex[:8]}"
    return str(settings.HOLDFAST_TASK_QUEUE)


@pytest.fixture
def at_slot() -> Iterator[None]:
    clock.set_now(SLOT + timedelta(seconds=30))
    yield
    clock.set_now(None)


def _policy(admin: Any, vault: Any, name: str = "daily", **fields: Any) -> Any:
    fields.setdefault("daily_days", 30)
    fields.setdefault("time", SLOT.time())
    return policy_services.policy_create(actor=admin, vault=vault, name=name, **fields)


def _items(
    admin: Any, vault: Any, policy: Any, root: Path, count: int, prefix: str = "item"
) -> list[Any]:
    made = []
    for n in range(count):
        source = root / vault.name / f"{prefix}{n}"
        source.mkdir(parents=True, exist_ok=True)
        made.append(
            vault_services.item_protect(
                actor=admin,
                vault=vault,
                name=f"{prefix}{n}",
                source_path=str(source),
                policy=policy,
            )
        )
    return made


def _scheduled(admin: Any, tmp_path: Path, vaults: int, per_vault: int) -> list[Any]:
    items = []
    for v in range(vaults):
        vault = make_vault(admin, name=f"fleet{v}")
        items += _items(admin, vault, _policy(admin, vault), tmp_path, per_vault)
    return items


# --- statements -------------------------------------------------------------------------------


def test_a_tick_runs_the_same_statements_for_3_and_for_43_due_items(
    admin: Any, tmp_path: Path, queue: str, at_slot: None, django_capture_on_commit_callbacks: Any
) -> None:
    _scheduled(admin, tmp_path, vaults=1, per_vault=3)
    with django_capture_on_commit_callbacks() as sent, CaptureQueriesContext(connection) as small:
        assert len(backups_dispatch()) == 3
    # The next day: 40 more items in four more vaults, on policies of another schedule too.
    for v in range(4):
        vault = make_vault(admin, name=f"more{v}")
        weekly = _policy(
            admin, vault, "weekly", frequency="weekly", weekdays=["monday"], weekly_weeks=4
        )
        _items(admin, vault, _policy(admin, vault), tmp_path, 9)
        _items(admin, vault, weekly, tmp_path, 1, prefix="weekly")
    clock.set_now(SLOT + timedelta(days=1, seconds=30))  # Monday 2 March, 22:00
    with CaptureQueriesContext(connection) as large:
        assert len(backups_dispatch()) == 43  # the first three again, and 40 more
    assert len(small) == len(large), [q["sql"][:120] for q in large.captured_queries]
    assert len(small) <= 12
    assert len(sent) == 1  # one callback after commit, sending every job


# --- slots: the schedules' own, across DST changes --------------------------------------------

ZONED = [
    # (policy name, time zone, fields): a daily run that does not exist or happens twice, an
    # enhanced policy every 4 hours, a weekly run in the southern hemisphere.
    ("london-daily", "Europe/London", {"time": datetime(2026, 1, 1, 1, 30).time()}),
    ("london-4h", "Europe/London", {
        "kind": "enhanced", "frequency": "hourly", "interval_hours": 4,
        "window_start": datetime(2026, 1, 1, 0, 0).time(), "window_hours": 24,
        "instant_restore_days": 7,
    }),
    ("newyork-daily", "America/New_York", {"time": datetime(2026, 1, 1, 1, 30).time()}),
    ("sydney-weekly", "Australia/Sydney", {
        "frequency": "weekly", "weekdays": ["sunday"], "weekly_weeks": 4,
        "time": datetime(2026, 1, 1, 2, 30).time(),
    }),
]  # fmt: skip


@pytest.mark.parametrize(
    "start",
    [
        datetime(2026, 3, 28, 12, 0, tzinfo=UTC),  # Europe springs forward on the 29th
        datetime(2026, 4, 4, 6, 0, tzinfo=UTC),  # Sydney falls back on the 5th
        datetime(2026, 10, 31, 12, 0, tzinfo=UTC),  # New York falls back on 1 November
    ],
)
def test_ticks_across_a_dst_change_create_exactly_the_scheduled_slots(
    admin: Any, tmp_path: Path, queue: str, start: datetime
) -> None:
    vault = make_vault(admin, name="zones")
    items = {}
    for name, zone, fields in ZONED:
        policy = _policy(admin, vault, name, timezone=zone, **fields)
        (items[name],) = _items(admin, vault, policy, tmp_path, 1, prefix=name)
    ticks = [start + timedelta(minutes=15 * n, seconds=20) for n in range(4 * 48)]
    try:
        for tick in ticks:
            clock.set_now(tick)
            backups_dispatch()
    finally:
        clock.set_now(None)
    first = ticks[0] - dispatch.DISPATCH_LOOKBACK + timedelta(microseconds=1)
    expected = set()
    for item in items.values():
        schedule = item.policy.schedule()
        for slot in policy_rules.scheduled_slots(schedule, first, ticks[-1]):
            expected.add((item.name, slot, dispatch._backup_tier(schedule, slot)))
    jobs = Job.objects.filter(kind="backup").select_related("item")
    made = [(job.item.name, job.slot, job.params["tier"]) for job in jobs]
    assert sorted(made) == sorted(expected)
    assert {params["on_demand"] for params in jobs.values_list("params", flat=True)} == {False}
    assert any(tier == "snapshot" for _, _, tier in made)  # the enhanced intra-day runs


# --- the audit record --------------------------------------------------------------------------


def test_one_audit_record_per_tick_names_every_job_and_none_when_it_created_none(
    admin: Any, tmp_path: Path, queue: str, at_slot: None
) -> None:
    items = _scheduled(admin, tmp_path, vaults=2, per_vault=2)
    jobs = backups_dispatch()
    (record,) = AuditRecord.objects.filter(operation="backup_dispatch")
    assert record.outcome == "allowed" and record.actor_name == "holdfast"
    assert record.after["created"] == 4
    assert record.after["columns"] == ["job", "vault", "item", "slot", "tier"]
    assert sorted(record.after["jobs"]) == sorted(
        [job.pk, item.vault.name, item.name, SLOT.isoformat(), "snapshot_and_vault"]
        for job, item in zip(sorted(jobs, key=lambda j: j.item_id), items, strict=True)
    )
    # The same tick again finds every job there: it did nothing, so it says nothing.
    assert backups_dispatch() == []
    clock.advance(timedelta(minutes=20))
    assert backups_dispatch() == []
    assert AuditRecord.objects.filter(operation="backup_dispatch").count() == 1
    assert not AuditRecord.objects.filter(operation="backup_schedule").exists()


# --- the rules ---------------------------------------------------------------------------------


def test_only_protected_items_get_jobs(
    admin: Any, tmp_path: Path, queue: str, at_slot: None
) -> None:
    vault = make_vault(admin, name="states")
    policy = _policy(admin, vault)
    kept, stopped, deleted = _items(admin, vault, policy, tmp_path, 3)
    vault_services.protection_stop(actor=admin, item=stopped, delete_data=False)
    vault_services.protection_stop(actor=admin, item=deleted, delete_data=True)
    deleted.refresh_from_db()
    assert deleted.protection_state == "soft_deleted"
    # A replica item (its points arrive by copy jobs) is never backed up, even if protected.
    ProtectedItem.objects.create(
        vault=vault, name="copied", source_kind="replica", source_path="source-vault", policy=policy
    )
    assert [job.item_id for job in backups_dispatch()] == [kept.pk]
    assert Job.objects.count() == 1


def _waiting_on_a_lock(thread: threading.Thread, timeout: float = 60.0) -> None:
    """Bounded polling until another backend of this database waits on a row lock (or the
    tick ended without waiting, which the caller's asserts then explain)."""
    deadline = time.monotonic() + timeout
    user = connection.settings_dict["USER"]
    # Autocommit: inside one transaction pg_stat_activity answers the same snapshot each time.
    with psycopg.connect(**tcp_settings(), user=user, autocommit=True) as watcher:
        while time.monotonic() < deadline and thread.is_alive():
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            ).fetchone()
            if waiting and waiting[0]:
                return
            time.sleep(0.05)
    if thread.is_alive():
        raise AssertionError("the dispatcher never waited for the vault's lock")


# What the gate's services do to an item or a vault, under the vault's row lock: run here as
# the service's transaction would, holding that lock while the tick waits for it.
CHANGES = {
    "soft_delete": ["UPDATE vaults_protecteditem SET protection_state = 'soft_deleted', "
                    "soft_deleted_at = now() WHERE vault_id = %(vault)s"],
    "stop": ["UPDATE vaults_protecteditem SET protection_state = 'protection_stopped', "
             "stopped_at = now() WHERE vault_id = %(vault)s"],
    "vault_deleted": ["DELETE FROM vaults_protecteditem WHERE vault_id = %(vault)s",
                      "DELETE FROM policies_policy WHERE vault_id = %(vault)s",
                      "DELETE FROM vaults_vault WHERE id = %(vault)s"],
}  # fmt: skip


@postgres_only
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_an_item_changed_while_a_tick_waits_for_its_vault_gets_no_job(
    transactional_db: None, tmp_path: Path, queue: str, at_slot: None, change: str
) -> None:
    admin = make_user("alice", "backup_admin")
    changing = make_vault(admin, name="changing")
    _items(admin, changing, _policy(admin, changing), tmp_path, 2)
    steady = make_vault(admin, name="steady")
    (kept,) = _items(admin, steady, _policy(admin, steady), tmp_path, 1)
    result: dict[str, Any] = {}

    def tick() -> None:
        try:
            result["jobs"] = backups_dispatch()
        except BaseException as exc:  # pragma: no cover - reported below
            result["error"] = exc
        finally:
            connection.close()

    user = connection.settings_dict["USER"]
    with psycopg.connect(**tcp_settings(), user=user) as service:
        service.execute("SELECT id FROM vaults_vault WHERE id = %s FOR UPDATE", [changing.pk])
        for statement in CHANGES[change]:
            service.execute(statement, {"vault": changing.pk})
        thread = threading.Thread(target=tick)
        thread.start()
        try:
            _waiting_on_a_lock(thread)  # the tick read the items as protected, and waits
        finally:
            service.commit()
            thread.join(timeout=60)
    assert "error" not in result, result.get("error")
    assert [job.item_id for job in result["jobs"]] == [kept.pk]
    assert list(Job.objects.values_list("item_id", flat=True)) == [kept.pk]
    (record,) = AuditRecord.objects.filter(operation="backup_dispatch")
    assert [row[1:3] for row in record.after["jobs"]] == [["steady", "item0"]]


# --- racing dispatchers ------------------------------------------------------------------------


@postgres_only
def test_racing_dispatchers_create_each_job_once_and_audit_only_their_own(
    transactional_db: None, tmp_path: Path, queue: str, at_slot: None
) -> None:
    admin = make_user("alice", "backup_admin")
    items = _scheduled(admin, tmp_path, vaults=3, per_vault=4)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []
    created: list[list[int]] = []

    def tick() -> None:
        try:
            barrier.wait()
            created.append([job.pk for job in backups_dispatch()])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    jobs = Job.objects.filter(kind="backup")
    assert sorted(jobs.values_list("item_id", "slot")) == [(item.pk, SLOT) for item in items]
    assert sorted(pk for mine in created for pk in mine) == sorted(
        jobs.values_list("pk", flat=True)
    )
    records = AuditRecord.objects.filter(operation="backup_dispatch")
    # One record per tick that created something, naming exactly the jobs that tick created.
    assert sorted(sorted(row[0] for row in r.after["jobs"]) for r in records) == sorted(
        sorted(mine) for mine in created if mine
    )
    assert all(r.after["created"] == len(r.after["jobs"]) > 0 for r in records)


@postgres_only
def test_the_app_role_cannot_insert_or_rename_a_second_job_for_an_item_slot(
    as_app: psycopg.Connection, tmp_path: Path, queue: str, at_slot: None
) -> None:
    admin = make_user("alice", "backup_admin")
    (item,) = _scheduled(admin, tmp_path, vaults=1, per_vault=1)
    assert len(backups_dispatch()) == 1
    insert = (
        "INSERT INTO vaults_job (kind, status, vault_id, item_id, slot, params, created_at, "
        "heartbeat_at, bytes_done, bytes_total, files_done, files_total, error, worker, host) "
        "VALUES ('backup', 'queued', %s, %s, %s, '{}', now(), now(), 0, 0, 0, 0, '', '', '')"
    )
    with pytest.raises(psycopg.errors.UniqueViolation):
        as_app.execute(insert, [item.vault_id, item.pk, SLOT])
    # A job of another slot (or an on-demand one) moved onto the taken slot: refused alike.
    as_app.execute(insert, [item.vault_id, item.pk, SLOT - timedelta(days=1)])
    with pytest.raises(psycopg.errors.UniqueViolation):
        as_app.execute(
            "UPDATE vaults_job SET slot = %s WHERE item_id = %s AND slot = %s",
            [SLOT, item.pk, SLOT - timedelta(days=1)],
        )
    assert Job.objects.filter(item=item, slot=SLOT).count() == 1
    assert backups_dispatch() == []


# --- one run at a time -------------------------------------------------------------------------

PERIODIC = {
    "dispatch_backups": 0,
    "sweep_jobs": 0,
    "sweep_points": "skipped",
    "sweep_storage": "skipped",
    "schedule_tier_moves": 0,
    "schedule_verifications": 0,
    "schedule_drills": 0,
    "replicate": 0,
    "report_email": "skipped",
}


@contextlib.contextmanager
def _held_elsewhere(name: str) -> Iterator[None]:
    """Another session (another worker's run) holding the task's lock for the block."""
    user = connection.settings_dict["USER"]
    with psycopg.connect(**tcp_settings(), user=user, autocommit=True) as other:
        assert other.execute(
            "SELECT pg_try_advisory_lock(%s, %s)", [LOCK_CLASS, lock_key(name)]
        ).fetchone() == (True,)
        yield
        # Let go before closing: a closed session's locks end only once its server exits.
        other.execute("SELECT pg_advisory_unlock_all()")


@postgres_only
@pytest.mark.parametrize("task", sorted(PERIODIC))
def test_a_periodic_task_skips_while_another_run_holds_its_lock(db: None, task: str) -> None:
    with _held_elsewhere(f"holdfast.{task}"):
        assert getattr(tasks, task).apply().get() == PERIODIC[task]


@postgres_only
def test_an_overlapping_dispatch_skips_and_the_next_one_does_the_work(
    admin: Any, tmp_path: Path, queue: str, at_slot: None
) -> None:
    _scheduled(admin, tmp_path, vaults=1, per_vault=2)
    with _held_elsewhere("holdfast.dispatch_backups"):
        assert tasks.dispatch_backups.apply().get() == 0
        assert not Job.objects.exists()
    assert tasks.dispatch_backups.apply().get() == 2
    # The run let its lock go: another session takes it at once.
    with _held_elsewhere("holdfast.dispatch_backups"):
        pass
