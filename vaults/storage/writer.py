"""Writers that publish a point: the lease protocol and the chunk write pipeline.

A `WriteSession` is the lease of one backup or rehydration; `ChunkWriter` hashes chunks on
the calling thread and compresses and stores them on a thread pool, naming every batch in
the lease before checking which chunks the store already has. See `VaultStore.gc` and
docs/storage.md for why this never races garbage collection.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .chunks import (
    SMALL_AVG_SIZE,
    SMALL_MAX_SIZE,
    SMALL_MIN_SIZE,
    StreamChunker,
    chunk_id,
    chunk_key,
)
from .errors import ConcurrentGcConflict, ObjectNotFound, StorageError
from .manifest import Node, check_point_id, manifest_key

if TYPE_CHECKING:
    from .backends import Retention
    from .store import VaultStore

Progress = Callable[[int, int], None]

# Chunk ids are recorded in the lease, and checked against the store, per batch.
BATCH_CHUNKS = 64
BATCH_BYTES = 64 * 1024 * 1024
# Batches whose chunks may be compressing/writing while the next one is read.
BATCHES_IN_FLIGHT = 2
# A writer or GC stops before this fraction of its timeout has passed without a heartbeat,
# so the other side never sees it as stale while it still acts.
SAFETY = 0.8


def lease_prefix(point_id: str) -> str:
    return f"leases/{check_point_id(point_id)}/"


class WriteSession:
    """The lease of one writer (a backup or a rehydration) that will publish a manifest.

    The lease is how GC learns about chunks a writer relies on before its manifest exists;
    see `VaultStore.gc` for the argument that the two never race.
    """

    def __init__(
        self, store: VaultStore, point_id: str, kind: str, retention: Retention | None = None
    ) -> None:
        self.store = store
        # The object lock every chunk and the manifest of this point get (None: no lock).
        self.retention = retention
        self.backend = store.backend
        self.point_id = point_id
        self.kind = kind
        self.prefix = lease_prefix(point_id)
        self.started_at = time.time()
        self._last_beat = 0.0
        self._refs = 0
        self._open = False

    def open(self) -> None:
        if self.backend.exists(manifest_key(self.point_id)):
            raise StorageError(f"Recovery point {self.point_id!r} already exists in this store.")
        lease = self.store._lease_state(self.point_id)
        if lease is not None and time.time() - lease < self.store.lease_timeout:
            raise StorageError(f"Another writer is already creating point {self.point_id!r}.")
        self._open = True
        self._beat()

    def _put(self, key: str, document: dict[str, Any]) -> None:
        now = time.time()
        if self._last_beat and now - self._last_beat > self.store.lease_timeout * SAFETY:
            raise StorageError(
                f"The lease of point {self.point_id!r} went {now - self._last_beat:.0f} s without"
                " a heartbeat, so garbage collection may have treated it as stale; retry."
            )
        document["at"] = now
        self.backend.put(key, json.dumps(document).encode())
        self._last_beat = now

    def _beat(self) -> None:
        self._put(
            self.prefix + "lease.json",
            {"point_id": self.point_id, "kind": self.kind, "started_at": self.started_at},
        )

    def heartbeat_if_due(self) -> None:
        if time.time() - self._last_beat > min(60.0, self.store.lease_timeout * 0.1):
            self._beat()

    def record(self, chunk_ids: list[str]) -> None:
        """Durably name chunks in the lease; must precede checking whether they exist."""
        self._refs += 1
        self._put(f"{self.prefix}refs-{self._refs:06d}.json", {"chunks": chunk_ids})

    def settle(self, reused: Iterable[str]) -> None:
        """Make sure no GC that missed our lease deleted a chunk we found already stored.

        A GC that read the leases before we recorded a chunk had published its marker
        before that; we wait for every marker present now to go away, then re-check.
        """
        waiting = set(self.backend.list("gc/"))
        while waiting:
            now = time.time()
            for key in list(waiting):
                if self._gc_marker_done(key, now):
                    waiting.discard(key)
            if waiting:
                self.heartbeat_if_due()
                time.sleep(self.store.poll_interval)
        missing = [c for c in reused if not self.backend.exists(chunk_key(c))]
        if missing:
            raise ConcurrentGcConflict(
                f"A garbage collection deleted {len(missing)} chunk(s) this backup had reused"
                f" (e.g. {missing[0]}); point {self.point_id!r} was not written. Run the"
                " backup again."
            )

    def _gc_marker_done(self, key: str, now: float) -> bool:
        """A GC marker stops holding us once it is gone, or once its GC is evidently dead:
        not refreshed for ``gc_stale`` seconds (a live GC refreshes it every few seconds and
        stops deleting before it could look that old), or older than ``gc_timeout``."""
        try:
            marker = json.loads(self.backend.get(key))
        except ObjectNotFound:
            return True
        except ValueError:
            marker = {}
        try:
            started = float(marker.get("started_at", 0.0))
            beat = float(marker.get("beat_at", started))
        except (TypeError, ValueError, AttributeError):
            started = beat = 0.0
        return now - beat > self.store.gc_stale or now - started > self.store.gc_timeout

    def commit(self, manifest_bytes: bytes) -> None:
        now = time.time()
        if now - self._last_beat > self.store.lease_timeout * SAFETY:
            raise StorageError(f"The lease of point {self.point_id!r} lapsed; retry.")
        self.backend.put(manifest_key(self.point_id), manifest_bytes, self.retention)
        self.release()

    def release(self) -> None:
        if not self._open:
            return
        self._open = False
        keys = list(self.backend.list(self.prefix))
        # lease.json last: until then the refs keep protecting what they name.
        for key in sorted(keys, key=lambda k: k.endswith("/lease.json")):
            self.backend.delete(key)


class ChunkWriter:
    """Hashes chunks on the calling thread, compresses and writes them on a pool."""

    def __init__(
        self,
        store: VaultStore,
        session: WriteSession,
        pool: ThreadPoolExecutor,
        progress: Progress | None,
        total: int,
    ) -> None:
        self.store = store
        self.session = session
        self.pool = pool
        self.progress = progress
        self.total = total
        self.done = 0
        self.chunks: dict[str, int] = {}  # every chunk referenced, in first-use order
        self.reused: list[str] = []
        # Chunks taken from the parent point's manifest without reading the file; like
        # `reused`, they were named in the lease and must be re-checked before publishing.
        self.adopted: list[str] = []
        self.new_chunks = 0
        self.stored_bytes = 0
        self._batch: list[tuple[str, bytes]] = []
        self._batch_bytes = 0
        self._unreported = 0
        self._in_flight: deque[tuple[list[tuple[str, Future[int | None]]], int]] = deque()

    def add(self, data: bytes) -> str:
        digest = chunk_id(data)
        self._unreported += len(data)
        if digest not in self.chunks:
            self.chunks[digest] = len(data)
            self._batch.append((digest, data))
            self._batch_bytes += len(data)
            if len(self._batch) >= BATCH_CHUNKS or self._batch_bytes >= BATCH_BYTES:
                self.flush_batch()
        return digest

    def adopt(self, extents: list[tuple[str, int, int]], sizes: dict[str, int]) -> None:
        """Reference a parent's chunks for an unchanged file; they must already be recorded
        in the lease (and found stored) by the caller."""
        for digest, _offset, length in extents:
            self._unreported += length
            if digest not in self.chunks:
                self.chunks[digest] = sizes[digest]
                self.adopted.append(digest)

    def flush_batch(self) -> None:
        if self._batch:
            self.session.record([digest for digest, _ in self._batch])
            futures = [
                (
                    digest,
                    self.pool.submit(self.store._store_chunk, digest, data, self.session.retention),
                )
                for digest, data in self._batch
            ]
            self._in_flight.append((futures, self._unreported))
            self._batch, self._batch_bytes, self._unreported = [], 0, 0
        while len(self._in_flight) > BATCHES_IN_FLIGHT:
            self._drain_one()

    def finish(self) -> None:
        self.flush_batch()
        if self._unreported:
            self._in_flight.append(([], self._unreported))
            self._unreported = 0
        while self._in_flight:
            self._drain_one()

    def _drain_one(self) -> None:
        futures, logical = self._in_flight.popleft()
        for digest, future in futures:
            written = future.result()
            if written is None:
                self.reused.append(digest)
            else:
                self.new_chunks += 1
                self.stored_bytes += written
        self.done += logical
        self.session.heartbeat_if_due()
        if self.progress is not None:
            self.progress(self.done, max(self.total, self.done))


class SmallFileStream:
    """Concatenates small files and maps the chunks cut from them back to file extents."""

    def __init__(self, writer: ChunkWriter) -> None:
        self.writer = writer
        self.chunker = StreamChunker(SMALL_MIN_SIZE, SMALL_AVG_SIZE, SMALL_MAX_SIZE)
        self.offset = 0
        self.pending: deque[tuple[Node, int, int]] = deque()

    def add(self, node: Node, data: bytes) -> None:
        start = self.offset
        self.offset += len(data)
        self.pending.append((node, start, self.offset))
        for chunk_offset, chunk in self.chunker.feed(data):
            self._emit(chunk_offset, chunk)

    def finish(self) -> None:
        for chunk_offset, chunk in self.chunker.finish():
            self._emit(chunk_offset, chunk)

    def _emit(self, chunk_offset: int, chunk: bytes) -> None:
        digest = self.writer.add(chunk)
        chunk_end = chunk_offset + len(chunk)
        for node, start, end in self.pending:
            if start >= chunk_end:
                break
            low, high = max(start, chunk_offset), min(end, chunk_end)
            if high > low:
                node.extents.append((digest, low - chunk_offset, high - low))
        while self.pending and self.pending[0][2] <= chunk_end:
            self.pending.popleft()
