"""S3-compatible vault storage with Object Lock, against real S3 API servers on loopback.

Each test taking `s3` runs on moto and on Ceph RGW (tests/s3server.py), spoken to over HTTP
by boto3; where the two must differ the test says which behaviour is AWS's. Data plane tests
drive `VaultStore` on `S3Backend`; the rest go through the gate, the jobs and the pages, as
an administrator would. tests/test_s3_untrusted.py covers what Holdfast does not trust a
server for.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from portal import clock
from portal.models import Alert
from tests.conftest import api_client_for
from tests.factories import lock_vault, make_vault
from tests.s3server import S3Server
from tests.test_jobs import protect, storage, tree_of, write_tree  # noqa: F401
from vaults import locations
from vaults import services as vault_services
from vaults.jobs import requests, runner, schedules, state, sweeps
from vaults.models import Job, RecoveryPoint, Vault
from vaults.storage import StorageError, VaultStore
from vaults.storage.archive import ArchiveStore
from vaults.storage.backends import COMPLIANCE, GOVERNANCE, ObjectLock, Retention
from vaults.storage.crypto import DataKey, sealed
from vaults.storage.errors import ObjectLocked
from vaults.storage.s3 import S3Backend
from vaults.storage.s3_client import parse_location

DAY = timedelta(days=1)


def _backend(s3: S3Server, bucket: str, prefix: str = "vault/standard") -> S3Backend:
    return S3Backend(s3.client(), parse_location(f"s3://{bucket}/{prefix}"))


def _soon(days: float = 2) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)


def _version(s3: S3Server, bucket: str, key: str) -> str:
    return str(s3.client().head_object(Bucket=bucket, Key=key)["VersionId"])


# --- the data plane on S3 -----------------------------------------------------------------


def test_backup_and_restore_are_byte_identical_and_every_object_is_locked(
    s3: S3Server,
    tmp_path: Path,
) -> None:
    bucket = s3.bucket()
    store = VaultStore(sealed(_backend(s3, bucket)))
    source = write_tree(tmp_path / "source")
    until = _soon()

    result = store.backup(source, "p1", retention=Retention(GOVERNANCE, until))

    assert store.points() == ["p1"]
    assert list(store.backend.list("leases/")) == []
    keys = list(store.backend.list(""))
    assert len(keys) == result.new_chunks + 1  # the chunks and the manifest, nothing else
    for key in keys:
        lock = store.backend.lock_of(key)
        assert lock.mode == GOVERNANCE and lock.until == until, key
    assert store.verify("p1").ok
    (tmp_path / "restores").mkdir()
    store.restore("p1", tmp_path / "restores" / "r", allowed_roots=[tmp_path / "restores"])
    assert tree_of(tmp_path / "restores" / "r") == tree_of(source)
    lock = store.point_lock("p1", Retention(GOVERNANCE, until))
    assert lock.ok and lock.until == until and lock.mode == GOVERNANCE


def test_a_compliance_object_refuses_deletion_even_with_the_governance_bypass(
    s3: S3Server,
) -> None:
    bucket = s3.bucket()
    backend = _backend(s3, bucket)
    backend.put("chunks/ab/c1", b"data", Retention(COMPLIANCE, _soon()))
    full = "vault/standard/chunks/ab/c1"

    with pytest.raises(ObjectLocked, match="locked until"):
        backend.delete("chunks/ab/c1")
    for bypass in (False, True):
        with pytest.raises(ClientError, match="AccessDenied"):
            s3.client().delete_object(
                Bucket=bucket,
                Key=full,
                VersionId=_version(s3, bucket, full),
                BypassGovernanceRetention=bypass,
            )
    assert backend.get("chunks/ab/c1") == b"data"


def test_a_compliance_object_refuses_retention_shortening(
    s3: S3Server, request: pytest.FixtureRequest
) -> None:
    """AWS, MinIO and Ceph refuse to shorten a COMPLIANCE retention, even with the bypass."""
    if not s3.refuses_shorter_compliance:
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason=f"{s3.version} accepts a shorter COMPLIANCE retention; AWS S3, MinIO and "
                "Ceph refuse it. Holdfast never asks for one "
                "(test_retention_is_never_shortened_by_holdfast).",
            )
        )
    bucket = s3.bucket()
    backend = _backend(s3, bucket)
    until = _soon(5)
    backend.put("chunks/ab/c1", b"data", Retention(COMPLIANCE, until))
    full = "vault/standard/chunks/ab/c1"
    with pytest.raises(ClientError):
        s3.client().put_object_retention(
            Bucket=bucket,
            Key=full,
            VersionId=_version(s3, bucket, full),
            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until - DAY},
            BypassGovernanceRetention=True,
        )
    assert backend.lock_of("chunks/ab/c1").until == until


def test_a_governance_object_is_deleted_only_with_the_bypass_header(
    s3: S3Server,
) -> None:
    bucket = s3.bucket()
    backend = _backend(s3, bucket)
    backend.put("chunks/ab/g1", b"data", Retention(GOVERNANCE, _soon()))
    full = "vault/standard/chunks/ab/g1"
    version = _version(s3, bucket, full)

    with pytest.raises(ObjectLocked):
        backend.delete("chunks/ab/g1")  # Holdfast never sends the bypass header
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.client().delete_object(Bucket=bucket, Key=full, VersionId=version)
    assert backend.exists("chunks/ab/g1")
    s3.client().delete_object(
        Bucket=bucket, Key=full, VersionId=version, BypassGovernanceRetention=True
    )
    assert not backend.exists("chunks/ab/g1")


@pytest.mark.parametrize("first", ["later", "sooner"])
def test_a_second_writer_of_a_new_chunk_never_leaves_a_shorter_lock_on_top(
    s3: S3Server, first: str
) -> None:
    """AWS (and moto) answer the second conditional PUT with 412 and keep one version; Ceph
    RGW 16.2 ignores If-None-Match and stacks a second one. Either way every version ends
    locked until the later of the two expiries."""
    bucket = s3.bucket()
    backend = _backend(s3, bucket)
    wanted = {"later": Retention(GOVERNANCE, _soon(9)), "sooner": Retention(GOVERNANCE, _soon(2))}
    second = "sooner" if first == "later" else "later"

    def store_new_chunk(retention: Retention) -> bool:  # as storage.writer.store_chunk does
        if backend.put_if_absent("chunks/ab/c1", b"data", retention):
            return True
        backend.extend_retention("chunks/ab/c1", retention)  # the loser extends the winner
        return False

    assert store_new_chunk(wanted[first]) is True
    assert store_new_chunk(wanted[second]) is not s3.honours_if_none_match
    versions = _versions(s3, bucket, "vault/standard/chunks/ab/c1")
    assert len(versions) == (1 if s3.honours_if_none_match else 2)
    assert {lock.until for lock in versions.values()} == {wanted["later"].until}
    assert backend.get("chunks/ab/c1") == b"data"


def _versions(s3: S3Server, bucket: str, key: str) -> dict[str, ObjectLock]:
    """Every version of `key` (no delete markers) with its lock, as the server reports it."""
    client = s3.client()
    listed = client.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    return {
        v["VersionId"]: S3Backend._lock_from(
            client.head_object(Bucket=bucket, Key=key, VersionId=v["VersionId"])
        )
        for v in listed
        if v["Key"] == key
    }


def test_retention_is_never_shortened_by_holdfast(s3: S3Server) -> None:
    backend = _backend(s3, s3.bucket())
    later = _soon(10)
    backend.put("chunks/ab/c1", b"data", Retention(GOVERNANCE, later))
    assert backend.extend_retention("chunks/ab/c1", Retention(GOVERNANCE, later - DAY)) is False
    assert backend.lock_of("chunks/ab/c1").until == later
    # Raising the mode keeps the later date: GOVERNANCE to COMPLIANCE, never back.
    assert backend.extend_retention("chunks/ab/c1", Retention(COMPLIANCE, later - DAY)) is True
    lock = backend.lock_of("chunks/ab/c1")
    assert (lock.mode, lock.until) == (COMPLIANCE, later)
    assert backend.extend_retention("chunks/ab/c1", Retention(GOVERNANCE, later + DAY)) is True
    lock = backend.lock_of("chunks/ab/c1")
    assert (lock.mode, lock.until) == (COMPLIANCE, later + DAY)


def test_a_reused_chunk_is_locked_until_the_latest_expiry_of_its_points(
    s3: S3Server,
    tmp_path: Path,
) -> None:
    store = VaultStore(sealed(_backend(s3, s3.bucket())), timestamp_slack=0.0)
    source = write_tree(tmp_path / "source")
    first, second, third = _soon(3), _soon(30), _soon(1)

    store.backup(source, "p1", retention=Retention(GOVERNANCE, first))
    chunks = {f"chunks/{d[:2]}/{d}" for d in store.manifest("p1").chunks}
    # p2 adopts p1's unchanged files without reading them, p3 reads and finds every chunk.
    adopted = store.backup(source, "p2", parent="p1", retention=Retention(GOVERNANCE, second))
    reread = store.backup(source, "p3", retention=Retention(GOVERNANCE, third))

    assert adopted.unchanged_files > 0 and adopted.new_chunks == 0
    assert reread.new_chunks == 0 and reread.reused_chunks == len(chunks)
    for key in chunks:  # extended by p2, not shortened by p3
        assert store.backend.lock_of(key).until == second, key
    assert store.backend.lock_of("manifests/p1.json").until == first
    assert store.backend.lock_of("manifests/p3.json").until == third


def test_lock_read_back_finds_a_removed_and_a_missing_lock(
    s3: S3Server,
    tmp_path: Path,
) -> None:
    bucket = s3.bucket()
    store = VaultStore(sealed(_backend(s3, bucket)))
    until = _soon(7)
    wanted = Retention(GOVERNANCE, until)
    store.backup(write_tree(tmp_path / "source"), "p1", retention=wanted)
    digests = sorted(store.manifest("p1").chunks)
    weakened = f"vault/standard/chunks/{digests[0][:2]}/{digests[0]}"
    # Someone holding s3:BypassGovernanceRetention shortens one chunk's lock...
    s3.client().put_object_retention(
        Bucket=bucket,
        Key=weakened,
        VersionId=_version(s3, bucket, weakened),
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": datetime.now(UTC) + timedelta(hours=1)},
        BypassGovernanceRetention=True,
    )
    lock = store.point_lock("p1", wanted)
    assert lock.short == [weakened.removeprefix("vault/standard/")] and not lock.missing
    assert lock.until is not None and lock.until < until
    # A legal hold on it does not excuse the short retention: a hold can be lifted at will.
    s3.client().put_object_legal_hold(
        Bucket=bucket,
        Key=weakened,
        VersionId=_version(s3, bucket, weakened),
        LegalHold={"Status": "ON"},
    )
    lock = store.point_lock("p1", wanted)
    assert lock.short == [weakened.removeprefix("vault/standard/")] and lock.legal_holds == 1
    # ...and deletes another one's version outright.
    gone = f"vault/standard/chunks/{digests[1][:2]}/{digests[1]}"
    s3.client().delete_object(
        Bucket=bucket,
        Key=gone,
        VersionId=_version(s3, bucket, gone),
        BypassGovernanceRetention=True,
    )
    lock = store.point_lock("p1", wanted)
    assert lock.missing == [gone.removeprefix("vault/standard/")] and not lock.ok


def test_the_bucket_check_names_what_is_missing(s3: S3Server) -> None:
    plain = s3.bucket(lock=False, versioning=False)
    with pytest.raises(StorageError, match="versioning"):
        _backend(s3, plain).check_bucket()
    versioned = s3.bucket(lock=False, versioning=True)
    with pytest.raises(StorageError, match="Object Lock"):
        _backend(s3, versioned).check_bucket()
    defaulted = s3.bucket()
    s3.client().put_object_lock_configuration(
        Bucket=defaulted,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    with pytest.raises(StorageError, match="default retention"):
        _backend(s3, defaulted).check_bucket()
    _backend(s3, s3.bucket()).check_bucket()


def test_gc_deletes_only_objects_whose_lock_has_ended_and_reports_refusals(
    s3: S3Server,
    tmp_path: Path,
) -> None:
    store = VaultStore(sealed(_backend(s3, s3.bucket())))
    store.backup(write_tree(tmp_path / "source"), "p1", retention=Retention(GOVERNANCE, _soon()))
    store.backend.put("chunks/00/" + "0" * 64, b"orphan, locked", Retention(GOVERNANCE, _soon()))
    store.backend.put("chunks/11/" + "1" * 64, b"orphan, unlocked")

    first = store.gc()
    assert (first.deleted_chunks, first.retained_chunks, first.refused_deletes) == (1, 1, 0)
    assert store.backend.exists("chunks/00/" + "0" * 64)
    # A GC whose clock runs ahead of the storage's tries, is refused, and reports it.
    ahead = store.gc(now=(datetime.now(UTC) + timedelta(days=3)).timestamp())
    assert (ahead.deleted_chunks, ahead.refused_deletes) == (0, 1)
    assert store.backend.exists("chunks/00/" + "0" * 64)
    assert store.verify("p1").ok
    with pytest.raises(ObjectLocked):
        store.delete_point("p1")
    assert store.has_point("p1")


def _archive(
    s3: S3Server, bucket: str, storage_class: str, key: DataKey | None = None, **extra: Any
) -> ArchiveStore:
    backend = S3Backend(
        s3.client(),
        parse_location(f"s3://{bucket}/vault/archive"),
        storage_class=storage_class,
        storage_class_suffix=".zst",
        **extra,
    )
    return ArchiveStore(sealed(backend, key))  # the vault's own key: the standard tier's


def test_archive_tier_on_s3_keeps_the_lock(s3: S3Server, tmp_path: Path) -> None:
    bucket = s3.bucket()
    store = VaultStore(sealed(_backend(s3, bucket)))
    archive = _archive(s3, bucket, s3.archive_storage_class, store.backend.key)
    until = _soon(200)
    store.backup(write_tree(tmp_path / "source"), "p1", retention=Retention(COMPLIANCE, until))
    archive.archive_point(store, "p1", retention=Retention(COMPLIANCE, until))
    assert archive.point_lock("p1", Retention(COMPLIANCE, until)).ok
    with pytest.raises(ObjectLocked):
        archive.delete_point("p1")
    fresh = VaultStore(sealed(_backend(s3, bucket, "elsewhere/standard"), store.backend.key))
    archive.rehydrate("p1", fresh)
    assert fresh.verify("p1").ok


def test_archive_packs_in_a_cold_class_rehydrate_once_the_storage_restored_them(
    moto_s3: S3Server, tmp_path: Path
) -> None:
    """moto only: Ceph RGW has no cold storage classes (nor RestoreObject)."""
    s3 = moto_s3
    bucket = s3.bucket()
    store = VaultStore(sealed(_backend(s3, bucket)))
    archive = _archive(s3, bucket, "GLACIER", store.backend.key)
    until = _soon(200)
    store.backup(write_tree(tmp_path / "source"), "p1", retention=Retention(COMPLIANCE, until))
    archive.archive_point(store, "p1", retention=Retention(COMPLIANCE, until))
    head = s3.client().head_object(Bucket=bucket, Key="vault/archive/packs/p1/pack-000000.zst")
    assert head["StorageClass"] == "GLACIER"
    assert archive.point_lock("p1", Retention(COMPLIANCE, until)).ok

    fresh = VaultStore(sealed(_backend(s3, bucket, "elsewhere/standard"), store.backend.key))
    with pytest.raises(StorageError, match="cold storage class"):
        archive.rehydrate("p1", fresh)  # not restored by the storage yet
    assert archive.request_restore("p1", days=10) == 0  # moto restores at once
    archive.rehydrate("p1", fresh)
    assert fresh.verify("p1").ok


def test_an_archive_storage_class_the_server_lacks_is_refused_in_a_sentence(
    s3: S3Server,
) -> None:
    """AWS offers GLACIER_IR, Holdfast's default for archive packs; Ceph RGW and MinIO have
    only the classes their administrator configured (STANDARD out of the box)."""
    bucket = s3.bucket()
    backend = _archive(s3, bucket, "GLACIER_IR").backend
    if s3.has_aws_storage_classes:
        backend.put("packs/p1/pack-000000.zst", b"pack")
        head = s3.client().head_object(Bucket=bucket, Key="vault/archive/packs/p1/pack-000000.zst")
        assert head["StorageClass"] == "GLACIER_IR"
    else:
        with pytest.raises(StorageError, match="HOLDFAST_S3_ARCHIVE_STORAGE_CLASS") as refused:
            backend.put("packs/p1/pack-000000.zst", b"pack")
        assert "storage class 'GLACIER_IR'" in str(refused.value)
        assert not backend.exists("packs/p1/pack-000000.zst")
    backend.put("packs/p1/index.json", b"{}")  # only pack keys take the class


# --- vaults on S3, through the gate, the jobs and the pages -------------------------------


@pytest.fixture
def people(db: None) -> dict[str, Any]:
    from tests.conftest import make_user

    return {
        "admin": make_user("alice", "backup_admin"),
        "operator": make_user("oscar", "operator"),
        "security": make_user("sam", "security_admin"),
    }


def _s3_vault(s3: S3Server, admin: Any, name: str = "s3-vault", **extra: Any) -> Vault:
    return make_vault(admin, name=name, storage_location=f"s3://{s3.bucket()}/{name}", **extra)


def _run(job: Job) -> Job:
    done = runner.job_run(job_id=job.pk)
    assert done is not None
    return done


def _backup(item: Any, operator: Any) -> RecoveryPoint:
    job = _run(requests.backup_request(actor=operator, item=item))
    assert job.status == "completed", job.error
    assert job.recovery_point is not None
    return job.recovery_point


def _queued(vault: Vault, kind: str) -> Job:
    return Job.objects.get(vault=vault, kind=kind, status="queued")


def test_vault_creation_checks_the_bucket(
    moto_s3: S3Server,
    people: dict[str, Any],
) -> None:
    """moto only: the form and API answers on top of `check_bucket`, which
    test_the_bucket_check_names_what_is_missing runs on both servers."""
    s3 = moto_s3
    api = api_client_for(people["admin"])
    body = {"name": "bad", "kind": "backup", "region": "westeurope"}
    no_lock = s3.bucket(lock=False)
    answer = api.post("/api/v1/vaults/", {**body, "storage_location": f"s3://{no_lock}/x"})
    assert answer.status_code == 400, answer.json()
    assert answer.json()["code"] == "validation_error"
    assert answer.json()["field"] == "storage_location"
    assert "Object Lock" in answer.json()["detail"]
    assert not Vault.objects.filter(name="bad").exists()

    good = s3.bucket()
    answer = api.post(
        "/api/v1/vaults/", {**body, "name": "good", "storage_location": f"s3://{good}/v"}
    )
    assert answer.status_code == 201, answer.json()
    overlapping = api.post(
        "/api/v1/vaults/", {**body, "name": "other", "storage_location": f"s3://{good}/v/deeper"}
    )
    assert overlapping.status_code == 400
    assert "overlaps the storage of vault good" in overlapping.json()["detail"]

    page = _page(people["admin"])
    answer = page.post(
        "/vaults/new/",
        {**body, "name": "web", "storage_location": f"s3://{s3.bucket(lock=False)}/w"},
    )
    assert answer.status_code == 400
    assert "does not have Object Lock enabled" in answer.content.decode()
    assert not Vault.objects.filter(name="web").exists()


def test_immutability_maps_onto_object_lock_for_existing_and_new_points(
    s3: S3Server,
    people: dict[str, Any],
    storage: Path,  # noqa: F811
    django_capture_on_commit_callbacks: Any,
) -> None:
    admin, operator = people["admin"], people["operator"]
    vault = _s3_vault(s3, admin)
    item = protect(admin, vault, write_tree(storage / "docs"), "docs")
    before = _backend_of(vault)
    first = _backup(item, operator)
    assert all(before.lock_of(key).mode is None for key in before.list(""))

    with django_capture_on_commit_callbacks(execute=True):
        vault = vault_services.immutability_set(actor=admin, vault=vault, state="enabled")
    job = _run(_queued(vault, "storage_lock"))
    assert job.status == "completed", job.error
    assert job.params["extended"] == job.params["objects"] > 1
    first.refresh_from_db()
    assert first.storage_lock_mode == GOVERNANCE
    assert first.storage_locked_until is not None
    assert first.storage_locked_until >= first.expires_at
    assert first.storage_lock_checked_at is not None and not first.storage_lock_problem

    second = _backup(item, operator)  # written locked from the start
    manifest = f"manifests/{second.storage_key}.json"
    assert before.lock_of(manifest).mode == GOVERNANCE
    assert second.storage_lock_mode == GOVERNANCE

    with django_capture_on_commit_callbacks(execute=True):
        vault = lock_vault(vault, requester=admin, approver=people["security"])
    assert _run(_queued(vault, "storage_lock")).status == "completed"
    for key in before.list(""):
        if key.startswith(("chunks/", "manifests/")):
            assert before.lock_of(key).mode == COMPLIANCE, key
    second.refresh_from_db()
    assert second.storage_lock_mode == COMPLIANCE

    client = api_client_for(admin)
    points = client.get(f"/api/v1/vaults/{vault.name}/items/docs/recovery-points/").json()
    assert {p["storage_lock"]["mode"] for p in points["results"]} == {COMPLIANCE}
    assert all(p["storage_lock"]["until"] for p in points["results"])

    page = _page(admin)
    html = page.get(f"/vaults/{vault.name}/properties/").content.decode()
    assert "Storage lock verified until" in html and "S3 with Object Lock" in html
    html = page.get(f"/vaults/{vault.name}/items/{item.pk}/").content.decode()
    assert "Storage lock verified until" in html


def _page(user: Any) -> Any:
    """A browser-like client signed in as ``user``."""
    from django.test import Client

    page = Client()
    page.force_login(user)
    return page


def _backend_of(vault: Vault) -> Any:
    return locations.vault_store(vault).backend


def test_lock_verification_catches_a_removed_lock_and_alerts(
    s3: S3Server,
    people: dict[str, Any],
    storage: Path,  # noqa: F811
) -> None:
    admin, operator = people["admin"], people["operator"]
    vault = _s3_vault(s3, admin, immutability="enabled")
    item = protect(admin, vault, write_tree(storage / "docs"), "docs")
    point = _backup(item, operator)
    backend = _backend_of(vault)
    chunk = next(key for key in backend.list("chunks/"))
    full = backend._key(chunk)
    s3.client().put_object_retention(
        Bucket=backend.bucket,
        Key=full,
        VersionId=_version(s3, backend.bucket, full),
        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": datetime.now(UTC) + timedelta(hours=2)},
        BypassGovernanceRetention=True,
    )

    answer = api_client_for(operator).post(f"/api/v1/vaults/{vault.name}/storage-lock/verify/")
    assert answer.status_code == 202, answer.json()
    job = _run(Job.objects.get(pk=answer.json()["id"]))
    assert job.status == "failed" and "not locked by the storage until their expiry" in job.error
    point.refresh_from_db()
    assert chunk in point.storage_lock_problem
    alert = Alert.objects.get(kind="storage_lock_missing", vault_name=vault.name)
    assert alert.category == "security" and f"point {point.pk}" in alert.message

    page = _page(admin)
    html = page.get(f"/vaults/{vault.name}/properties/").content.decode()
    assert "1 point with a missing or short lock" in html


def test_lock_verification_of_a_local_vault_is_refused_clearly(
    people: dict[str, Any],
    storage: Path,  # noqa: F811
) -> None:
    vault = make_vault(people["admin"], name="local")
    answer = api_client_for(people["operator"]).post(
        f"/api/v1/vaults/{vault.name}/storage-lock/verify/"
    )
    assert answer.status_code == 400
    assert answer.json()["code"] == "validation_error"
    assert "local disk" in answer.json()["detail"]
    assert not Job.objects.filter(kind="lock_verify").exists()


def test_expiry_sweep_leaves_data_the_storage_still_locks(
    s3: S3Server,
    people: dict[str, Any],
    storage: Path,  # noqa: F811
) -> None:
    admin, operator = people["admin"], people["operator"]
    vault = _s3_vault(s3, admin, immutability="enabled")
    item = protect(admin, vault, write_tree(storage / "docs"), "docs")
    point = _backup(item, operator)
    store = locations.vault_store(vault)
    # Turning immutability off in Holdfast does not unlock what the storage has locked.
    vault_services.immutability_set(actor=admin, vault=vault, state="disabled")

    # Our clock says the point expired; the storage's clock says its lock still holds.
    clock.set_now(point.expires_at + timedelta(minutes=1))
    try:
        assert sweeps.points_expire() == 1
        report = sweeps.storage_sweep()
    finally:
        clock.set_now(None)
    assert not RecoveryPoint.objects.filter(pk=point.pk).exists()
    assert store.has_point(point.storage_key)  # refused and reported, not forced
    assert report["orphan_manifests"] == 0 and report["deleted_chunks"] == 0
    assert report["locked_orphans"] == 1 and report["vaults_failed"] == 0
    assert store.verify(point.storage_key).ok


def test_tier_move_on_s3_locks_the_archive_copy_and_keeps_the_locked_standard_copy(
    s3: S3Server,
    people: dict[str, Any],
    storage: Path,  # noqa: F811
) -> None:
    admin, operator = people["admin"], people["operator"]
    vault = _s3_vault(s3, admin, immutability="enabled")
    item = protect(admin, vault, write_tree(storage / "docs"), "docs")
    point = _backup(item, operator)
    move = state.new_job("tier_move", now=clock.now(), vault=vault, item=item, recovery_point=point)
    done = _run(move)
    assert done.status == "completed", done.error
    assert "stays until its storage lock ends" in done.params["note"]
    point.refresh_from_db()
    assert point.is_archived
    archive = locations.archive_store(vault)
    lock = archive.point_lock(point.storage_key, Retention(GOVERNANCE, point.expires_at))
    assert lock.ok and lock.mode == GOVERNANCE

    verify = _run(requests.lock_verify_request(actor=operator, vault=vault))
    assert verify.status == "completed", verify.error


def test_a_shared_chunk_store_survives_a_source_copy(
    s3: S3Server,
    tmp_path: Path,
) -> None:
    """Two vault stores on one bucket under different prefixes never see each other."""
    bucket = s3.bucket()
    a, b = (
        VaultStore(sealed(_backend(s3, bucket, "a/standard"))),
        VaultStore(sealed(_backend(s3, bucket, "b/s"))),
    )
    source = write_tree(tmp_path / "source")
    shutil.copytree(source, tmp_path / "copy", symlinks=True)
    a.backup(source, "p1")
    b.backup(tmp_path / "copy", "p1")
    assert a.points() == b.points() == ["p1"]
    assert a.gc().deleted_chunks == 0 and b.gc().deleted_chunks == 0
    assert a.verify("p1").ok and b.verify("p1").ok


def test_a_longer_expiry_extends_the_storage_lock_and_readers_cannot_verify(
    s3: S3Server,
    people: dict[str, Any],
    storage: Path,  # noqa: F811
    django_capture_on_commit_callbacks: Any,
) -> None:
    from tests.conftest import make_user

    admin, operator = people["admin"], people["operator"]
    vault = _s3_vault(s3, admin, immutability="enabled")
    item = protect(admin, vault, write_tree(storage / "docs"), "docs")
    point = _backup(item, operator)
    later = point.expires_at + timedelta(days=45)

    with django_capture_on_commit_callbacks(execute=True):
        vault_services.point_retain_until(actor=admin, point=point, retain_until=later)
    job = _run(_queued(vault, "storage_lock"))
    assert job.status == "completed", job.error
    backend = _backend_of(vault)
    for key in backend.list(""):
        assert backend.lock_of(key).until >= later, key
    point.refresh_from_db()
    assert point.storage_locked_until is not None and point.storage_locked_until >= later

    reader = make_user("rita", "reader")
    answer = api_client_for(reader).post(f"/api/v1/vaults/{vault.name}/storage-lock/verify/")
    assert answer.status_code == 403 and answer.json()["code"] == "permission_denied"
    # The weekly schedule queues one verification per S3 vault, and not twice in a week.
    make_vault(admin, name="on-disk")
    scheduled = schedules.lock_verifications_schedule()
    assert [j.vault.name for j in scheduled] == [vault.name]
    assert schedules.lock_verifications_schedule() == []
    assert _run(scheduled[0]).status == "completed"
