"""Red team for encryption at rest (SPEC 3.11 and 8, issue 17): attacks on the sealed objects
and their keys, each written as it was tried, from one credential at a time.

- The storage alone (write access to a vault's directory or bucket, no master key): swap,
  replay, truncate or plant objects, remove or plant wrapped keys.
- The database alone (the app's role): covered by ``test_db_backstop`` (a vault's data key
  never swapped, dropped or let back to plaintext); here the key material's reach.
- The web (API, admin, audit log): no data key, wrapped or not, in any answer.
- A shell beside the key file: symlinks, modes, rotation's files.

Each test passes when the defence holds. Real stores, real jobs, real keys (test_encryption's
fixtures: each test its own master key file and storage root).
"""

# Fixtures come from test_encryption, and test arguments name them: F811 by design.
# ruff: noqa: F811

from __future__ import annotations

import io
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from portal.models import AuditRecord
from tests.conftest import api_client_for, make_user
from tests.factories import make_vault
from tests.test_encryption import (  # noqa: F401  (fixtures)
    backup,
    chunk_files,
    dr_restore,
    flip_byte,
    key_file,
    listing,
    restore,
    run,
    secrets_tree,
    storage,
    verify,
)
from tests.test_jobs import protect, tree_of
from vaults import keyring, locations
from vaults.jobs import requests
from vaults.models import Job, Vault
from vaults.services.keys import keys_check
from vaults.storage import LocalBackend, VaultStore
from vaults.storage.crypto import (
    HEADER_SIZE,
    DataKey,
    KeyUnavailable,
    MasterKey,
    ObjectTampered,
    SealedBackend,
    create_master_key_file,
    key_object_name,
    open_store,
)
from vaults.storage.errors import StorageError
from vaults.storage.holds import Holds
from vaults.storage.manifest import manifest_key


@pytest.fixture
def operator(db: None) -> Any:
    return make_user("oscar", "operator")


def vault_dir(storage: Path, name: str) -> Path:
    return storage / "vaults" / name


def two_points(admin: Any, operator: Any, tmp_path: Path, name: str = "ledger") -> dict[str, Any]:
    """A vault with two points of a tree that changed between them."""
    source = secrets_tree(tmp_path / "src" / name)
    item = protect(admin, make_vault(admin, name=name), source)
    first = backup(item, operator)
    (source / "later.txt").write_text("written between the two points\n")
    second = backup(item, operator)
    return {"vault": item.vault, "item": item, "source": source, "first": first, "second": second}


def failed_naming(job: Job, *names: str) -> None:
    assert job.status == "failed", job.status
    for name in names:
        assert name in job.error, job.error


# --- the storage alone -------------------------------------------------------------------------


def test_a_manifest_copied_over_another_point_of_the_same_vault_fails_naming_it(
    admin: Any, operator: Any, storage: Path, tmp_path: Path
) -> None:
    """Same key, another name: the name is associated data, so the older point's manifest
    cannot stand in for the newer one (a rollback of a point's content)."""
    world = two_points(admin, operator, tmp_path)
    first, second = world["first"].storage_key, world["second"].storage_key
    root = vault_dir(storage, "ledger")
    shutil.copyfile(root / manifest_key(first), root / manifest_key(second))

    failed_naming(restore(world["second"], operator, tmp_path / "restores" / "r"), second)
    assert not (tmp_path / "restores" / "r").exists()
    failed_naming(verify(world["second"], operator), manifest_key(second))
    with pytest.raises(ObjectTampered, match="fails authentication"):
        locations.vault_store(world["vault"]).manifest(second)
    assert verify(world["first"], operator).status == "completed"


