"""The data plane against a real filesystem: backup, restore, verify, GC and the archive tier.

Pure storage tests: no Django, no mocks. They also run without Django settings:
`pytest -p no:django --noconftest tests/test_storage.py`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import re
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vaults.storage import (
    ArchiveStore,
    ConcurrentGcConflict,
    CorruptChunk,
    LocalBackend,
    PointNotFound,
    RestoreRefused,
    SourceUnreadable,
    StorageError,
    VaultStore,
)
from vaults.storage.chunks import StreamChunker, chunk_key
from vaults.storage.crypto import sealed
from vaults.storage.manifest import Manifest

REPO = Path(__file__).resolve().parent.parent


# Helpers -----------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything a restore must reproduce, keyed by relative path (root excluded)."""
    result: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st_ = os.lstat(path)
            if stat.S_ISLNK(st_.st_mode):
                result[rel] = ("symlink", os.readlink(path), st_.st_mtime_ns)
            elif stat.S_ISDIR(st_.st_mode):
                result[rel] = ("dir", stat.S_IMODE(st_.st_mode), st_.st_mtime_ns)
            else:
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                result[rel] = ("file", stat.S_IMODE(st_.st_mode), st_.st_mtime_ns, digest)
    return result


def random_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def text_bytes(size: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    words = [b"alpha", b"bravo", b"charlie", b"delta", b"echo", b"vault", b"restore", b"\n"]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b" "
    return bytes(out[:size])


def write(path: Path, data: bytes, mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mode is not None:
        path.chmod(mode)
    return path


def chunk_keys(store: VaultStore) -> set[str]:
    return set(store.backend.list("chunks/"))


@pytest.fixture
def store(tmp_path: Path) -> VaultStore:
    return VaultStore(sealed(LocalBackend(tmp_path / "store")))


@pytest.fixture
def mixed_source(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    write(source / "big.bin", random_bytes(5_000_000, 1), 0o640)
    write(source / "docs" / "notes.txt", text_bytes(400_000, 2), 0o600)
    for index in range(30):
        write(source / "docs" / "small" / f"f{index:02d}.txt", text_bytes(3_000 + index, index))
    write(source / "empty", b"")
    (source / "nested" / "deeper").mkdir(parents=True)
    os.symlink("../big.bin", source / "nested" / "to-big")
    os.symlink("/etc/passwd", source / "absolute-link")
    return source


# Round trips -------------------------------------------------------------------------


@dataclass
class FileSpec:
    content: bytes
    mode: int


@dataclass
class LinkSpec:
    target: str


@dataclass
class DirSpec:
    children: dict[str, FileSpec | LinkSpec | DirSpec]
    mode: int


def _blob(size: int, seed: int, compressible: bool) -> bytes:
    return text_bytes(size, seed) if compressible else random_bytes(size, seed)


names = st.text(
    alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="/\x00"),
    min_size=1,
    max_size=12,
).filter(lambda name: name not in (".", "..") and len(name.encode()) <= 255)
contents = st.one_of(
    st.binary(max_size=2_000),
    st.builds(
        _blob,
        st.sampled_from([0, 65_536, 300_000, 1_300_000, 3_500_000]),
        st.integers(0, 2**32),
        st.booleans(),
    ),
)
files = st.builds(FileSpec, contents, st.sampled_from([0o644, 0o600, 0o755, 0o444, 0o640]))
links = st.builds(
    LinkSpec,
    st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
    .filter(bool)
    .map(lambda t: t[:40]),
)
trees = st.recursive(
    st.one_of(files, links),
    lambda children: st.builds(
        DirSpec,
        st.dictionaries(names, children, max_size=4),
        st.sampled_from([0o755, 0o700, 0o750, 0o711]),
    ),
    max_leaves=10,
)


def materialize(path: Path, node: FileSpec | LinkSpec | DirSpec) -> None:
    if isinstance(node, FileSpec):
        write(path, node.content, node.mode)
    elif isinstance(node, LinkSpec):
        os.symlink(node.target, path)
    else:
        path.mkdir()
        for name, child in node.children.items():
            materialize(path / name, child)
        path.chmod(node.mode)


_examples = itertools.count()


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.dictionaries(names, trees, max_size=5))
@example(
    {
        "big.bin": FileSpec(_blob(3_500_000, 1, False), 0o644),
        "empty": FileSpec(b"", 0o600),
        "d": DirSpec(
            {"e": DirSpec({"f": DirSpec({"g.txt": FileSpec(b"x", 0o444)}, 0o700)}, 0o750)}, 0o755
        ),
        "ünï©ødé ☃": LinkSpec("../big.bin"),
    }
)
def test_generated_trees_restore_byte_identical(
    tmp_path_factory: pytest.TempPathFactory, tree: dict[str, FileSpec | LinkSpec | DirSpec]
) -> None:
    base = tmp_path_factory.mktemp(f"tree{next(_examples)}")
    source = base / "source"
    source.mkdir()
    for name, node in tree.items():
        materialize(source / name, node)
    store = VaultStore(sealed(LocalBackend(base / "store")))

    result = store.backup(source, "p1")
    restored = store.restore("p1", base / "restores" / "out", allowed_roots=[base / "restores"])

    assert snapshot(restored.target) == snapshot(source)
    assert result.file_count == restored.files
    assert store.verify("p1").ok


def test_non_utf8_names_and_deep_nesting_round_trip(store: VaultStore, tmp_path: Path) -> None:
    source = tmp_path / "source"
    deep = source.joinpath(*[f"level{depth}" for depth in range(60)])
    write(deep / "leaf.txt", b"deep")
    os.close(os.open(os.fsencode(source) + b"/caf\xe9-\xff.bin", os.O_CREAT | os.O_WRONLY))
    os.symlink(b"target-\xfe", os.fsencode(source) + b"/link-\xfe")

    store.backup(source, "p1")
    restored = store.restore("p1", tmp_path / "out", allowed_roots=[tmp_path])

    assert snapshot(restored.target) == snapshot(source)


@settings(max_examples=12, deadline=None)
@given(
    st.integers(0, 2**32),
    st.one_of(st.integers(0, 2_000_000), st.sampled_from([17_000_000, 36_000_000])),
    st.lists(st.one_of(st.integers(1, 70_000), st.integers(1, 20_000_000)), max_size=8),
)
def test_chunk_boundaries_do_not_depend_on_how_the_stream_is_fed(
    seed: int, size: int, piece_sizes: list[int]
) -> None:
    data = random_bytes(size, seed)
    whole = StreamChunker()
    expected = list(whole.feed(data)) + list(whole.finish())
    pieces = StreamChunker()
    got: list[tuple[int, bytes]] = []
    offset = 0
    for piece_size in [*piece_sizes, len(data)]:
        got.extend(pieces.feed(data[offset : offset + piece_size]))
        offset += piece_size
    got.extend(pieces.finish())
    assert got == expected
    assert b"".join(chunk for _, chunk in got) == data


def test_sub_path_restores_one_file_or_subtree(
    store: VaultStore, mixed_source: Path, tmp_path: Path
) -> None:
    store.backup(mixed_source, "p1")
    roots = [tmp_path / "restores"]

    single = store.restore("p1", roots[0] / "one", allowed_roots=roots, sub_path="docs/notes.txt")
    subtree = store.restore("p1", roots[0] / "tree", allowed_roots=roots, sub_path="/docs/small/")

    assert os.listdir(single.target) == ["notes.txt"]
    assert (single.target / "notes.txt").read_bytes() == (
        mixed_source / "docs" / "notes.txt"
    ).read_bytes()
    assert snapshot(subtree.target / "small") == snapshot(mixed_source / "docs" / "small")
    with pytest.raises(StorageError):
        store.restore("p1", roots[0] / "none", allowed_roots=roots, sub_path="docs/missing")


def test_list_dir_browses_a_point(store: VaultStore, mixed_source: Path) -> None:
    store.backup(mixed_source, "p1")

    top = {entry.name: entry for entry in store.list_dir("p1")}
    nested = store.list_dir("p1", "nested")

    assert set(top) == {"absolute-link", "big.bin", "docs", "empty", "nested"}
    assert top["big.bin"].kind == "file" and top["big.bin"].size == 5_000_000
    assert top["big.bin"].mode == 0o640
    assert top["docs"].kind == "dir"
    assert {(e.name, e.kind, e.target) for e in nested} == {
        ("deeper", "dir", ""),
        ("to-big", "symlink", "../big.bin"),
    }
    with pytest.raises(StorageError):
        store.list_dir("p1", "big.bin")
    with pytest.raises(PointNotFound):
        store.list_dir("nope")


# Deduplication -----------------------------------------------------------------------


def test_unchanged_data_stores_nothing_new_and_small_changes_store_little(
    store: VaultStore, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    write(source / "disk.img", random_bytes(24_000_000, 7))
    for index in range(200):
        write(source / "mail" / f"{index:03d}.eml", random_bytes(40_000, 100 + index))

    first = store.backup(source, "p1")
    second = store.backup(source, "p2")

    image = bytearray((source / "disk.img").read_bytes())
    image[12_000_000:12_000_000] = random_bytes(200_000, 8)  # insertion mid-file
    (source / "disk.img").write_bytes(bytes(image))
    for index in (10, 150):
        write(source / "mail" / f"{index:03d}.eml", random_bytes(40_000, 900 + index))
    third = store.backup(source, "p3")

    assert first.new_chunks > 0 and first.stored_bytes >= first.logical_bytes * 0.99
    assert second.new_chunks == 0
    assert second.stored_bytes < 100_000  # the manifest only
    assert 0 < third.stored_bytes < first.stored_bytes * 0.2
    assert third.reused_chunks > third.new_chunks


def test_backup_refuses_an_existing_point_id(store: VaultStore, mixed_source: Path) -> None:
    store.backup(mixed_source, "p1")
    with pytest.raises(StorageError, match="already exists"):
        store.backup(mixed_source, "p1")
    with pytest.raises(StorageError, match="Invalid recovery point id"):
        store.backup(mixed_source, "../escape")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_fails_the_backup_clearly(store: VaultStore, mixed_source: Path) -> None:
    write(mixed_source / "secret", b"x", 0o000)
    with pytest.raises(SourceUnreadable, match="secret"):
        store.backup(mixed_source, "p1")
    assert not store.has_point("p1")


# Corruption --------------------------------------------------------------------------


def test_flipped_byte_is_found_by_verify_and_by_restore(
    store: VaultStore, mixed_source: Path, tmp_path: Path
) -> None:
    store.backup(mixed_source, "p1")
    manifest = store.manifest("p1")
    victim = next(iter(manifest.chunks))
    path = tmp_path / "store" / chunk_key(victim)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))

    result = store.verify("p1")

    assert not result.ok
    assert result.bad_chunks == [victim]
    assert result.missing_chunks == []
    assert result.checked_chunks == len(manifest.chunks)
    with pytest.raises(CorruptChunk) as caught:
        store.restore("p1", tmp_path / "out", allowed_roots=[tmp_path])
    assert caught.value.chunk_id == victim


