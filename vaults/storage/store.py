"""The standard-tier vault store: one deduplicating, content-addressed store on a backend.

Layout of a store's backend (docs/storage.md has the full format):

    keys/data-key-<master id>.json    the vault's data key, wrapped by the master key
    chunks/<ab>/<keyed blake3 hex>    chunk objects, written once
    manifests/<point_id>.json         one per complete recovery point, written last
    leases/<point_id>/lease.json      a writer in flight (backup or rehydration)
    leases/<point_id>/refs-<n>.json   chunk ids that writer has referenced so far
    gc/<run id>.json                  a garbage collection in flight

Every object but the wrapped keys is sealed (AES-256-GCM) by the store's `SealedBackend`
(`crypto`): a store opened on anything else refuses, so nothing is written in plaintext.

`VaultStore` reads points and keeps the store's settings; each path through it has its own
module: `backup` (and `source`, `writer`), `restore`, `verify`, `gc`, `locks`, with the
lease protocol between writers and GC in `leases`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from . import backup as backup_path
from . import gc as gc_path
from . import locks as lock_path
from . import restore as restore_path
from . import verify as verify_path
from .backends import ObjectLock, Retention
from .backup import BackupResult, ImportResult
from .chunks import DEFAULT_LEVEL, chunk_key, decode_chunk
from .crypto import ObjectTampered, SealedBackend, require_sealed
from .errors import CorruptChunk, ObjectNotFound, PointNotFound, PointRetained, StorageError
from .gc import GcResult
from .holds import Holds, Keep
from .leases import DEFAULT_GC_STALE, DEFAULT_GC_TIMEOUT, DEFAULT_LEASE_TIMEOUT, LeaseTimings
from .locks import PointLock, RetentionResult
from .manifest import KIND_DIR, Manifest, Terms, manifest_key, terms_of
from .restore import RestoreResult, normalize_sub_path
from .verify import VerifyResult
from .writer import Progress

# How far a file's ctime must be older than the start of the parent backup before the
# file may be reused without reading: covers timestamp granularity (coarse kernel ticks,
# 1-2 s on some filesystems) so a write in the same tick as the parent's read is not missed.
DEFAULT_TIMESTAMP_SLACK = 2.0


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # "dir", "file" or "symlink"
    size: int
    mode: int
    mtime: float  # seconds since the epoch
    path: str = ""
    target: str = ""


class ArchiveCopies(Protocol):
    """Another tier that may hold a complete copy of a point (the archive store)."""

    def has_point(self, point_id: str) -> bool: ...


class VaultStore:
    """A deduplicating, content-addressed store of recovery points on one backend."""

    def __init__(
        self,
        backend: SealedBackend,
        *,
        level: int = DEFAULT_LEVEL,
        workers: int | None = None,
        lease_timeout: float = DEFAULT_LEASE_TIMEOUT,
        gc_timeout: float = DEFAULT_GC_TIMEOUT,
        gc_stale: float = DEFAULT_GC_STALE,
        poll_interval: float = 0.2,
        timestamp_slack: float = DEFAULT_TIMESTAMP_SLACK,
    ) -> None:
        self.backend = require_sealed(backend)
        self.level = level
        # zstd and blake3 release the GIL; two threads a core also hide fsync waits.
        self.workers = workers or min(8, 2 * (os.cpu_count() or 1))
        self.timings = LeaseTimings(lease_timeout, gc_timeout, gc_stale, poll_interval)
        self.timestamp_slack = timestamp_slack
        # What the store was told to keep after each backup (docs/storage.md).
        self.holds = Holds(backend)

    @property
    def lease_timeout(self) -> float:
        return self.timings.lease_timeout

    @property
    def gc_timeout(self) -> float:
        return self.timings.gc_timeout

    @property
    def gc_stale(self) -> float:
        return self.timings.gc_stale

    @property
    def poll_interval(self) -> float:
        return self.timings.poll_interval

    # Reading ---------------------------------------------------------------------------

    def points(self) -> list[str]:
        """Ids of the complete recovery points in this store."""
        return [key[len("manifests/") : -len(".json")] for key in self.backend.list("manifests/")]

    def has_point(self, point_id: str) -> bool:
        return self.backend.exists(manifest_key(point_id))

    def read_manifest(self, point_id: str) -> bytes:
        try:
            return self.backend.get(manifest_key(point_id))
        except ObjectNotFound:
            raise PointNotFound(point_id) from None

    def manifest(self, point_id: str) -> Manifest:
        return Manifest.from_bytes(self.read_manifest(point_id))

    def read_chunk(self, digest: str, expected_size: int | None = None) -> bytes:
        """A chunk's plaintext, hash-checked; raises `CorruptChunk` if missing or damaged."""
        try:
            blob = self.backend.get(chunk_key(digest))
        except ObjectNotFound:
            raise CorruptChunk(digest, "it is missing from the store") from None
        except ObjectTampered as exc:
            raise CorruptChunk(digest, exc.reason) from None
        return decode_chunk(digest, blob, expected_size, self.backend)

    # Writing, restoring, checking: each path has its own module -------------------------

    def backup(
        self,
        source: Path,
        point_id: str,
        progress: Progress | None = None,
        *,
        parent: str | None = None,
        retention: Retention | None = None,
        terms: Terms | None = None,
        check_source: Callable[[str, str], str | None] | None = None,
        file_progress: Progress | None = None,
    ) -> BackupResult:
        """Back up the tree under `source` as point `point_id` (`backup.backup`)."""
        return backup_path.backup(
            self,
            source,
            point_id,
            progress,
            parent=parent,
            retention=retention,
            terms=terms,
            check_source=check_source,
            file_progress=file_progress,
        )

    def import_point(
        self,
        point_id: str,
        manifest_bytes: bytes,
        chunks: Iterable[tuple[str, bytes]],
        retention: Retention | None = None,
    ) -> ImportResult:
        """Publish a point whose manifest and chunks come from elsewhere
        (`backup.import_point`)."""
        return backup_path.import_point(self, point_id, manifest_bytes, chunks, retention)

    def restore(
        self,
        point_id: str,
        target: Path,
        *,
        allowed_roots: Sequence[Path],
        forbidden_roots: Sequence[Path] = (),
        sub_path: str = "",
        overwrite: bool = False,
        progress: Progress | None = None,
        file_progress: Progress | None = None,
    ) -> RestoreResult:
        """Write point `point_id` (or `sub_path` of it) under `target`
        (`restore.restore_point`)."""
        return restore_path.restore_point(
            self,
            point_id,
            target,
            allowed_roots=allowed_roots,
            forbidden_roots=forbidden_roots,
            sub_path=sub_path,
            overwrite=overwrite,
            progress=progress,
            file_progress=file_progress,
        )

    def verify(self, point_id: str, progress: Progress | None = None) -> VerifyResult:
        """Re-read and re-hash every chunk the point references (`verify.verify_point`)."""
        return verify_path.verify_point(self, point_id, progress)

    def gc(self, now: float | None = None) -> GcResult:
        """Delete chunks that no manifest and no live lease references (`gc.collect`)."""
        return gc_path.collect(self, now)

    def apply_retention(self, wanted: dict[str, Retention]) -> RetentionResult:
        """Lock every object of the given points at least as long as asked, never shorter
        (`locks.apply_retention`)."""
        return lock_path.apply_retention(self, wanted)

    def point_lock(
        self,
        point_id: str,
        wanted: Retention | None = None,
        cache: dict[str, ObjectLock | None] | None = None,
    ) -> PointLock:
        """Read back the lock of the point's manifest and every chunk (`locks.point_lock`)."""
        return lock_path.point_lock(self, point_id, wanted, cache)

    # Browsing and deleting -------------------------------------------------------------

    def list_dir(self, point_id: str, path: str = "") -> list[Entry]:
        """The entries directly inside `path` ("" is the backup source) of a point."""
        return entries_of(self.manifest(point_id), path, point_id)

    def terms(self, point_id: str) -> Terms | None:
        """The retention terms the point's manifest records; None for an older manifest."""
        return terms_of(self.read_manifest(point_id))

    def keep(self, point_id: str) -> Keep:
        """Until when the storage itself keeps the point: its manifest's terms and the
        notes written since (`PointNotFound` without a manifest)."""
        return self.holds.keep(point_id, self.terms(point_id))

    def delete_point(
        self,
        point_id: str,
        *,
        now: datetime | None = None,
        copy_in: ArchiveCopies | None = None,
    ) -> None:
        """Remove the point's manifest; its chunks are reclaimed by `gc`.

        Only once the storage's own retain-until for the point has passed at `now`, or the
        point was released (never a locked vault's point before its date), or `copy_in`
        (the archive tier) holds a complete copy of it: otherwise `PointRetained`, and
        nothing is deleted, whatever the caller's database says. A manifest written before
        points recorded their terms, and never noted since, is the caller's decision."""
        keep = self.keep(point_id)
        if not keep.allows_delete(now or datetime.now(UTC)) and not (
            copy_in is not None and copy_in.has_point(point_id)
        ):
            raise PointRetained(point_id, keep.until)
        self.backend.delete(manifest_key(point_id))

    def stored_bytes(self) -> int:
        """Bytes of every object in the store (chunks, manifests, leases)."""
        return sum(self.backend.size(key) for key in self.backend.list(""))


def entries_of(manifest: Manifest, path: str = "", point_id: str = "") -> list[Entry]:
    """The entries directly inside `path` of a manifest, whichever store holds it."""
    path = normalize_sub_path(path)
    kinds = {node.path: node.kind for node in manifest.nodes}
    if kinds.get(path) != KIND_DIR:
        raise StorageError(f"{path or '/'!r} is not a directory in point {point_id!r}.")
    return [
        Entry(
            name=node.name,
            kind=node.kind,
            size=node.size,
            mode=node.mode,
            mtime=node.mtime_ns / 1e9,
            path=node.path,
            target=node.target,
        )
        for node in manifest.nodes
        if node.path and node.parent == path
    ]