def test_a_hold_note_replayed_under_another_name_or_point_is_refused_and_keeps_the_point(
    tmp_path: Path,
) -> None:
    """A release note of one point copied beside another point's notes (or again under a new
    name for the same point) fails authentication: the notes cannot be read, so the point is
    kept (never released on a replayed note)."""
    from datetime import UTC, datetime, timedelta

    backend = SealedBackend(LocalBackend(tmp_path / "store"), DataKey.generate())
    holds = Holds(backend)
    at = datetime(2026, 3, 1, tzinfo=UTC)
    holds.note("rp-b", at=at, retain_until=at + timedelta(days=3650))
    released = holds.note("rp-a", at=at, release=True)
    source = tmp_path / "store" / released

    replayed = tmp_path / "store" / "holds" / "rp-b" / "9999999999999999999-replayed.json"
    shutil.copyfile(source, replayed)
    with pytest.raises(StorageError, match="fails authentication"):
        holds.keep("rp-b", None)
    replayed.unlink()
    assert not holds.keep("rp-b", None).allows_delete(at + timedelta(days=1))

    again = source.with_name("9999999999999999999-again.json")
    shutil.copyfile(source, again)
    with pytest.raises(StorageError, match="fails authentication"):
        holds.notes("rp-a")


def test_a_store_with_its_keys_removed_still_restores_and_keys_check_names_what_is_missing(
    admin: Any, operator: Any, storage: Path, tmp_path: Path
) -> None:
    """Removing ``keys/`` loses the disaster-recovery copy, not the vault: the database's
    copy still opens it; `keys check` names the missing object; the next write puts it back."""
    world = two_points(admin, operator, tmp_path)
    keys = vault_dir(storage, "ledger") / "keys"
    (kept,) = [path.name for path in keys.iterdir()]
    shutil.rmtree(keys)

    result = keys_check()
    (check,) = result.failed
    assert check.vault == "ledger" and kept in check.message and "keeps no copy" in check.message

    target = tmp_path / "restores" / "back"
    assert restore(world["second"], operator, target).status == "completed"
    assert tree_of(target) == tree_of(world["source"])
    (world["source"] / "third.txt").write_text("a third point writes the key back\n")
    backup(world["item"], operator)
    assert [path.name for path in keys.iterdir()] == [kept]
    assert not keys_check().failed


def test_plaintext_objects_planted_in_an_encrypted_vault_are_refused_naming_them(
    admin: Any, operator: Any, storage: Path, tmp_path: Path
) -> None:
    """The storage may write what it likes, but not in plaintext past the seal: a plaintext
    manifest (even a true copy of the point's own) and a plaintext chunk are refused."""
    world = two_points(admin, operator, tmp_path)
    store = locations.vault_store(world["vault"])
    second = world["second"].storage_key
    plain_manifest = store.read_manifest(second)
    digest = next(iter(store.manifest(second).chunks))
    plain_chunk = store.backend.get(f"chunks/{digest[:2]}/{digest}")
    root = vault_dir(storage, "ledger")
    (root / manifest_key(second)).write_bytes(plain_manifest)

    with pytest.raises(ObjectTampered, match="not an encrypted Holdfast object"):
        locations.vault_store(world["vault"]).manifest(second)
    failed_naming(verify(world["second"], operator), manifest_key(second))

    (root / "chunks" / digest[:2] / digest).write_bytes(plain_chunk)
    failed_naming(verify(world["first"], operator), digest)
    failed_naming(restore(world["first"], operator, tmp_path / "restores" / "r"), digest)


