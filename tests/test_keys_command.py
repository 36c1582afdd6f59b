"""``manage.py keys`` (SPEC 3.11): rotating the master key rewraps every data key and
rewrites no data; ``check`` proves each vault's keys and one point; ``encrypt-vault`` seals
a store written before encryption in place, resumably; a missing, malformed or wrong key
file is a sentence and a non-zero exit, and changes nothing. Real PostgreSQL, local stores,
backups and restores through the jobs."""

from __future__ import annotations

import io
import json
import os
import random
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import blake3
import pytest
from django.core.management import CommandError, call_command

from portal import clock
from portal.gate import entry_point
from portal.models import AuditRecord
from tests.s3server import S3Server, moto_s3, moto_server  # noqa: F401  (fixtures)
from tests.test_jobs import SLOT, protect, tree_of
from vaults import keyring, locations
from vaults.anchors import local_store
from vaults.jobs import requests, runner
from vaults.models import Job, ProtectedItem, RecoveryPoint, Vault
from vaults.services import point_record
from vaults.services.encrypt import vault_encrypt
from vaults.storage import ArchiveStore, LocalBackend, VaultStore
from vaults.storage.backends import GOVERNANCE, Backend, Retention
from vaults.storage.crypto import (
    DataKey,
    SealedBackend,
    WrappedKey,
    create_master_key_file,
    is_sealed,
    key_object_name,
    open_stored_key,
    plain_chunk_id,
    read_master_key,
)
from vaults.storage.holds import Holds

# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def home(settings: Any, tmp_path: Path) -> Path:
    """Storage, restore root and master key file of this test."""
    settings.HOLDFAST_STORAGE_ROOT = tmp_path / "storage"
    settings.HOLDFAST_RESTORE_ROOTS = [tmp_path / "restores"]
    settings.HOLDFAST_KEY_FILE = tmp_path / "keys" / "master.key"
    (tmp_path / "restores").mkdir()
    return tmp_path


@pytest.fixture
def key_file(home: Path) -> Path:
    return home / "keys" / "master.key"


@pytest.fixture
def frozen() -> Iterator[Any]:
    clock.set_now(SLOT + timedelta(seconds=30))
    yield clock
    clock.set_now(None)


