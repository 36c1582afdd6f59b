"""The backup path: a source tree into a new point, and a point imported from elsewhere.

`backup` reads the tree (`source`), cuts files into chunks and writes them through a
`ChunkWriter` under the point's lease (`leases.WriteSession`), then publishes the manifest
last: a point exists only once every chunk it names is durable. `import_point` publishes a
point whose manifest and chunks come from the archive tier, under the same lease protocol.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import blake3

from .backends import Retention
from .chunks import MIN_SIZE, StreamChunker, chunk_key
from .errors import CorruptChunk, SourceUnreadable, StorageError
from .leases import WriteSession
from .manifest import KIND_DIR, KIND_FILE, KIND_SYMLINK, Manifest, Node, Terms, check_point_id
from .source import (
    Readahead,
    ScanItem,
    open_source_file,
    open_source_root,
    read_fd,
    reused_node,
    same_file,
    scan,
)
from .writer import ChunkWriter, Progress, SmallFileStream, keep_locked, store_chunk

if TYPE_CHECKING:
    from .store import VaultStore

# Files below this size are concatenated into one stream that is cut by FastCDC (with
# smaller chunks, see chunks.SMALL_AVG_SIZE), so a directory of small files becomes a few
# ~256 KiB objects instead of one object (and two fsyncs) per file, while an edit still
# only changes the chunks around it.
SMALL_FILE_THRESHOLD = MIN_SIZE
# Chunk ids per lease refs object when naming a parent's chunks.
PARENT_REFS_BATCH = 4096


@dataclass(frozen=True)
class BackupResult:
    point_id: str
    manifest_digest: str
    logical_bytes: int
    stored_bytes: int  # chunk objects newly written plus the manifest
    new_chunks: int
    reused_chunks: int
    file_count: int
    dir_count: int = 0
    symlink_count: int = 0
    # Sockets, FIFOs and devices, and files that vanished while the backup ran.
    skipped: tuple[str, ...] = ()
    # Bytes read from source files; files reused from the parent are not read.
    read_bytes: int = 0
    # Files whose size, mtime, ctime, inode and device matched the parent's entry, so its
    # extents were reused without opening them.
    unchanged_files: int = 0
    parent: str | None = None  # the parent actually used, None after a fallback


@dataclass(frozen=True)
class ImportResult:
    point_id: str
    manifest_digest: str
    written_chunks: int
    present_chunks: int
    stored_bytes: int


def backup(
    store: VaultStore,
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
    """Back up the tree under `source` as point `point_id`.

    Symlinks are recorded, never followed. The manifest is written last, so the point
    exists only once every chunk it names is durable.

    `parent`, a previous point of this store, lets regular files whose size, mtime,
    ctime, inode and device all match the parent's entry reuse its extents without
    being read (docs/storage.md, "Incremental backups"). A missing, damaged or version
    1 parent manifest just means every file is read.

    `retention` locks every object of the point (chunks reused included) until then,
    on backends with object lock (docs/storage.md, "Object Lock"). `terms` go into the
    manifest: until when no sweep may delete the point, whatever the database says
    (docs/storage.md, "What the storage was told to keep").

    `check_source(source, opened)` judges the directory actually opened (`opened` is its
    real path, every symlink followed) and returns a sentence to refuse it; see
    `source.open_source_root`.

    `file_progress(done, total)` is called before each file or folder of the tree is
    taken: a caller that raises from it (a cancelled job) stops the backup at that
    boundary, and nothing is published.
    """
    check_point_id(point_id)
    if parent is not None:
        check_point_id(parent)
    started_at_ns = time.time_ns()
    source = Path(source)
    root_fd, root = open_source_root(source, check_source)
    try:
        return _backup_tree(
            store,
            source,
            root,
            root_fd,
            point_id,
            progress,
            parent,
            retention,
            terms,
            started_at_ns,
            file_progress,
        )
    except SourceUnreadable as exc:
        raise SourceUnreadable(str(exc).replace(root, str(source))) from None
    finally:
        os.close(root_fd)


def _backup_tree(
    store: VaultStore,
    source: Path,
    root: str,
    root_fd: int,
    point_id: str,
    progress: Progress | None,
    parent: str | None,
    retention: Retention | None,
    terms: Terms | None,
    started_at_ns: int,
    file_progress: Progress | None = None,
) -> BackupResult:
    root_stat = os.fstat(root_fd)
    # Every file read must really lie under the directory opened (see source.open_source_file).
    beneath = os.readlink(root) if root.startswith("/proc/self/fd/") else None
    tree = scan(Path(root), root_stat)
    base = _parent_files(store, parent) if parent is not None else None
    unchanged: dict[str, Node] = {}
    if base is not None:
        for item in tree.items:
            old = base[0].get(item.rel) if item.kind == KIND_FILE else None
            if old is not None and same_file(old, item.st):
                unchanged[item.rel] = old

    session = WriteSession(store.backend, point_id, "backup", retention, timings=store.timings)
    session.open()
    try:
        nodes: list[Node] = []
        skipped = list(tree.skipped)
        read_bytes = 0
        with ThreadPoolExecutor(store.workers, thread_name_prefix="holdfast-backup") as pool:
            if unchanged:
                _keep_stored(store, session, unchanged, pool)
            writer = _chunk_writer(store, session, pool, progress, tree.total_bytes)
            small = SmallFileStream(writer)
            readahead = Readahead(tree.items, unchanged)
            files_reached = 0
            try:
                for position, item in enumerate(tree.items):
                    if file_progress is not None:
                        file_progress(position, len(tree.items))
                    old = unchanged.get(item.rel)
                    node: Node | None
                    if old is not None:
                        assert base is not None
                        node = reused_node(item, old)
                        writer.adopt(node.extents, base[1])
                    else:
                        if item.kind == KIND_FILE:
                            files_reached += 1
                            readahead.reached(files_reached)
                        node = _back_up_item(item, writer, small, beneath)
                        if node is not None and node.kind == KIND_FILE:
                            read_bytes += node.size
                    if node is None:
                        skipped.append(item.rel)
                    else:
                        nodes.append(node)
            finally:
                readahead.stop()
            small.finish()
            writer.finish()
        session.settle([*writer.reused, *writer.adopted])
        files = [node for node in nodes if node.kind == KIND_FILE]
        manifest = Manifest(
            point_id=point_id,
            created_at=time.time(),
            source=str(source),
            nodes=nodes,
            chunks=writer.chunks,
            logical_bytes=sum(node.size for node in files),
            file_count=len(files),
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
        logical_bytes=manifest.logical_bytes,
        stored_bytes=writer.stored_bytes + len(raw),
        new_chunks=writer.new_chunks,
        reused_chunks=len(writer.reused) + len(writer.adopted),
        file_count=manifest.file_count,
        dir_count=sum(1 for node in nodes if node.kind == KIND_DIR),
        symlink_count=sum(1 for node in nodes if node.kind == KIND_SYMLINK),
        skipped=tuple(skipped),
        read_bytes=read_bytes,
        unchanged_files=len(unchanged),
        parent=parent if base is not None else None,
    )


def _chunk_writer(
    store: VaultStore,
    session: WriteSession,
    pool: ThreadPoolExecutor,
    progress: Progress | None,
    total: int,
) -> ChunkWriter:
    """A chunk writer storing into ``store`` under ``session``'s lease and lock."""
    return ChunkWriter(
        chunk_id=store.backend.chunk_id,
        store_chunk=partial(
            store_chunk, store.backend, level=store.level, retention=session.retention
        ),
        record=session.record,
        heartbeat=session.heartbeat_if_due,
        pool=pool,
        progress=progress,
        total=total,
    )