def test_a_store_opened_by_its_own_keys_refuses_plaintext_planted_beside_sealed_objects(
    admin: Any,
    operator: Any,
    storage: Path,
    tmp_path: Path,
    key_file: Path,
) -> None:
    """Disaster recovery (and the sweeps) open a store with its ``keys/`` alone: a plaintext
    manifest planted there is refused, unless the reader says the store is from before
    encryption."""
    world = two_points(admin, operator, tmp_path)
    store = locations.vault_store(world["vault"])
    second = world["second"].storage_key
    plain = store.read_manifest(second)
    root = vault_dir(storage, "ledger")
    (root / manifest_key(second)).write_bytes(plain)
    master = keyring.master_key()

    opened = VaultStore(open_store(LocalBackend(root), [master]))
    with pytest.raises(ObjectTampered, match="not an encrypted Holdfast object"):
        opened.manifest(second)
    listed = dr_restore("--key-file", key_file, "--store", root, "--list")
    assert listed.returncode == 1 and manifest_key(second) in listed.stderr, listed.stderr
    # With its keys gone too, it does not pass for a store from before encryption.
    shutil.rmtree(root / "keys")
    with pytest.raises(KeyUnavailable, match="keeps no wrapped data key"):
        open_store(LocalBackend(root), [master])
    assert open_store(LocalBackend(root), [master], plaintext=True).legacy_plaintext


def test_a_wrapped_key_planted_before_a_new_vaults_first_write_is_refused_and_nothing_written(
    admin: Any, operator: Any, storage: Path, tmp_path: Path
) -> None:
    """Garbage, or another vault's true wrapped key, waiting at a new vault's location: the
    backup fails naming it and writes nothing beside it (a store no key would open)."""
    other = two_points(admin, operator, tmp_path, name="other")
    master = keyring.master_key()
    name = key_object_name(master.key_id)
    source = secrets_tree(tmp_path / "src" / "fresh")
    for planted in (b"{not json", (vault_dir(storage, "other") / name).read_bytes()):
        vault_name = "fresh" if planted.startswith(b"{not") else "fresh2"
        item = protect(admin, make_vault(admin, name=vault_name), source)
        (vault_dir(storage, vault_name) / "keys").mkdir(parents=True)
        (vault_dir(storage, vault_name) / name).write_bytes(planted)
        before = listing(vault_dir(storage, vault_name))

        job = run(requests.backup_request(actor=operator, item=item))

        assert job.status == "failed", job.status
        if vault_name == "fresh":
            assert name in job.error and "malformed" in job.error, job.error
        else:
            assert other["vault"].data_key_id in job.error and "another vault" in job.error
        assert listing(vault_dir(storage, vault_name)) == before


def test_a_wrapped_key_under_a_name_not_its_own_never_opens_a_store(
    admin: Any, operator: Any, storage: Path, tmp_path: Path
) -> None:
    """Another vault's wrapped key, planted under a name that sorts first and claims another
    master key: disaster recovery must not open the store with it (it would read that
    vault's objects, copied in, as this one's)."""
    one = two_points(admin, operator, tmp_path, name="one")
    two = two_points(admin, operator, tmp_path, name="two")
    master = keyring.master_key()
    planted = vault_dir(storage, "one") / "keys" / "data-key-0000.json"
    shutil.copyfile(vault_dir(storage, "two") / key_object_name(master.key_id), planted)

    backend = open_store(LocalBackend(vault_dir(storage, "one")), [master])

    assert backend.key.key_id == one["vault"].data_key_id != two["vault"].data_key_id
    assert VaultStore(backend).verify(one["second"].storage_key).ok


def test_an_object_truncated_to_its_header_fails_naming_it(
    admin: Any, operator: Any, storage: Path, tmp_path: Path
) -> None:
    world = two_points(admin, operator, tmp_path)
    root = vault_dir(storage, "ledger")
    digest = next(
        iter(locations.vault_store(world["vault"]).manifest(world["first"].storage_key).chunks)
    )
    chunk = root / "chunks" / digest[:2] / digest
    chunk.write_bytes(chunk.read_bytes()[:HEADER_SIZE])
    failed_naming(verify(world["first"], operator), digest)

    manifest = root / manifest_key(world["second"].storage_key)
    manifest.write_bytes(manifest.read_bytes()[:HEADER_SIZE])
    with pytest.raises(ObjectTampered, match="truncated"):
        locations.vault_store(world["vault"]).manifest(world["second"].storage_key)


