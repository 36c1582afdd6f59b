"""Copying a recovery point from one vault's store to another's (replica vaults, SPEC 3.10).

Chunk ids are the hash of their plaintext, so a chunk the replica already holds (from an
earlier copy of an older point) is never sent again: only the chunks it lacks travel, as
stored (compressed) objects, each one decoded and re-hashed before it is written. The
manifest travels byte for byte, last, so the replica's point has the same id, the same
terms and the same content digest as the source's; it is read back and compared before the
copy counts.

A copy writes under the replica store's lease protocol (`leases.WriteSession`), so the
replica's GC never takes a chunk a copy in flight relies on. It is resumable: a copy killed
half-way leaves its chunks in the replica, and the next attempt finds them there and sends
only the rest. It is idempotent: a point already in the replica with the same manifest is
done. One copy of a point runs at a time (the caller's job row sees to it), so a new
attempt takes over the lease a killed one left behind instead of waiting for it to expire.

An archived point (the archive tier's packs, index and manifest copy) is copied the same
way into the replica's archive tier: `copy_archived`.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import blake3

from .archive import ArchiveStore
from .backends import Backend, Retention
from .chunks import chunk_key, decode_chunk
from .errors import CorruptChunk, ObjectNotFound, StorageError
from .leases import WriteSession
from .manifest import Manifest, manifest_key
from .store import VaultStore
from .writer import BATCH_CHUNKS, BATCHES_IN_FLIGHT, Progress, keep_locked


@dataclass(frozen=True)
class CopyResult:
    point_id: str
    digest: str  # BLAKE3 of the manifest: the point's content digest, as at the source
    chunks_total: int
    chunks_copied: int  # chunks the replica lacked and that travelled
    bytes_moved: int  # bytes written to the replica (chunk objects and the manifest)
    logical_bytes: int
    already_there: bool = False


class CopyRefused(StorageError):
    """The copy cannot be made: the source copy is damaged or the replica holds another."""


def _digest(raw: bytes) -> str:
    return blake3.blake3(raw).hexdigest()


class _CopySession(WriteSession):
    """A writer's lease that takes over one left by a killed copy of the same point."""

    def open(self) -> None:
        if self.backend.exists(manifest_key(self.point_id)):
            raise StorageError(f"Recovery point {self.point_id!r} already exists in this store.")
        self._open = True
        self._beat()


def _send_chunk(
    source: Backend,
    target: Backend,
    chunk: str,
    size: int,
    retention: Retention | None,
) -> int | None:
    """Copy one chunk object unless the target has it; the bytes written, None if present.
    A present chunk on a locking target has its lock raised to ``retention``."""
    key = chunk_key(chunk)
    locking = retention is not None and target.supports_object_lock
    if locking:
        assert retention is not None
        if keep_locked(target, key, retention):
            return None
    elif target.exists(key):
        return None
    try:
        blob = source.get(key)
    except ObjectNotFound:
        raise CorruptChunk(chunk, "it is missing from the source store") from None
    decode_chunk(chunk, blob, size)  # raises CorruptChunk: a damaged chunk never travels
    if locking:
        assert retention is not None
        if not target.put_if_absent(key, blob, retention):
            keep_locked(target, key, retention)
            return None
    else:
        target.put(key, blob, retention)
    return len(blob)