def _parent_files(store: VaultStore, parent: str) -> tuple[dict[str, Node], dict[str, int]] | None:
    """The parent's reusable file entries by path, and its chunk sizes.

    None when the parent cannot serve (missing, damaged, or version 1 without the
    stamps we compare). Entries whose ctime is within `timestamp_slack` of the start
    of the parent backup are left out: a write in the same timestamp tick as the
    parent's read could have left every stamp unchanged.
    """
    try:
        manifest = store.manifest(parent)
    except StorageError:  # PointNotFound included
        return None
    if manifest.point_id != parent or manifest.started_at_ns is None:
        return None
    horizon = manifest.started_at_ns - int(store.timestamp_slack * 1e9)
    files: dict[str, Node] = {}
    for node in manifest.nodes:
        if (
            node.kind == KIND_FILE
            and node.ctime_ns is not None
            and node.ctime_ns < horizon
            and node.inode is not None
            and node.device is not None
            and sum(length for _c, _o, length in node.extents) == node.size
            and all(digest in manifest.chunks for digest, _o, _l in node.extents)
        ):
            files[node.path] = node
    return files, manifest.chunks


def _keep_stored(
    store: VaultStore, session: WriteSession, unchanged: dict[str, Node], pool: ThreadPoolExecutor
) -> None:
    """Name the chunks of unchanged files in the lease, then check they are stored.

    Files with a chunk missing (a damaged store, or a GC that took a chunk of a parent
    deleted meanwhile) are dropped from `unchanged` and read like any other. The lease
    entry keeps GC off the others; `WriteSession.settle` re-checks them at the end.
    """
    wanted = list(
        dict.fromkeys(digest for node in unchanged.values() for digest, _o, _l in node.extents)
    )
    missing: set[str] = set()
    for start in range(0, len(wanted), PARENT_REFS_BATCH):
        batch = wanted[start : start + PARENT_REFS_BATCH]
        session.record(batch)
        present = pool.map(partial(_present, store, session.retention), batch)
        missing.update(digest for digest, ok in zip(batch, present, strict=True) if not ok)
    if missing:
        for path, node in list(unchanged.items()):
            if any(digest in missing for digest, _o, _l in node.extents):
                del unchanged[path]


