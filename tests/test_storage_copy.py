"""The copy data plane (vaults/storage/copy.py) alone, on two local stores with their own
data keys: only missing chunks travel, re-encrypted and re-keyed (the replica's manifest names
its own chunk ids; same entries), a stopped copy resumes, a damaged source never publishes,
and an archived point copies pack by pack."""

from __future__ import annotations

import os
from pathlib import Path

import blake3
import pytest

from vaults.storage import ArchiveStore, LocalBackend, VaultStore
from vaults.storage.chunks import chunk_key
from vaults.storage.copy import CopyRefused, copy_archived, copy_point
from vaults.storage.crypto import sealed
from vaults.storage.errors import CorruptChunk


def _tree(root: Path, files: int = 12) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (root / f"f{i:02d}.bin").write_bytes(os.urandom(300 * 1024 + i * 4096))
    return root


@pytest.fixture
def stores(tmp_path: Path) -> tuple[VaultStore, VaultStore]:
    return VaultStore(sealed(LocalBackend(tmp_path / "src"))), VaultStore(
        sealed(LocalBackend(tmp_path / "dst"))
    )


def test_a_copy_is_byte_for_byte_and_only_missing_chunks_travel(
    stores: tuple[VaultStore, VaultStore], tmp_path: Path
) -> None:
    source, target = stores
    data = _tree(tmp_path / "data")
    first = source.backup(data, "p1")
    result = copy_point(source, target, "p1", expected_digest=first.manifest_digest)
    assert result.source_digest == first.manifest_digest
    assert result.chunks_copied == result.chunks_total
    assert result.digest == blake3.blake3(target.read_manifest("p1")).hexdigest()
    mine, theirs = source.manifest("p1"), target.manifest("p1")
    assert [n.path for n in mine.nodes] == [n.path for n in theirs.nodes]
    assert set(mine.chunks).isdisjoint(theirs.chunks)  # same content, unlinkable names
    assert list(mine.chunks.values()) == list(theirs.chunks.values())
    assert target.verify("p1").ok
    # Idempotent: again, nothing moves.
    again = copy_point(source, target, "p1")
    assert again.already_there and again.bytes_moved == 0
    # One file changes: the next point's copy moves that file's chunks and the manifest.
    (data / "f03.bin").write_bytes(os.urandom(300 * 1024))
    second = source.backup(data, "p2")
    moved = copy_point(source, target, "p2", parent="p1")
    assert moved.chunks_copied <= 2
    assert moved.bytes_moved < second.logical_bytes * 0.15
    restored = tmp_path / "restored"
    target.restore("p2", restored, allowed_roots=[tmp_path])
    for path in data.iterdir():
        assert (restored / path.name).read_bytes() == path.read_bytes()
    assert list(target.backend.list("leases/")) == []


def test_a_stopped_copy_resumes_and_a_damaged_source_never_publishes(
    stores: tuple[VaultStore, VaultStore], tmp_path: Path
) -> None:
    source, target = stores
    source.backup(_tree(tmp_path / "data"), "p1")
    seen: list[str] = []

    def stop(chunk: str) -> None:
        seen.append(chunk)
        if len(seen) == 4:
            raise KeyboardInterrupt  # a worker killed half-way

    with pytest.raises(KeyboardInterrupt):
        copy_point(source, target, "p1", on_chunk=stop)
    assert target.points() == []
    resumed = copy_point(source, target, "p1")
    assert resumed.chunks_copied < resumed.chunks_total
    assert target.verify("p1").ok

    # A wrong digest or a damaged chunk on the source: refused, nothing published.
    source.backup(_tree(tmp_path / "other", files=3), "p3")
    with pytest.raises(CopyRefused):
        copy_point(source, target, "p3", expected_digest="0" * 64)
    chunk = next(iter(source.manifest("p3").chunks))
    path = Path(source.backend.root) / chunk_key(chunk)  # type: ignore[attr-defined]
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    if not (Path(target.backend.root) / chunk_key(chunk)).exists():  # type: ignore[attr-defined]
        with pytest.raises(CorruptChunk):
            copy_point(source, target, "p3")
        assert not target.has_point("p3")


def test_a_different_point_under_the_same_id_is_refused(
    stores: tuple[VaultStore, VaultStore], tmp_path: Path
) -> None:
    source, target = stores
    source.backup(_tree(tmp_path / "a", files=2), "p1")
    target.backup(_tree(tmp_path / "b", files=2), "p1")
    with pytest.raises(CopyRefused):
        copy_point(source, target, "p1")


def test_an_archived_point_copies_into_the_replicas_archive(
    stores: tuple[VaultStore, VaultStore], tmp_path: Path
) -> None:
    source, target = stores
    first = source.backup(_tree(tmp_path / "data", files=4), "p1")
    src_archive = ArchiveStore(sealed(LocalBackend(tmp_path / "src-archive"), source.backend.key))
    dst_archive = ArchiveStore(sealed(LocalBackend(tmp_path / "dst-archive"), target.backend.key))
    src_archive.archive_point(source, "p1")
    result = copy_archived(src_archive, dst_archive, "p1", expected_digest=first.manifest_digest)
    assert result.source_digest == first.manifest_digest
    assert result.digest != first.manifest_digest  # the replica's own keyed ids
    assert copy_archived(src_archive, dst_archive, "p1").already_there
    # It rehydrates and restores from the replica's archive alone.
    dst_archive.rehydrate("p1", target)
    assert blake3.blake3(target.read_manifest("p1")).hexdigest() == result.digest
    assert target.verify("p1").ok