def test_missing_chunk_is_reported_by_verify(store: VaultStore, mixed_source: Path) -> None:
    store.backup(mixed_source, "p1")
    victim = next(iter(store.manifest("p1").chunks))
    store.backend.delete(chunk_key(victim))

    result = store.verify("p1")

    assert not result.ok and result.missing_chunks == [victim] and result.bad_chunks == []


# Restore safety ----------------------------------------------------------------------


def test_restore_refuses_targets_outside_the_allowed_roots(
    store: VaultStore, mixed_source: Path, tmp_path: Path
) -> None:
    store.backup(mixed_source, "p1")
    allowed = tmp_path / "restores"
    allowed.mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    os.symlink(outside, allowed / "sneaky")

    for target in (outside / "out", allowed / ".." / "elsewhere", allowed / "sneaky" / "out"):
        with pytest.raises(RestoreRefused, match="outside the allowed"):
            store.restore("p1", target, allowed_roots=[allowed])
    with pytest.raises(RestoreRefused):
        store.restore("p1", allowed / "out", allowed_roots=[])
    assert os.listdir(outside) == []


def test_restore_refuses_to_overwrite_unless_asked(
    store: VaultStore, mixed_source: Path, tmp_path: Path
) -> None:
    store.backup(mixed_source, "p1")
    target = tmp_path / "out"
    write(target / "docs" / "notes.txt", b"local edits")

    with pytest.raises(RestoreRefused, match="overwrite"):
        store.restore("p1", target, allowed_roots=[tmp_path])
    assert (target / "docs" / "notes.txt").read_bytes() == b"local edits"
    assert not (target / "big.bin").exists()  # refused before writing anything

    store.restore("p1", target, allowed_roots=[tmp_path], overwrite=True)
    assert snapshot(target) == snapshot(mixed_source)


