"""Jobs end to end: a real Celery worker on real Redis, real PostgreSQL, a real filesystem.

The worker runs in this process (celery.contrib.testing) on a queue of its own, so the
pytest-xdist workers never take each other's messages. Time is injected with the clock;
the only waiting is bounded polling for the worker to finish a job.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection
from django.urls import include, path

from policies import services as policy_services
from portal import clock
from portal import services as portal_services
from portal import urls as portal_urls
from portal.celery import app
from portal.gate import DomainError
from portal.models import Alert, Approval
from tests.conftest import api_client_for, make_user
from tests.factories import make_vault
from vaults import locations, tasks
from vaults import services as vault_services
from vaults.jobs import requests, runner, schedules, sweeps
from vaults.models import Job, ProtectedItem, RecoveryPoint

# 2026-03-01 is a Sunday; 22:00 UTC is the standard policies' run time below.
SLOT = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)


# --- fixtures and helpers (test_worker.py shares them) --------------------------------------


@pytest.fixture
def storage(settings: Any, tmp_path: Path, worker_id: str) -> Path:
    settings.HOLDFAST_STORAGE_ROOT = tmp_path / "storage"
    settings.HOLDFAST_RESTORE_ROOTS = [tmp_path / "restores"]
    settings.HOLDFAST_TASK_QUEUE = f"holdfast-test-{worker_id}-{uuid.uuid4().hex[:8]}"
    settings.HOLDFAST_JOB_HEARTBEAT_SECONDS = 0.2
    (tmp_path / "restores").mkdir()
    return tmp_path


@pytest.fixture
def frozen() -> Iterator[Any]:
    clock.set_now(SLOT + timedelta(seconds=30))
    yield clock
    clock.set_now(None)


@pytest.fixture
def worker(storage: Path, settings: Any) -> Iterator[Any]:
    with start_worker(
        app,
        pool="solo",
        perform_ping_check=False,
        queues=[settings.HOLDFAST_TASK_QUEUE],
        loglevel="WARNING",
        shutdown_timeout=30,
    ) as running:
        yield running


@pytest.fixture
def people(transactional_db: None) -> dict[str, Any]:
    return {"admin": make_user("alice", "backup_admin"), "operator": make_user("oscar", "operator")}


def wait_for(*job_ids: int, timeout: float = 60.0) -> list[Job]:
    """Bounded polling until the worker has finished every job (not a schedule wait)."""
    deadline = time.monotonic() + timeout
    while True:
        found = list(Job.objects.filter(pk__in=job_ids).order_by("pk"))
        if len(found) == len(job_ids) and all(job.is_finished for job in found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs not finished in {timeout}s: {found}")
        time.sleep(0.05)


def write_tree(root: Path, seed: int = 0) -> Path:
    """Empty files, a large file, duplicates, unicode names, symlinks and deep nesting."""
    root.mkdir(parents=True, exist_ok=True)
    rng = __import__("random").Random(seed)
    (root / "empty.txt").write_bytes(b"")
    (root / "large.bin").write_bytes(rng.randbytes(3 * 1024 * 1024 + 17))
    (root / "copy-of-large.bin").write_bytes((root / "large.bin").read_bytes())
    (root / "données été 📦.txt").write_text("unicode names survive\n", encoding="utf-8")
    deep = root.joinpath(*[f"level{i}" for i in range(12)])
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_text("deep\n")
    for i in range(40):
        (root / f"small-{i:02d}.cfg").write_bytes(rng.randbytes(rng.randrange(1, 9000)))
    os.symlink("large.bin", root / "link-to-large")
    os.symlink("../outside/nowhere", root / "dangling")
    (root / "exec.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "exec.sh", 0o750)
    return root


def tree_of(root: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                found[rel] = ("dir", path.stat().st_mode & 0o777)
            else:
                found[rel] = ("file", path.read_bytes(), path.stat().st_mode & 0o777)
    return found


def protect(admin: Any, vault: Any, source: Path, name: str = "docs", **policy: Any) -> Any:
    policy.setdefault("daily_days", 30)
    policy.setdefault("time", SLOT.time())
    made = policy_services.policy_create(
        actor=admin, vault=vault, name=policy.pop("policy_name", f"p-{name}"), **policy
    )
    return vault_services.item_protect(
        actor=admin, vault=vault, name=name, source_path=str(source), policy=made
    )


def backup_now(item: ProtectedItem, actor: Any = None, **kwargs: Any) -> RecoveryPoint:
    """An on-demand backup through the worker; returns its point."""
    job = requests.backup_request(actor=actor or make_actor(), item=item, **kwargs)
    (done,) = wait_for(job.pk)
    assert done.status == "completed", done.error
    assert done.recovery_point is not None
    return done.recovery_point


def make_actor() -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username="oscar")


# --- the dispatcher -------------------------------------------------------------------------


def test_two_dispatchers_racing_create_exactly_one_backup_per_slot(
    people: dict[str, Any], storage: Path, worker: Any, frozen: Any
) -> None:
    admin = people["admin"]
    vault = make_vault(admin, name="race")
    items = [
        protect(admin, vault, write_tree(storage / f"src{i}", i), f"item{i}") for i in range(3)
    ]
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def dispatch() -> None:
        try:
            barrier.wait()
            schedules.backups_dispatch()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # A retried or duplicated dispatcher task (a second beat) changes nothing either.
    tasks.dispatch_backups.apply()
    tasks.dispatch_backups.apply()

    backups = Job.objects.filter(kind="backup")
    assert sorted(backups.values_list("item__name", "slot")) == [
        (item.name, SLOT) for item in items
    ]
    done = wait_for(*backups.values_list("pk", flat=True))
    assert {job.status for job in done} == {"completed"}
    assert RecoveryPoint.objects.count() == 3
    point = RecoveryPoint.objects.get(item=items[0])
    assert point.tier == "snapshot_and_vault"
    assert point.snapshot_expires_at == point.created_at + timedelta(days=2)
    assert point.storage_key and point.digest and point.logical_bytes > 6 * 1024 * 1024


def test_enhanced_policy_makes_snapshots_intra_day_and_a_vault_point_at_the_last_run(
    people: dict[str, Any], storage: Path, worker: Any, frozen: Any
) -> None:
    admin = people["admin"]
    vault = make_vault(admin, name="enhanced")
    item = protect(
        admin,
        vault,
        write_tree(storage / "src"),
        kind="enhanced",
        frequency="hourly",
        interval_hours=12,
        window_start=datetime(2026, 1, 1, 10, 0).time(),
        window_hours=24,
        instant_restore_days=7,
    )
    clock.set_now(datetime(2026, 3, 2, 10, 0, 5, tzinfo=UTC))  # first run of the day
    (first,) = schedules.backups_dispatch()
    wait_for(first.pk)
    clock.set_now(datetime(2026, 3, 2, 22, 0, 5, tzinfo=UTC))  # last run of the window
    (last,) = schedules.backups_dispatch()
    wait_for(last.pk)
    tiers = dict(item.recovery_points.values_list("created_at__hour", "tier"))
    assert tiers == {10: "snapshot", 22: "snapshot_and_vault"}
    snapshot = item.recovery_points.get(tier="snapshot")
    assert snapshot.expires_at == snapshot.created_at + timedelta(days=7)


def test_stale_running_job_is_failed_and_the_next_slot_runs(
    people: dict[str, Any], storage: Path, frozen: Any
) -> None:
    admin = people["admin"]
    item = protect(admin, make_vault(admin, name="stale"), write_tree(storage / "src"))
    (job,) = schedules.backups_dispatch()
    assert runner.job_claim(job_id=job.pk) is not None  # a worker claimed it, then died
    assert runner.job_claim(job_id=job.pk) is None  # nobody claims it twice
    clock.advance(timedelta(minutes=4))
    assert sweeps.jobs_fail_stale() == 0
    clock.advance(timedelta(minutes=2))
    assert sweeps.jobs_fail_stale() == 1
    job.refresh_from_db()
    assert job.status == "failed" and "stopped responding" in job.error
    assert not item.recovery_points.exists()
    assert Alert.objects.get(kind="backup_failed").target == f"item:{item.name}"

    clock.set_now(SLOT + timedelta(days=1, seconds=10))
    (next_job,) = schedules.backups_dispatch()
    assert runner.job_run(job_id=next_job.pk).status == "completed"
    assert item.recovery_points.count() == 1


# --- backup, restore, dedup -----------------------------------------------------------------


def test_backup_then_restore_is_byte_identical(
    people: dict[str, Any], storage: Path, worker: Any
) -> None:
    admin, operator = people["admin"], people["operator"]
    source = write_tree(storage / "src")
    item = protect(admin, make_vault(admin, name="restore"), source)
    point = backup_now(item, operator)
    target = storage / "restores" / "whole"
    job = requests.restore_request(actor=operator, point=point, target_path=str(target))
    (done,) = wait_for(job.pk)
    assert done.status == "completed", done.error
    assert done.bytes_done == done.bytes_total == point.logical_bytes
    assert tree_of(target) == tree_of(source)

    sub = requests.restore_request(
        actor=operator, point=point, target_path=str(storage / "restores" / "one"),
        sub_path="level0/level1",
    )  # fmt: skip
    wait_for(sub.pk)
    assert tree_of(storage / "restores" / "one" / "level1") == tree_of(source / "level0/level1")

    # The point's files can be browsed in the dashboard, folder by folder.
    from django.test import Client

    browser = Client()
    browser.force_login(make_user("rita", "reader"))
    url = f"/vaults/restore/items/{item.pk}/points/{point.pk}/browse/"
    top = browser.get(url).content.decode()
    assert "level0/" in top
    nested = browser.get(url, {"path": "level0"}).content.decode()
    assert "level1/" in nested
    assert browser.get(url, {"path": "no/such"}).status_code == 404

    again = requests.restore_request(actor=operator, point=point, target_path=str(target))
    (refused,) = wait_for(again.pk)
    assert refused.status == "failed" and "overwrite" in refused.error
    alert = Alert.objects.get(kind="restore_failed")
    assert alert.target == "item:docs" and f"#{refused.pk}" in alert.message


def test_restore_outside_the_restore_roots_is_refused(
    people: dict[str, Any], storage: Path, frozen: Any
) -> None:
    admin, operator = people["admin"], people["operator"]
    item = protect(admin, make_vault(admin, name="roots"), write_tree(storage / "src"))
    point = vault_services.point_record(item=item)
    for target in (str(storage / "elsewhere"), "relative/path", "/etc"):
        with pytest.raises(DomainError) as refused:
            requests.restore_request(actor=operator, point=point, target_path=target)
        assert refused.value.code == "validation_error"
        assert refused.value.field == "target_path"
    assert not Job.objects.exists()


def test_second_backup_of_unchanged_data_stores_almost_nothing_new(
    people: dict[str, Any], storage: Path, worker: Any
) -> None:
    admin = people["admin"]
    source = write_tree(storage / "src")
    item = protect(admin, make_vault(admin, name="dedup"), source)
    first = backup_now(item, people["operator"])
    second = backup_now(item, people["operator"])
    assert first.logical_bytes == second.logical_bytes
    assert first.stored_bytes > 3 * 1024 * 1024
    assert second.stored_bytes < first.stored_bytes / 100
    assert second.storage_key != first.storage_key


def test_a_reader_cannot_start_a_backup_and_a_stopped_item_refuses(
    people: dict[str, Any], storage: Path
) -> None:
    admin = people["admin"]
    item = protect(admin, make_vault(admin, name="roles"), write_tree(storage / "src"))
    with pytest.raises(DomainError) as refused:
        requests.backup_request(actor=make_user("rita", "reader"), item=item)
    assert refused.value.code == "permission_denied"
    vault_services.protection_stop(actor=admin, item=item, delete_data=False)
    item.refresh_from_db()
    with pytest.raises(DomainError) as stopped:
        requests.backup_request(actor=people["operator"], item=item)
    assert "resume protection" in stopped.value.detail


# --- verification, archive ------------------------------------------------------------------


def test_verification_finds_a_corrupted_chunk_and_marks_the_point(
    people: dict[str, Any], storage: Path, worker: Any
) -> None:
    admin, operator = people["admin"], people["operator"]
    item = protect(admin, make_vault(admin, name="verify"), write_tree(storage / "src"))
    point = backup_now(item, operator)
    (ok,) = wait_for(requests.verify_request(actor=operator, point=point).pk)
    assert ok.status == "completed"
    point.refresh_from_db()
    assert point.verified_at is not None and point.corrupted_at is None

    chunk = sorted((storage / "storage/vaults/verify/chunks").rglob("*"), key=str)[-1]
    assert chunk.is_file()
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))

    (bad,) = wait_for(requests.verify_request(actor=operator, point=point).pk)
    assert bad.status == "failed"
    assert "1 corrupt and 0 missing chunk(s)" in bad.error and "marked corrupt" in bad.error
    point.refresh_from_db()
    assert point.corrupted_at is not None and chunk.name in point.corruption
    alert = Alert.objects.get(kind="corruption_found")
    assert alert.vault_name == "verify" and alert.target == f"point:{point.pk}"


def test_a_point_moved_to_archive_restores_after_rehydration(
    people: dict[str, Any], storage: Path, worker: Any, frozen: Any
) -> None:
    admin, operator = people["admin"], people["operator"]
    source = write_tree(storage / "src")
    clock.set_now(datetime(2026, 3, 1, 22, 0, 10, tzinfo=UTC))  # monthly_day 1: a monthly point
    item = protect(
        admin,
        make_vault(admin, name="archive", immutability="enabled"),
        source,
        monthly_months=12,
        tiering_mode="after",
        tiering_after_days=90,
    )
    (job,) = schedules.backups_dispatch()
    wait_for(job.pk)
    point = item.recovery_points.get()
    assert "monthly" in point.tags
    expires_at = point.expires_at

    clock.advance(timedelta(days=89))
    assert schedules.tier_moves_schedule() == []
    clock.advance(timedelta(days=2))
    (move,) = schedules.tier_moves_schedule()
    assert wait_for(move.pk)[0].status == "completed"
    point.refresh_from_db()
    assert point.tier == "vault_archive" and point.expires_at == expires_at
    assert not locations.vault_store(point.vault).has_point(point.storage_key)

    target = storage / "restores" / "from-archive"
    with pytest.raises(DomainError) as refused:
        requests.restore_request(actor=operator, point=point, target_path=str(target))
    assert refused.value.code == "point_archived" and "rehydrate it first" in refused.value.detail

    (rehydrated,) = wait_for(requests.rehydrate_request(actor=operator, point=point, days=10).pk)
    assert rehydrated.status == "completed", rehydrated.error
    point.refresh_from_db()
    assert point.tier == "vault_archive" and point.is_rehydrated(clock.now())
    (restored,) = wait_for(
        requests.restore_request(actor=operator, point=point, target_path=str(target)).pk
    )
    assert restored.status == "completed", restored.error
    assert tree_of(target) == tree_of(source)

    # Ten days later the rehydrated copy goes; the archive copy stays.
    clock.advance(timedelta(days=10, minutes=1))
    assert sweeps.points_sweep()["ended_rehydrations"] == 1
    point.refresh_from_db()
    assert point.rehydrated_until is None
    assert not locations.vault_store(point.vault).has_point(point.storage_key)
    assert locations.archive_store(point.vault).has_point(point.storage_key)


# --- sweeps ---------------------------------------------------------------------------------


def test_expired_point_is_swept_with_its_chunks_while_an_unexpired_immutable_point_survives(
    people: dict[str, Any], storage: Path, worker: Any
) -> None:
    admin, operator = people["admin"], people["operator"]
    vault = make_vault(admin, name="sweep", immutability="enabled")
    old_source = write_tree(storage / "old", seed=1)
    new_source = write_tree(storage / "new", seed=2)
    old_item = protect(admin, vault, old_source, "old", daily_days=7)
    new_item = protect(admin, vault, new_source, "new", daily_days=7)
    # The old point is taken 30 days ago (expired a week later); the new one now.
    clock.set_now(datetime.now(UTC) - timedelta(days=30))
    try:
        old = backup_now(old_item, operator)
    finally:
        clock.set_now(None)
    new = backup_now(new_item, operator)
    store = locations.vault_store(vault)
    before = store.stored_bytes()

    with pytest.raises(DomainError) as refused:  # a person still may not delete the new one
        vault_services.point_delete(actor=admin, point=new)
    assert refused.value.code == "immutable_vault"

    for _ in range(2):
        assert tasks.sweep_points.apply().get() == "completed"
        assert tasks.sweep_storage.apply().get() == "completed"

    assert not RecoveryPoint.objects.filter(pk=old.pk).exists()
    assert store.points() == [new.storage_key]
    assert store.verify(new.storage_key).ok
    assert store.stored_bytes() < before - 3 * 1024 * 1024  # the old tree's unique chunks
    sweeps = Job.objects.filter(kind="sweep").order_by("pk")
    assert sweeps[0].params["report"]["expired_points"] == 1
    assert sweeps[1].params["report"]["deleted_chunks"] > 0
    (restored,) = wait_for(
        requests.restore_request(
            actor=operator, point=new, target_path=str(storage / "restores" / "new")
        ).pk
    )
    assert restored.status == "completed"
    assert tree_of(storage / "restores" / "new") == tree_of(new_source)


def test_expired_pending_approvals_are_closed_by_the_sweep(
    people: dict[str, Any], frozen: Any
) -> None:
    admin = people["admin"]
    vault = make_vault(admin, name="approvals")
    approval = vault_services.immutability_lock_request(
        actor=admin, vault=vault, confirmation="approvals"
    )
    assert portal_services.approvals_expire() == 0
    clock.advance(timedelta(hours=24, seconds=1))
    assert portal_services.approvals_expire() == 1
    approval.refresh_from_db()
    assert approval.status == Approval.Status.EXPIRED
    assert portal_services.approvals_expire() == 0


def test_orphan_manifest_without_a_point_row_is_removed(
    people: dict[str, Any], storage: Path, frozen: Any
) -> None:
    admin = people["admin"]
    vault = make_vault(admin, name="orphans")
    source = write_tree(storage / "src")
    protect(admin, vault, source)
    locations.vault_store(vault).backup(source, "rp-crashed-before-its-row")
    assert sweeps.storage_sweep()["orphan_manifests"] == 1
    assert locations.vault_store(vault).points() == []


# --- API ------------------------------------------------------------------------------------
# portal/urls.py includes these too; the tests name them so they run before it does.
urlpatterns = [
    path("api/v1/", include("vaults.jobs.api_urls")),
    path("jobs/", include("vaults.jobs.urls")),
    *portal_urls.urlpatterns,
]


@pytest.mark.urls(__name__)
def test_api_backup_and_restore_answer_202_with_the_job_and_jobs_filter(
    people: dict[str, Any], storage: Path, worker: Any
) -> None:
    admin, operator = people["admin"], people["operator"]
    source = write_tree(storage / "src")
    protect(admin, make_vault(admin, name="api-vault"), source)
    client = api_client_for(operator)
    response = client.post(
        "/api/v1/vaults/api-vault/items/docs/backup/",
        {"retain_until": (datetime.now(UTC) + timedelta(days=90)).isoformat()},
        format="json",
    )
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["kind"] == "backup" and body["vault"] == "api-vault" and body["item"] == "docs"
    (job,) = wait_for(body["id"])
    assert job.recovery_point.on_demand

    detail = client.get(f"/api/v1/jobs/{job.pk}/").json()
    assert detail["status"] == "completed" and detail["recovery_point"] == job.recovery_point_id
    listed = client.get("/api/v1/jobs/", {"vault": "api-vault", "kind": "backup"}).json()
    assert listed["count"] == 1
    assert client.get("/api/v1/jobs/", {"status": "failed"}).json()["count"] == 0

    url = f"/api/v1/vaults/api-vault/items/docs/recovery-points/{job.recovery_point_id}/restore/"
    outside = client.post(url, {"target_path": "/etc/holdfast"}, format="json")
    assert outside.status_code == 400 and outside.json()["code"] == "validation_error"
    inside = client.post(url, {"target_path": str(storage / "restores" / "api")}, format="json")
    assert inside.status_code == 202
    (restored,) = wait_for(inside.json()["id"])
    assert restored.status == "completed"
    point_url = url.removesuffix("restore/")
    verify = client.post(point_url + "verify/")
    assert verify.status_code == 202 and verify.json()["kind"] == "verify"
    (verified,) = wait_for(verify.json()["id"])
    assert verified.status == "completed"
    not_archived = client.post(point_url + "rehydrate/", {"days": 15}, format="json")
    assert (not_archived.status_code, not_archived.json()["code"]) == (400, "validation_error")
    bad_days = client.post(point_url + "rehydrate/", {"days": "soon"}, format="json")
    assert (bad_days.status_code, bad_days.json()["field"]) == (400, "days")
    reader = api_client_for(make_user("rita", "reader"))
    assert reader.post(url, {"target_path": str(storage / "restores" / "x")}).status_code == 403


# --- pages ----------------------------------------------------------------------------------


@pytest.mark.urls(__name__)
def test_jobs_page_lists_jobs_and_progress_polling_stops_when_the_job_ends(
    people: dict[str, Any], storage: Path, client: Any, frozen: Any
) -> None:
    admin = people["admin"]
    protect(admin, make_vault(admin, name="pages"), write_tree(storage / "src"))
    (job,) = schedules.backups_dispatch()
    client.force_login(people["operator"])
    page = client.get("/jobs/", {"status": "queued"})
    assert page.status_code == 200 and b"pages" in page.content
    polling = client.get(f"/jobs/{job.pk}/progress/", headers={"HX-Request": "true"})
    assert polling.status_code == 200 and b'hx-trigger="every' in polling.content
    runner.job_run(job_id=job.pk)
    finished = client.get(f"/jobs/{job.pk}/progress/", headers={"HX-Request": "true"})
    assert finished.status_code == 286  # HttpResponseStopPolling
    assert b"Completed" in finished.content and b"hx-trigger" not in finished.content
    detail = client.get(f"/jobs/{job.pk}/")
    assert detail.status_code == 200 and b"Completed" in detail.content


@pytest.mark.urls(__name__)
def test_on_demand_backup_and_restore_forms(
    people: dict[str, Any], storage: Path, client: Any
) -> None:
    admin = people["admin"]
    item = protect(admin, make_vault(admin, name="forms"), write_tree(storage / "src"))
    client.force_login(people["operator"])
    assert client.get(f"/jobs/items/{item.pk}/backup/").status_code == 200
    response = client.post(f"/jobs/items/{item.pk}/backup/", {"retain_until": ""})
    job = Job.objects.get(kind="backup")
    assert response.status_code == 302 and response["Location"].endswith(f"/jobs/{job.pk}/")
    runner.job_run(job_id=job.pk)
    job.refresh_from_db()
    url = f"/jobs/points/{job.recovery_point_id}/restore/"
    # The form offers the allowed restore roots; a forged root is a form error.
    refused = client.post(url, {"root": "/etc", "folder": "nope"})
    assert refused.status_code == 400 and b"Select a valid choice" in refused.content
    ok = client.post(url, {"root": str(storage / "restores"), "folder": "form"})
    assert ok.status_code == 302
    client.force_login(make_user("rita", "reader"))
    assert client.post(f"/jobs/items/{item.pk}/backup/", {}).status_code == 403


# --- the periodic schedule ------------------------------------------------------------------


def test_the_beat_schedule_names_registered_idempotent_tasks_and_loads_into_the_database(
    transactional_db: None,
) -> None:
    from django_celery_beat.models import PeriodicTask
    from django_celery_beat.schedulers import DatabaseScheduler

    from portal.schedule import CELERY_BEAT_SCHEDULE

    app.loader.import_default_modules()
    for entry in CELERY_BEAT_SCHEDULE.values():
        task = app.tasks[entry["task"]]
        assert task.acks_late and entry["options"]["expires"]
    previous = app.conf.beat_schedule
    app.conf.beat_schedule = CELERY_BEAT_SCHEDULE  # what settings' import does
    try:
        DatabaseScheduler(app=app, lazy=False)
    finally:
        app.conf.beat_schedule = previous
    assert set(CELERY_BEAT_SCHEDULE) <= set(PeriodicTask.objects.values_list("name", flat=True))