def source_tree(root: Path, seed: int) -> Path:
    """A large file cut into several chunks, small files, a symlink."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "large.bin").write_bytes(rng.randbytes(700 * 1024))
    for i in range(6):
        (root / f"small-{i}.txt").write_bytes(rng.randbytes(rng.randrange(10, 5000)))
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "notes.md").write_text(f"seed {seed}\n")
    if not (root / "link").is_symlink():
        os.symlink("large.bin", root / "link")
    return root


def run(job: Job) -> Job:
    done = runner.job_run(job_id=job.pk)
    assert done is not None
    assert done.status == "completed", done.error
    return done


def backup(item: ProtectedItem, operator: Any) -> RecoveryPoint:
    point = run(requests.backup_request(actor=operator, item=item)).recovery_point
    assert point is not None
    return point


def restores(point: RecoveryPoint, operator: Any, home: Path, source: Path, name: str) -> None:
    """The point restores byte for byte through a restore job, and verifies."""
    target = home / "restores" / name
    run(requests.restore_request(actor=operator, point=point, target_path=str(target)))
    assert tree_of(target) == tree_of(source)
    run(requests.verify_request(actor=operator, point=point))


def files_under(root: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(path.relative_to(root)): (path.stat().st_mtime_ns, path.read_bytes())
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def command(*args: str) -> str:
    out = io.StringIO()
    call_command("keys", *args, stdout=out, stderr=out)
    return out.getvalue()


def failing(*args: str, match: str | None = None) -> str:
    """Run a command that must exit non-zero; what it printed."""
    out = io.StringIO()
    with pytest.raises(CommandError, match=match):
        call_command("keys", *args, stdout=out, stderr=out)
    return out.getvalue()


def vault_rows() -> dict[str, tuple[str, str, bool]]:
    return {
        name: (data_key, key_id, plaintext)
        for name, data_key, key_id, plaintext in Vault.objects.values_list(
            "name", "data_key", "data_key_id", "plaintext_objects"
        )
    }


def master_of(vault: Vault) -> str:
    vault.refresh_from_db()
    return WrappedKey.from_json(vault.data_key).master_key_id


@pytest.fixture
def protected(
    admin: Any, operator: Any, home: Path, key_file: Path, frozen: Any
) -> tuple[Vault, ProtectedItem, Path]:
    """A vault with one directory protected and backed up once."""
    from tests.factories import make_vault

    vault = make_vault(admin, name="keys-vault")
    source = source_tree(home / "src", seed=1)
    item = protect(admin, vault, source)
    backup(item, operator)
    return vault, item, source


# --- rotate -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_rotation_rewraps_every_data_key_and_rewrites_no_data(
    protected: tuple[Vault, ProtectedItem, Path],
    admin: Any,
    operator: Any,
    home: Path,
    key_file: Path,
) -> None:
    vault, item, source = protected
    from tests.factories import make_vault

    empty = make_vault(admin, name="keys-empty")
    anchors = local_store()
    assert anchors.write_once("anchor-1", b"an anchor")
    old = read_master_key(key_file)
    data_ids = {v.name: v.data_key_id for v in Vault.objects.all()}
    store_root = home / "storage" / "vaults" / vault.name
    chunks_before = files_under(store_root / "chunks")
    manifests_before = files_under(store_root / "manifests")

    out = command("rotate")

    new = read_master_key(key_file)
    assert new.key_id != old.key_id
    assert f"{old.key_id} -> {new.key_id}" in out
    assert "vault data keys rewrapped: 2" in out and "destroy it" in out
    retired = key_file.with_name(f"master.key.retired-{old.key_id}")
    assert read_master_key(retired).key_id == old.key_id
    assert stat.S_IMODE(retired.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not keyring.next_key_path(key_file).exists()
    # Every row rewrapped, the keys themselves unchanged; the store keeps a copy that opens
    # with the new master key alone; not one data object rewritten.
    assert master_of(vault) == master_of(empty) == new.key_id
    assert {v.name: v.data_key_id for v in Vault.objects.all()} == data_ids
    raw = locations.raw_standard_backend(vault)
    assert open_stored_key(raw, [new])[0].key_id == vault.data_key_id
    assert raw.exists(key_object_name(old.key_id))  # the old copy stays, harmless
    assert files_under(store_root / "chunks") == chunks_before
    assert files_under(store_root / "manifests") == manifests_before
    # The anchors open with the new key; the audit record names the keys, never their bytes.
    assert local_store().read("anchor-1") == b"an anchor"
    assert "anchor store keys rewrapped: 1" in out
    (record,) = AuditRecord.objects.filter(operation="master_key_rotate")
    assert record.before == {"master_key_id": old.key_id}
    assert record.after["master_key_id"] == new.key_id and record.after["rewrapped"] == 2
    secret = json.loads(key_file.read_text())["key"]
    assert secret not in json.dumps([record.before, record.after, record.details])
    assert '"wrapped"' not in json.dumps([record.before, record.after])
    # The point still restores and verifies, and a new backup is written under the new key.
    (point,) = RecoveryPoint.objects.filter(vault=vault)
    restores(point, operator, home, source, "after-rotation")
    clock.set_now(clock.now() + timedelta(hours=1))
    restores(backup(item, operator), operator, home, source, "new-backup")


@pytest.mark.django_db
def test_an_interrupted_rotation_is_finished_by_the_next(
    protected: tuple[Vault, ProtectedItem, Path],
    admin: Any,
    operator: Any,
    home: Path,
    key_file: Path,
) -> None:
    vault, _item, source = protected
    from tests.factories import make_vault

    other = make_vault(admin, name="keys-other")
    old = read_master_key(key_file)
    # Killed after the new key was made and one vault's row rewrapped.
    new = create_master_key_file(keyring.next_key_path(key_file))
    data_key, _wrapped = keyring.data_key(other)
    Vault.objects.filter(pk=other.pk).update(data_key=new.wrap(data_key).to_json())

    out = command("rotate")

    assert "Finished the interrupted rotation" in out
    assert f"{old.key_id} -> {new.key_id}" in out
    assert "vault data keys rewrapped: 1" in out and "already wrapped by the new key: 1" in out
    assert read_master_key(key_file).key_id == new.key_id
    assert master_of(vault) == master_of(other) == new.key_id
    (point,) = RecoveryPoint.objects.filter(vault=vault)
    restores(point, operator, home, source, "resumed")
    assert "All 2 vault(s) passed." in command("check")


# --- check ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_check_proves_every_vault_and_names_what_fails(
    protected: tuple[Vault, ProtectedItem, Path], admin: Any, home: Path, key_file: Path
) -> None:
    vault, _item, _source = protected
    from tests.factories import make_vault

    make_vault(admin, name="keys-empty")
    out = command("check")
    assert "keys-vault: OK: data key" in out and "manifest and first chunk decrypt" in out
    assert "keys-empty: OK" in out and "no point to read yet" in out
    assert "warning" not in out

    # A chunk flipped and the key copy gone: both named, and the exit is non-zero.
    os.chmod(key_file, 0o644)
    store_root = home / "storage" / "vaults" / vault.name
    (point,) = RecoveryPoint.objects.filter(vault=vault)
    manifest = locations.vault_store(vault).manifest(point.storage_key)
    first = next(iter(manifest.chunks))
    chunk = store_root / "chunks" / first[:2] / first
    damaged = bytearray(chunk.read_bytes())
    damaged[40] ^= 1
    chunk.write_bytes(bytes(damaged))
    out = failing("check", match="1 of 2 vault")
    assert "mode 0644: make it 0600" in out
    assert f"keys-vault: FAILED: Chunk {first} is corrupt: it fails authentication" in out
    assert "keys-empty: OK" in out

    for copy in (store_root / "keys").iterdir():
        copy.unlink()
    assert "keeps no copy of its data key" in failing("check")


# --- a missing, malformed or wrong key file -------------------------------------------------


def _everything(home: Path) -> tuple[Any, ...]:
    return (
        vault_rows(),
        files_under(home / "storage"),
        sorted(p.name for p in (home / "keys").iterdir()),
        AuditRecord.objects.filter(operation__in=["master_key_rotate", "vault_encrypt"]).count(),
    )


BAD_KEY_FILES = {
    # damage: (what rotate says, what check says)
    "missing": ("does not exist", "does not exist"),
    "malformed": ("is malformed", "is malformed"),
    "wrong": ("not the master key of this installation", "failed the key check"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["rotate", "check"])
@pytest.mark.parametrize("damage", sorted(BAD_KEY_FILES))
def test_a_bad_key_file_is_a_sentence_and_changes_nothing(
    protected: tuple[Vault, ProtectedItem, Path],
    home: Path,
    key_file: Path,
    action: str,
    damage: str,
) -> None:
    if damage == "missing":
        key_file.rename(home / "elsewhere.key")
    elif damage == "malformed":
        key_file.write_text('{"format": "holdfast.master-key", "version": 1, "key": "c2hvcnQ="}')
    else:
        key_file.unlink()
        create_master_key_file(key_file)
    before = _everything(home)
    out = failing(action, match=BAD_KEY_FILES[damage][action == "check"])
    assert _everything(home) == before
    if damage == "wrong" and action == "check":
        assert "keys-vault: FAILED: Vault keys-vault's data key is wrapped by master key" in out


# --- stores written before encryption --------------------------------------------------------


class PlainBackend(SealedBackend):
    """Writes as Holdfast did before encryption (tests only): no sealing, unkeyed ids."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner, DataKey.generate(), legacy_plaintext=True)

    def chunk_id(self, data: bytes | memoryview) -> str:
        return plain_chunk_id(data)

    def chunk_matches(self, expected: str, data: bytes | memoryview) -> bool:
        return plain_chunk_id(data) == expected

    def seal(self, key: str, *parts: bytes | bytearray | memoryview) -> bytearray:
        return bytearray(b"".join(bytes(part) for part in parts))

    def put(self, key: str, data: bytes, retention: Retention | None = None) -> None:
        self.inner.put(key, data, retention)

    def put_if_absent(self, key: str, data: bytes, retention: Retention | None = None) -> bool:
        return self.inner.put_if_absent(key, data, retention)

    def open(self, key: str, blob: bytes) -> bytes:
        return blob