def test_restore_never_writes_through_a_symlink_in_the_target(
    store: VaultStore, mixed_source: Path, tmp_path: Path
) -> None:
    store.backup(mixed_source, "p1")
    outside = tmp_path / "outside"
    write(outside / "notes.txt", b"precious")
    write(outside / "passwd", b"root:x:0:0")
    target = tmp_path / "restores" / "out"
    target.mkdir(parents=True)
    os.symlink(outside, target / "docs")  # a directory the restore needs
    os.symlink(outside / "passwd", target / "big.bin")  # a file the restore writes

    with pytest.raises(RestoreRefused):
        store.restore("p1", target, allowed_roots=[tmp_path / "restores"])
    store.restore("p1", target, allowed_roots=[tmp_path / "restores"], overwrite=True)

    assert sorted(os.listdir(outside)) == ["notes.txt", "passwd"]
    assert (outside / "notes.txt").read_bytes() == b"precious"
    assert (outside / "passwd").read_bytes() == b"root:x:0:0"
    assert not (target / "docs").is_symlink()
    assert snapshot(target) == snapshot(mixed_source)


def test_restore_rejects_a_manifest_that_climbs_out(
    store: VaultStore, mixed_source: Path, tmp_path: Path
) -> None:
    store.backup(mixed_source, "p1")
    for bad_path in ("../escaped", "/etc/escaped", "docs/../../escaped"):
        document = json.loads(store.read_manifest("p1"))
        document["entries"].append({"path": bad_path, "kind": "dir", "mode": 0o755, "mtime_ns": 0})
        store.backend.put("manifests/evil.json", json.dumps(document).encode())
        with pytest.raises(RestoreRefused, match="unsafe path"):
            store.restore("evil", tmp_path / "restores" / "out", allowed_roots=[tmp_path])
    assert not (tmp_path / "escaped").exists()
    assert not (tmp_path / "restores" / "out").exists()


