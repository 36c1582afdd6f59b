"""Encryption at rest (SPEC 3.11, issue 17), end to end on real files and real local stores.

Backups, verifications, restores and tier moves run as jobs through the runner, in this
process, on the store under a temporary ``HOLDFAST_STORAGE_ROOT``; every test has its own
master key file (``HOLDFAST_KEY_FILE``), and the key caches are cleared around it. Each test
fails if objects were written in plaintext: the data would be found on the disk, a flipped
or swapped object would pass, or a wrong key would read.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from portal import clock
from portal.gate import DomainError
from portal.models import Alert
from tests.conftest import make_user
from tests.factories import make_vault
from tests.test_jobs import protect, tree_of, write_tree
from vaults import keyring, locations, selectors
from vaults.jobs import requests, runner, schedules
from vaults.models import Job, ProtectedItem, RecoveryPoint, Vault
from vaults.storage import ArchiveStore, LocalBackend, StorageError, VaultStore
from vaults.storage.chunks import chunk_key
from vaults.storage.crypto import (
    KeyUnavailable,
    MasterKey,
    WrappedKey,
    create_master_key_file,
    key_object_name,
    read_master_key,
)

ROOT = Path(__file__).resolve().parent.parent
DR_SCRIPT = ROOT / "scripts" / "dr-restore.py"
SECRET_NAME = "payroll-2026.xlsx"
MONTHLY_SLOT = datetime(2026, 3, 1, 22, 0, 10, tzinfo=UTC)  # the 1st: a monthly point


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def key_file(settings: Any, tmp_path: Path) -> Iterator[Path]:
    """This test's own master key file (made on first use); no key read by another test."""
    settings.HOLDFAST_KEY_FILE = tmp_path / "keys" / "master.key"
    keyring.clear_caches()
    yield settings.HOLDFAST_KEY_FILE
    keyring.clear_caches()


@pytest.fixture
def storage(settings: Any, tmp_path: Path) -> Path:
    settings.HOLDFAST_STORAGE_ROOT = tmp_path / "storage"
    settings.HOLDFAST_RESTORE_ROOTS = [tmp_path / "restores"]
    (tmp_path / "restores").mkdir()
    return settings.HOLDFAST_STORAGE_ROOT


@pytest.fixture
def operator(db: None) -> Any:
    return make_user("oscar", "operator")


def run(job: Job) -> Job:
    """Run a queued job in this process, to completed or failed."""
    done = runner.job_run(job_id=job.pk)
    assert done is not None
    return done


def backup(item: ProtectedItem, actor: Any) -> RecoveryPoint:
    job = run(requests.backup_request(actor=actor, item=item))
    assert job.status == "completed", job.error
    assert job.recovery_point is not None
    return job.recovery_point


def restore(point: RecoveryPoint, actor: Any, target: Path) -> Job:
    return run(requests.restore_request(actor=actor, point=point, target_path=str(target)))


def verify(point: RecoveryPoint, actor: Any) -> Job:
    return run(requests.verify_request(actor=actor, point=point))


def secrets_tree(root: Path, seed: int = 7) -> Path:
    """Three random files (200 KiB to 2 MiB: nothing compresses them, so a plaintext store
    would hold them as they are), a compressible text file, and a telling file name."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    (root / "a.bin").write_bytes(rng.randbytes(200 * 1024 + 3))
    (root / "b.bin").write_bytes(rng.randbytes(2 * 1024 * 1024 - 5))
    (root / "reports").mkdir()
    (root / "reports" / SECRET_NAME).write_bytes(rng.randbytes(700 * 1024))
    (root / "notes.txt").write_text("the quarterly numbers are confidential\n" * 20000)
    return root


def random_files(root: Path) -> list[bytes]:
    return [path.read_bytes() for path in [*sorted(root.rglob("*.bin")), find(root, SECRET_NAME)]]


def find(root: Path, name: str) -> Path:
    (path,) = root.rglob(name)
    return path


def files_under(*roots: Path) -> list[Path]:
    return sorted(path for root in roots for path in root.rglob("*") if path.is_file())


def listing(*roots: Path) -> dict[str, tuple[bool, int, int]]:
    """Every file and directory under ``roots`` with its size and mtime: what "nothing
    changed" is compared on."""
    found = {}
    for root in roots:
        for path in [root, *root.rglob("*")] if root.exists() else []:
            st = path.lstat()
            found[str(path)] = (path.is_dir(), st.st_size, st.st_mtime_ns)
    return found


