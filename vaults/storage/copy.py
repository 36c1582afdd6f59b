"""Copying a recovery point from one vault's store to another's (replica vaults, SPEC 3.10).

Each vault has its own data key, and chunk ids are keyed by it, so a copy re-encrypts: every
chunk that travels is opened and hash-checked with the source's key, given its id under the
replica's key, and sealed with the replica's key; the compressed payload itself is not
recompressed. The manifest is rewritten with the replica's ids (same entries, terms and
order), so the replica's point has the same id and terms but its own content digest
(`CopyResult.digest`; `source_digest` is the source's). A copy is checked by reading the
replica's manifest back.

Only the chunks the replica lacks are written. With ``parent`` (the item's previous copy)
the parent's chunks map from source ids to replica ids by position (both manifests list
them in the same order), so they are neither read nor looked up again; other chunks are read
from the source to learn their replica id, and written unless the replica has them.

A copy writes under the replica store's lease protocol (`leases.WriteSession`), naming each
batch's replica ids in the lease before looking for them, so the replica's GC never takes a
chunk a copy in flight relies on. It is resumable (a killed copy leaves its chunks, the
next attempt finds them) and idempotent (a point already in the replica with the same
content is done). One copy of a point runs at a time (the caller's job row sees to it), so a
new attempt takes over the lease a killed one left behind instead of waiting for it.

An archived point (the archive tier's packs, index and manifest copy) is copied the same
way into the replica's archive tier: `copy_archived` (packs re-sealed, ids re-keyed).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import blake3

from .archive import ArchiveStore, unpack
from .backends import Retention
from .chunks import chunk_key, decode_chunk
from .crypto import ObjectTampered, SealedBackend
from .errors import CorruptChunk, ObjectNotFound, StorageError
from .leases import WriteSession
from .manifest import Manifest, manifest_key
from .store import VaultStore
from .writer import BATCH_CHUNKS, Progress, keep_locked


@dataclass(frozen=True)
class CopyResult:
    point_id: str
    digest: str  # BLAKE3 of the replica's manifest: the replica point's content digest
    chunks_total: int
    chunks_copied: int  # chunks the replica lacked and that travelled
    bytes_moved: int  # bytes written to the replica (chunk objects and the manifest)
    logical_bytes: int
    already_there: bool = False
    source_digest: str = ""  # BLAKE3 of the source's manifest


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


@dataclass(frozen=True)
class _Travelling:
    source_id: str
    target_id: str
    size: int
    encoded: bytes  # the chunk's object opened: header and compressed payload


def _read_chunk(source: SealedBackend, target: SealedBackend, chunk: str, size: int) -> _Travelling:
    """Open and hash-check a source chunk (a damaged chunk never travels); its replica id."""
    key = chunk_key(chunk)
    try:
        encoded = source.get(key)
    except ObjectNotFound:
        raise CorruptChunk(chunk, "it is missing from the source store") from None
    except ObjectTampered as exc:
        raise CorruptChunk(chunk, exc.reason) from None
    data = decode_chunk(chunk, encoded, size, source)
    return _Travelling(chunk, target.chunk_id(data), size, encoded)


def _send_chunk(
    target: SealedBackend, chunk: _Travelling, retention: Retention | None
) -> int | None:
    """Seal a chunk for the replica unless it has it; the bytes written, None if present.
    A present chunk on a locking target has its lock raised to ``retention``."""
    key = chunk_key(chunk.target_id)
    locking = retention is not None and target.supports_object_lock
    if locking:
        assert retention is not None
        if keep_locked(target, key, retention):
            return None
    elif target.exists(key):
        return None
    blob = target.seal(key, chunk.encoded)
    if not target.put_sealed(key, blob, retention, if_absent=locking):
        assert retention is not None
        keep_locked(target, key, retention)
        return None
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

    ``parent`` names a point already in both stores (the item's previous copy): its chunks
    are known to be in ``target`` under the ids its replica manifest names, so they are not
    read or looked up; and while the parent's own lock covers ``retention``, theirs does too
    (a point's chunks are locked at least as long as its manifest, and locks only grow). At
    the end, the parent's manifest being still there stands for them: no GC takes a chunk a
    manifest names, and a manifest once deleted never comes back. A parent that is missing
    or damaged, or whose two copies do not line up, is simply not used."""
    raw = source.read_manifest(point_id)
    source_digest = _digest(raw)
    if expected_digest and source_digest != expected_digest:
        raise CopyRefused(
            f"The source manifest of point {point_id!r} does not match its recorded digest: "
            "the source copy is damaged; verify the source point."
        )
    manifest = Manifest.from_bytes(raw)
    chunks = list(manifest.chunks.items())
    known, parent = _parent_chunks(source, target, parent, retention)
    if target.has_point(point_id):
        return _already_there(source, target, point_id, manifest, source_digest)
    session = _CopySession(target.backend, point_id, "copy", retention, timings=target.timings)
    session.open()
    ids: dict[str, str] = dict(known)
    moved = 0
    copied = 0
    done = 0
    present: list[str] = []
    try:
        with ThreadPoolExecutor(target.workers, thread_name_prefix="holdfast-copy") as pool:
            for start in range(0, len(chunks), BATCH_CHUNKS):
                batch = chunks[start : start + BATCH_CHUNKS]
                wanted = [(chunk, size) for chunk, size in batch if chunk not in known]
                # Read and re-key first: a replica id is only known from the plaintext.
                travelling = list(
                    pool.map(
                        lambda item: _read_chunk(source.backend, target.backend, *item), wanted
                    )
                )
                # Named in the lease before we look: the replica's GC keeps them from now on.
                session.record([chunk.target_id for chunk in travelling])
                for sent, written in zip(
                    travelling,
                    pool.map(
                        lambda chunk: _send_chunk(target.backend, chunk, session.retention),
                        travelling,
                    ),
                    strict=True,
                ):
                    ids[sent.source_id] = sent.target_id
                    if written is None:
                        present.append(sent.target_id)
                    else:
                        moved += written
                        copied += 1
                for handled, size in batch:
                    done += size
                    if on_chunk is not None:
                        on_chunk(handled)
                session.heartbeat_if_due()
                if progress is not None:
                    progress(done, manifest.logical_bytes)
        session.settle(present)
        if parent is not None and not target.has_point(parent):
            raise StorageError(
                f"Point {parent!r} left the replica while point {point_id!r} was copied"
                " beside it; nothing was published. The copy is tried again."
            )
        copy_raw = manifest.rekeyed(ids).to_bytes()
        session.commit(copy_raw)
    except BaseException:
        session.release()
        raise
    digest = _digest(copy_raw)
    if _digest(target.read_manifest(point_id)) != digest:
        raise CopyRefused(f"The replica's manifest of point {point_id!r} reads back different.")
    return CopyResult(
        point_id,
        digest,
        len(chunks),
        copied,
        moved + len(copy_raw),
        manifest.logical_bytes,
        source_digest=source_digest,
    )