def legacy_store(home: Path, name: str, tier: str = "vaults") -> VaultStore:
    return VaultStore(PlainBackend(LocalBackend(home / "storage" / tier / name)))


def legacy_backup(
    store: VaultStore, item: ProtectedItem, key: str, parent: str | None = None
) -> RecoveryPoint:
    """A point backed up by the code before encryption, recorded as it recorded it."""
    result = store.backup(Path(item.source_path), key, parent=parent)
    point = point_record(
        item=item,
        logical_bytes=result.logical_bytes,
        stored_bytes=result.stored_bytes,
        digest=result.manifest_digest,
    )
    RecoveryPoint.objects.filter(pk=point.pk).update(storage_key=key)
    point.refresh_from_db()
    return point


@pytest.fixture
def legacy(
    admin: Any, operator: Any, home: Path, key_file: Path, frozen: Any
) -> tuple[Vault, list[RecoveryPoint], list[Path]]:
    """A vault from before encryption (its row as the upgrade left it: plaintext objects,
    no data key) with two points, the second incremental on a changed tree, a hold note
    and the vault's lock record, all in plaintext."""
    vault = Vault.objects.create(
        name="legacy",
        kind="recovery_services",
        region="westeurope",
        storage_location=str(home / "storage" / "vaults" / "legacy"),
        plaintext_objects=True,
        created_by=admin,
    )
    source = source_tree(home / "legacy-src", seed=2)
    item = protect(admin, vault, source, name="legacy-docs")
    store = legacy_store(home, vault.name)
    first = legacy_backup(store, item, "rp-legacy-1")
    snapshot = home / "legacy-src-1"
    snapshot.mkdir()
    run_copy(source, snapshot)
    (source / "small-0.txt").write_bytes(b"changed after the first backup\n" * 50)
    (source / "added.txt").write_text("new file\n")
    clock.set_now(clock.now() + timedelta(hours=1))
    second = legacy_backup(store, item, "rp-legacy-2", parent="rp-legacy-1")
    holds = Holds(store.backend)
    holds.note("rp-legacy-1", at=clock.now(), retain_until=clock.now() + timedelta(days=40))
    holds.lock_vault(clock.now())
    return vault, [first, second], [snapshot, source]