def test_a_chunk_of_another_vault_put_under_this_vaults_chunk_name_fails_naming_it(
    admin: Any, operator: Any, storage: Path, tmp_path: Path
) -> None:
    one = two_points(admin, operator, tmp_path, name="one")
    two_points(admin, operator, tmp_path, name="two")
    mine, theirs = chunk_files(storage, "one"), chunk_files(storage, "two")
    victim = mine[0]
    shutil.copyfile(theirs[0], victim)
    jobs = [verify(point, operator) for point in (one["first"], one["second"])]
    assert any(job.status == "failed" and victim.name in job.error for job in jobs)
    assert all(job.status == "completed" or victim.name in job.error for job in jobs)


def test_garbage_collection_stops_at_a_manifest_it_cannot_open_and_deletes_nothing(
    admin: Any, operator: Any, storage: Path, tmp_path: Path
) -> None:
    """A manifest failing authentication is not a manifest with no chunks: its chunks are
    not called unreferenced."""
    world = two_points(admin, operator, tmp_path)
    root = vault_dir(storage, "ledger")
    flip_byte(root / manifest_key(world["first"].storage_key))
    flip_byte(root / manifest_key(world["second"].storage_key))
    before = listing(root / "chunks")

    with pytest.raises(ObjectTampered):
        locations.vault_store(world["vault"]).gc()

    assert listing(root / "chunks") == before


def test_a_store_without_a_vault_whose_keys_are_gone_or_foreign_is_reported_and_kept(
    admin: Any, operator: Any, storage: Path, tmp_path: Path
) -> None:
    """The sweep for stores whose vault row is gone opens them by their own keys: one whose
    keys were removed, or are another installation's, cannot be judged, so it is reported,
    and nothing of it is deleted."""
    from portal.models import Alert
    from vaults.jobs.sweeps import stores_without_vault

    ghosts = {}
    for name in ("nokeys", "foreign"):
        root = vault_dir(storage, name)
        key = DataKey.generate()
        stranger = MasterKey(os.urandom(32))
        wrapped = (stranger if name == "foreign" else keyring.master_key()).wrap(key)
        store = VaultStore(SealedBackend(LocalBackend(root), key, wrapped=wrapped))
        source = secrets_tree(tmp_path / "src" / name)
        store.backup(source, "rp-20260301-000000-ghost")
        if name == "nokeys":
            shutil.rmtree(root / "keys")
        ghosts[name] = listing(root)

    assert stores_without_vault() == 2

    for name, before in ghosts.items():
        assert listing(vault_dir(storage, name)) == before
        (alert,) = Alert.objects.filter(kind="point_missing", vault_name=name)
        assert "keys" in alert.message


def test_a_replica_copy_writes_only_the_replicas_key_and_ids_and_the_source_key_opens_nothing(
    admin: Any, operator: Any, storage: Path, tmp_path: Path
) -> None:
    """A copy re-keys and re-seals: nothing of the source's key (its wrapped copy, its key
    id, its chunk ids) reaches the replica's store, and the source's key reads none of it."""
    from vaults.storage.copy import copy_point

    world = two_points(admin, operator, tmp_path, name="src")
    replica = make_vault(admin, name="rep")
    source_store = locations.vault_store(world["vault"])
    point = world["second"].storage_key
    result = copy_point(source_store, locations.vault_store(replica), point)
    assert result.digest != result.source_digest

    rep_root, src_root = vault_dir(storage, "rep"), vault_dir(storage, "src")
    master = keyring.master_key()
    assert [path.name for path in (rep_root / "keys").iterdir()] == [
        Path(key_object_name(master.key_id)).name
    ]
    kept = json.loads((rep_root / key_object_name(master.key_id)).read_text())
    assert kept["key_id"] == replica.data_key_id != world["vault"].data_key_id
    source_ids = {path.name for path in chunk_files(storage, "src")}
    replica_files = chunk_files(storage, "rep")
    assert replica_files and not source_ids & {path.name for path in replica_files}
    for path in files_under_root(rep_root):
        assert world["vault"].data_key_id.encode() not in path.read_bytes()
    with_source_key = SealedBackend(LocalBackend(rep_root), source_store.backend.key)
    with pytest.raises(ObjectTampered):
        with_source_key.get(manifest_key(point))
    with pytest.raises(ObjectTampered):
        with_source_key.get(str(replica_files[0].relative_to(rep_root)))
    assert VaultStore(open_store(LocalBackend(rep_root), [master])).verify(point).ok
    assert src_root.is_dir()


