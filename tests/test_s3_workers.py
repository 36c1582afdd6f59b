"""Workers on several hosts: two real ``celery worker`` processes, each with its own
temporary directories and nothing on a shared local disk, back up into one S3 vault at the
same time. They share only PostgreSQL, Redis and the S3 store, as separate hosts would.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from tests.factories import make_vault
from tests.s3server import S3Server
from tests.test_jobs import people, protect, storage, tree_of, wait_for, write_tree  # noqa: F401
from tests.test_worker import _database_url
from vaults import locations
from vaults.jobs import requests
from vaults.models import Job
from vaults.storage.backends import GOVERNANCE

ROOT = Path(__file__).resolve().parent.parent


def _start_worker(name: str, home: Path, s3: S3Server) -> tuple[subprocess.Popen[bytes], Path]:
    """A worker as on its own host: its own storage root, var dir and temp dir."""
    for sub in ("storage", "var", "tmp"):
        (home / sub).mkdir(parents=True)
    log = home / "worker.log"
    env = {
        **os.environ,
        **s3.env(),
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "HOLDFAST_STORAGE_ROOT": str(home / "storage"),
        "HOLDFAST_VAR_DIR": str(home / "var"),
        # Every worker host is given the master key (docs/storage.md, "Encryption").
        "HOLDFAST_KEY_FILE": str(settings.HOLDFAST_KEY_FILE),
        "TMPDIR": str(home / "tmp"),
        "HOLDFAST_WORKER_NAME": name,
        "HOLDFAST_RESTORE_ROOTS": ":".join(map(str, settings.HOLDFAST_RESTORE_ROOTS)),
    }
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("celery")),
                "-A",
                "portal",
                "worker",
                "-P",
                "solo",
                "-n",
                f"{name}@%h",
                "-Q",
                settings.HOLDFAST_TASK_QUEUE,
                "--prefetch-multiplier",
                "1",
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
                "-l",
                "INFO",
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, log


@pytest.fixture
def two_workers(storage: Path, s3: S3Server) -> Iterator[list[Path]]:  # noqa: F811
    if connection.vendor != "postgresql":
        pytest.skip("worker subprocesses share the test database: PostgreSQL only")
    started = [_start_worker(name, storage / name, s3) for name in ("host-a", "host-b")]
    try:
        deadline = time.monotonic() + 60
        while not all(b"ready." in log.read_bytes() for _p, log in started):
            if time.monotonic() > deadline or any(p.poll() is not None for p, _l in started):
                logs = "\n".join(log.read_text(errors="replace")[-2000:] for _p, log in started)
                raise AssertionError(f"workers did not start:\n{logs}")
            time.sleep(0.1)
        yield [storage / "host-a", storage / "host-b"]
    finally:
        for process, _log in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process, _log in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def test_two_worker_hosts_back_up_into_one_s3_vault_concurrently(
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    s3: S3Server,
    two_workers: list[Path],
) -> None:
    admin, operator = people["admin"], people["operator"]
    vault = make_vault(
        admin,
        name="shared",
        storage_location=f"s3://{s3.bucket()}/shared",
        immutability="enabled",
    )
    source = write_tree(storage / "sources" / "one")
    shutil.copytree(source, storage / "sources" / "two", symlinks=True)
    items = [
        protect(admin, vault, storage / "sources" / name, name, policy_name=f"p-{name}")
        for name in ("one", "two")
    ]

    requested = [
        requests.backup_request(actor=operator, item=item).pk for item in items for _ in range(3)
    ]
    done = wait_for(*requested, timeout=180)

    assert [job.status for job in done] == ["completed"] * 6, [job.error for job in done]
    assert {job.worker for job in done} == {"host-a", "host-b"}  # both hosts did work
    store = locations.vault_store(vault)
    points = [job.recovery_point for job in done]
    assert sorted(store.points()) == sorted(p.storage_key for p in points if p is not None)
    # Deduplicated across hosts: the store holds each distinct chunk once.
    referenced = set()
    for point in points:
        assert point is not None
        referenced |= set(store.manifest(point.storage_key).chunks)
    chunk_objects = list(store.backend.list("chunks/"))
    assert (
        len(chunk_objects) == len(referenced) == len(store.manifest(points[0].storage_key).chunks)
    )
    assert list(store.backend.list("leases/")) == [] and list(store.backend.list("gc/")) == []
    # Consistent: every point verifies, is locked by the storage, and restores byte for byte.
    for point in points:
        assert point is not None
        assert store.verify(point.storage_key).ok
        lock = store.point_lock(point.storage_key)
        assert lock.ok and lock.mode == GOVERNANCE and lock.until is not None
        assert lock.until >= point.expires_at
    assert store.gc().deleted_chunks == 0
    restore = requests.restore_request(
        actor=operator,
        point=points[-1],
        target_path=str(settings.HOLDFAST_RESTORE_ROOTS[0] / "back"),
    )
    (restored,) = wait_for(restore.pk, timeout=60)
    assert restored.status == "completed", restored.error
    assert tree_of(settings.HOLDFAST_RESTORE_ROOTS[0] / "back") == tree_of(source)
    # Nothing of the vault's data landed on either host's local disk.
    for home in two_workers:
        assert not any((home / "storage").rglob("chunks"))
    assert Job.objects.filter(kind="backup", status="failed").count() == 0