def run_copy(source: Path, target: Path) -> None:
    import shutil

    shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)


def plaintext_files(root: Path) -> list[str]:
    return [
        name
        for name, (_mtime, data) in files_under(root).items()
        if not name.startswith("keys/") and not is_sealed(data)
    ]


@pytest.mark.django_db
def test_encrypt_vault_seals_a_store_from_before_encryption(
    legacy: tuple[Vault, list[RecoveryPoint], list[Path]], operator: Any, home: Path
) -> None:
    vault, points, sources = legacy
    root = home / "storage" / "vaults" / vault.name
    assert len(plaintext_files(root)) >= 5
    # Before the conversion the store reads through the normal restore path.
    restores(points[0], operator, home, sources[0], "before")
    old_digests = [p.digest for p in points]

    out = command("encrypt-vault", vault.name)

    assert "Every object of the vault is encrypted now." in out
    assert "points rewritten sealed: 2" in out and "notes sealed: 2" in out
    assert plaintext_files(root) == []
    assert any(name.startswith("keys/data-key-") for name in files_under(root))
    vault.refresh_from_db()
    assert vault.plaintext_objects is False and vault.data_key_id
    store = locations.vault_store(vault)
    for point, old, source in zip(points, old_digests, sources, strict=True):
        point.refresh_from_db()
        assert point.digest != old
        assert point.digest == blake3.blake3(store.read_manifest(point.storage_key)).hexdigest()
        restores(point, operator, home, source, f"after-{point.pk}")
    # The hold note and the lock record read back sealed, with their content.
    assert store.holds.locked_at() is not None
    assert store.keep("rp-legacy-1").until is not None
    (record,) = AuditRecord.objects.filter(operation="vault_encrypt")
    assert record.after["points"] == 2 and record.after["plaintext_objects"] is False
    assert record.vault_name == vault.name

    # Again: refused with a sentence, nothing changes.
    before = files_under(root)
    with pytest.raises(CommandError, match="is encrypted already"):
        command("encrypt-vault", vault.name)
    assert files_under(root) == before


class Killed(Exception):
    pass


