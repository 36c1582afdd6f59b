"""The archive tier: each point packed densely into its own objects, on its own backend.

Layout:

    packs/<point_id>/pack-<n>.zst    header + one zstd frame of concatenated chunk plaintexts
    packs/<point_id>/index.json      where each chunk lives in which pack
    manifests/<point_id>.json        byte-for-byte copy of the standard-tier manifest, last

Points do not share data in the archive: a point is self-contained, so deleting it frees
exactly its objects and needs no GC. Compressing a point's chunks as one long stream at a
high level (with long-distance matching) finds redundancy across chunks that per-chunk
compression in the standard tier cannot.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import blake3
import zstandard

from .backends import Retention
from .backup import ImportResult
from .crypto import ObjectTampered, SealedBackend, require_sealed
from .errors import CorruptChunk, ObjectNotFound, PointNotFound, PointRetained, StorageError
from .holds import Holds, Keep
from .locks import PointLock, read_locks
from .manifest import Manifest, Terms, check_point_id, terms_of
from .store import VaultStore

PACK_MAGIC = b"HFP"
PACK_FORMAT_VERSION = 1
PACK_CODEC_ZSTD = 1
PACK_HEADER_SIZE = len(PACK_MAGIC) + 2
INDEX_FORMAT = "holdfast.pack-index"
INDEX_VERSION = 1

DEFAULT_ARCHIVE_LEVEL = 19
# 128 MiB windows: long-distance matching then spans a whole pack.
WINDOW_LOG = 27
DEFAULT_PACK_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True)
class ArchiveResult:
    point_id: str
    packs: int
    chunks: int
    logical_bytes: int
    stored_bytes: int


def unpack(blob: bytes, key: str, decompressor: zstandard.ZstdDecompressor | None = None) -> bytes:
    """The concatenated chunk plaintexts of an opened pack object."""
    if blob[:3] != PACK_MAGIC:
        raise StorageError(f"Archive pack {key} is damaged: its header is missing.")
    decompressor = decompressor or zstandard.ZstdDecompressor(max_window_size=1 << WINDOW_LOG)
    try:
        return decompressor.decompress(memoryview(blob)[PACK_HEADER_SIZE:])
    except zstandard.ZstdError as exc:
        raise StorageError(f"Archive pack {key} does not decompress: {exc}.") from None


class ArchiveStore:
    """Dense, per-point archive copies of recovery points from a `VaultStore`."""

    def __init__(
        self,
        backend: SealedBackend,
        *,
        level: int = DEFAULT_ARCHIVE_LEVEL,
        pack_bytes: int = DEFAULT_PACK_BYTES,
        threads: int = -1,
        holds: Holds | None = None,
    ) -> None:
        # The same data key as the vault's standard tier: chunk ids in the index and the
        # manifest copy are that vault's keyed ids.
        self.backend = require_sealed(backend)
        self.level = level
        self.pack_bytes = pack_bytes
        self.threads = threads
        # The vault's notes live beside its standard-tier store; pass them (vaults/locations.py)
        # so an archived point is kept exactly as long as its standard copy would be.
        self.holds = holds if holds is not None else Holds(backend)

    def _prefix(self, point_id: str) -> str:
        return f"packs/{check_point_id(point_id)}/"

    def _manifest_key(self, point_id: str) -> str:
        return f"manifests/{check_point_id(point_id)}.json"

    def points(self) -> list[str]:
        return [key[len("manifests/") : -len(".json")] for key in self.backend.list("manifests/")]

    def manifest(self, point_id: str) -> Manifest:
        """The archived point's manifest (kept beside its pack, for browsing)."""
        try:
            return Manifest.from_bytes(self.backend.get(self._manifest_key(point_id)))
        except ObjectNotFound:
            raise PointNotFound(point_id) from None

    def has_point(self, point_id: str) -> bool:
        return self.backend.exists(self._manifest_key(point_id))

    def _compress(self, data: bytes) -> tuple[bytes, bytes]:
        params = zstandard.ZstdCompressionParameters.from_level(
            self.level,
            window_log=WINDOW_LOG,
            enable_ldm=True,
            threads=self.threads,
            write_content_size=True,
        )
        packed = zstandard.ZstdCompressor(compression_params=params).compress(data)
        return PACK_MAGIC + bytes((PACK_FORMAT_VERSION, PACK_CODEC_ZSTD)), packed

    def archive_point(
        self, vault_store: VaultStore, point_id: str, *, retention: Retention | None = None
    ) -> ArchiveResult:
        """Copy a standard-tier point into the archive; the standard copy is untouched.

        `retention` locks every archive object of the point (packs, index, manifest copy)
        on backends with object lock: the point keeps its expiry through the move.

        Chunks are read hash-checked (`CorruptChunk` stops the move), packed in the order
        the point first uses them, and the manifest copy is written last so a half-written
        archive is never visible. Calling `delete_point` cleans up after a failed attempt.
        """
        if self.has_point(point_id):
            raise StorageError(f"Point {point_id!r} is already in the archive tier.")
        raw_manifest = vault_store.read_manifest(point_id)
        manifest = Manifest.from_bytes(raw_manifest)
        prefix = self._prefix(point_id)
        packs: list[dict[str, Any]] = []
        locations: list[list[Any]] = []
        buffer: list[bytes] = []
        buffered = 0

        def flush() -> None:
            nonlocal buffer, buffered
            if not buffer:
                return
            key = f"{prefix}pack-{len(packs):06d}.zst"
            header, packed = self._compress(b"".join(buffer))
            # Sealed in the same pass, never joined to its header first.
            self.backend.put_sealed(key, self.backend.seal(key, header, packed), retention)
            digest = blake3.blake3(header)
            digest.update(packed)
            packs.append(
                {
                    "key": key,
                    "size": len(header) + len(packed),
                    "plain_size": buffered,
                    "digest": digest.hexdigest(),
                }
            )
            buffer, buffered = [], 0

        try:
            for digest, size in manifest.chunks.items():
                data = vault_store.read_chunk(digest, size)
                if buffered and buffered + len(data) > self.pack_bytes:
                    flush()
                locations.append([digest, len(packs), buffered, len(data)])
                buffer.append(data)
                buffered += len(data)
            flush()
            index = {
                "format": INDEX_FORMAT,
                "version": INDEX_VERSION,
                "point_id": point_id,
                "archived_at": time.time(),
                "manifest_digest": blake3.blake3(raw_manifest).hexdigest(),
                "packs": packs,
                "chunks": locations,
            }
            self.backend.put(prefix + "index.json", json.dumps(index).encode(), retention)
            self.backend.put(self._manifest_key(point_id), raw_manifest, retention)
        except BaseException:
            # Packs written with a retention cannot be deleted before it ends: they stay
            # (a retry writes new versions) and the original error is what is reported.
            for key in list(self.backend.list(prefix)):
                with contextlib.suppress(StorageError):
                    self.backend.delete(key)
            raise
        return ArchiveResult(
            point_id=point_id,
            packs=len(packs),
            chunks=len(locations),
            logical_bytes=manifest.logical_bytes,
            stored_bytes=self.stored_bytes(point_id),
        )

    def _index(self, point_id: str) -> dict[str, Any]:
        if not self.has_point(point_id):
            raise PointNotFound(point_id)
        try:
            index = json.loads(self.backend.get(self._prefix(point_id) + "index.json"))
        except ObjectNotFound:
            raise StorageError(f"The archive index of point {point_id!r} is missing.") from None
        if index.get("format") != INDEX_FORMAT or index.get("version") != INDEX_VERSION:
            raise StorageError(f"The archive index of point {point_id!r} is not supported.")
        return dict(index)

    def _unpack(self, point_id: str, index: dict[str, Any]) -> Iterator[tuple[str, bytes]]:
        locations = list(index["chunks"])
        packs = list(index["packs"])
        decompressor = zstandard.ZstdDecompressor(max_window_size=1 << WINDOW_LOG)
        by_pack: dict[int, list[list[Any]]] = {}
        for location in locations:
            by_pack.setdefault(int(location[1]), []).append(location)
        for number, pack in enumerate(packs):
            key = str(pack["key"])
            try:
                blob = self.backend.get(key)
            except ObjectNotFound:
                raise StorageError(
                    f"Archive pack {key} of point {point_id!r} is missing."
                ) from None
            except ObjectTampered as exc:
                raise StorageError(f"Archive pack {key} of point {point_id!r}: {exc}") from None
            if blake3.blake3(blob).hexdigest() != pack["digest"]:
                raise StorageError(f"Archive pack {key} of point {point_id!r} is damaged.")
            plain = unpack(blob, key, decompressor)
            for digest, _pack, offset, length in by_pack.get(number, []):
                start, stop = int(offset), int(offset) + int(length)
                data = plain[start:stop]
                if not self.backend.chunk_matches(str(digest), data):
                    raise CorruptChunk(str(digest), f"its copy in archive pack {key} is damaged")
                yield str(digest), data

    def request_restore(self, point_id: str, *, days: int, tier: str = "Standard") -> int:
        """Ask a backend with cold storage classes to restore the point's packs.

        Returns how many packs are still being restored (0: every pack is readable now).
        Backends without storage classes have nothing to restore."""
        restore = getattr(self.backend, "request_restore", None)
        if restore is None:
            return 0
        index = self._index(point_id)
        return sum(1 for pack in index["packs"] if not restore(str(pack["key"]), days, tier))

    def object_keys(self, point_id: str) -> list[str]:
        """Every archive object of the point: manifest copy, index and packs."""
        return [self._manifest_key(point_id), *self.backend.list(self._prefix(point_id))]

    def apply_retention(self, point_id: str, retention: Retention) -> int:
        """Raise the lock of every archive object of the point; how many were changed."""
        if not self.has_point(point_id):
            raise PointNotFound(point_id)
        return sum(
            1 for key in self.object_keys(point_id) if self.backend.extend_retention(key, retention)
        )

    def point_lock(self, point_id: str, wanted: Retention | None = None) -> PointLock:
        """The storage's lock on every archive object of the point."""
        if not self.has_point(point_id):
            raise PointNotFound(point_id)
        return read_locks(self.backend, self.object_keys(point_id), wanted)

    def rehydrate(self, point_id: str, vault_store: VaultStore) -> ImportResult:
        """Write an archived point back into the standard store so it can be restored.

        The archive copy stays; the caller decides how long the rehydrated copy lives and
        removes it with `vault_store.delete_point`.
        """
        index = self._index(point_id)
        raw_manifest = self.backend.get(self._manifest_key(point_id))
        if blake3.blake3(raw_manifest).hexdigest() != index["manifest_digest"]:
            raise StorageError(f"The archived manifest of point {point_id!r} is damaged.")
        return vault_store.import_point(point_id, raw_manifest, self._unpack(point_id, index))

    def terms(self, point_id: str) -> Terms | None:
        """The retention terms the archived manifest copy records (None: an older one)."""
        try:
            return terms_of(self.backend.get(self._manifest_key(point_id)))
        except ObjectNotFound:
            raise PointNotFound(point_id) from None

    def keep(self, point_id: str) -> Keep:
        """Until when the storage itself keeps the archived point (`VaultStore.keep`)."""
        return self.holds.keep(point_id, self.terms(point_id))

    def delete_point(self, point_id: str, *, now: datetime | None = None) -> None:
        """Remove an archived point: the manifest first, so it disappears atomically.

        A complete point (its manifest copy is there) goes only once the storage's own
        retain-until has passed or it was released, as in `VaultStore.delete_point`;
        otherwise `PointRetained`. The leftovers of an archiving that never finished have
        no manifest and are always removed."""
        manifest_key = self._manifest_key(point_id)
        prefix = self._prefix(point_id)
        leftovers = list(self.backend.list(prefix))
        if self.backend.exists(manifest_key):
            keep = self.keep(point_id)
            if not keep.allows_delete(now or datetime.now(UTC)):
                raise PointRetained(point_id, keep.until)
        elif not leftovers:
            raise PointNotFound(point_id)
        self.backend.delete(manifest_key)
        # Packs before the index, so a crash here leaves the index to find them again.
        for key in sorted(leftovers, key=lambda k: k.endswith("/index.json")):
            self.backend.delete(key)

    def stored_bytes(self, point_id: str) -> int:
        """Bytes the archive tier holds for a point: packs, index and manifest copy."""
        manifest_key = self._manifest_key(point_id)
        if not self.backend.exists(manifest_key):
            raise PointNotFound(point_id)
        total = self.backend.size(manifest_key)
        for key in self.backend.list(self._prefix(point_id)):
            total += self.backend.size(key)
        return total