def _present(store: VaultStore, retention: Retention | None, digest: str) -> bool:
    key = chunk_key(digest)
    if retention is not None and store.backend.supports_object_lock:
        return keep_locked(store.backend, key, retention)
    return store.backend.exists(key)


def _back_up_item(
    item: ScanItem,
    writer: ChunkWriter,
    small: SmallFileStream,
    beneath: str | None = None,
) -> Node | None:
    st = item.st
    if item.kind == KIND_DIR:
        return Node(item.rel, KIND_DIR, stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    if item.kind == KIND_SYMLINK:
        try:
            target = os.readlink(item.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SourceUnreadable(f"Cannot read symlink {item.path}: {exc.strerror}.") from None
        return Node(item.rel, KIND_SYMLINK, 0, st.st_mtime_ns, target=target)
    fd = open_source_file(item, beneath)
    if fd is None:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        node = Node(
            item.rel,
            KIND_FILE,
            stat.S_IMODE(st.st_mode),
            st.st_mtime_ns,
            ctime_ns=st.st_ctime_ns,
            inode=st.st_ino,
            device=st.st_dev,
        )
        if st.st_size < SMALL_FILE_THRESHOLD:
            data = b"".join(read_fd(fd, item.path, st.st_size))
            node.size = len(data)
            if data:
                small.add(node, data)
            return node
        chunker = StreamChunker()
        for piece in read_fd(fd, item.path, st.st_size):
            node.size += len(piece)
            for _offset, chunk in chunker.feed(piece):
                node.extents.append((writer.add(chunk), 0, len(chunk)))
        for _offset, chunk in chunker.finish():
            node.extents.append((writer.add(chunk), 0, len(chunk)))
        return node
    finally:
        os.close(fd)


def import_point(
    store: VaultStore,
    point_id: str,
    manifest_bytes: bytes,
    chunks: Iterable[tuple[str, bytes]],
    retention: Retention | None = None,
) -> ImportResult:
    """Publish a point whose manifest and chunk plaintexts come from elsewhere.

    Used by rehydration from the archive tier. Every chunk is hash-checked, the
    manifest must reference exactly the chunks supplied, and the same lease protocol
    as a backup keeps GC away from chunks that already exist.
    """
    manifest = Manifest.from_bytes(manifest_bytes)
    if manifest.point_id != point_id:
        raise StorageError(f"The manifest belongs to point {manifest.point_id!r}.")
    digest = blake3.blake3(manifest_bytes).hexdigest()
    if store.has_point(point_id):
        if store.read_manifest(point_id) == manifest_bytes:
            return ImportResult(point_id, digest, 0, len(manifest.chunks), 0)
        raise StorageError(f"A different point {point_id!r} already exists in this store.")
    session = WriteSession(store.backend, point_id, "import", retention, timings=store.timings)
    session.open()
    try:
        seen: set[str] = set()
        with ThreadPoolExecutor(store.workers, thread_name_prefix="holdfast-import") as pool:
            writer = _chunk_writer(store, session, pool, None, manifest.logical_bytes)
            for claimed, data in chunks:
                if not store.backend.chunk_matches(claimed, data):
                    raise CorruptChunk(claimed, "its content does not match its keyed hash")
                writer.add(data, claimed)
                seen.add(claimed)
            writer.finish()
        missing = set(manifest.chunks) - seen
        if missing:
            raise StorageError(
                f"{len(missing)} chunk(s) of point {point_id!r} were not supplied,"
                f" e.g. {sorted(missing)[0]}."
            )
        session.settle(writer.reused)
        session.commit(manifest_bytes)
    except BaseException:
        session.release()
        raise
    return ImportResult(
        point_id, digest, writer.new_chunks, len(writer.reused), writer.stored_bytes
    )
