"""Garbage collection: delete the chunks no manifest and no live lease references.

The lease protocol it keeps to is `leases` (docs/storage.md has the argument).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .errors import ObjectLocked, ObjectNotFound
from .leases import GC_HEARTBEAT, SAFETY, GcMarker, read_leases
from .manifest import chunk_ids_of

if TYPE_CHECKING:
    from .store import VaultStore


@dataclass(frozen=True)
class GcResult:
    deleted_chunks: int
    freed_bytes: int
    # Unreferenced chunks kept because a live lease names them.
    leased_chunks: int = 0
    expired_leases: int = 0
    completed: bool = True  # False when the run stopped early to respect its timeout
    # Unreferenced chunks kept because their object lock has not ended yet (S3 Object
    # Lock), and deletions the storage refused anyway; both are deleted by a later run.
    retained_chunks: int = 0
    refused_deletes: int = 0


def _at_rest(store: VaultStore, now: float | None) -> int | None:
    """None when a chunk no manifest and no live lease names, or an expired lease, is
    there now; else how many unreferenced chunks live leases protect. Read without a
    marker, and only to decide whether to run the protocol at all."""
    unreferenced = {key.rpartition("/")[2] for key in store.backend.list("chunks/")}
    protected, expired = read_leases(
        store.backend, time.time() if now is None else now, store.lease_timeout
    )
    if expired:
        return None
    for key in store.backend.list("manifests/"):
        if not unreferenced:
            break
        try:
            unreferenced -= chunk_ids_of(store.backend.get(key))
        except ObjectNotFound:
            continue
    return None if unreferenced - protected else len(unreferenced)


def collect(store: VaultStore, now: float | None = None) -> GcResult:
    """Delete chunks that no manifest and no live lease references.

    Protocol (the argument is in docs/storage.md): publish a GC marker; list chunks;
    read leases; read manifests; delete the rest; remove the marker. A writer names
    each chunk in its lease before checking whether it exists, and before publishing
    its manifest waits for every GC marker it sees and re-checks the chunks it reused.
    So a GC either sees a chunk in a lease or manifest, or finishes deleting before the
    writer's re-check notices the chunk is gone. `now` only sets the clock used to
    expire the leases of crashed writers and to judge whether an object lock has
    ended (the storage has the last word: a delete it refuses is counted, not retried).
    A store with nothing to delete is only read: no marker is written (`_at_rest`).
    """
    leased_only = _at_rest(store, now)
    if leased_only is not None:
        # Nothing to delete: no marker either (a GC that deletes nothing cannot race a
        # writer), so a store at rest costs its listings and no write.
        sweep = getattr(store.backend, "sweep_temporaries", None)
        if callable(sweep):
            sweep(older_than=store.lease_timeout)
        return GcResult(deleted_chunks=0, freed_bytes=0, leased_chunks=leased_only)
    marker = GcMarker(store.backend)
    started = time.monotonic()
    last_beat = marker.beat()
    deleted = freed = leased = retained = refused = 0
    lock_now = datetime.fromtimestamp(now, UTC) if now is not None else datetime.now(UTC)
    completed = True
    try:
        # Each delete is visible at once; their directories are synced once, at the end
        # of the block, before the marker goes (docs/storage.md, "Garbage collection").
        with store.backend.deletes_batched():
            candidates = list(store.backend.list("chunks/"))
            protected, expired = read_leases(
                store.backend, time.time() if now is None else now, store.lease_timeout
            )
            referenced: set[str] = set()
            for key in store.backend.list("manifests/"):
                try:
                    referenced |= chunk_ids_of(store.backend.get(key))
                except ObjectNotFound:  # deleted since listed: its chunks are fair game
                    continue
            for key in candidates:
                digest = key.rpartition("/")[2]
                if digest in referenced:
                    continue
                if digest in protected:
                    leased += 1
                    continue
                if time.monotonic() - last_beat > GC_HEARTBEAT:
                    last_beat = marker.beat()
                if (
                    time.monotonic() - started > store.gc_timeout * SAFETY
                    or time.monotonic() - last_beat > store.gc_stale * SAFETY
                ):
                    # Stalled long enough that a writer may take our marker for dead: stop.
                    completed = False
                    break
                try:
                    size = store.backend.size(key)
                    lock = store.backend.lock_of(key)
                except ObjectNotFound:
                    continue
                if lock is not None and lock.active(lock_now):
                    retained += 1  # its retention has not passed: a later run deletes it
                    continue
                try:
                    store.backend.delete(key)
                except ObjectLocked:
                    refused += 1  # the storage's clock or a legal hold says no: reported
                    continue
                deleted += 1
                freed += size
            if completed:
                for prefix in expired:
                    for key in list(store.backend.list(prefix)):
                        store.backend.delete(key)
            sweep = getattr(store.backend, "sweep_temporaries", None)
            if completed and callable(sweep):
                sweep(older_than=store.lease_timeout)
    finally:
        marker.remove()
    return GcResult(
        deleted_chunks=deleted,
        freed_bytes=freed,
        leased_chunks=leased,
        expired_leases=len(expired) if completed else 0,
        completed=completed,
        retained_chunks=retained,
        refused_deletes=refused,
    )
