"""What Holdfast does not trust an S3 server for, shown on moto and on Ceph RGW.

Ceph RGW 16.2 enforces Object Lock as AWS does but ignores three things a client might lean
on (docs/storage.md, "What Holdfast needs from an S3 server"); moto ignores the last two:
- ``If-None-Match: *`` on PUT: two writers of one new chunk stack two versions;
- the lock headers of CreateMultipartUpload: an object uploaded in parts gets no retention;
- ``x-amz-checksum-*``: a body damaged after it was hashed is stored as it arrived.
Each is provoked here against a real server, through boto3 hooks on the client where the
provocation needs timing or damage, and no point may end under-locked or silently corrupt.
Then the lock verification job must catch what these gaps leave behind when Holdfast is not
the one writing (another tool, a bypass holder, an older Holdfast).
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig

from portal.models import Alert
from tests.s3server import S3Server
from tests.test_jobs import protect, storage, tree_of, write_tree  # noqa: F401
from tests.test_s3 import (  # noqa: F401  (people: fixture)
    _backend,
    _backup,
    _page,
    _queued,
    _run,
    _s3_vault,
    _versions,
    people,
)
from vaults import locations
from vaults import services as vault_services
from vaults.jobs import requests
from vaults.storage import StorageError, VaultStore
from vaults.storage.archive import ArchiveStore
from vaults.storage.backends import COMPLIANCE, GOVERNANCE, Retention
from vaults.storage.chunks import SMALL_MIN_SIZE, decode_chunk
from vaults.storage.crypto import DataKey, sealed
from vaults.storage.s3 import S3Backend
from vaults.storage.s3_client import parse_location

MIB = 1024 * 1024


def _soon(days: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)


def _one_chunk_source(root: Path) -> Path:
    """A source whose backup is exactly one chunk (and a manifest): below the small-file
    stream's minimum chunk size, so no content can be cut in two."""
    root.mkdir(parents=True)
    (root / "data.bin").write_bytes(os.urandom(SMALL_MIN_SIZE - 1000))
    return root


def _is_chunk(url: str) -> bool:
    return "/chunks/" in url


# --- If-None-Match: two writers racing on one new chunk --------------------------------------


def test_two_writers_racing_on_one_new_chunk_leave_every_version_locked_until_the_later_expiry(
    s3: S3Server, tmp_path: Path
) -> None:
    """Two backups of the same new data, one kept 9 days and one 2 days, both find the chunk
    absent and write it. Hooks on their clients order the race: the 9-day PUT is sent once
    both writers have looked, the 2-day PUT once the 9-day one is answered, and neither
    writer goes on until both PUTs are answered. AWS (and moto) refuse the second
    conditional PUT (412), leaving one version; Ceph RGW ignores If-None-Match and puts the
    2-day version on top of the 9-day one."""
    bucket = s3.bucket()
    source = _one_chunk_source(tmp_path / "source")
    later, sooner = Retention(GOVERNANCE, _soon(9)), Retention(GOVERNANCE, _soon(2))
    both_looked, later_answered, sooner_answered = (threading.Event() for _ in range(3))
    waited: list[bool] = []
    key = DataKey.generate()  # two writers of one vault

    def hooked(send: Callable[[], Any], answered: Callable[[], Any]) -> VaultStore:
        # botocore takes a handler's non-None answer to before-send as the response: None it is.
        def before_send(request: Any, **_: Any) -> None:
            if _is_chunk(request.url):
                send()

        def after_call(http_response: Any, **_: Any) -> None:
            if _is_chunk(http_response.url):
                answered()

        client = s3.new_client()
        client.meta.events.register("before-send.s3.PutObject", before_send)
        client.meta.events.register("after-call.s3.PutObject", after_call)
        return VaultStore(
            sealed(S3Backend(client, parse_location(f"s3://{bucket}/vault/standard")), key)
        )

    first = hooked(
        lambda: waited.append(both_looked.wait(20)),
        lambda: (later_answered.set(), waited.append(sooner_answered.wait(20))),
    )
    second = hooked(
        lambda: (both_looked.set(), waited.append(later_answered.wait(20))),
        sooner_answered.set,
    )
    with ThreadPoolExecutor(2) as pool:
        runs = [
            pool.submit(first.backup, source, "p-later", retention=later),
            pool.submit(second.backup, source, "p-sooner", retention=sooner),
        ]
        results = [run.result() for run in runs]
    assert waited == [True, True, True], "the race did not happen as staged"
    assert [r.new_chunks for r in results] == [1, 0 if s3.honours_if_none_match else 1]

    (digest,) = first.manifest("p-later").chunks
    versions = _versions(s3, bucket, f"vault/standard/chunks/{digest[:2]}/{digest}")
    assert len(versions) == (1 if s3.honours_if_none_match else 2)
    assert all(lock.until == later.until for lock in versions.values()), versions
    assert first.point_lock("p-later", later).ok
    assert first.point_lock("p-sooner", sooner).ok
    (tmp_path / "back").mkdir()
    first.restore("p-sooner", tmp_path / "back" / "r", allowed_roots=[tmp_path / "back"])
    assert tree_of(tmp_path / "back" / "r") == tree_of(source)


