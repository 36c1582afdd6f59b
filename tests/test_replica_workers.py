"""Replica vaults on real workers and two kinds of store (SPEC 3.10): a ``celery worker``
process killed with SIGKILL in the middle of a copy, whose copy resumes and ends with one
point; and a copy from a local vault into a locked S3 replica (moto on loopback), whose
objects carry the COMPLIANCE lock and whose copy no one deletes early.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from portal import clock
from portal.gate import DomainError
from tests.factories import lock_vault, make_vault, stored_digest
from tests.s3server import S3Server
from tests.test_jobs import (  # noqa: F401  (fixtures)
    backup_now,
    people,
    protect,
    storage,
    tree_of,
    wait_for,
    worker,
    write_tree,
)
from tests.test_worker import worker_process  # noqa: F401  (fixture)
from vaults import locations
from vaults import services as vault_services
from vaults.jobs import replication, requests, runner, sweeps
from vaults.models import Job, RecoveryPoint, Vault
from vaults.storage.backends import COMPLIANCE
from vaults.storage.errors import PointRetained


def _poll(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def test_a_worker_killed_mid_copy_leaves_no_copy_and_the_copy_resumes_to_one_point(
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    worker_process: Any,  # noqa: F811
) -> None:
    admin = people["admin"]
    source = make_vault(admin, name="kill-src", region="westeurope")
    replica = make_vault(admin, name="kill-rep", region="eastus")
    vault_services.replica_set(actor=admin, vault=source, replica=replica)
    data = storage / "big"
    data.mkdir()
    for i in range(5):  # 500 MiB incompressible: seconds of copying for the worker
        with open(data / f"blob-{i}.bin", "wb") as out:
            for _ in range(10):
                out.write(os.urandom(10 * 1024 * 1024))
    item = protect(admin, source, data, "big")
    # The backup runs here; its copy goes to the worker process.
    backup = runner.job_run(job_id=requests.backup_request(actor=admin, item=item).pk)
    assert backup is not None and backup.status == "completed", backup.error
    point = RecoveryPoint.objects.get(item=item)
    target = locations.vault_store(replica)
    _poll(
        lambda: (
            Job.objects.filter(kind="copy", recovery_point=point, status="running").exists()
            and len(list(target.backend.list("chunks/"))) >= 5
        ),
        timeout=120,
        what="the copy to start writing chunks",
    )
    os.killpg(worker_process.pid, signal.SIGKILL)
    worker_process.wait(timeout=30)

    # No half copy: no row, no manifest in the replica.
    (job,) = Job.objects.filter(kind="copy", recovery_point=point)
    assert job.status == "running"
    assert not RecoveryPoint.objects.filter(vault=replica).exists()
    assert target.points() == []
    written = len(list(target.backend.list("chunks/")))
    total = len(locations.vault_store(source).manifest(point.storage_key).chunks)
    assert 5 <= written < total

    # The stale-job sweep fails it; after the backoff the replication sweep queues the copy
    # again, which finds what the dead one wrote and sends only the rest.
    clock.set_now(datetime.now(UTC) + timedelta(minutes=10))
    try:
        assert sweeps.jobs_fail_stale() == 1
        assert replication.replication_sweep()["copies_queued"] == 0  # backing off
        clock.set_now(datetime.now(UTC) + timedelta(minutes=12))
        assert replication.replication_sweep()["copies_queued"] == 1
    finally:
        clock.set_now(None)
    retry = Job.objects.filter(kind="copy", recovery_point=point, status="queued").get()
    done = runner.job_run(job_id=retry.pk)
    assert done is not None and done.status == "completed", done.error
    assert done.params["chunks_copied"] <= total - written
    assert done.params["bytes_moved"] < point.logical_bytes
    (copy,) = RecoveryPoint.objects.filter(vault=replica)
    assert copy.digest == stored_digest(copy) != point.digest
    assert copy.source_point_ref == point.pk
    assert target.points() == [point.storage_key]
    assert target.verify(point.storage_key).ok
    assert list(target.backend.list("leases/")) == []


def test_a_locked_source_copies_into_a_locked_s3_replica_that_keeps_the_copy(
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    moto_s3: S3Server,
    worker: Any,  # noqa: F811
) -> None:
    admin, operator = people["admin"], people["operator"]
    source = make_vault(admin, name="s3-src", region="westeurope")
    replica = make_vault(
        admin,
        name="s3-rep",
        region="eastus",
        storage_location=f"s3://{moto_s3.bucket()}/replica",
    )
    vault_services.replica_set(actor=admin, vault=source, replica=replica)
    # Lock the source: the replica is locked in the same step.
    source = lock_vault(Vault.objects.get(pk=source.pk), requester=admin)
    replica.refresh_from_db()
    assert (source.immutability, replica.immutability) == ("locked", "locked")

    item = protect(admin, source, write_tree(storage / "data"), "docs")
    point = backup_now(item, operator)
    deadline = time.monotonic() + 90
    while not Job.objects.filter(kind="copy", recovery_point=point).exists():
        assert time.monotonic() < deadline, "no copy job was queued"
        time.sleep(0.05)
    (job,) = wait_for(Job.objects.get(kind="copy", recovery_point=point).pk, timeout=120)
    assert job.status == "completed", job.error
    copy = RecoveryPoint.objects.get(vault=replica)
    assert copy.expires_at == point.expires_at and copy.digest == stored_digest(copy)

    # On S3 every object of the copy carries the replica's lock: COMPLIANCE to the expiry.
    store = locations.vault_store(replica)
    lock = store.point_lock(copy.storage_key)
    assert lock.mode == COMPLIANCE and lock.until is not None
    assert lock.until >= copy.expires_at.replace(microsecond=0)
    # No one deletes the copy early: not the gate, not the storage.
    with pytest.raises(DomainError) as refused:
        vault_services.point_delete(actor=admin, point=copy)
    assert refused.value.code == "immutable_vault"
    with pytest.raises(PointRetained):
        store.delete_point(copy.storage_key)

    # Cross-region restore from the S3 copy, byte for byte.
    target = storage / "restores" / "from-s3"
    restore = requests.restore_request(actor=operator, point=copy, target_path=str(target))
    (restored,) = wait_for(restore.pk, timeout=120)
    assert restored.status == "completed", restored.error
    assert tree_of(target) == tree_of(storage / "data")
