"""Verification: re-read, authenticate and re-hash every chunk a point references.

A chunk passes when its object opens (the AES-GCM tag, bound to its name) and its plaintext
matches its keyed BLAKE3 id; either failure makes it bad, and `bad_reasons` says which."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import blake3

from .chunks import chunk_key, decode_chunk
from .crypto import ObjectTampered
from .errors import CorruptChunk, ObjectNotFound
from .manifest import Manifest
from .writer import Progress

if TYPE_CHECKING:
    from .store import VaultStore


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked_chunks: int
    bad_chunks: list[str]
    missing_chunks: list[str]
    manifest_digest: str = ""
    # Why each bad chunk failed, by id: "it fails authentication ..." or a hash mismatch.
    bad_reasons: dict[str, str] = field(default_factory=dict)


def verify_point(
    store: VaultStore, point_id: str, progress: Progress | None = None
) -> VerifyResult:
    """Re-read and re-hash every chunk the point references."""
    raw = store.read_manifest(point_id)
    manifest = Manifest.from_bytes(raw)
    bad: list[str] = []
    missing: list[str] = []
    reasons: dict[str, str] = {}

    def check(item: tuple[str, int]) -> str:
        digest, size = item
        try:
            blob = store.backend.get(chunk_key(digest))
        except ObjectNotFound:
            return "missing"
        except ObjectTampered as exc:
            reasons[digest] = exc.reason
            return "bad"
        try:
            decode_chunk(digest, blob, size, store.backend)
        except CorruptChunk as exc:
            reasons[digest] = exc.reason
            return "bad"
        return "ok"

    items = list(manifest.chunks.items())
    with ThreadPoolExecutor(store.workers, thread_name_prefix="holdfast-verify") as pool:
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
        bad_reasons={digest: reasons[digest] for digest in bad if digest in reasons},
    )
