"""A real ``celery worker`` process killed with SIGKILL in the middle of a backup.

The worker runs as a subprocess on the test database and a queue of its own; the test
polls the database and the store (bounded) to kill it once the backup is writing chunks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from portal import clock
from tests.factories import make_vault
from tests.test_jobs import people, protect, storage, wait_for, write_tree  # noqa: F401
from vaults import locations
from vaults.jobs import requests, runner, sweeps
from vaults.models import Job, RecoveryPoint

ROOT = Path(__file__).resolve().parent.parent


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    host = db.get("HOST") or "127.0.0.1"
    return f"postgres://{auth}@{host}:{db.get('PORT') or 5432}/{db['NAME']}"


@pytest.fixture
def worker_process(storage: Path) -> Iterator[Any]:  # noqa: F811
    if connection.vendor != "postgresql":
        pytest.skip("the worker subprocess shares the test database: PostgreSQL only")
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "HOLDFAST_STORAGE_ROOT": str(settings.HOLDFAST_STORAGE_ROOT),
        "HOLDFAST_RESTORE_ROOTS": ":".join(map(str, settings.HOLDFAST_RESTORE_ROOTS)),
        "HOLDFAST_DRILL_ROOT": str(settings.HOLDFAST_DRILL_ROOT),
    }
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("celery")),
            "-A",
            "portal",
            "worker",
            "-P",
            "solo",
            "-Q",
            settings.HOLDFAST_TASK_QUEUE,
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            "-l",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,  # its own process group, so the kill takes everything
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    yield process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    if process.stderr is not None:
        process.stderr.close()


def _poll(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def test_worker_killed_mid_backup_leaves_no_point_and_a_consistent_store(
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    worker_process: Any,
) -> None:
    admin, operator = people["admin"], people["operator"]
    vault = make_vault(admin, name="killed")
    small = protect(admin, vault, write_tree(storage / "small"), "small")
    big_source = storage / "big"
    big_source.mkdir()
    for i in range(6):  # 600 MiB of incompressible data: seconds of work for the worker
        with open(big_source / f"blob-{i}.bin", "wb") as out:
            for _ in range(10):
                out.write(os.urandom(10 * 1024 * 1024))
    big = protect(admin, vault, big_source, "big")

    (first,) = wait_for(requests.backup_request(actor=operator, item=small).pk, timeout=120)
    assert first.status == "completed", first.error
    kept = first.recovery_point
    store = locations.vault_store(vault)
    chunks_before = set(store.backend.list("chunks/"))

    job = requests.backup_request(actor=operator, item=big)
    _poll(
        lambda: (
            Job.objects.get(pk=job.pk).status == "running"
            and len(set(store.backend.list("chunks/")) - chunks_before) >= 3
        ),
        timeout=120,
        what="the backup to start writing chunks",
    )
    os.killpg(worker_process.pid, signal.SIGKILL)
    worker_process.wait(timeout=30)

    # No half point: no row, no manifest; the job still claims to run until the sweep.
    job.refresh_from_db()
    assert job.status == "running"
    assert not RecoveryPoint.objects.filter(item=big).exists()
    assert store.points() == [kept.storage_key]
    assert store.verify(kept.storage_key).ok

    # The stale-job sweep (time injected: the heartbeat is minutes old) fails the job.
    clock.set_now(datetime.now(UTC) + timedelta(minutes=10))
    try:
        assert sweeps.jobs_fail_stale() == 1
    finally:
        clock.set_now(None)
    job.refresh_from_db()
    assert job.status == "failed" and "stopped responding" in job.error

    # While the dead backup's lease is live GC keeps its chunks; once expired it frees them.
    assert store.gc().deleted_chunks == 0
    collected = store.gc(now=time.time() + store.lease_timeout + 60)
    assert collected.deleted_chunks >= 3 and collected.expired_leases == 1
    assert set(store.backend.list("chunks/")) == chunks_before
    assert store.verify(kept.storage_key).ok

    # The next backup of the same item runs normally.
    retry = runner.job_run(job_id=requests.backup_request(actor=operator, item=big).pk)
    assert retry is not None and retry.status == "completed", retry.error
    point = RecoveryPoint.objects.get(item=big)
    assert store.verify(point.storage_key).ok
    assert point.logical_bytes == 600 * 1024 * 1024