# --- checksums: a body damaged after it was hashed ------------------------------------------


def _damaging(s3: S3Server, bucket: str, times: int) -> tuple[VaultStore, list[str]]:
    """A store whose client damages the body of its first `times` chunk PUTs after boto3
    computed their checksums and before it signs them: the server receives a body that does
    not match its ``x-amz-checksum-sha256`` (as after a memory or proxy fault)."""
    client = s3.new_client()
    damaged: list[str] = []

    def damage(request: Any, **_: Any) -> None:
        if not _is_chunk(request.url) or len(damaged) >= times:
            return
        body = request.body
        raw = body.read() if hasattr(body, "read") else bytes(body)
        request.data = bytes([raw[0] ^ 0xFF]) + raw[1:]
        damaged.append(request.url)

    client.meta.events.register_first("request-created.s3.PutObject", damage)
    backend = S3Backend(client, parse_location(f"s3://{bucket}/vault/standard"))
    return VaultStore(sealed(backend)), damaged


def test_a_chunk_damaged_on_its_way_to_the_store_is_written_again(
    s3: S3Server, tmp_path: Path
) -> None:
    """AWS refuses such a PUT (BadDigest) and Holdfast sends it again; moto and Ceph RGW
    store the damaged body, and Holdfast finds it by the ETag (the MD5 of what the server
    stored) and writes a good version over it. The damaged version is locked like any
    other and stays below the good one until its retention ends."""
    bucket = s3.bucket()
    store, damaged = _damaging(s3, bucket, times=1)
    source = write_tree(tmp_path / "source")
    until = _soon(3)

    store.backup(source, "p1", retention=Retention(GOVERNANCE, until))

    assert len(damaged) == 1
    assert store.verify("p1").ok
    (tmp_path / "back").mkdir()
    store.restore("p1", tmp_path / "back" / "r", allowed_roots=[tmp_path / "back"])
    assert tree_of(tmp_path / "back" / "r") == tree_of(source)
    key = damaged[0].split(f"/{bucket}/", 1)[1]
    versions = _versions(s3, bucket, key)
    assert len(versions) == (1 if s3.validates_checksums else 2)
    assert all(lock.until == until for lock in versions.values())
    assert store.point_lock("p1", Retention(GOVERNANCE, until)).ok


def test_a_store_that_keeps_damaging_a_chunk_fails_the_backup_and_publishes_nothing(
    s3: S3Server, tmp_path: Path
) -> None:
    bucket = s3.bucket()
    store, damaged = _damaging(s3, bucket, times=100)
    with pytest.raises(StorageError, match="stored other bytes than were sent"):
        store.backup(
            _one_chunk_source(tmp_path / "source"), "p1", retention=Retention(GOVERNANCE, _soon(1))
        )
    assert len(damaged) == 3
    assert store.points() == []
    assert list(store.backend.list("leases/")) == []


# --- multipart: an object written in parts --------------------------------------------------


