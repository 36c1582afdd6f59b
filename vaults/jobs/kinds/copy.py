"""A copy job (SPEC 3.10): one recovery point of a vault copied into its replica vault.

Only the chunks the replica lacks travel (``vaults/storage/copy.py``); the copy is
digest-checked before its row is recorded in the replica, with the source point's created
time, tags, expiry and digest and a link to its source. An archived point goes into the
replica's archive tier. A failure says why (the replica's store unreachable, a chunk missing
or damaged on the source, the replica's storage refusing the lock) and the replication
sweep tries again after a backoff (``vaults/jobs/replication.py``).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from ... import services
from ...locations import archive_store, vault_store
from ...models import Job, RecoveryPoint, Vault
from ...storage.copy import CopyRefused, CopyResult, copy_archived, copy_point
from ...storage.crypto import KeyUnavailable
from ...storage.errors import CorruptChunk, ObjectLocked, PointNotFound, StorageError
from ...storage_notes import point_retention
from ..state import Heartbeat, JobFailed, finish, point_of, with_database


def _parent(replica: Vault, point: RecoveryPoint) -> str | None:
    """The item's newest copy in the replica (a back-fill goes newest first): its chunks
    need no look-up."""
    return (
        RecoveryPoint.objects.filter(
            vault=replica,
            source_vault=point.vault.name,
            item__name=point.item.name,
            tier__in=[RecoveryPoint.Tier.VAULT_STANDARD, RecoveryPoint.Tier.SNAPSHOT_AND_VAULT],
        )
        .exclude(storage_key="")
        .order_by("-created_at")
        .values_list("storage_key", flat=True)
        .first()
    )


def run(job: Job, beat: Heartbeat) -> None:
    point = point_of(job)
    source = Vault.objects.select_related("replica").get(pk=point.vault_id)
    wanted = str(job.params.get("replica", ""))
    replica = source.replica
    what = f"Copy of point {point.pk} from {source.name} to {wanted}"
    if replica is None or replica.name != wanted:
        raise JobFailed(f"{what}: {source.name} no longer replicates to {wanted}; nothing copied.")
    # The replica's own lock on every object written (compliance when it is locked).
    retention = point_retention(replica, point.expires_at, operational=False)
    try:
        result: CopyResult
        if point.is_archived:
            result = copy_archived(
                archive_store(source),
                archive_store(replica),
                point.storage_key,
                expected_digest=point.digest,
                retention=retention,
            )
        else:
            result = copy_point(
                vault_store(source),
                vault_store(replica),
                point.storage_key,
                expected_digest=point.digest,
                retention=retention,
                progress=beat,
                parent=_parent(replica, point),
            )
    except (CorruptChunk, CopyRefused, PointNotFound) as exc:
        raise JobFailed(
            f"{what}: the source copy is incomplete or damaged ({exc}). Verify point "
            f"{point.pk} in {source.name}."
        ) from None
    except KeyUnavailable as exc:
        raise JobFailed(f"{what}: {exc}") from None
    except ObjectLocked as exc:
        raise JobFailed(f"{what}: the replica's storage refused the lock ({exc}).") from None
    except (StorageError, OSError) as exc:
        raise JobFailed(
            f"{what}: a store could not be reached or written ({exc}). It is tried again "
            "automatically."
        ) from None

    def record() -> None:
        with transaction.atomic():
            services.replica_point_record(
                replica=replica,
                source_point=point,
                stored_bytes=result.bytes_moved,
                digest=result.digest,
            )
            params: dict[str, Any] = {
                **job.params,
                "bytes_moved": result.bytes_moved,
                "chunks_copied": result.chunks_copied,
                "chunks_total": result.chunks_total,
            }
            Job.objects.filter(pk=job.pk).update(params=params)
            finish(job, done=result.logical_bytes, total=result.logical_bytes)

    with_database(record)
