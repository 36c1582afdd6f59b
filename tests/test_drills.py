"""Restore drills on demand (SPEC 3.12): a point restored into scratch under the drill root,
re-hashed against its manifest, recorded on the point and removed; on a real Celery worker
(in this process, and a ``celery worker`` subprocess killed with SIGKILL mid-drill), real
PostgreSQL and real files.
"""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from portal import clock
from portal.gate import DomainError
from portal.models import Alert, AuditRecord
from tests.factories import make_vault
from tests.point_world import point_fixture, stores_fixture  # noqa: F401  (fixtures)
from tests.test_jobs import (  # noqa: F401  (fixtures)
    backup_now,
    people,
    protect,
    storage,
    wait_for,
    worker,
    write_tree,
)
from tests.test_replica_workers import _poll
from tests.test_worker import worker_process  # noqa: F401  (fixture)
from vaults import locations
from vaults.jobs import requests, runner, sweeps
from vaults.models import Job, RecoveryPoint
from vaults.storage.chunks import chunk_key


def _scratch() -> list[str]:
    root = Path(settings.HOLDFAST_DRILL_ROOT)
    return sorted(os.listdir(root)) if root.exists() else []


def test_a_drill_of_a_good_point_passes_with_the_points_counts_and_leaves_no_scratch(
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    worker: Any,  # noqa: F811
) -> None:
    admin, operator = people["admin"], people["operator"]
    item = protect(admin, make_vault(admin, name="drills"), write_tree(storage / "src"))
    point = backup_now(item, operator)
    manifest = locations.vault_store(point.vault).manifest(point.storage_key)

    (job,) = wait_for(requests.drill_request(actor=operator, point=point).pk)
    assert (job.kind, job.status) == ("drill", "completed"), job.error
    point.refresh_from_db()
    drill = point.drill
    assert drill is not None and drill["status"] == "passed"
    assert drill["files"] == manifest.file_count == 46
    assert drill["bytes"] == point.logical_bytes == manifest.logical_bytes > 6 * 1024 * 1024
    assert drill["seconds"] > 0 and datetime.fromisoformat(drill["at"]).tzinfo is not None
    assert (job.bytes_done, job.files_done) == (point.logical_bytes, 46)
    assert _scratch() == []
    assert not Alert.objects.filter(kind="drill_failed").exists()
    started = AuditRecord.objects.get(operation="drill_start")
    assert started.outcome == "allowed" and started.target == f"point:{point.pk}"
    assert AuditRecord.objects.get(operation="point_drill_record").outcome == "allowed"


def test_a_drill_of_a_point_with_a_corrupted_chunk_fails_naming_the_first_bad_file(
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    worker: Any,  # noqa: F811
) -> None:
    admin, operator = people["admin"], people["operator"]
    item = protect(admin, make_vault(admin, name="rotten"), write_tree(storage / "src"))
    point = backup_now(item, operator)
    manifest = locations.vault_store(point.vault).manifest(point.storage_key)
    # A chunk of large.bin: the first file in the manifest holding it is the first bad one.
    (large,) = [node for node in manifest.nodes if node.path == "large.bin"]
    digest = large.extents[1][0]
    first_bad = next(
        node.path for node in manifest.nodes if any(e[0] == digest for e in node.extents)
    )
    assert first_bad == "copy-of-large.bin"  # same content, deduplicated, listed first
    chunk = storage / "storage/vaults/rotten" / chunk_key(digest)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))

    (job,) = wait_for(requests.drill_request(actor=operator, point=point).pk)
    assert job.status == "failed"
    assert f"failed at {first_bad}" in job.error and digest in job.error
    point.refresh_from_db()
    assert point.drill is not None and point.drill["status"] == "failed"
    assert point.drill["first_bad"] == first_bad and digest in point.drill["error"]
    alert = Alert.objects.get(kind="drill_failed")
    assert (alert.category, alert.severity) == ("security", "critical")
    assert alert.vault_name == "rotten" and alert.target == f"point:{point.pk}"
    assert first_bad in alert.message
    # Damage found reading the point's own chunks marks it corrupt, as a verification does.
    assert point.corrupted_at is not None
    assert Alert.objects.filter(kind="corruption_found", target=f"point:{point.pk}").exists()
    assert _scratch() == []


def _tree_bytes(path: Path) -> int:
    return sum(
        os.lstat(os.path.join(folder, name)).st_size
        for folder, _dirs, names in os.walk(path)
        for name in names
    )


