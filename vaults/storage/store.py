"""The standard-tier vault store: deduplicated backups, restores, verification and GC.

Layout of a store's backend (docs/storage.md has the full format):

    chunks/<ab>/<blake3 hex>          chunk objects, written once
    manifests/<point_id>.json         one per complete recovery point, written last
    leases/<point_id>/lease.json      a writer in flight (backup or rehydration)
    leases/<point_id>/refs-<n>.json   chunk ids that writer has referenced so far
    gc/<run id>.json                  a garbage collection in flight
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Protocol

import blake3

from .backends import COMPLIANCE, GOVERNANCE, Backend, ObjectLock, Retention
from .chunks import (
    DEFAULT_LEVEL,
    MIN_SIZE,
    READ_SIZE,
    StreamChunker,
    chunk_key,
    decode_chunk,
    encode_chunk,
)
from .errors import (
    CorruptChunk,
    ObjectLocked,
    ObjectNotFound,
    PointNotFound,
    PointRetained,
    RestoreRefused,
    SourceRefused,
    SourceUnreadable,
    StorageError,
)
from .holds import Holds, Keep
from .manifest import (
    KIND_DIR,
    KIND_FILE,
    KIND_SYMLINK,
    Manifest,
    Node,
    Terms,
    check_point_id,
    chunk_ids_of,
    manifest_key,
    terms_of,
)
from .restore import TargetTree, normalize_sub_path, resolve_target, select_nodes
from .writer import SAFETY, ChunkWriter, Progress, SmallFileStream, WriteSession, lease_prefix

# Files below this size are concatenated into one stream that is cut by FastCDC (with
# smaller chunks, see chunks.SMALL_AVG_SIZE), so a directory of small files becomes a few
# ~256 KiB objects instead of one object (and two fsyncs) per file, while an edit still
# only changes the chunks around it.
SMALL_FILE_THRESHOLD = MIN_SIZE
RESTORE_LOOKAHEAD = 8
# Decoded chunks a restore keeps at hand: a point whose unchanged small files reuse a
# parent's chunks interleaves them with new ones, and must not fetch them twice.
RESTORE_RECENT = 4
# Chunk ids per lease refs object when naming a parent's chunks.
PARENT_REFS_BATCH = 4096
# How far a file's ctime must be older than the start of the parent backup before the
# file may be reused without reading: covers timestamp granularity (coarse kernel ticks,
# 1-2 s on some filesystems) so a write in the same tick as the parent's read is not missed.
DEFAULT_TIMESTAMP_SLACK = 2.0

DEFAULT_LEASE_TIMEOUT = 6 * 3600.0
DEFAULT_GC_TIMEOUT = 6 * 3600.0
# A running GC refreshes its marker this often; writers treat a marker not refreshed for
# DEFAULT_GC_STALE seconds as left by a GC that died, and a GC stops deleting before its own
# marker could look that old (see docs/storage.md, "A GC that dies").
GC_HEARTBEAT = 5.0
DEFAULT_GC_STALE = 30.0


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
class RestoreResult:
    point_id: str
    target: Path
    files: int
    dirs: int
    symlinks: int
    restored_bytes: int


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked_chunks: int
    bad_chunks: list[str]
    missing_chunks: list[str]
    manifest_digest: str = ""


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # "dir", "file" or "symlink"
    size: int
    mode: int
    mtime: float  # seconds since the epoch
    path: str = ""
    target: str = ""


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


@dataclass(frozen=True)
class RetentionResult:
    """What `VaultStore.apply_retention` did: objects looked at, extended, and missing."""

    objects: int
    extended: int
    missing: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # the storage's refusals, as sentences


@dataclass(frozen=True)
class PointLock:
    """A point's objects' locks as the storage confirms them (`VaultStore.point_lock`).

    `until` is the earliest retain-until date over the manifest and every chunk, `mode` the
    weakest mode; `short` names objects whose retention is missing or ends before `wanted`.
    A legal hold does not excuse a short retention (whoever may set one may lift it); holds
    are counted in `legal_holds`."""

    objects: int
    until: datetime | None
    mode: str | None
    legal_holds: int
    missing: list[str]
    short: list[str]

    @property
    def ok(self) -> bool:
        return not self.missing and not self.short


@dataclass(frozen=True)
class ImportResult:
    point_id: str
    manifest_digest: str
    written_chunks: int
    present_chunks: int
    stored_bytes: int


@dataclass
class _ScanItem:
    rel: str
    path: str
    kind: str
    st: os.stat_result


@dataclass
class _Scan:
    items: list[_ScanItem] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    total_bytes: int = 0


def _open_source_file(item: _ScanItem, beneath: str | None = None) -> int | None:
    """Open a scanned file, or None if it went away or became a symlink since the scan.

    With `beneath` (the source root's real path), a file that opened somewhere else is
    refused too: a directory on its way swapped for a symlink mid-backup (O_NOFOLLOW guards
    only the last component) must not let the backup read the store or anything else."""
    try:
        fd = os.open(item.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a symlink since the scan
            return None
        raise SourceUnreadable(f"Cannot read {item.path}: {exc.strerror}.") from None
    if beneath is not None and not os.readlink(f"/proc/self/fd/{fd}").startswith(
        beneath.rstrip("/") + "/"
    ):
        os.close(fd)
        return None
    return fd


def _open_source_root(
    source: Path, check: Callable[[str, str], str | None] | None
) -> tuple[int, str]:
    """Open the backup source directory and judge it by what was opened, not by its name.

    The real path of the open directory (``/proc/self/fd/N``) is what `check` sees, so a
    source replaced by a symlink into the store or elsewhere is refused, and a swap after the
    check changes nothing: the whole scan then reads through this descriptor's path, never
    `source` again. Without procfs the check falls back to the resolved path, and a swap in
    that moment could still win.
    """
    try:
        fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except NotADirectoryError:
        raise StorageError(f"Backup source {source} is not a directory.") from None
    except OSError as exc:
        raise SourceUnreadable(f"Cannot read backup source {source}: {exc.strerror}.") from None
    try:
        root = f"/proc/self/fd/{fd}"
        if os.path.isdir(root):
            opened = os.readlink(root)
        else:  # pragma: no cover - every Linux has procfs
            root = opened = os.path.realpath(source)
        refusal = check(str(source), opened) if check is not None else None
        if refusal:
            raise SourceRefused(refusal)
    except BaseException:
        os.close(fd)
        raise
    return fd, root


def _same_file(old: Node, st: os.stat_result) -> bool:
    """Whether a parent's file entry still describes the file, by its stat alone."""
    return (
        old.size == st.st_size
        and old.mtime_ns == st.st_mtime_ns
        and old.ctime_ns == st.st_ctime_ns
        and old.inode == st.st_ino
        and old.device == st.st_dev
    )


def _reused_node(item: _ScanItem, old: Node) -> Node:
    st = item.st
    return Node(
        item.rel,
        KIND_FILE,
        stat.S_IMODE(st.st_mode),
        st.st_mtime_ns,
        size=st.st_size,
        extents=list(old.extents),
        ctime_ns=st.st_ctime_ns,
        inode=st.st_ino,
        device=st.st_dev,
    )


def _read_fd(fd: int, path: str, size: int) -> Iterator[bytes]:
    while True:
        try:
            piece = os.read(fd, READ_SIZE if size >= READ_SIZE else max(size, 65536))
        except OSError as exc:
            raise SourceUnreadable(f"Cannot read {path}: {exc.strerror}.") from None
        if not piece:
            return
        yield piece


class ArchiveCopies(Protocol):
    """Another tier that may hold a complete copy of a point (the archive store)."""

    def has_point(self, point_id: str) -> bool: ...


class VaultStore:
    """A deduplicating, content-addressed store of recovery points on one backend."""

    def __init__(
        self,
        backend: Backend,
        *,
        level: int = DEFAULT_LEVEL,
        workers: int | None = None,
        lease_timeout: float = DEFAULT_LEASE_TIMEOUT,
        gc_timeout: float = DEFAULT_GC_TIMEOUT,
        gc_stale: float = DEFAULT_GC_STALE,
        poll_interval: float = 0.2,
        timestamp_slack: float = DEFAULT_TIMESTAMP_SLACK,
    ) -> None:
        self.backend = backend
        self.level = level
        # zstd and blake3 release the GIL; two threads a core also hide fsync waits.
        self.workers = workers or min(8, 2 * (os.cpu_count() or 1))
        self.lease_timeout = lease_timeout
        self.gc_timeout = gc_timeout
        self.gc_stale = gc_stale
        self.poll_interval = poll_interval
        self.timestamp_slack = timestamp_slack
        # What the store was told to keep after each backup (docs/storage.md).
        self.holds = Holds(backend)

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
        return decode_chunk(digest, blob, expected_size)

    def _store_chunk(
        self, digest: str, data: bytes, retention: Retention | None = None
    ) -> int | None:
        """Write a chunk unless present; the stored size if written, None if it existed.

        With a `retention`, a chunk already stored has its lock extended to cover it (a
        deduplicated chunk is locked until the latest expiry of the points using it)."""
        key = chunk_key(digest)
        if retention is not None and self.backend.supports_object_lock:
            if self._keep_locked(key, retention):
                return None
            blob = encode_chunk(data, self.level)
            if not self.backend.put_if_absent(key, blob, retention):
                # Another writer stored it between our look and our write: extend its lock.
                self._keep_locked(key, retention)
                return None
            return len(blob)
        if self.backend.exists(key):
            return None
        blob = encode_chunk(data, self.level)
        self.backend.put(key, blob, retention)
        return len(blob)

    def _keep_locked(self, key: str, retention: Retention) -> bool:
        """Extend a stored object's lock to `retention`; False if the object is missing."""
        try:
            lock = self.backend.lock_of(key)
            if lock is None or not lock.covers(retention):
                self.backend.extend_retention(key, retention)
        except ObjectNotFound:
            return False
        return True

    # Backup ----------------------------------------------------------------------------

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
        `_open_source_root`.
        """
        check_point_id(point_id)
        if parent is not None:
            check_point_id(parent)
        started_at_ns = time.time_ns()
        source = Path(source)
        root_fd, root = _open_source_root(source, check_source)
        try:
            return self._backup_tree(
                source, root, root_fd, point_id, progress, parent, retention, terms, started_at_ns
            )
        except SourceUnreadable as exc:
            raise SourceUnreadable(str(exc).replace(root, str(source))) from None
        finally:
            os.close(root_fd)

    def _backup_tree(
        self,
        source: Path,
        root: str,
        root_fd: int,
        point_id: str,
        progress: Progress | None,
        parent: str | None,
        retention: Retention | None,
        terms: Terms | None,
        started_at_ns: int,
    ) -> BackupResult:
        root_stat = os.fstat(root_fd)
        # Every file read must really lie under the directory opened (see _open_source_file).
        beneath = os.readlink(root) if root.startswith("/proc/self/fd/") else None
        scan = self._scan(Path(root), root_stat)
        base = self._parent_files(parent) if parent is not None else None
        unchanged: dict[str, Node] = {}
        if base is not None:
            for item in scan.items:
                old = base[0].get(item.rel) if item.kind == KIND_FILE else None
                if old is not None and _same_file(old, item.st):
                    unchanged[item.rel] = old

        session = WriteSession(self, point_id, "backup", retention)
        session.open()
        try:
            nodes: list[Node] = []
            skipped = list(scan.skipped)
            read_bytes = 0
            with ThreadPoolExecutor(self.workers, thread_name_prefix="holdfast-backup") as pool:
                if unchanged:
                    self._keep_stored(session, unchanged, pool)
                writer = ChunkWriter(self, session, pool, progress, scan.total_bytes)
                small = SmallFileStream(writer)
                for item in scan.items:
                    old = unchanged.get(item.rel)
                    node: Node | None
                    if old is not None:
                        assert base is not None
                        node = _reused_node(item, old)
                        writer.adopt(node.extents, base[1])
                    else:
                        node = self._back_up_item(item, writer, small, beneath)
                        if node is not None and node.kind == KIND_FILE:
                            read_bytes += node.size
                    if node is None:
                        skipped.append(item.rel)
                    else:
                        nodes.append(node)
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

    def _parent_files(self, parent: str) -> tuple[dict[str, Node], dict[str, int]] | None:
        """The parent's reusable file entries by path, and its chunk sizes.

        None when the parent cannot serve (missing, damaged, or version 1 without the
        stamps we compare). Entries whose ctime is within `timestamp_slack` of the start
        of the parent backup are left out: a write in the same timestamp tick as the
        parent's read could have left every stamp unchanged.
        """
        try:
            manifest = self.manifest(parent)
        except StorageError:  # PointNotFound included
            return None
        if manifest.point_id != parent or manifest.started_at_ns is None:
            return None
        horizon = manifest.started_at_ns - int(self.timestamp_slack * 1e9)
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
        self, session: WriteSession, unchanged: dict[str, Node], pool: ThreadPoolExecutor
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
            present = pool.map(partial(self._present, session.retention), batch)
            missing.update(digest for digest, ok in zip(batch, present, strict=True) if not ok)
        if missing:
            for path, node in list(unchanged.items()):
                if any(digest in missing for digest, _o, _l in node.extents):
                    del unchanged[path]

    def _present(self, retention: Retention | None, digest: str) -> bool:
        key = chunk_key(digest)
        if retention is not None and self.backend.supports_object_lock:
            return self._keep_locked(key, retention)
        return self.backend.exists(key)

    def _scan(self, source: Path, root_stat: os.stat_result) -> _Scan:
        scan = _Scan()
        scan.items.append(_ScanItem("", str(source), KIND_DIR, root_stat))
        stack: list[tuple[str, str]] = [("", str(source))]
        while stack:
            rel_dir, dir_path = stack.pop()
            try:
                with os.scandir(dir_path) as it:
                    entries = sorted(it, key=lambda e: os.fsencode(e.name))
                children = []
                for entry in entries:
                    rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                    st = entry.stat(follow_symlinks=False)
                    children.append((rel, entry.path, st))
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise SourceUnreadable(f"Cannot list {dir_path}: {exc.strerror}.") from None
            subdirs = []
            for rel, path, st in children:
                if stat.S_ISDIR(st.st_mode):
                    scan.items.append(_ScanItem(rel, path, KIND_DIR, st))
                    subdirs.append((rel, path))
                elif stat.S_ISREG(st.st_mode):
                    scan.items.append(_ScanItem(rel, path, KIND_FILE, st))
                    scan.total_bytes += st.st_size
                elif stat.S_ISLNK(st.st_mode):
                    scan.items.append(_ScanItem(rel, path, KIND_SYMLINK, st))
                else:
                    scan.skipped.append(rel)
            stack.extend(reversed(subdirs))
        # Depth-first order with each directory before its contents, sorted by name.
        scan.items[1:] = sorted(scan.items[1:], key=lambda i: os.fsencode(i.rel).split(b"/"))
        return scan

    def _back_up_item(
        self,
        item: _ScanItem,
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
                raise SourceUnreadable(
                    f"Cannot read symlink {item.path}: {exc.strerror}."
                ) from None
            return Node(item.rel, KIND_SYMLINK, 0, st.st_mtime_ns, target=target)
        fd = _open_source_file(item, beneath)
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
                data = b"".join(_read_fd(fd, item.path, st.st_size))
                node.size = len(data)
                if data:
                    small.add(node, data)
                return node
            chunker = StreamChunker()
            for piece in _read_fd(fd, item.path, st.st_size):
                node.size += len(piece)
                for _offset, chunk in chunker.feed(piece):
                    node.extents.append((writer.add(chunk), 0, len(chunk)))
            for _offset, chunk in chunker.finish():
                node.extents.append((writer.add(chunk), 0, len(chunk)))
            return node
        finally:
            os.close(fd)

    def import_point(
        self,
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
        if self.has_point(point_id):
            if self.read_manifest(point_id) == manifest_bytes:
                return ImportResult(point_id, digest, 0, len(manifest.chunks), 0)
            raise StorageError(f"A different point {point_id!r} already exists in this store.")
        session = WriteSession(self, point_id, "import", retention)
        session.open()
        try:
            seen: set[str] = set()
            with ThreadPoolExecutor(self.workers, thread_name_prefix="holdfast-import") as pool:
                writer = ChunkWriter(self, session, pool, None, manifest.logical_bytes)
                for claimed, data in chunks:
                    if writer.add(data) != claimed:
                        raise CorruptChunk(claimed, "its content does not match its BLAKE3 hash")
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

    # Restore ---------------------------------------------------------------------------

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
    ) -> RestoreResult:
        """Write point `point_id` (or just `sub_path` of it) under `target`.

        The whole point restores into `target`; a `sub_path` restores as
        `target/<its last name>`. Every operation is relative to directory descriptors
        opened with O_NOFOLLOW, so nothing is ever written through a symlink, and every
        chunk is hash-checked before its bytes are written.
        """
        manifest = self.manifest(point_id)
        selection = select_nodes(manifest.nodes, sub_path)
        root = resolve_target(Path(target), allowed_roots, forbidden_roots)
        total = sum(node.size for node in selection if node.kind == KIND_FILE)

        with TargetTree(root) as tree:
            conflicts = [node.path for node in selection if tree.conflicts(node, overwrite)]
            if conflicts:
                raise RestoreRefused(
                    f"Restoring would overwrite {len(conflicts)} existing path(s) under {root}"
                    f" (e.g. {conflicts[0]!r}). Choose an empty target or allow overwriting."
                )
            # Chunks in the order they must be fetched: a chunk still among the last
            # RESTORE_RECENT used is served from memory; pieces() replays the same LRU.
            order: list[str] = []
            recent: OrderedDict[str, None] = OrderedDict()
            for node in selection:
                for digest, _offset, _length in node.extents:
                    if digest in recent:
                        recent.move_to_end(digest)
                        continue
                    order.append(digest)
                    recent[digest] = None
                    if len(recent) > RESTORE_RECENT:
                        recent.popitem(last=False)
            done = 0
            counts = {KIND_DIR: 0, KIND_FILE: 0, KIND_SYMLINK: 0}
            with ThreadPoolExecutor(self.workers, thread_name_prefix="holdfast-restore") as pool:
                chunks = self._prefetch(order, manifest.chunks, pool)
                cache: OrderedDict[str, bytes] = OrderedDict()
                try:
                    for node in selection:
                        counts[node.kind] += 1
                        if node.kind == KIND_DIR:
                            tree.make_dir(node, overwrite)
                        elif node.kind == KIND_SYMLINK:
                            tree.make_symlink(node, overwrite)
                        else:

                            def pieces(node: Node = node) -> Iterator[bytes]:
                                for digest, offset, length in node.extents:
                                    if digest in cache:
                                        cache.move_to_end(digest)
                                    else:
                                        fetched, data = next(chunks)
                                        if fetched != digest:  # the replay diverged: a bug
                                            raise StorageError("Restore chunk order mismatch.")
                                        cache[digest] = data
                                        if len(cache) > RESTORE_RECENT:
                                            cache.popitem(last=False)
                                    yield cache[digest][offset : offset + length]

                            tree.make_file(node, pieces(), overwrite)
                            done += node.size
                            if progress is not None:
                                progress(done, total)
                finally:
                    chunks.close()
            tree.finish_dirs()
        return RestoreResult(
            point_id=point_id,
            target=root,
            files=counts[KIND_FILE],
            dirs=counts[KIND_DIR],
            symlinks=counts[KIND_SYMLINK],
            restored_bytes=done,
        )

    def _prefetch(
        self, order: list[str], sizes: dict[str, int], pool: ThreadPoolExecutor
    ) -> Generator[tuple[str, bytes], None, None]:
        window: deque[tuple[str, Future[bytes]]] = deque()
        try:
            for digest in order:
                window.append((digest, pool.submit(self.read_chunk, digest, sizes.get(digest))))
                if len(window) >= RESTORE_LOOKAHEAD:
                    head, future = window.popleft()
                    yield head, future.result()
            while window:
                head, future = window.popleft()
                yield head, future.result()
        finally:
            for _digest, future in window:
                future.cancel()

    # Verification and browsing -----------------------------------------------------------

    def verify(self, point_id: str, progress: Progress | None = None) -> VerifyResult:
        """Re-read and re-hash every chunk the point references."""
        raw = self.read_manifest(point_id)
        manifest = Manifest.from_bytes(raw)
        bad: list[str] = []
        missing: list[str] = []

        def check(item: tuple[str, int]) -> str:
            digest, size = item
            try:
                blob = self.backend.get(chunk_key(digest))
            except ObjectNotFound:
                return "missing"
            try:
                decode_chunk(digest, blob, size)
            except CorruptChunk:
                return "bad"
            return "ok"

        items = list(manifest.chunks.items())
        with ThreadPoolExecutor(self.workers, thread_name_prefix="holdfast-verify") as pool:
            for index, ((digest, _size), outcome) in enumerate(
                zip(items, pool.map(check, items), strict=True), start=1
            ):
                if outcome == "missing":
                    missing.append(digest)
                elif outcome == "bad":
                    bad.append(digest)
                if progress is not None:
                    progress(index, len(items))
        return VerifyResult(
            ok=not bad and not missing,
            checked_chunks=len(items),
            bad_chunks=bad,
            missing_chunks=missing,
            manifest_digest=blake3.blake3(raw).hexdigest(),
        )

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

    # Object Lock ---------------------------------------------------------------------------

    def apply_retention(self, wanted: dict[str, Retention]) -> RetentionResult:
        """Lock every object of the given points at least as long as asked, never shorter.

        A chunk shared by several points gets the latest date and strongest mode among
        them. Used when immutability is enabled or locked after the points were written,
        and when a point's expiry grows. A no-op on backends without object lock."""
        if not self.backend.supports_object_lock or not wanted:
            return RetentionResult(0, 0)
        per_object: dict[str, Retention] = {}
        missing: list[str] = []
        for point_id, retention in wanted.items():
            try:
                chunks = self.manifest(point_id).chunks
            except PointNotFound:
                missing.append(manifest_key(point_id))
                continue
            for key in [manifest_key(point_id), *(chunk_key(d) for d in chunks)]:
                per_object[key] = retention.merged(per_object.get(key))

        def extend(item: tuple[str, Retention]) -> bool | str | None:
            try:
                return self.backend.extend_retention(*item)
            except ObjectNotFound:
                return None
            except StorageError as exc:  # one object's refusal must not stop the others
                return str(exc)

        with ThreadPoolExecutor(self.workers, thread_name_prefix="holdfast-lock") as pool:
            outcomes = list(pool.map(extend, per_object.items()))
        pairs = list(zip(per_object, outcomes, strict=True))
        missing += [key for key, done in pairs if done is None]
        return RetentionResult(
            len(per_object),
            sum(1 for _key, done in pairs if done is True),
            missing,
            failed=[done for _key, done in pairs if isinstance(done, str)],
        )

    def point_lock(
        self,
        point_id: str,
        wanted: Retention | None = None,
        cache: dict[str, ObjectLock | None] | None = None,
    ) -> PointLock:
        """Read back the lock of the point's manifest and every chunk from the storage.

        `cache` (object key to lock) lets a caller checking many points read each shared
        chunk once. `PointNotFound` if the manifest is gone."""
        chunks = self.manifest(point_id).chunks
        keys = [manifest_key(point_id), *(chunk_key(d) for d in chunks)]
        return read_locks(self.backend, keys, wanted, cache, self.workers)

    def stored_bytes(self) -> int:
        """Bytes of every object in the store (chunks, manifests, leases)."""
        return sum(self.backend.size(key) for key in self.backend.list(""))

    # Garbage collection ----------------------------------------------------------------

    def _lease_state(self, point_id: str) -> float | None:
        """The latest heartbeat of a point's lease objects, or None without a lease."""
        latest = None
        for key in self.backend.list(lease_prefix(point_id)):
            try:
                at = float(json.loads(self.backend.get(key))["at"])
            except ObjectNotFound:
                continue
            except (ValueError, KeyError, TypeError):
                at = self.backend.mtime(key)
            latest = at if latest is None else max(latest, at)
        return latest

    def _read_leases(self, now: float) -> tuple[set[str], list[str]]:
        """Chunk ids named by live leases, and the lease prefixes that expired."""
        by_point: dict[str, list[str]] = {}
        for key in self.backend.list("leases/"):
            by_point.setdefault(key.split("/")[1], []).append(key)
        protected: set[str] = set()
        expired: list[str] = []
        for point_id, keys in by_point.items():
            latest = 0.0
            named: list[str] = []
            for key in keys:
                try:
                    document = json.loads(self.backend.get(key))
                except ObjectNotFound:
                    continue
                except ValueError:
                    # A damaged lease object still protects: keep it alive by mtime.
                    latest = max(latest, self.backend.mtime(key))
                    continue
                latest = max(latest, float(document.get("at", 0.0)))
                named.extend(document.get("chunks", []))
            if now - latest > self.lease_timeout:
                expired.append(f"leases/{point_id}/")
            else:
                protected.update(named)
        return protected, expired

    def gc(self, now: float | None = None) -> GcResult:
        """Delete chunks that no manifest and no live lease references.

        Protocol (the argument is in docs/storage.md): publish a GC marker; list chunks;
        read leases; read manifests; delete the rest; remove the marker. A writer names
        each chunk in its lease before checking whether it exists, and before publishing
        its manifest waits for every GC marker it sees and re-checks the chunks it reused.
        So a GC either sees a chunk in a lease or manifest, or finishes deleting before the
        writer's re-check notices the chunk is gone. `now` only sets the clock used to
        expire the leases of crashed writers and to judge whether an object lock has
        ended (the storage has the last word: a delete it refuses is counted, not retried).
        """
        run_key = f"gc/{time.time_ns()}-{uuid.uuid4().hex[:8]}.json"
        started = time.monotonic()
        started_at = time.time()

        def beat() -> float:
            # The marker's heartbeat: writers wait only for markers that are being refreshed.
            body = {"started_at": started_at, "beat_at": time.time()}
            self.backend.put(run_key, json.dumps(body).encode())
            return time.monotonic()

        last_beat = beat()
        deleted = freed = leased = retained = refused = 0
        lock_now = datetime.fromtimestamp(now, UTC) if now is not None else datetime.now(UTC)
        completed = True
        try:
            candidates = list(self.backend.list("chunks/"))
            protected, expired = self._read_leases(time.time() if now is None else now)
            referenced: set[str] = set()
            for key in self.backend.list("manifests/"):
                try:
                    referenced |= chunk_ids_of(self.backend.get(key))
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
                    last_beat = beat()
                if (
                    time.monotonic() - started > self.gc_timeout * SAFETY
                    or time.monotonic() - last_beat > self.gc_stale * SAFETY
                ):
                    # Stalled long enough that a writer may take our marker for dead: stop.
                    completed = False
                    break
                try:
                    size = self.backend.size(key)
                    lock = self.backend.lock_of(key)
                except ObjectNotFound:
                    continue
                if lock is not None and lock.active(lock_now):
                    retained += 1  # its retention has not passed: a later run deletes it
                    continue
                try:
                    self.backend.delete(key)
                except ObjectLocked:
                    refused += 1  # the storage's clock or a legal hold says no: reported
                    continue
                deleted += 1
                freed += size
            if completed:
                for prefix in expired:
                    for key in list(self.backend.list(prefix)):
                        self.backend.delete(key)
            sweep = getattr(self.backend, "sweep_temporaries", None)
            if completed and callable(sweep):
                sweep(older_than=self.lease_timeout)
        finally:
            self.backend.delete(run_key)
        return GcResult(
            deleted_chunks=deleted,
            freed_bytes=freed,
            leased_chunks=leased,
            expired_leases=len(expired) if completed else 0,
            completed=completed,
            retained_chunks=retained,
            refused_deletes=refused,
        )


def read_locks(
    backend: Backend,
    keys: list[str],
    wanted: Retention | None,
    cache: dict[str, ObjectLock | None] | None = None,
    workers: int = 8,
) -> PointLock:
    """The locks of `keys` as the storage reports them, summed up as one point's lock.

    Each key counts with its weakest version: any version may become current again."""
    cache = {} if cache is None else cache

    def read(key: str) -> ObjectLock | None:
        try:
            return ObjectLock.weakest(backend.version_locks(key))
        except ObjectNotFound:
            return None

    todo = [key for key in dict.fromkeys(keys) if key not in cache]
    with ThreadPoolExecutor(workers, thread_name_prefix="holdfast-lock") as pool:
        cache.update(zip(todo, pool.map(read, todo), strict=True))
    locks = [(key, cache[key]) for key in keys]
    present = [lock for _key, lock in locks if lock is not None]
    short = [
        key
        for key, lock in locks
        if lock is not None and wanted is not None and not lock.covers(wanted)
    ]
    unlocked = any(lock.until is None for lock in present)
    modes = {lock.mode for lock in present}
    weakest = GOVERNANCE if GOVERNANCE in modes else COMPLIANCE
    return PointLock(
        objects=len(keys),
        until=None
        if unlocked or len(present) < len(keys)
        else min(lock.until for lock in present if lock.until is not None),
        mode=None if unlocked or not present else weakest,
        legal_holds=sum(lock.legal_hold for lock in present),
        missing=[key for key, lock in locks if lock is None],
        short=short,
    )


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