def test_a_locked_object_written_in_parts_has_its_retention_set_and_read_back(
    s3: S3Server, tmp_path: Path
) -> None:
    """An archive pack above the multipart threshold goes up in parts. AWS locks it from
    CreateMultipartUpload's headers; moto and Ceph RGW drop them, so Holdfast sets the
    retention on the completed version and reads it back, whatever the server did."""
    bucket = s3.bucket()
    store = VaultStore(sealed(_backend(s3, bucket)))
    archive = ArchiveStore(
        sealed(
            S3Backend(
                s3.client(),
                parse_location(f"s3://{bucket}/vault/archive"),
                multipart_threshold=5 * MIB,
                part_size=5 * MIB,
            ),
            store.backend.key,
        ),
        level=1,
    )
    source = tmp_path / "source"
    source.mkdir()
    (source / "random.bin").write_bytes(os.urandom(11 * MIB))  # incompressible: one 11 MiB pack
    until = _soon(30)
    store.backup(source, "p1", retention=Retention(COMPLIANCE, until))

    archive.archive_point(store, "p1", retention=Retention(COMPLIANCE, until))

    pack = "vault/archive/packs/p1/pack-000000.zst"
    head = s3.client().head_object(Bucket=bucket, Key=pack)
    assert head["ETag"].strip('"').endswith("-3")  # three parts: 5 + 5 + 1 MiB
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"]) == (COMPLIANCE, until)
    assert archive.point_lock("p1", Retention(COMPLIANCE, until)).ok
    fresh = VaultStore(sealed(_backend(s3, bucket, "elsewhere/standard"), store.backend.key))
    archive.rehydrate("p1", fresh)
    assert fresh.verify("p1").ok


# --- lock verification catches what the gaps leave behind ---------------------------------


def _locked_vault_point(s3: S3Server, people: dict[str, Any], storage: Path) -> tuple[Any, Any]:  # noqa: F811
    vault = _s3_vault(s3, people["admin"], immutability="enabled")
    item = protect(people["admin"], vault, write_tree(storage / "docs"), "docs")
    return vault, _backup(item, people["operator"])


def _chunk_of(vault: Any) -> tuple[S3Backend, str]:
    backend = locations.vault_store(vault).backend.inner  # as stored
    assert isinstance(backend, S3Backend)
    return backend, next(iter(backend.list("chunks/")))


def _verify_then_repair(vault: Any, point: Any, chunk: str, users: dict[str, Any]) -> None:
    """The lock check fails naming the chunk and alerts; the storage-lock job raises every
    version, and the next check passes."""
    job = _run(requests.lock_verify_request(actor=users["operator"], vault=vault))
    assert job.status == "failed" and "not locked by the storage until their expiry" in job.error
    point.refresh_from_db()
    assert chunk in point.storage_lock_problem
    alert = Alert.objects.get(kind="storage_lock_missing", vault_name=vault.name)
    assert f"point {point.pk}" in alert.message
    html = _page(users["admin"]).get(f"/vaults/{vault.name}/properties/").content.decode()
    assert "1 point with a missing or short lock" in html

    repair = _run(requests.storage_lock_request(vault))
    assert repair.status == "completed", repair.error
    assert repair.params["extended"] >= 1
    point.refresh_from_db()
    assert not point.storage_lock_problem
    assert _run(requests.lock_verify_request(actor=None, vault=vault)).status == "completed"


def test_lock_verification_catches_a_chunk_uploaded_in_parts_without_its_lock(
    s3: S3Server,
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
) -> None:
    """Another tool (or a Holdfast that switched to boto3's upload_fileobj) uploads a chunk
    again in parts, asking for the point's lock. AWS locks the new version from the headers
    of CreateMultipartUpload; moto 5.2 and Ceph RGW 16.2 both drop them and leave it
    unlocked on top of the locked one."""
    vault, point = _locked_vault_point(s3, people, storage)
    backend, chunk = _chunk_of(vault)
    s3.client().upload_fileobj(
        io.BytesIO(backend.get(chunk)),
        backend.bucket,
        backend._key(chunk),
        ExtraArgs={
            "ObjectLockMode": GOVERNANCE,
            "ObjectLockRetainUntilDate": point.expires_at + timedelta(days=1),
            "ChecksumAlgorithm": "SHA256",
        },
        Config=TransferConfig(multipart_threshold=1),
    )
    head = s3.client().head_object(Bucket=backend.bucket, Key=backend._key(chunk))
    assert head["ETag"].endswith('-1"')  # one part
    assert "ObjectLockRetainUntilDate" not in head

    _verify_then_repair(vault, point, chunk, people)