def _already_there(
    source: VaultStore, target: VaultStore, point_id: str, manifest: Manifest, source_digest: str
) -> CopyResult:
    """A point the replica holds already: done if it is this point, re-keyed; else refused."""
    raw = target.read_manifest(point_id)
    there = Manifest.from_bytes(raw)
    ids = _line_up(manifest, there)
    if ids is None or manifest.rekeyed(ids).to_bytes() != raw:
        raise CopyRefused(f"The replica already holds a different point {point_id!r}.")
    return CopyResult(
        point_id,
        _digest(raw),
        len(manifest.chunks),
        0,
        0,
        manifest.logical_bytes,
        already_there=True,
        source_digest=source_digest,
    )


def _line_up(source: Manifest, copy: Manifest) -> dict[str, str] | None:
    """Source id -> replica id for two copies of one point (same chunks, same order)."""
    if len(source.chunks) != len(copy.chunks):
        return None
    pairs = list(zip(source.chunks.items(), copy.chunks.items(), strict=True))
    if any(size != copy_size for (_, size), (_, copy_size) in pairs):
        return None
    return {chunk: copy_chunk for (chunk, _), (copy_chunk, _) in pairs}


def _parent_chunks(
    source: VaultStore, target: VaultStore, parent: str | None, retention: Retention | None
) -> tuple[dict[str, str], str | None]:
    """The chunks of ``parent``, source id -> replica id, that need no look-up (see
    `copy_point`)."""
    if parent is None:
        return {}, None
    try:
        ids = _line_up(source.manifest(parent), target.manifest(parent))
        if ids is None:
            return {}, None
        if retention is not None and target.backend.supports_object_lock:
            lock = target.backend.lock_of(manifest_key(parent))
            if lock is None or not lock.covers(retention):
                return {}, None  # each chunk's lock is raised one by one
    except StorageError:
        return {}, None
    return ids, parent