def files_under_root(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


# --- the web: no key material in any answer ----------------------------------------------------


def test_no_data_key_wrapped_or_not_in_the_api_the_admin_or_the_audit_log(
    admin: Any, superuser: Any, operator: Any, storage: Path, tmp_path: Path
) -> None:
    world = two_points(admin, operator, tmp_path)
    vault = Vault.objects.get(pk=world["vault"].pk)
    wrapped = json.loads(vault.data_key)
    secrets = [vault.data_key, wrapped["wrapped"], wrapped["nonce"]]

    api = api_client_for(admin)
    from django.test import Client

    browser = Client()
    browser.force_login(superuser)
    responses: list[Any] = [
        api.get("/api/v1/vaults/"),
        api.get(f"/api/v1/vaults/{vault.name}/"),
        api.get("/api/v1/audit/"),
        api.get("/api/v1/jobs/"),
        browser.get(f"/admin/vaults/vault/{vault.pk}/change/"),
        browser.get("/admin/vaults/vault/"),
    ]
    assert [response.status_code for response in responses] == [200] * len(responses)
    answers = [response.content for response in responses]
    assert b"ledger" in answers[4] and b"ledger" in answers[1]
    for record in AuditRecord.objects.all():
        answers.append(
            json.dumps([record.before, record.after, record.details], default=str).encode()
        )
    for job in Job.objects.all():
        answers.append(json.dumps(job.params, default=str).encode())
    for answer in answers:
        for secret in secrets:
            assert secret.encode() not in answer
        assert b'"data_key"' not in answer


# --- a shell beside the key file ---------------------------------------------------------------


def test_a_symlink_at_the_key_files_place_is_never_followed_to_create_a_key(
    db: None,
    key_file: Path,
    tmp_path: Path,
) -> None:
    key_file.parent.mkdir(parents=True)
    elsewhere = tmp_path / "attacker" / "master.key"
    elsewhere.parent.mkdir()
    key_file.symlink_to(elsewhere)

    with pytest.raises(KeyUnavailable, match=str(key_file)):
        keyring.master_key()
    assert not elsewhere.exists() and key_file.is_symlink()


def test_key_files_the_app_creates_and_rotation_leaves_are_readable_by_their_owner_only(
    admin: Any,
    operator: Any,
    storage: Path,
    tmp_path: Path,
    key_file: Path,
) -> None:
    old = os.umask(0)  # the most careless environment
    try:
        two_points(admin, operator, tmp_path)
        assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key_file.chmod(0o644)  # an admin's mistake before the rotation
        call_command("keys", "rotate", stdout=io.StringIO())
        keyring.clear_caches()
    finally:
        os.umask(old)
    files = sorted(key_file.parent.iterdir())
    assert len(files) == 2  # the new key and the retired one; no .next, no temporary
    for path in files:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == 0o600, (path, oct(mode))
    assert not keys_check().failed


def test_create_master_key_file_never_writes_through_a_planted_file_or_link(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "keys"
    directory.mkdir(mode=0o700)
    planted = directory / "master.key"
    planted.symlink_to(tmp_path / "target")
    with pytest.raises(FileExistsError):
        create_master_key_file(planted)
    assert not (tmp_path / "target").exists()
    assert [path.name for path in directory.iterdir()] == ["master.key"]