# Archive tier ------------------------------------------------------------------------


def test_archive_then_rehydrate_restores_byte_identical(store: VaultStore, tmp_path: Path) -> None:
    source = tmp_path / "source"
    for index in range(12):
        write(source / "logs" / f"app-{index}.log", text_bytes(150_000, index))
    write(source / "db.dump", text_bytes(2_500_000, 99), 0o600)
    os.symlink("db.dump", source / "latest")
    backup = store.backup(source, "p1")
    standard_bytes = sum(store.backend.size(key) for key in chunk_keys(store))
    standard_bytes += store.backend.size("manifests/p1.json")
    archive = ArchiveStore(sealed(LocalBackend(tmp_path / "archive"), store.backend.key))

    archived = archive.archive_point(store, "p1")
    store.delete_point("p1")
    store.gc()
    assert chunk_keys(store) == set()
    rehydrated = archive.rehydrate("p1", store)
    restored = store.restore("p1", tmp_path / "out", allowed_roots=[tmp_path])

    assert archived.stored_bytes == archive.stored_bytes("p1")
    assert archived.stored_bytes <= standard_bytes
    assert rehydrated.manifest_digest == backup.manifest_digest
    assert rehydrated.written_chunks == backup.new_chunks
    assert snapshot(restored.target) == snapshot(source)
    assert store.verify("p1").ok
    assert archive.points() == ["p1"]  # rehydration leaves the archive copy

    archive.delete_point("p1")
    assert list(archive.backend.list("")) == []
    with pytest.raises(PointNotFound):
        archive.rehydrate("p1", store)