WINDOW = 64
GRAM = WINDOW // 2


def leaked_window(sources: list[bytes], stored: list[Path]) -> tuple[int, int] | None:
    """Where some 64-byte window of a source is found in a stored file, else None.

    Exhaustive without comparing every window with every offset: a 64-byte run common to a
    source and a stored file covers a whole 32-byte piece of the stored file at a multiple of
    32, so the stored files' pieces at those offsets go in a set, and every offset of every
    source is looked up in it (a 32-byte random piece found at all fails the test)."""
    pieces: set[bytes] = set()
    for path in stored:
        data = path.read_bytes()
        pieces.update(data[at : at + GRAM] for at in range(0, len(data) - GRAM + 1, GRAM))
    for number, source in enumerate(sources):
        for at in range(len(source) - GRAM + 1):
            if source[at : at + GRAM] in pieces:
                return number, at
    return None


def rotate_master_key(key_file: Path) -> tuple[MasterKey, MasterKey]:
    """Rewrap every data key under a new master key without rewriting data, the way
    `manage.py keys rotate` does (swap this helper for the command once it exists): the
    rows and the wrapped copies beside each store, then the new key file in place."""
    old = read_master_key(key_file)
    staged = key_file.with_name("rotating.key")
    new = create_master_key_file(staged)
    for vault in Vault.objects.exclude(data_key=""):
        what = f"vault {vault.name}'s data key"
        rewrapped = new.wrap(old.unwrap(WrappedKey.from_json(vault.data_key), what))
        Vault.objects.filter(pk=vault.pk).update(data_key=rewrapped.to_json())
        for raw in (locations.raw_standard_backend(vault), locations.raw_archive_backend(vault)):
            if any(True for _ in raw.list("")):
                raw.put_if_absent(key_object_name(new.key_id), rewrapped.to_json().encode())
    os.replace(staged, key_file)
    keyring.clear_caches()
    return old, new


def another_key_in_place(key_file: Path) -> MasterKey:
    """Replace the key file with another valid master key (the wrong one)."""
    other = create_master_key_file(key_file.with_name("other.key"))
    os.replace(key_file.with_name("other.key"), key_file)
    return other


def flip_byte(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if at is None else at] ^= 0x01
    path.write_bytes(bytes(data))


def chunk_files(storage: Path, vault: str) -> list[Path]:
    found = (storage / "vaults" / vault / "chunks").rglob("*")
    return sorted((path for path in found if path.is_file()), key=lambda path: path.name)