def test_lock_verification_looks_at_every_version_not_just_the_current_one(
    s3: S3Server,
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
) -> None:
    """A chunk whose current version is locked long enough, stacked on one whose lock ends
    in an hour: what Ceph RGW leaves when the shorter of two racing writers lands first and
    nothing raises the other version. The current version can be taken away (its own lock
    ending, the governance bypass, a delete marker removed) and the shorter one then serves
    the point, so the check reads every version."""
    vault, point = _locked_vault_point(s3, people, storage)
    backend, chunk = _chunk_of(vault)
    full = backend._key(chunk)
    client = s3.client()
    (below,) = _versions(s3, backend.bucket, full)
    client.put_object_retention(
        Bucket=backend.bucket,
        Key=full,
        VersionId=below,
        Retention={"Mode": GOVERNANCE, "RetainUntilDate": datetime.now(UTC) + timedelta(hours=1)},
        BypassGovernanceRetention=True,
    )
    client.put_object(
        Bucket=backend.bucket,
        Key=full,
        Body=backend.get(chunk),
        ObjectLockMode=GOVERNANCE,
        ObjectLockRetainUntilDate=point.expires_at + timedelta(days=1),
        ChecksumAlgorithm="SHA256",
    )
    assert backend.lock_of(chunk).until is not None
    assert backend.lock_of(chunk).until > point.expires_at  # the current version is fine

    _verify_then_repair(vault, point, chunk, people)
    versions = _versions(s3, backend.bucket, full)
    assert len(versions) == 2
    assert all(
        lock.until is not None and lock.until >= point.expires_at for lock in versions.values()
    )


def test_turning_immutability_on_locks_every_stacked_version(
    s3: S3Server,
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Versions stacked while a vault had no lock (two hosts writing one chunk on Ceph) all
    get the point's lock when immutability is enabled, not just the current one."""
    admin = people["admin"]
    vault = _s3_vault(s3, admin)
    item = protect(admin, vault, write_tree(storage / "docs"), "docs")
    _backup(item, people["operator"])
    backend, chunk = _chunk_of(vault)
    s3.client().put_object(Bucket=backend.bucket, Key=backend._key(chunk), Body=backend.get(chunk))
    with django_capture_on_commit_callbacks(execute=True):
        vault = vault_services.immutability_set(actor=admin, vault=vault, state="enabled")
    job = _run(_queued(vault, "storage_lock"))
    assert job.status == "completed", job.error
    versions = _versions(s3, backend.bucket, backend._key(chunk))
    assert len(versions) == 2
    assert {lock.mode for lock in versions.values()} == {GOVERNANCE}


def test_other_bytes_stacked_on_a_locked_chunk_are_caught_and_lose_nothing(
    s3: S3Server,
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
) -> None:
    """The attack: someone holding only s3:PutObject and s3:DeleteObject cannot delete or
    shorten a locked chunk, but can put a version with other bytes on top of it, or hide it
    behind a delete marker. The lock check alerts on both (the new version is not locked;
    then the object reads as missing), the verification job marks the point corrupt, and
    the locked version beneath is untouched."""
    vault, point = _locked_vault_point(s3, people, storage)
    backend, chunk = _chunk_of(vault)
    full = backend._key(chunk)
    client = s3.client()
    (good,) = _versions(s3, backend.bucket, full)
    client.put_object(Bucket=backend.bucket, Key=full, Body=b"HFC\x01\x00not the chunk")

    job = _run(requests.lock_verify_request(actor=people["operator"], vault=vault))
    assert job.status == "failed"
    point.refresh_from_db()
    assert chunk in point.storage_lock_problem
    verify = _run(requests.verify_request(actor=people["operator"], point=point))
    assert verify.status == "failed" and "marked corrupt" in verify.error
    point.refresh_from_db()
    assert point.corrupted_at is not None

    client.delete_object(Bucket=backend.bucket, Key=full)  # a delete marker on top
    job = _run(requests.lock_verify_request(actor=people["operator"], vault=vault))
    assert job.status == "failed"
    point.refresh_from_db()
    assert "missing" in point.storage_lock_problem and chunk in point.storage_lock_problem

    kept = client.get_object(Bucket=backend.bucket, Key=full, VersionId=good)["Body"].read()
    sealed_backend = locations.vault_store(vault).backend
    opened = sealed_backend.open(chunk, kept)
    assert decode_chunk(chunk.rpartition("/")[2], opened, None, sealed_backend)
    lock = S3Backend._lock_from(client.head_object(Bucket=backend.bucket, Key=full, VersionId=good))
    assert lock.mode == GOVERNANCE and lock.until is not None and lock.until >= point.expires_at
