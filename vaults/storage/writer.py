"""The chunk write pipeline of a writer that publishes a point.

`ChunkWriter` hashes chunks on the calling thread and compresses and stores them on a thread
pool, naming every batch in the writer's lease (`leases.WriteSession.record`) before checking
which chunks the store already has. It is given the callables it needs (store a chunk, name
chunks in the lease, keep the lease alive), so it knows neither the store nor the lease.
`SmallFileStream` cuts the concatenation of small files into chunks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from .backends import Backend, Retention
from .chunks import (
    SMALL_AVG_SIZE,
    SMALL_MAX_SIZE,
    SMALL_MIN_SIZE,
    StreamChunker,
    chunk_key,
    encode_chunk,
)
from .crypto import SealedBackend
from .errors import ObjectNotFound
from .manifest import Node

Progress = Callable[[int, int], None]

# Chunk ids are recorded in the lease, and checked against the store, per batch.
BATCH_CHUNKS = 64
BATCH_BYTES = 64 * 1024 * 1024
# Batches whose chunks may be compressing/writing while the next one is read.
BATCHES_IN_FLIGHT = 2


def keep_locked(backend: Backend, key: str, retention: Retention) -> bool:
    """Extend a stored object's lock to `retention`; False if the object is missing."""
    try:
        lock = backend.lock_of(key)
        if lock is None or not lock.covers(retention):
            backend.extend_retention(key, retention)
    except ObjectNotFound:
        return False
    return True


def store_chunk(
    backend: SealedBackend,
    digest: str,
    data: bytes,
    *,
    level: int,
    retention: Retention | None = None,
) -> int | None:
    """Write a chunk unless present; the stored size if written, None if it existed.

    The chunk is compressed and sealed in one pass (`encode_chunk`, `SealedBackend.seal`).
    With a `retention`, a chunk already stored has its lock extended to cover it (a
    deduplicated chunk is locked until the latest expiry of the points using it)."""
    key = chunk_key(digest)
    if retention is not None and backend.supports_object_lock:
        if keep_locked(backend, key, retention):
            return None
        blob = backend.seal(key, *encode_chunk(data, level))
        if not backend.put_sealed(key, blob, retention, if_absent=True):
            # Another writer stored it between our look and our write: extend its lock.
            keep_locked(backend, key, retention)
            return None
        return len(blob)
    if backend.exists(key):
        return None
    blob = backend.seal(key, *encode_chunk(data, level))
    backend.put_sealed(key, blob, retention)
    return len(blob)


class ChunkWriter:
    """Hashes chunks on the calling thread, compresses and writes them on a pool."""

    def __init__(
        self,
        *,
        chunk_id: Callable[[bytes], str],
        store_chunk: Callable[[str, bytes], int | None],
        record: Callable[[list[str]], None],
        heartbeat: Callable[[], None],
        pool: ThreadPoolExecutor,
        progress: Progress | None,
        total: int,
    ) -> None:
        # Store one chunk (None: it was there already); name chunks in the writer's lease,
        # which must happen before they are looked for; keep the lease alive. `chunk_id`
        # is the store's keyed hash.
        self.chunk_id = chunk_id
        self.store_chunk = store_chunk
        self.record = record
        self.heartbeat = heartbeat
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

    def add(self, data: bytes, digest: str = "") -> str:
        """Reference a chunk (written unless the store has it); its id. ``digest``: an id the
        caller has checked already (an import keeps the ids its manifest names)."""
        digest = digest or self.chunk_id(data)
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
            self.record([digest for digest, _ in self._batch])
            futures = [
                (digest, self.pool.submit(self.store_chunk, digest, data))
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
        self.heartbeat()
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