def copy_archived(
    source: ArchiveStore,
    target: ArchiveStore,
    point_id: str,
    *,
    expected_digest: str = "",
    retention: Retention | None = None,
) -> CopyResult:
    """Copy an archived point's packs, index and manifest copy, manifest last. Each pack is
    opened with the source's key, checked against the index's digest, unpacked to re-key
    its chunks (each hash-checked) and sealed with the replica's key; the index and the
    manifest copy are rewritten with the replica's ids."""
    prefix = f"packs/{point_id}/"
    manifest_name = f"manifests/{point_id}.json"
    try:
        raw = source.backend.get(manifest_name)
        index = json.loads(source.backend.get(prefix + "index.json"))
    except (ObjectNotFound, ObjectTampered) as exc:
        raise CopyRefused(f"The archived point {point_id!r} is incomplete: {exc}") from None
    source_digest = _digest(raw)
    if source_digest != index.get("manifest_digest") or (
        expected_digest and source_digest != expected_digest
    ):
        raise CopyRefused(f"The archived manifest of point {point_id!r} is damaged.")
    manifest = Manifest.from_bytes(raw)
    ids: dict[str, str] = {}
    blobs: dict[str, bytes] = {}
    for number, pack in enumerate(index["packs"]):
        key = str(pack["key"])
        try:
            blob = source.backend.get(key)
        except (ObjectNotFound, ObjectTampered) as exc:
            raise CopyRefused(f"Archive pack {key} of point {point_id!r}: {exc}") from None
        if _digest(blob) != pack["digest"]:
            raise CopyRefused(f"Archive pack {key} of point {point_id!r} is damaged.")
        plain = unpack(blob, key)
        for chunk, in_pack, offset, length in index["chunks"]:
            if int(in_pack) != number:
                continue
            data = plain[int(offset) : int(offset) + int(length)]
            if not source.backend.chunk_matches(str(chunk), data):
                raise CopyRefused(f"A chunk in archive pack {key} of {point_id!r} is damaged.")
            ids[str(chunk)] = target.backend.chunk_id(data)
        blobs[key] = blob
    copy_raw = manifest.rekeyed(ids).to_bytes()
    digest = _digest(copy_raw)
    copy_index = {
        **index,
        "manifest_digest": digest,
        "chunks": [[ids[str(c)], p, o, n] for c, p, o, n in index["chunks"]],
    }
    if target.has_point(point_id):
        if target.backend.get(manifest_name) != copy_raw:
            raise CopyRefused(f"The replica's archive already holds a different {point_id!r}.")
        return CopyResult(
            point_id,
            digest,
            len(manifest.chunks),
            0,
            0,
            manifest.logical_bytes,
            True,
            source_digest=source_digest,
        )
    moved = 0
    for key, blob in blobs.items():
        if _written_before(target, key, blob):
            continue  # by an attempt that was stopped
        target.backend.put(key, blob, retention)
        moved += target.backend.size(key)
    raw_index = json.dumps(copy_index).encode()
    target.backend.put(prefix + "index.json", raw_index, retention)
    target.backend.put(manifest_name, copy_raw, retention)
    if _digest(target.backend.get(manifest_name)) != digest:
        raise CopyRefused(f"The replica's archived manifest of {point_id!r} reads back different.")
    moved += len(raw_index) + len(copy_raw)
    return CopyResult(
        point_id,
        digest,
        len(manifest.chunks),
        len(index["packs"]),
        moved,
        manifest.logical_bytes,
        source_digest=source_digest,
    )


def _written_before(target: ArchiveStore, key: str, blob: bytes) -> bool:
    try:
        return target.backend.exists(key) and _digest(target.backend.get(key)) == _digest(blob)
    except ObjectTampered:
        return False  # rewritten
