"""A byte stream as a point of one file, and a point's file read back as a stream.

A database dump is never a tree on disk: `backup_stream` cuts the bytes a process writes to
a pipe into content-defined chunks as they come, stores them under the point's lease like
any backup (`backup._chunk_writer`), and publishes a manifest holding one file, so verify,
browse, download, drills, archive and replica copies treat the point as any other. A dump
of a database whose tables did not change cuts into the same chunks, stored once.
`read_stream` yields a point's file in order, every chunk hash-checked, for a process's
stdin (pg_restore): nothing is written to disk on either side.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import blake3

from .backends import Retention
from .backup import BackupResult, _chunk_writer
from .chunks import SMALL_AVG_SIZE, SMALL_MAX_SIZE, SMALL_MIN_SIZE, StreamChunker
from .errors import StorageError
from .leases import WriteSession
from .manifest import KIND_DIR, KIND_FILE, Manifest, Node, Terms, check_point_id
from .restore import _prefetch, normalize_sub_path
from .writer import Progress

if TYPE_CHECKING:
    from .store import VaultStore

# A dump's rows change in place: an edit rewrites the chunks around it, so finer chunks
# store less of a mostly unchanged dump. docs/workloads.md has the measurement behind the
# small-file stream's 256 KiB (a quarter to a third of what 1 MiB chunks rewrite).
STREAM_SIZES = (SMALL_MIN_SIZE, SMALL_AVG_SIZE, SMALL_MAX_SIZE)
FILE_MODE = stat.S_IRUSR | stat.S_IWUSR
DIR_MODE = stat.S_IRWXU


def backup_stream(
    store: VaultStore,
    point_id: str,
    name: str,
    pieces: Iterable[bytes],
    *,
    source: str,
    progress: Progress | None = None,
    expected_bytes: int = 0,
    retention: Retention | None = None,
    terms: Terms | None = None,
) -> BackupResult:
    """Store the bytes of ``pieces`` as point ``point_id`` holding one file, ``name``.

    ``pieces`` is consumed once, as it is produced; an exception from it (the producer
    failed, the job was cancelled) publishes nothing, and the lease it leaves lets GC take
    the chunks written. ``expected_bytes`` only scales ``progress`` until the real size is
    known. The manifest is written last, as for a tree."""
    check_point_id(point_id)
    check_file_name(name)
    started_at_ns = time.time_ns()
    session = WriteSession(store.backend, point_id, "backup", retention, timings=store.timings)
    session.open()
    try:
        node = Node(name, KIND_FILE, FILE_MODE, started_at_ns)
        with ThreadPoolExecutor(store.workers, thread_name_prefix="holdfast-stream") as pool:
            writer = _chunk_writer(store, session, pool, progress, expected_bytes)
            chunker = StreamChunker(*STREAM_SIZES)
            for piece in pieces:
                node.size += len(piece)
                for _offset, chunk in chunker.feed(piece):
                    node.extents.append((writer.add(chunk), 0, len(chunk)))
            for _offset, chunk in chunker.finish():
                node.extents.append((writer.add(chunk), 0, len(chunk)))
            writer.finish()
        session.settle(writer.reused)
        node.mtime_ns = time.time_ns()
        manifest = Manifest(
            point_id=point_id,
            created_at=time.time(),
            source=source,
            nodes=[Node("", KIND_DIR, DIR_MODE, node.mtime_ns), node],
            chunks=writer.chunks,
            logical_bytes=node.size,
            file_count=1,
            started_at_ns=started_at_ns,
            terms=terms,
        )
        raw = manifest.to_bytes()
        session.commit(raw)
    except BaseException:
        session.release()
        raise
    return BackupResult(
        point_id=point_id,
        manifest_digest=blake3.blake3(raw).hexdigest(),
        logical_bytes=node.size,
        stored_bytes=writer.stored_bytes + len(raw),
        new_chunks=writer.new_chunks,
        reused_chunks=len(writer.reused),
        file_count=1,
        dir_count=1,
        read_bytes=node.size,
    )


def check_file_name(name: str) -> str:
    """One plain file name: no folder, nothing a restore would refuse."""
    if not name or "/" in name or normalize_sub_path(name) != name:
        raise StorageError(f"{name!r} is not a plain file name.")
    return name


def read_stream(store: VaultStore, point_id: str, name: str) -> Iterator[bytes]:
    """The bytes of file ``name`` of a point, in order, each chunk hash-checked as read
    (fetched a few ahead on a thread pool). `PointNotFound` without a manifest."""
    manifest = store.manifest(point_id)
    node = next((n for n in manifest.nodes if n.path == name and n.kind == KIND_FILE), None)
    if node is None:
        raise StorageError(f"Recovery point {point_id!r} holds no file {name!r}.")
    order = [digest for digest, _offset, _length in node.extents]
    with ThreadPoolExecutor(store.workers, thread_name_prefix="holdfast-stream") as pool:
        chunks = _prefetch(store, order, manifest.chunks, pool)
        try:
            for (_digest, offset, length), (_fetched, data) in zip(
                node.extents, chunks, strict=False
            ):
                yield data[offset : offset + length]
        finally:
            chunks.close()