def test_a_worker_killed_mid_drill_leaves_scratch_that_the_jobs_sweep_removes(
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    worker_process: Any,  # noqa: F811
) -> None:
    admin, operator = people["admin"], people["operator"]
    source = storage / "big"
    source.mkdir()
    for i in range(4):  # 400 MiB incompressible: seconds of restoring for the worker
        with open(source / f"blob-{i}.bin", "wb") as out:
            for _ in range(10):
                out.write(os.urandom(10 * 1024 * 1024))
    item = protect(admin, make_vault(admin, name="killed-drill"), source, "big")
    # The backup runs here; the drill goes to the worker process.
    backup = runner.job_run(job_id=requests.backup_request(actor=admin, item=item).pk)
    assert backup is not None and backup.status == "completed", backup and backup.error
    point = RecoveryPoint.objects.get(item=item)

    job = requests.drill_request(actor=operator, point=point)
    root = Path(settings.HOLDFAST_DRILL_ROOT)

    def writing() -> bool:
        names = _scratch()
        return (
            Job.objects.get(pk=job.pk).status == "running"
            and len(names) == 1
            and _tree_bytes(root / names[0]) >= 20 * 1024 * 1024
        )

    _poll(writing, timeout=120, what="the drill to restore into its scratch directory")
    os.killpg(worker_process.pid, signal.SIGKILL)
    worker_process.wait(timeout=30)

    (left,) = _scratch()
    assert left.startswith(f"drill-{job.pk}-") and _tree_bytes(root / left) > 0
    job.refresh_from_db()
    assert job.status == "running"
    # A running drill's scratch is its own: the sweep leaves it while its job runs.
    assert sweeps.jobs_fail_stale() == 0 and _scratch() == [left]

    # The stale-job sweep (time injected: the heartbeat is minutes old) fails the job and
    # removes what it left.
    clock.set_now(datetime.now(UTC) + timedelta(minutes=10))
    try:
        assert sweeps.jobs_fail_stale() == 1
    finally:
        clock.set_now(None)
    job.refresh_from_db()
    assert job.status == "failed" and "stopped responding" in job.error
    assert _scratch() == []
    point.refresh_from_db()
    assert point.drill is None  # nothing judged
    assert not Alert.objects.filter(kind="drill_failed").exists()


# --- the request and the API ------------------------------------------------------------------


def _drill_url(point: RecoveryPoint) -> str:
    return (
        f"/api/v1/vaults/{point.vault.name}/items/{point.item.name}/recovery-points/"
        f"{point.pk}/drill/"
    )


def test_the_api_queues_a_drill_for_operators_only_and_shows_its_outcome_on_the_point(
    api: Any, operator: Any, reader: Any, point: RecoveryPoint
) -> None:
    url = _drill_url(point)
    point_url = url.removesuffix("drill/")
    assert api(operator).get(point_url).json()["drill"] is None

    refused = api(reader).post(url)
    assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied")
    assert not Job.objects.filter(kind="drill").exists()

    answer = api(operator).post(url)
    assert answer.status_code == 202, answer.content
    body = answer.json()
    assert (body["kind"], body["status"], body["recovery_point"]) == ("drill", "queued", point.pk)
    done = runner.job_run(job_id=body["id"])
    assert done is not None and done.status == "completed", done and done.error

    shown = api(reader).get(point_url).json()["drill"]
    assert shown["status"] == "passed" and shown["files"] == 4
    assert shown["bytes"] == point.logical_bytes and shown["seconds"] > 0
    listed = api(reader).get("/api/v1/jobs/", {"kind": "drill"}).json()
    assert [job["id"] for job in listed["results"]] == [body["id"]]
    assert _scratch() == []


def test_an_archived_point_waits_for_rehydration_then_drills(
    api: Any, operator: Any, point: RecoveryPoint
) -> None:
    RecoveryPoint.objects.filter(pk=point.pk).update(tier="vault_archive")
    answer = api(operator).post(_drill_url(point))
    assert (answer.status_code, answer.json()["code"]) == (409, "point_archived")
    assert "rehydrate it first" in answer.json()["detail"]
    assert "drill it" in answer.json()["detail"]
    assert not Job.objects.filter(kind="drill").exists()

    # Rehydrated (its standard-tier copy is live): the drill reads that copy.
    RecoveryPoint.objects.filter(pk=point.pk).update(
        rehydrated_until=clock.now() + timedelta(days=10)
    )
    answer = api(operator).post(_drill_url(point))
    assert answer.status_code == 202, answer.content
    done = runner.job_run(job_id=answer.json()["id"])
    assert done is not None and done.status == "completed", done and done.error
    point.refresh_from_db()
    assert point.drill is not None and point.drill["status"] == "passed"


def test_a_point_past_its_expiry_or_a_drill_root_beside_restores_is_refused(
    operator: Any, point: RecoveryPoint, stores: dict[str, Path], settings: Any
) -> None:
    clock.set_now(point.expires_at + timedelta(days=1))
    try:
        with pytest.raises(DomainError) as expired:
            requests.drill_request(actor=operator, point=point)
    finally:
        clock.set_now(None)
    assert expired.value.code == "validation_error" and "past its expiry" in expired.value.detail

    for inside in (stores["restores"] / "drills", stores["storage"] / "drills"):
        settings.HOLDFAST_DRILL_ROOT = inside
        with pytest.raises(DomainError) as overlap:
            requests.drill_request(actor=operator, point=point)
        assert overlap.value.code == "validation_error"
        assert "HOLDFAST_DRILL_ROOT" in overlap.value.detail
    assert not Job.objects.filter(kind="drill").exists()