@pytest.mark.django_db
def test_a_conversion_killed_half_way_is_finished_by_the_next_run(
    legacy: tuple[Vault, list[RecoveryPoint], list[Path]], operator: Any, home: Path
) -> None:
    vault, points, sources = legacy
    root = home / "storage" / "vaults" / vault.name

    def kill(point_id: str) -> None:
        raise Killed(point_id)

    with entry_point("command"), pytest.raises(Killed):
        vault_encrypt(name=vault.name, on_point=kill)
    # One manifest sealed, its row not updated yet: the journal knows where it goes.
    assert len(list((root / "convert").iterdir())) == 1
    assert Vault.objects.get(pk=vault.pk).plaintext_objects is True

    out = command("encrypt-vault", vault.name)

    assert "points rewritten sealed: 1" in out and "point digests recorded: 2" in out
    assert plaintext_files(root) == []
    assert not any((root / "convert").iterdir())
    for point, source in zip(points, sources, strict=True):
        point.refresh_from_db()
        restores(point, operator, home, source, f"resumed-{point.pk}")


@pytest.mark.django_db
def test_a_point_whose_manifest_does_not_match_its_row_is_left_and_named(
    legacy: tuple[Vault, list[RecoveryPoint], list[Path]], home: Path
) -> None:
    vault, points, _sources = legacy
    RecoveryPoint.objects.filter(pk=points[1].pk).update(digest="0" * 64)
    out = failing("encrypt-vault", vault.name, match="1 point.s. of vault legacy were not")
    assert "not converted: point rp-legacy-2: its manifest does not match" in out
    assert Vault.objects.get(pk=vault.pk).plaintext_objects is True
    root = home / "storage" / "vaults" / vault.name
    assert "manifests/rp-legacy-2.json" in plaintext_files(root)


@pytest.mark.django_db
def test_encrypt_vault_converts_the_archive_tier(
    legacy: tuple[Vault, list[RecoveryPoint], list[Path]], operator: Any, home: Path
) -> None:
    vault, points, sources = legacy
    # The first point moved to the archive tier before encryption: packs, index, manifest.
    standard = legacy_store(home, vault.name)
    archive = ArchiveStore(PlainBackend(LocalBackend(home / "storage" / "archive" / vault.name)))
    archive.archive_point(standard, "rp-legacy-1")
    (home / "storage" / "vaults" / vault.name / "manifests" / "rp-legacy-1.json").unlink()
    RecoveryPoint.objects.filter(pk=points[0].pk).update(
        tier=RecoveryPoint.Tier.VAULT_ARCHIVE, archived_at=clock.now()
    )
    archive_root = home / "storage" / "archive" / vault.name
    assert plaintext_files(archive_root)

    out = command("encrypt-vault", vault.name)

    assert "archive packs sealed: 1" in out, out
    assert plaintext_files(archive_root) == []
    assert plaintext_files(home / "storage" / "vaults" / vault.name) == []
    points[0].refresh_from_db()
    sealed_archive = locations.archive_store(vault)
    raw = sealed_archive.backend.get("manifests/rp-legacy-1.json")
    assert points[0].digest == blake3.blake3(raw).hexdigest()
    # Rehydrated from the sealed archive, it restores byte for byte.
    store = locations.vault_store(vault)
    sealed_archive.rehydrate("rp-legacy-1", store)
    assert store.verify("rp-legacy-1").ok
    target = home / "restores" / "from-archive"
    store.restore("rp-legacy-1", target, allowed_roots=[target.parent])
    assert tree_of(target) == tree_of(sources[0])


@pytest.mark.django_db
def test_encrypt_vault_refuses_an_unknown_or_encrypted_vault(
    protected: tuple[Vault, ProtectedItem, Path],
) -> None:
    with pytest.raises(CommandError, match="There is no vault named 'nope'"):
        command("encrypt-vault", "nope")
    with pytest.raises(CommandError, match="keys-vault is encrypted already"):
        command("encrypt-vault", "keys-vault")


@pytest.mark.django_db
def test_encrypt_vault_with_the_wrong_master_key_changes_nothing(
    legacy: tuple[Vault, list[RecoveryPoint], list[Path]], home: Path, key_file: Path
) -> None:
    vault, _points, _sources = legacy
    locations.vault_store(vault)  # its data key, made on first use
    key_file.unlink()
    create_master_key_file(key_file)
    before = _everything(home)
    with pytest.raises(CommandError, match="is wrapped by master key"):
        command("encrypt-vault", vault.name)
    assert _everything(home) == before