def copy_point(
    source: VaultStore,
    target: VaultStore,
    point_id: str,
    *,
    expected_digest: str = "",
    retention: Retention | None = None,
    progress: Progress | None = None,
    on_chunk: Callable[[str], None] | None = None,
    parent: str | None = None,
) -> CopyResult:
    """Copy point ``point_id`` from ``source`` to ``target`` (see the module docstring).

    ``expected_digest`` (the digest the database recorded for the source point) is checked
    against the source manifest before anything is written; ``retention`` locks every
    object written on a target with object lock. ``on_chunk`` is called after each chunk
    has been handled (tests use it to stop a copy half-way).

    ``parent`` names a point already in ``target`` (the item's previous copy): its chunks
    are known to be there, so they are not looked up one by one; and while the parent's own
    lock covers ``retention``, theirs does too (a point's chunks are locked at least as long
    as its manifest, and locks only grow). At the end, the parent's manifest being still
    there stands for them: no GC takes a chunk a manifest names, and a manifest once
    deleted never comes back. A parent that is missing or damaged is simply not used."""
    raw = source.read_manifest(point_id)
    digest = _digest(raw)
    if expected_digest and digest != expected_digest:
        raise CopyRefused(
            f"The source manifest of point {point_id!r} does not match its recorded digest: "
            "the source copy is damaged; verify the source point."
        )
    manifest = Manifest.from_bytes(raw)
    chunks = list(manifest.chunks.items())
    if target.has_point(point_id):
        if target.read_manifest(point_id) != raw:
            raise CopyRefused(f"The replica already holds a different point {point_id!r}.")
        return CopyResult(
            point_id, digest, len(chunks), 0, 0, manifest.logical_bytes, already_there=True
        )
    known, parent = _parent_chunks(target, parent, retention)
    session = _CopySession(target.backend, point_id, "copy", retention, timings=target.timings)
    session.open()
    moved = 0
    copied = 0
    done = 0
    present: list[str] = []
    lock = threading.Lock()
    try:

        def one(item: tuple[str, int]) -> None:
            nonlocal moved, copied, done
            chunk, size = item
            written = None
            if chunk not in known:
                written = _send_chunk(
                    source.backend, target.backend, chunk, size, session.retention
                )
            with lock:
                if written is not None:
                    moved += written
                    copied += 1
                elif chunk not in known:
                    present.append(chunk)
                done += size
            if on_chunk is not None:
                on_chunk(chunk)

        # Batches are pipelined (the next one is named in the lease while one is in flight),
        # as a backup's writer does: per-object latency, not bandwidth, bounds a copy to S3.
        in_flight: deque[list[Future[None]]] = deque()
        with ThreadPoolExecutor(target.workers, thread_name_prefix="holdfast-copy") as pool:
            for start in range(0, len(chunks), BATCH_CHUNKS):
                batch = chunks[start : start + BATCH_CHUNKS]
                # Named in the lease before we look: the replica's GC keeps them from now on.
                session.record([chunk for chunk, _size in batch])
                in_flight.append([pool.submit(one, item) for item in batch])
                while len(in_flight) > BATCHES_IN_FLIGHT:
                    for future in in_flight.popleft():
                        future.result()
                    session.heartbeat_if_due()
                    if progress is not None:
                        progress(done, manifest.logical_bytes)
            while in_flight:
                for future in in_flight.popleft():
                    future.result()
        if progress is not None:
            progress(done, manifest.logical_bytes)
        session.settle(present)
        if parent is not None and not target.has_point(parent):
            raise StorageError(
                f"Point {parent!r} left the replica while point {point_id!r} was copied"
                " beside it; nothing was published. The copy is tried again."
            )
        session.commit(raw)
    except BaseException:
        session.release()
        raise
    if _digest(target.read_manifest(point_id)) != digest:
        raise CopyRefused(f"The replica's manifest of point {point_id!r} reads back different.")
    return CopyResult(
        point_id, digest, len(chunks), copied, moved + len(raw), manifest.logical_bytes
    )


def _parent_chunks(
    target: VaultStore, parent: str | None, retention: Retention | None
) -> tuple[frozenset[str], str | None]:
    """The chunks of ``parent`` in ``target`` that need no look-up (see `copy_point`)."""
    if parent is None:
        return frozenset(), None
    try:
        chunks = frozenset(target.manifest(parent).chunks)
        if retention is not None and target.backend.supports_object_lock:
            lock = target.backend.lock_of(manifest_key(parent))
            if lock is None or not lock.covers(retention):
                return frozenset(), None  # each chunk's lock is raised one by one
    except StorageError:
        return frozenset(), None
    return chunks, parent


def copy_archived(
    source: ArchiveStore,
    target: ArchiveStore,
    point_id: str,
    *,
    expected_digest: str = "",
    retention: Retention | None = None,
) -> CopyResult:
    """Copy an archived point's packs, index and manifest copy, manifest last; each pack is
    checked against the index's digest and the manifest against ``expected_digest``."""
    prefix = f"packs/{point_id}/"
    manifest_name = f"manifests/{point_id}.json"
    try:
        raw = source.backend.get(manifest_name)
        raw_index = source.backend.get(prefix + "index.json")
    except ObjectNotFound as exc:
        raise CopyRefused(f"The archived point {point_id!r} is incomplete: {exc}") from None
    digest = _digest(raw)
    index = json.loads(raw_index)
    if digest != index.get("manifest_digest") or (expected_digest and digest != expected_digest):
        raise CopyRefused(f"The archived manifest of point {point_id!r} is damaged.")
    manifest = Manifest.from_bytes(raw)
    if target.has_point(point_id):
        if target.backend.get(manifest_name) != raw:
            raise CopyRefused(f"The replica's archive already holds a different {point_id!r}.")
        return CopyResult(
            point_id, digest, len(manifest.chunks), 0, 0, manifest.logical_bytes, True
        )
    moved = 0
    for pack in index["packs"]:
        key = str(pack["key"])
        if target.backend.exists(key) and _digest(target.backend.get(key)) == pack["digest"]:
            continue  # written by an attempt that was stopped
        blob = source.backend.get(key)
        if _digest(blob) != pack["digest"]:
            raise CopyRefused(f"Archive pack {key} of point {point_id!r} is damaged.")
        target.backend.put(key, blob, retention)
        moved += len(blob)
    target.backend.put(prefix + "index.json", raw_index, retention)
    target.backend.put(manifest_name, raw, retention)
    if _digest(target.backend.get(manifest_name)) != digest:
        raise CopyRefused(f"The replica's archived manifest of {point_id!r} reads back different.")
    moved += len(raw_index) + len(raw)
    return CopyResult(
        point_id, digest, len(manifest.chunks), len(index["packs"]), moved, manifest.logical_bytes
    )