@pytest.fixture
def archived(admin: Any, operator: Any, storage: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A vault with two points of ``secrets_tree``: a monthly one moved to the archive tier
    by its policy 91 days later, and an on-demand one taken then, in the standard tier."""
    source = secrets_tree(tmp_path / "data" / "finance")
    clock.set_now(MONTHLY_SLOT)
    vault = make_vault(admin, name="finance")
    item = protect(
        admin, vault, source, monthly_months=12, tiering_mode="after", tiering_after_days=90
    )
    (scheduled,) = schedules.backups_dispatch()
    assert run(scheduled).status == "completed"
    monthly = item.recovery_points.get()
    clock.advance(timedelta(days=91))
    (move,) = schedules.tier_moves_schedule()
    assert run(move).status == "completed", move.error
    standard = backup(item, operator)
    monthly.refresh_from_db()
    assert monthly.tier == "vault_archive"
    assert locations.archive_store(vault).has_point(monthly.storage_key)
    yield {"vault": vault, "item": item, "source": source, "monthly": monthly, "standard": standard}
    clock.set_now(None)


# --- 1. nothing readable on the disk ----------------------------------------------------------


def test_no_stored_file_holds_any_64_byte_window_of_a_backed_up_file_nor_a_file_name(
    archived: dict[str, Any], storage: Path, settings: Any, key_file: Path
) -> None:
    from portal import audit

    audit.anchor()  # the audit anchors are sealed too
    anchors = Path(settings.HOLDFAST_AUDIT_ANCHOR_DIR)
    stored = files_under(storage, anchors)
    tiers = {path.relative_to(storage).parts[0] for path in stored if storage in path.parents}
    assert tiers == {"vaults", "archive"}
    assert any(path.match("packs/*/pack-*") for path in stored)
    assert any(anchors in path.parents and "keys" not in path.parts for path in stored)
    assert key_file.parent not in {p for path in stored for p in path.parents}

    assert leaked_window(random_files(archived["source"]), stored) is None
    text = (archived["source"] / "notes.txt").read_bytes()
    name = SECRET_NAME.encode()
    for path in stored:
        data = path.read_bytes()
        assert name not in data and b"payroll" not in data, path
        assert text[:WINDOW] not in data and b"quarterly numbers" not in data, path
        if "keys" not in path.relative_to(storage if storage in path.parents else anchors).parts:
            assert data[:3] == b"HFE", path  # every object but the wrapped keys is sealed

    # The check itself finds a window when there is one (as a plaintext store would hold).
    leak = storage / "vaults" / "finance" / "leak"
    leak.write_bytes(b"x" * 11 + archived["source"].joinpath("a.bin").read_bytes()[5000:5064])
    found = leaked_window(random_files(archived["source"]), [leak])
    assert found is not None and found[0] == 0 and 5000 <= found[1] <= 5000 + GRAM


# --- 2 and 3. tampering ----------------------------------------------------------------------


def test_a_flipped_byte_in_a_chunk_fails_verification_and_raises_the_corruption_alert(
    admin: Any, operator: Any, storage: Path, tmp_path: Path
) -> None:
    item = protect(admin, make_vault(admin, name="flip"), secrets_tree(tmp_path / "src"))
    point = backup(item, operator)
    assert verify(point, operator).status == "completed"
    chunk = chunk_files(storage, "flip")[0]
    flip_byte(chunk)

    job = verify(point, operator)
    assert job.status == "failed"
    assert "1 corrupt and 0 missing chunk(s)" in job.error and chunk.name in job.error
    point.refresh_from_db()
    assert point.corrupted_at is not None and chunk.name in point.corruption
    result = locations.vault_store(point.vault).verify(point.storage_key)
    assert result.bad_chunks == [chunk.name]
    assert "fails authentication" in result.bad_reasons[chunk.name]
    alert = Alert.objects.get(kind="corruption_found")
    assert alert.category == "security" and alert.target == f"point:{point.pk}"


def test_a_flipped_byte_in_a_chunk_fails_restore_naming_the_chunk_and_raises_the_alert(
    admin: Any, operator: Any, storage: Path, tmp_path: Path
) -> None:
    item = protect(admin, make_vault(admin, name="flip"), secrets_tree(tmp_path / "src"))
    point = backup(item, operator)
    chunk = chunk_files(storage, "flip")[-1]
    flip_byte(chunk)

    job = restore(point, operator, tmp_path / "restores" / "out")
    assert job.status == "failed"
    assert f"Chunk {chunk.name} is corrupt" in job.error and "fails authentication" in job.error
    assert f"Recovery point {point.pk} is marked corrupt" in job.error
    point.refresh_from_db()
    assert point.corrupted_at is not None and chunk.name in point.corruption
    alert = Alert.objects.get(kind="corruption_found")
    assert alert.category == "security" and alert.target == f"point:{point.pk}"
    assert chunk.name in alert.message
    assert Alert.objects.filter(kind="restore_failed").exists()


def test_a_flipped_byte_in_a_manifest_fails_restore_browse_and_verify_naming_the_manifest(
    admin: Any, operator: Any, storage: Path, tmp_path: Path
) -> None:
    item = protect(admin, make_vault(admin, name="flip"), secrets_tree(tmp_path / "src"))
    point = backup(item, operator)
    name = f"manifests/{point.storage_key}.json"
    flip_byte(storage / "vaults" / "flip" / name, at=40)

    with pytest.raises(StorageError, match=f"Object {name} cannot be trusted"):
        selectors.point_browse(point)
    browser = Client()
    browser.force_login(admin)
    page = browser.get(f"/vaults/flip/items/{item.pk}/points/{point.pk}/browse/")
    assert page.status_code == 404 and name in page.content.decode()  # the page says why

    job = restore(point, operator, tmp_path / "restores" / "out")
    assert job.status == "failed" and f"Object {name} cannot be trusted" in job.error
    assert not (tmp_path / "restores" / "out").exists()
    job = verify(point, operator)
    assert job.status == "failed" and name in job.error
    point.refresh_from_db()
    assert point.corrupted_at is not None and name in point.corruption
    assert Alert.objects.get(kind="corruption_found").target == f"point:{point.pk}"


def test_two_chunk_files_swapped_on_disk_are_both_found_bad(
    admin: Any, operator: Any, storage: Path, tmp_path: Path
) -> None:
    item = protect(admin, make_vault(admin, name="swap"), secrets_tree(tmp_path / "src"))
    point = backup(item, operator)
    first, second = chunk_files(storage, "swap")[:2]
    parked = first.with_name("parked")
    os.rename(first, parked)
    os.rename(second, first)
    os.rename(parked, second)

    job = verify(point, operator)
    assert job.status == "failed" and "2 corrupt and 0 missing chunk(s)" in job.error
    result = locations.vault_store(point.vault).verify(point.storage_key)
    assert sorted(result.bad_chunks) == sorted([first.name, second.name])
    # Each opens only under its own name: the tag fails before any hash is compared.
    assert all("fails authentication" in why for why in result.bad_reasons.values())


def test_a_flipped_byte_in_an_archive_pack_fails_rehydration_naming_the_pack(
    archived: dict[str, Any], operator: Any, storage: Path
) -> None:
    point = archived["monthly"]
    (pack,) = (storage / "archive" / "finance" / "packs" / point.storage_key).glob("pack-*")
    flip_byte(pack)

    job = run(requests.rehydrate_request(actor=operator, point=point, days=10))
    name = f"packs/{point.storage_key}/{pack.name}"
    assert job.status == "failed" and name in job.error and "fails authentication" in job.error
    point.refresh_from_db()
    assert point.corrupted_at is not None and point.rehydrated_until is None
    alert = Alert.objects.get(kind="corruption_found")
    assert alert.target == f"point:{point.pk}" and name in alert.message


# --- 4. rotation ---------------------------------------------------------------------------


def test_rotating_the_master_key_keeps_every_point_restorable_byte_for_byte(
    admin: Any, operator: Any, storage: Path, tmp_path: Path, key_file: Path
) -> None:
    source = write_tree(tmp_path / "src")
    item = protect(admin, make_vault(admin, name="rotate"), source)
    point = backup(item, operator)
    chunks_before = {path: path.read_bytes() for path in chunk_files(storage, "rotate")}

    old, new = rotate_master_key(key_file)
    assert read_master_key(key_file).key_id == new.key_id != old.key_id
    vault = Vault.objects.get(name="rotate")
    assert WrappedKey.from_json(vault.data_key).master_key_id == new.key_id
    # Rotation rewrote no data.
    assert {path: path.read_bytes() for path in chunk_files(storage, "rotate")} == chunks_before

    job = restore(point, operator, tmp_path / "restores" / "after")
    assert job.status == "completed", job.error
    assert tree_of(tmp_path / "restores" / "after") == tree_of(source)
    assert verify(point, operator).status == "completed"
    assert backup(item, operator).storage_key != point.storage_key  # new writes work too


# --- 5 and 6. wrong, missing, unreadable, malformed keys -------------------------------------


def test_a_wrong_master_key_is_a_clear_error_naming_both_keys_and_changes_nothing(
    admin: Any, operator: Any, storage: Path, tmp_path: Path, key_file: Path, settings: Any
) -> None:
    item = protect(admin, make_vault(admin, name="wrong"), secrets_tree(tmp_path / "src"))
    point = backup(item, operator)
    right = read_master_key(key_file)
    wrong = another_key_in_place(key_file)
    key_bytes = key_file.read_bytes()
    before = listing(storage, Path(settings.HOLDFAST_AUDIT_ANCHOR_DIR))
    row = Vault.objects.values("data_key", "data_key_id").get(name="wrong")

    for job in (
        run(requests.backup_request(actor=operator, item=item)),
        restore(point, operator, tmp_path / "restores" / "out"),
        verify(point, operator),
    ):
        assert job.status == "failed", job.kind
        assert right.key_id in job.error and wrong.key_id in job.error, job.error
        assert "HOLDFAST_KEY_FILE" in job.error
    with pytest.raises(KeyUnavailable, match=right.key_id):
        selectors.point_browse(point)

    assert listing(storage, Path(settings.HOLDFAST_AUDIT_ANCHOR_DIR)) == before
    assert not (tmp_path / "restores" / "out").exists()
    assert key_file.read_bytes() == key_bytes
    assert Vault.objects.values("data_key", "data_key_id").get(name="wrong") == row
    point.refresh_from_db()
    assert point.corrupted_at is None and point.verified_at is None
    assert not Alert.objects.filter(kind="corruption_found").exists()  # a key, not damage
    assert RecoveryPoint.objects.filter(item=item).count() == 1


def test_a_missing_key_file_is_created_0600_with_a_warning_in_production_when_no_vault_needs_one(
    admin: Any, storage: Path, key_file: Path, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.DEBUG = False
    assert not key_file.exists()
    with caplog.at_level(logging.WARNING, logger="vaults.keyring"):
        vault = make_vault(admin, name="first")
    assert key_file.stat().st_mode & 0o777 == 0o600
    master = read_master_key(key_file)
    assert WrappedKey.from_json(vault.data_key).master_key_id == master.key_id
    (record,) = [r for r in caplog.records if r.name == "vaults.keyring"]
    assert record.levelno == logging.WARNING
    assert str(key_file) in record.getMessage() and "apart from the data" in record.getMessage()


def test_a_missing_key_file_when_vaults_need_one_names_the_key_and_creates_nothing(
    admin: Any, operator: Any, storage: Path, tmp_path: Path, key_file: Path, settings: Any
) -> None:
    item = protect(admin, make_vault(admin, name="lost"), secrets_tree(tmp_path / "src"))
    point = backup(item, operator)
    needed = read_master_key(key_file).key_id
    key_file.unlink()
    before = listing(storage)

    job = run(requests.backup_request(actor=operator, item=item))
    assert job.status == "failed"
    assert "does not exist" in job.error and needed in job.error and str(key_file) in job.error
    job = restore(point, operator, tmp_path / "restores" / "out")
    assert job.status == "failed" and needed in job.error
    with pytest.raises(DomainError) as refused:
        make_vault(admin, name="second")  # a new key could never open "lost": none is made
    assert refused.value.code == "storage_unavailable" and needed in refused.value.detail
    assert not key_file.exists() and not any(key_file.parent.iterdir())
    assert listing(storage) == before
    assert not Vault.objects.filter(name="second").exists()


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda path: path.mkdir(parents=True), id="a-directory"),
        pytest.param(lambda path: path.write_bytes(b"{not json\n\x00\xff"), id="garbage"),
        pytest.param(
            lambda path: path.write_text(
                json.dumps({"format": "holdfast.master-key", "version": 1, "key": "c2hvcnQ="})
            ),
            id="a-5-byte-key",
        ),
    ],
)
def test_an_unreadable_or_malformed_key_file_is_a_clear_error_and_is_left_as_it_is(
    spoil: Any, admin: Any, storage: Path, key_file: Path
) -> None:
    key_file.parent.mkdir(parents=True, exist_ok=True)
    spoil(key_file)
    before = listing(key_file.parent)
    content = b"" if key_file.is_dir() else key_file.read_bytes()

    with pytest.raises(DomainError) as refused:
        make_vault(admin, name="spoilt")
    assert refused.value.code == "storage_unavailable"
    assert str(key_file) in refused.value.detail
    assert "cannot be read" in refused.value.detail or "malformed" in refused.value.detail
    assert "left as it is" in refused.value.detail
    assert listing(key_file.parent) == before
    assert key_file.is_dir() or key_file.read_bytes() == content
    assert not Vault.objects.exists() and not storage.exists()


def test_a_key_file_whose_parent_is_a_file_is_a_clear_error(
    admin: Any, storage: Path, tmp_path: Path, settings: Any
) -> None:
    (tmp_path / "not-a-dir").write_text("a file\n")
    settings.HOLDFAST_KEY_FILE = tmp_path / "not-a-dir" / "master.key"
    with pytest.raises(DomainError) as refused:
        make_vault(admin, name="nowhere")
    assert refused.value.code == "storage_unavailable"
    assert str(settings.HOLDFAST_KEY_FILE) in refused.value.detail
    assert (tmp_path / "not-a-dir").read_text() == "a file\n"
    assert not storage.exists()


# --- 7. nothing written unencrypted --------------------------------------------------------


def test_stores_refuse_a_backend_that_does_not_encrypt_and_write_nothing(tmp_path: Path) -> None:
    plain = LocalBackend(tmp_path / "plain")
    with pytest.raises(KeyUnavailable, match="does not encrypt"):
        VaultStore(plain)  # type: ignore[arg-type]
    with pytest.raises(KeyUnavailable, match="does not encrypt"):
        ArchiveStore(plain)  # type: ignore[arg-type]
    assert list((tmp_path / "plain").iterdir()) == []


def test_with_no_key_and_an_unwritable_key_file_a_backup_fails_and_writes_nothing(
    admin: Any, operator: Any, storage: Path, tmp_path: Path, settings: Any
) -> None:
    (tmp_path / "not-a-dir").write_text("a file\n")
    settings.HOLDFAST_KEY_FILE = tmp_path / "not-a-dir" / "master.key"
    # A vault from before encryption: no data key yet, made on its first backup.
    vault = Vault.objects.create(
        name="legacy",
        kind="recovery_services",
        region="westeurope",
        storage_location=str(storage / "vaults" / "legacy"),
        created_by=admin,
    )
    item = protect(admin, vault, secrets_tree(tmp_path / "src"))

    job = run(requests.backup_request(actor=operator, item=item))
    assert job.status == "failed"
    assert str(settings.HOLDFAST_KEY_FILE) in job.error and "Not a directory" in job.error
    assert listing(storage) == {}, "not even a directory is made"
    vault.refresh_from_db()
    assert vault.data_key == "" and not RecoveryPoint.objects.exists()


# --- 8. disaster recovery with the store and the master key alone ------------------------


def dr_restore(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The documented script, with no database reachable and no Django settings."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": "postgres://nobody@127.0.0.1:1/unreachable",
        "PYTHONPATH": "",
    }
    return subprocess.run(
        [sys.executable, str(DR_SCRIPT), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_disaster_recovery_from_the_store_and_the_master_key_alone_restores_byte_for_byte(
    archived: dict[str, Any], storage: Path, tmp_path: Path, key_file: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(storage / "vaults" / "finance", elsewhere / "standard", symlinks=True)
    shutil.copytree(storage / "archive" / "finance", elsewhere / "archive", symlinks=True)
    shutil.copy(key_file, elsewhere / "master.key")
    stores: list[str | Path] = [
        "--store", elsewhere / "standard", "--archive", elsewhere / "archive"
    ]  # fmt: skip
    keys: list[str | Path] = ["--key-file", elsewhere / "master.key"]

    listed = dr_restore(*keys, *stores, "--list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    monthly, standard = archived["monthly"].storage_key, archived["standard"].storage_key
    assert sorted((row[0], row[1]) for row in rows) == sorted(
        [(standard, "standard"), (monthly, "archive")]
    )

    for point_id in (standard, monthly):
        target = tmp_path / "recovered" / point_id
        done = dr_restore(*keys, *stores, "--point", point_id, "--target", target)
        assert done.returncode == 0, done.stderr
        assert tree_of(target) == tree_of(archived["source"])

    # A damaged chunk stops it, named; nothing half-restored is called a success.
    chunk = next(path for path in (elsewhere / "standard" / "chunks").rglob("*") if path.is_file())
    flip_byte(chunk)
    damaged = dr_restore(*keys, *stores, "--point", standard, "--target", tmp_path / "again")
    assert damaged.returncode == 1 and chunk.name in damaged.stderr, damaged.stderr

    # Another master key opens nothing, and says which key the store needs.
    other = create_master_key_file(tmp_path / "other.key")
    refused = dr_restore("--key-file", tmp_path / "other.key", *stores, "--list")
    assert refused.returncode == 1 and other.key_id in refused.stderr
    assert read_master_key(key_file).key_id in refused.stderr


# --- 9. keyed chunk ids ------------------------------------------------------------------------


def test_the_same_file_in_two_vaults_has_unrelated_chunk_ids_and_chunk_objects(
    admin: Any, operator: Any, storage: Path, tmp_path: Path
) -> None:
    source = secrets_tree(tmp_path / "src")
    points = [
        backup(protect(admin, make_vault(admin, name=name), source), operator)
        for name in ("left", "right")
    ]
    left, right = (
        set(locations.vault_store(point.vault).manifest(point.storage_key).chunks)
        for point in points
    )
    assert left and right and not left & right
    left_files = {path.name: path.read_bytes() for path in chunk_files(storage, "left")}
    right_files = {path.name: path.read_bytes() for path in chunk_files(storage, "right")}
    assert set(left_files) == left and set(right_files) == right
    assert not set(left_files.values()) & set(right_files.values())
    assert (storage / "vaults" / "left" / chunk_key(sorted(left)[0])).is_file()