@pytest.mark.django_db
def test_on_s3_plaintext_still_locked_is_left_and_listed_never_deleted(
    moto_s3: S3Server,  # noqa: F811
    admin: Any,
    home: Path,
    key_file: Path,
) -> None:
    vault = Vault.objects.create(
        name="legacy-s3",
        kind="recovery_services",
        region="westeurope",
        storage_location=f"s3://{moto_s3.bucket()}/legacy-s3",
        plaintext_objects=True,
        created_by=admin,
    )
    source = source_tree(home / "s3-src", seed=3)
    item = protect(admin, vault, source, name="s3-docs")
    raw = locations.raw_standard_backend(vault)
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    store = VaultStore(PlainBackend(raw))
    result = store.backup(source, "rp-s3-1", retention=Retention(GOVERNANCE, until))
    point = point_record(item=item, digest=result.manifest_digest)
    RecoveryPoint.objects.filter(pk=point.pk).update(storage_key="rp-s3-1")
    plain_chunks = sorted(raw.list("chunks/"))

    out = command("encrypt-vault", vault.name)

    # The manifest is sealed and keyed, locked as long as before; the plaintext chunks are
    # still locked: left, each listed with its date; the vault is not called encrypted.
    assert is_sealed(raw.get("manifests/rp-s3-1.json"))
    lock = raw.lock_of("manifests/rp-s3-1.json")
    assert lock is not None and lock.until is not None and lock.until >= until
    for key in plain_chunks:
        assert raw.exists(key) and not is_sealed(raw.get(key))
        assert f"plaintext kept under its object lock until {until}: standard {key}" in out
    assert "earlier plaintext version kept by the bucket" in out
    assert "Plaintext remains" in out
    assert Vault.objects.get(pk=vault.pk).plaintext_objects is True
    sealed_store = locations.vault_store(Vault.objects.get(pk=vault.pk))
    assert sealed_store.verify("rp-s3-1").ok
    target = home / "restores" / "s3"
    sealed_store.restore("rp-s3-1", target, allowed_roots=[target.parent])
    assert tree_of(target) == tree_of(source)
    # Again: harmless, the same objects listed.
    again = command("encrypt-vault", vault.name)
    assert "points rewritten sealed: 0" in again and "chunks sealed under keyed ids: 0" in again
    assert sorted(raw.list("chunks/")) != plain_chunks  # the sealed ones beside them


@pytest.mark.django_db
def test_rotation_on_s3_gives_the_new_key_copy_the_old_ones_lock(
    moto_s3: S3Server,  # noqa: F811
    admin: Any,
    home: Path,
    key_file: Path,
) -> None:
    """On S3 the data key kept beside a locked point is locked at least as long as the point
    (a storage shell deleting it would leave the point unreadable); the copy a rotation
    writes under the new master key gets that lock too, and opens with the new key alone."""
    from tests.factories import make_vault

    vault = make_vault(
        admin, name="s3-rotate", storage_location=f"s3://{moto_s3.bucket()}/s3-rotate"
    )
    source = source_tree(home / "s3-rot-src", seed=4)
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=5)
    store = locations.vault_store(vault)
    store.backup(source, "rp-rot-1", retention=Retention(GOVERNANCE, until))
    raw = locations.raw_standard_backend(vault)
    old = read_master_key(key_file)
    old_lock = raw.lock_of(key_object_name(old.key_id))
    assert old_lock is not None and old_lock.until is not None and old_lock.until >= until

    command("rotate")

    new = read_master_key(key_file)
    new_lock = raw.lock_of(key_object_name(new.key_id))
    assert new_lock is not None and new_lock.covers(Retention(GOVERNANCE, until))
    assert open_stored_key(raw, [new])[0].key_id == vault.data_key_id
    fresh = locations.vault_store(Vault.objects.get(pk=vault.pk))
    target = home / "restores" / "s3-rotated"
    fresh.restore("rp-rot-1", target, allowed_roots=[target.parent])
    assert tree_of(target) == tree_of(source)