def test_rehydrate_rejects_a_damaged_pack(store: VaultStore, tmp_path: Path) -> None:
    source = tmp_path / "source"
    write(source / "a.txt", text_bytes(500_000, 1))
    store.backup(source, "p1")
    archive = ArchiveStore(sealed(LocalBackend(tmp_path / "archive"), store.backend.key), level=3)
    archive.archive_point(store, "p1")
    store.delete_point("p1")
    (pack,) = (tmp_path / "archive" / "packs" / "p1").glob("pack-*")
    blob = bytearray(pack.read_bytes())
    blob[-10] ^= 0xFF
    pack.write_bytes(bytes(blob))

    with pytest.raises(StorageError, match="damaged"):
        archive.rehydrate("p1", store)
    assert not store.has_point("p1")


# Garbage collection ------------------------------------------------------------------


def test_gc_reclaims_deleted_points_and_keeps_live_ones(store: VaultStore, tmp_path: Path) -> None:
    write(tmp_path / "a" / "only-a.bin", random_bytes(3_000_000, 1))
    write(tmp_path / "a" / "shared.bin", random_bytes(2_000_000, 2))
    write(tmp_path / "b" / "only-b.bin", random_bytes(3_000_000, 3))
    write(tmp_path / "b" / "shared.bin", random_bytes(2_000_000, 2))
    store.backup(tmp_path / "a", "pa")
    store.backup(tmp_path / "b", "pb")
    keys_b = {chunk_key(c) for c in store.manifest("pb").chunks}

    assert store.gc().deleted_chunks == 0
    store.delete_point("pa")
    result = store.gc()

    assert result.deleted_chunks > 0 and result.freed_bytes >= 2_900_000
    assert chunk_keys(store) == keys_b
    assert store.verify("pb").ok
    assert list(store.backend.list("gc/")) == []
    with pytest.raises(PointNotFound):
        store.delete_point("pa")


def test_gc_during_a_backup_keeps_the_chunks_it_reuses(store: VaultStore, tmp_path: Path) -> None:
    source = tmp_path / "source"
    write(source / "data.bin", random_bytes(6_000_000, 5))
    store.backup(source, "old")
    store.delete_point("old")  # every chunk is now unreferenced ...
    runs = []

    def collect_garbage_mid_backup(done: int, total: int) -> None:
        if not runs:  # ... but the new backup's lease already names them
            runs.append(store.gc())

    result = store.backup(source, "new", progress=collect_garbage_mid_backup)

    assert runs[0].deleted_chunks == 0 and runs[0].leased_chunks > 0
    assert result.reused_chunks > 0 and result.new_chunks == 0
    assert store.verify("new").ok
    restored = store.restore("new", tmp_path / "out", allowed_roots=[tmp_path])
    assert snapshot(restored.target) == snapshot(source)
    assert list(store.backend.list("leases/")) == []


class PausingBackend(LocalBackend):
    """A real local backend whose first chunk deletion waits for a signal."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gc_deciding = threading.Event()
        self.resume_gc = threading.Event()

    def delete(self, key: str) -> None:
        if key.startswith("chunks/") and not self.gc_deciding.is_set():
            self.gc_deciding.set()
            assert self.resume_gc.wait(30)
        super().delete(key)


def test_backup_that_reuses_a_chunk_a_running_gc_already_condemned_is_not_published(
    tmp_path: Path,
) -> None:
    backend = PausingBackend(tmp_path / "store")
    store = VaultStore(sealed(backend), poll_interval=0.01)
    source = tmp_path / "source"
    write(source / "data.bin", random_bytes(3_000_000, 6))
    store.backup(source, "old")
    store.delete_point("old")
    gc_results = []
    collector = threading.Thread(target=lambda: gc_results.append(store.gc()))
    collector.start()
    assert backend.gc_deciding.wait(30)  # GC has read leases and manifests: none protect

    def let_gc_delete(done: int, total: int) -> None:
        backend.resume_gc.set()  # the backup has already found its chunks stored

    with pytest.raises(ConcurrentGcConflict):
        store.backup(source, "new", progress=let_gc_delete)
    collector.join(30)

    assert gc_results[0].deleted_chunks > 0
    assert not store.has_point("new")
    assert list(store.backend.list("leases/")) == []
    retried = store.backup(source, "new")
    assert retried.new_chunks > 0 and store.verify("new").ok


def test_failed_backup_leaves_no_point_and_gc_cleans_it(
    store: VaultStore, mixed_source: Path, tmp_path: Path
) -> None:
    store.backup(mixed_source, "good")
    write(tmp_path / "other" / "data.bin", random_bytes(9_000_000, 11))
    before = chunk_keys(store)

    def crash(done: int, total: int) -> None:
        raise RuntimeError("worker lost")

    with pytest.raises(RuntimeError):
        store.backup(tmp_path / "other", "broken", progress=crash)

    assert store.points() == ["good"]
    assert chunk_keys(store) > before  # some chunks were written before the crash
    assert store.verify("good").ok
    store.gc()
    assert chunk_keys(store) == before
    assert store.verify("good").ok


def test_killed_backup_is_invisible_and_its_lease_expires(
    store: VaultStore, mixed_source: Path, tmp_path: Path
) -> None:
    store.backup(mixed_source, "good")
    before = chunk_keys(store)
    write(tmp_path / "other" / "data.bin", random_bytes(9_000_000, 12))
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from vaults.storage import LocalBackend, VaultStore\n"
        "from vaults.storage.crypto import DataKey, sealed\n"
        "key = DataKey(bytes.fromhex(sys.argv[3]))\n"
        "store = VaultStore(sealed(LocalBackend(sys.argv[1]), key))\n"
        "store.backup(Path(sys.argv[2]), 'killed', progress=lambda d, t: os._exit(3))\n"
    )
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(tmp_path / "store"),
            str(tmp_path / "other"),
            store.backend.key._secret.hex(),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )

    assert completed.returncode == 3
    assert store.points() == ["good"]
    orphaned = chunk_keys(store) - before
    assert orphaned
    assert store.verify("good").ok
    kept = store.gc()  # the lease is still fresh: the writer might be alive
    assert kept.deleted_chunks == 0 and kept.leased_chunks == len(orphaned)
    expired = store.gc(now=time.time() + store.lease_timeout + 1)
    assert expired.expired_leases == 1 and expired.deleted_chunks == len(orphaned)
    assert chunk_keys(store) == before
    assert list(store.backend.list("leases/")) == []
    assert store.verify("good").ok


# Backend -----------------------------------------------------------------------------


def test_local_backend_lists_by_prefix_in_order_and_hides_temporaries(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    for key in ("b/x", "a/y", "a.z", "a/x/1", "c"):
        backend.put(key, key.encode())
    backend.put("c", b"again")  # idempotent overwrite
    (tmp_path / "a" / ".tmp-left-behind").write_bytes(b"partial")

    assert list(backend.list("")) == ["a.z", "a/x/1", "a/y", "b/x", "c"]
    assert list(backend.list("a/")) == ["a/x/1", "a/y"]
    assert list(backend.list("a")) == ["a.z", "a/x/1", "a/y"]
    assert backend.get("c") == b"again" and backend.size("c") == 5
    backend.delete("c")
    backend.delete("c")
    assert not backend.exists("c")
    for bad in ("../x", "/abs", "a//b", ".hidden", "a/./b", ""):
        with pytest.raises(StorageError):
            backend.put(bad, b"")
    assert backend.sweep_temporaries(older_than=-1) == 1


def test_manifest_records_schema_version_and_every_chunk(
    store: VaultStore, mixed_source: Path
) -> None:
    result = store.backup(mixed_source, "p1")
    raw = store.read_manifest("p1")
    document = json.loads(raw)
    manifest = Manifest.from_bytes(raw)

    assert document["format"] == "holdfast.manifest" and document["version"] == 2
    assert result.logical_bytes == sum(n.size for n in manifest.nodes if n.kind == "file")
    referenced = {c for n in manifest.nodes for c, _, _ in n.extents}
    assert referenced == set(manifest.chunks)
    assert {chunk_key(c) for c in manifest.chunks} == chunk_keys(store)


# Incremental backups against a parent point ------------------------------------------

_opened: list[str] | None = None


def _record_opens(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and _opened is not None and isinstance(args[0], str | bytes):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_record_opens)


def opened_during(fn, under: Path) -> tuple[object, set[str]]:  # type: ignore[no-untyped-def]
    """Run fn; the paths below `under` that anything opened meanwhile (audit events)."""
    global _opened
    _opened = []
    try:
        result = fn()
        seen = list(_opened)
    finally:
        _opened = None
    prefix = str(under) + "/"
    # A backup reads its source through the directory descriptor it opened and checked.
    seen = [re.sub(r"^/proc/self/fd/\d+/", prefix, p) for p in seen]
    return result, {os.path.relpath(p, under) for p in seen if p.startswith(prefix)}


def incremental_source(root: Path) -> Path:
    source = root / "source"
    write(source / "disk.img", random_bytes(6_000_000, 21))
    write(source / "db.dump", random_bytes(2_000_000, 22))
    for index in range(60):
        write(source / "small" / f"{index:02d}.txt", text_bytes(5_000 + index, 300 + index))
    write(source / "empty", b"")
    os.symlink("disk.img", source / "latest")
    return source


def test_parent_backup_reads_only_changed_files_and_restores_byte_identical(
    tmp_path: Path,
) -> None:
    store = VaultStore(sealed(LocalBackend(tmp_path / "store")), timestamp_slack=0)
    source = incremental_source(tmp_path)
    first = store.backup(source, "p1")
    assert first.read_bytes == first.logical_bytes and first.unchanged_files == 0

    write(source / "small" / "07.txt", text_bytes(9_000, 999))  # new size
    dump = source / "db.dump"  # same size, mtime put back: the ctime still moves
    before = dump.stat()
    with open(dump, "r+b") as out:
        out.seek(1_000_000)
        out.write(b"rot?")
    os.utime(dump, ns=(before.st_atime_ns, before.st_mtime_ns))
    write(source / "small" / "new.txt", b"fresh")
    changed = {"small/07.txt", "db.dump", "small/new.txt"}

    second, opened = opened_during(lambda: store.backup(source, "p2", parent="p1"), source)

    assert opened == changed
    assert second.read_bytes == sum((source / path).stat().st_size for path in changed)
    assert second.unchanged_files == 61 and second.parent == "p1"
    assert second.new_chunks > 0 and second.stored_bytes < 2_500_000
    restored = store.restore("p2", tmp_path / "out", allowed_roots=[tmp_path])
    assert snapshot(restored.target) == snapshot(source)
    assert store.verify("p2").ok
    # The reused entries carry the stamps forward: a third backup reads nothing.
    third, opened = opened_during(lambda: store.backup(source, "p3", parent="p2"), source)
    assert opened == set() and third.read_bytes == 0 and third.new_chunks == 0
    assert store.manifest("p3").chunks == store.manifest("p2").chunks


def test_files_changed_close_to_the_parent_backup_are_read_again(
    store: VaultStore, tmp_path: Path
) -> None:
    source = incremental_source(tmp_path)
    store.backup(source, "p1")
    # Every file's ctime is within the default 2 s slack of p1's start: a write in the
    # same timestamp tick as p1's read could hide behind identical stamps.
    second = store.backup(source, "p2", parent="p1")
    assert second.unchanged_files == 0 and second.read_bytes == second.logical_bytes
    assert second.new_chunks == 0


def test_missing_damaged_or_version_1_parent_falls_back_to_reading(tmp_path: Path) -> None:
    store = VaultStore(sealed(LocalBackend(tmp_path / "store")), timestamp_slack=0)
    source = incremental_source(tmp_path)
    first = store.backup(source, "p1")
    store.backend.put("manifests/bad.json", b"{not json")
    document = json.loads(store.read_manifest("p1"))
    document.update(version=1, point_id="old")
    del document["started_at_ns"]
    for entry in document["entries"]:
        for key in ("ctime_ns", "inode", "device"):
            entry.pop(key, None)
    store.backend.put("manifests/old.json", json.dumps(document).encode())

    for index, parent in enumerate(("nope", "bad", "old")):
        result = store.backup(source, f"q{index}", parent=parent)
        assert result.parent is None and result.unchanged_files == 0
        assert result.read_bytes == first.logical_bytes and result.new_chunks == 0
    restored = store.restore("old", tmp_path / "v1", allowed_roots=[tmp_path])
    assert snapshot(restored.target) == snapshot(source)  # version 1 still restores
    assert store.verify("old").ok

    # A chunk of the parent is gone: the files using it are read (and it is stored again).
    victim = store.manifest("p1").nodes
    dump_chunks = {c for n in victim if n.path == "db.dump" for c, _, _ in n.extents}
    store.backend.delete(chunk_key(sorted(dump_chunks)[0]))
    result, opened = opened_during(lambda: store.backup(source, "q3", parent="p1"), source)
    assert opened == {"db.dump"} and result.parent == "p1" and result.new_chunks == 1
    assert store.verify("q3").ok


def test_gc_during_a_parent_backup_keeps_the_chunks_it_reuses(tmp_path: Path) -> None:
    store = VaultStore(sealed(LocalBackend(tmp_path / "store")), timestamp_slack=0)
    source = incremental_source(tmp_path)
    store.backup(source, "p1")
    write(source / "small" / "03.txt", b"changed")
    runs = []

    def delete_parent_and_collect(done: int, total: int) -> None:
        if not runs:  # the parent's chunks are now referenced by our lease only
            store.delete_point("p1")
            runs.append(store.gc())

    result = store.backup(source, "p2", parent="p1", progress=delete_parent_and_collect)

    assert result.unchanged_files == 62 and result.read_bytes == len(b"changed")
    assert runs[0].deleted_chunks == 0 and runs[0].leased_chunks >= len(store.manifest("p2").chunks)
    assert store.verify("p2").ok
    restored = store.restore("p2", tmp_path / "out", allowed_roots=[tmp_path])
    assert snapshot(restored.target) == snapshot(source)
    assert list(store.backend.list("leases/")) == []


class ParentRacingBackend(PausingBackend):
    """When the backup reads its parent's manifest, the parent is deleted and a GC starts
    (and pauses before its first deletion): that GC read the leases too early to see ours."""

    def __init__(self, root: Path, store_of: list[VaultStore]) -> None:
        super().__init__(root)
        self.armed = False
        self.store_of = store_of
        self.gc_results: list[object] = []
        self.collector: threading.Thread | None = None

    def get(self, key: str) -> bytes:
        data = super().get(key)
        if self.armed and key == "manifests/p1.json":
            self.armed = False
            super().delete(key)
            store = self.store_of[0]
            self.collector = threading.Thread(target=lambda: self.gc_results.append(store.gc()))
            self.collector.start()
            assert self.gc_deciding.wait(30)
        return data


def test_parent_backup_whose_chunks_a_running_gc_condemned_is_not_published(
    tmp_path: Path,
) -> None:
    stores: list[VaultStore] = []
    backend = ParentRacingBackend(tmp_path / "store", stores)
    store = VaultStore(sealed(backend), poll_interval=0.01, timestamp_slack=0)
    stores.append(store)
    source = incremental_source(tmp_path)
    store.backup(source, "p1")
    write(source / "small" / "03.txt", b"changed")
    backend.armed = True

    def let_gc_delete(done: int, total: int) -> None:
        backend.resume_gc.set()  # the backup has already checked the parent's chunks

    with pytest.raises(ConcurrentGcConflict):
        store.backup(source, "p2", parent="p1", progress=let_gc_delete)
    assert backend.collector is not None
    backend.collector.join(30)

    assert getattr(backend.gc_results[0], "deleted_chunks", 0) > 0
    assert not store.has_point("p2")
    assert list(store.backend.list("leases/")) == []
    retried = store.backup(source, "p2", parent="p1")  # the parent is gone: full read
    assert retried.parent is None and retried.new_chunks > 0 and store.verify("p2").ok


def test_a_scattered_small_file_edit_rewrites_little_without_a_parent(
    store: VaultStore, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    for index in range(400):
        write(source / f"d{index % 8}" / f"{index:03d}.bin", random_bytes(12_000, index))
    first = store.backup(source, "p1")
    write(source / "d3" / "203.bin", random_bytes(12_000, 5_000))
    second = store.backup(source, "p2")

    assert 12 <= first.new_chunks <= 40  # ~4.8 MB in ~256 KiB chunks, not 400 objects
    assert second.stored_bytes < 1_000_000  # ~0.74 MB: the chunks around the edit + manifest
    restored = store.restore("p2", tmp_path / "out", allowed_roots=[tmp_path])
    assert snapshot(restored.target) == snapshot(source)
