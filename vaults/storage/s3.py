"""An S3-compatible object backend (AWS S3, MinIO, Ceph RGW) with Object Lock.

A store lives under ``s3://bucket/prefix``. The bucket must have versioning and Object Lock
enabled (:meth:`S3Backend.check_bucket` says which is missing). Object Lock protects object
*versions*: a plain DELETE would only add a delete marker over a locked version, so
`delete` removes every version of a key by id, and the storage refuses the locked ones
(`ObjectLocked`). Writes that carry a retention send a checksum, as S3 requires of them.

Nothing here relies on what a real server may ignore (Ceph RGW 16.2 ignores all three;
docs/storage.md, "What Holdfast needs from an S3 server"):
- ``If-None-Match: *``: after writing, or raising, a lock Holdfast lists the key's versions
  and raises every one to the strongest lock among them (`settle_versions`), so a second
  writer's version stacked on top never carries a shorter lock than the first's.
- the lock headers of CreateMultipartUpload: an object written in parts has its retention
  set on the completed version and read back.
- checksums: every write is compared with what the server says it stored (the MD5 ETag,
  else the bytes read back) and written again if they differ.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, FlexibleChecksumError

from .backends import COMPLIANCE, GOVERNANCE, Backend, ObjectLock, Retention, check_key
from .errors import ObjectArchived, ObjectLocked, ObjectNotFound, StorageError
from .s3_client import CONFLICT, DAMAGED, LOCKED, MISSING, S3Location, error_code, http_status

# Storage classes whose objects must be restored (RestoreObject) before a GET succeeds.
COLD_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})

# Objects above this size are written in parts (archive packs reach 128 MiB), so a dropped
# connection costs a part, not the object; the part size must be at least 5 MiB (S3).
MULTIPART_THRESHOLD = 64 * 1024 * 1024
PART_SIZE = 16 * 1024 * 1024
# Writes whose stored bytes differ from what was sent are tried this often in all.
WRITE_ATTEMPTS = 3


@dataclass(frozen=True)
class _Version:
    version_id: str
    is_marker: bool
    is_latest: bool


def _md5(data: bytes | memoryview) -> Any:
    return hashlib.md5(data, usedforsecurity=False)


class S3Backend(Backend):
    """Objects under ``prefix/`` in one bucket; retention per object version."""

    supports_object_lock = True

    def __init__(
        self,
        client: Any,
        location: S3Location,
        *,
        storage_class: str = "",
        storage_class_suffix: str = "",
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_size: int = PART_SIZE,
    ) -> None:
        self.client = client
        self.location = location
        self.bucket = location.bucket
        # Written in `storage_class` (e.g. GLACIER_IR for the archive tier's packs): only
        # keys ending in `storage_class_suffix`, so indexes and manifests stay readable.
        self.storage_class = storage_class
        self.storage_class_suffix = storage_class_suffix
        self._base = f"{location.prefix}/" if location.prefix else ""
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size

    def __repr__(self) -> str:
        return f"S3Backend({str(self.location)!r})"

    def _key(self, key: str) -> str:
        return self._base + check_key(key)

    def _call(self, what: str, key: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = error_code(exc)
            if code in MISSING or (http_status(exc) == 404 and code != "NoSuchBucket"):
                raise ObjectNotFound(key) from None
            if code == "InvalidObjectState":
                raise ObjectArchived(key) from None
            raise StorageError(
                f"S3 refused to {what} {key!r} in {self.location}: {code or exc}."
            ) from None
        except BotoCoreError as exc:
            raise StorageError(f"Cannot reach the S3 store {self.location}: {exc}.") from None

    # Bucket checks -----------------------------------------------------------------------

    def check_bucket(self) -> None:
        """Refuse a bucket without versioning or Object Lock, or with a default retention.

        A default retention would lock Holdfast's own working objects (leases, GC markers)
        too; Holdfast sets retention per object instead.
        """
        where = f"bucket {self.bucket!r}"
        try:
            versioning = self.client.get_bucket_versioning(Bucket=self.bucket)
        except ClientError as exc:
            raise StorageError(f"Cannot read {where}: {error_code(exc) or exc}.") from None
        except BotoCoreError as exc:
            raise StorageError(f"Cannot reach the S3 store for {where}: {exc}.") from None
        if versioning.get("Status") != "Enabled":
            raise StorageError(f"The {where} does not have versioning enabled; enable it.")
        try:
            lock = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as exc:
            raise StorageError(
                f"The {where} does not have Object Lock enabled ({error_code(exc)}); create the "
                "bucket with Object Lock, which S3 allows only at creation."
            ) from None
        config = lock.get("ObjectLockConfiguration", {})
        if config.get("ObjectLockEnabled") != "Enabled":
            raise StorageError(f"The {where} does not have Object Lock enabled.")
        if config.get("Rule", {}).get("DefaultRetention"):
            raise StorageError(
                f"The {where} has a default retention; remove it: Holdfast sets each "
                "object's retention from its recovery points."
            )

    # The Backend interface ---------------------------------------------------------------

    def _put_args(self, key: str, retention: Retention | None) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if retention is not None:
            extra["ObjectLockMode"] = retention.mode
            extra["ObjectLockRetainUntilDate"] = retention.until.astimezone(UTC)
            extra["ChecksumAlgorithm"] = "SHA256"
        if self.storage_class and key.endswith(self.storage_class_suffix):
            extra["StorageClass"] = self.storage_class
        return extra

    def put(self, key: str, data: bytes, retention: Retention | None = None) -> None:
        self._write(key, data, retention, if_absent=False)

    def put_if_absent(self, key: str, data: bytes, retention: Retention | None = None) -> bool:
        """A conditional PUT (``If-None-Match: *``): False if the key exists already.

        The loser of two writers storing the same new chunk then extends the winner's lock
        (`writer.store_chunk`). A server that ignores the condition (Ceph RGW 16.2)
        lets the loser stack a second version instead, possibly with a shorter lock on top:
        so a locked write is always followed by `settle_versions`."""
        if not self._write(key, data, retention, if_absent=True):
            return False
        if retention is not None:
            self.settle_versions(key, retention)
        return True

    def _write(
        self, key: str, data: bytes, retention: Retention | None, *, if_absent: bool
    ) -> bool:
        """Write the object and check that the server stored what was sent; False when
        `if_absent` and it exists. A damaged copy is written again (a locked one stays, under
        the good version, until its retention ends)."""
        full = self._key(key)
        extra = self._put_args(key, retention)
        in_parts = len(data) > self.multipart_threshold
        conditional = if_absent
        for _attempt in range(WRITE_ATTEMPTS):
            if in_parts and conditional and self.exists(key):
                return False
            try:
                if in_parts:
                    version, etag = self._put_in_parts(full, data, extra)
                    expected = self._parts_etag(data)
                else:
                    condition = {"IfNoneMatch": "*"} if conditional else {}
                    answer = self.client.put_object(
                        Bucket=self.bucket, Key=full, Body=data, **extra, **condition
                    )
                    version, etag = answer.get("VersionId"), answer.get("ETag")
                    expected = _md5(data).hexdigest()
            except ClientError as exc:
                code = error_code(exc)
                if conditional and (code in CONFLICT or http_status(exc) == 412):
                    return False
                if conditional and code in {"NotImplemented", "InvalidArgument"}:
                    conditional = False  # no conditional writes here: a plain PUT
                    continue
                if code in DAMAGED:
                    continue  # the server refused a body damaged on the way, as AWS does
                raise self._write_refused(key, code or str(exc), extra) from None
            except BotoCoreError as exc:
                raise StorageError(f"Cannot reach the S3 store {self.location}: {exc}.") from None
            if self._stored_intact(key, full, version, etag, expected, data):
                if in_parts and retention is not None:
                    self._confirm_retention(key, full, version, retention)
                return True
            self._drop_damaged(full, version)
            conditional = False  # our damaged version holds the key: only a plain PUT covers it
        raise StorageError(
            f"The S3 store {self.location} stored other bytes than were sent for {key!r}, "
            f"or refused them as damaged, {WRITE_ATTEMPTS} times in a row; nothing was "
            "published. Check the network path to the store and the store itself."
        )

    def _write_refused(self, key: str, code: str, extra: dict[str, Any]) -> StorageError:
        storage_class = extra.get("StorageClass")
        if storage_class and code in {"InvalidStorageClass", "InvalidArgument"}:
            return StorageError(
                f"The S3 store {self.location} refused storage class {storage_class!r} for "
                f"{key!r} ({code}): set HOLDFAST_S3_ARCHIVE_STORAGE_CLASS to a class it "
                "offers (Ceph RGW and MinIO have only STANDARD unless configured), or to "
                "empty for the bucket's default."
            )
        return StorageError(f"S3 refused to write {key!r} in {self.location}: {code}.")

    def _put_in_parts(
        self, full: str, data: bytes, extra: dict[str, Any]
    ) -> tuple[str | None, str | None]:
        """A multipart upload; the lock headers go along, but may be dropped by the server.
        Every part carries a SHA-256 checksum, so the upload declares that algorithm."""
        extra = {**extra, "ChecksumAlgorithm": "SHA256"}
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=full, **extra)
        upload_id = upload["UploadId"]
        try:
            parts = []
            view = memoryview(data)
            for number, start in enumerate(range(0, len(data), self.part_size), start=1):
                answer = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=full,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=bytes(view[start : start + self.part_size]),
                    ChecksumAlgorithm="SHA256",
                )
                part = {"PartNumber": number, "ETag": answer["ETag"]}
                if answer.get("ChecksumSHA256"):
                    part["ChecksumSHA256"] = answer["ChecksumSHA256"]
                parts.append(part)
            done = self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=full, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(ClientError, BotoCoreError):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            raise
        return done.get("VersionId"), done.get("ETag")

    def _parts_etag(self, data: bytes) -> str:
        """The ETag S3 gives a multipart object: the MD5 of its parts' MD5s, and their count."""
        view = memoryview(data)
        digests = [
            _md5(view[start : start + self.part_size]).digest()
            for start in range(0, len(data), self.part_size)
        ]
        return f"{_md5(b''.join(digests)).hexdigest()}-{len(digests)}"

    def _stored_intact(
        self,
        key: str,
        full: str,
        version: str | None,
        etag: str | None,
        expected: str,
        data: bytes,
    ) -> bool:
        """Whether the server stored `data`: its ETag (the MD5 of what it stored) says so,
        else the stored bytes are read back. Checksums sent with the body are not trusted:
        moto and Ceph RGW store a body that does not match them."""
        which = {"VersionId": version} if version and version != "null" else {}
        if not etag:  # Ceph RGW answers CompleteMultipartUpload without one
            etag = self._call("read", key, self.client.head_object, Key=full, **which).get("ETag")
        if str(etag or "").strip('"') == expected:
            return True
        # Another kind of ETag (SSE-KMS, SSE-C) or a damaged body: the bytes decide.
        try:
            answer = self._call("read", key, self.client.get_object, Key=full, **which)
            body = answer["Body"]
            try:
                return bytes(body.read()) == data
            finally:
                body.close()
        except FlexibleChecksumError:
            return False

    def _drop_damaged(self, full: str, version: str | None) -> None:
        """Delete a damaged version; a locked one is refused and stays below the good copy."""
        if version and version != "null":
            with contextlib.suppress(ClientError, BotoCoreError):
                self.client.delete_object(Bucket=self.bucket, Key=full, VersionId=version)

    def _confirm_retention(
        self, key: str, full: str, version: str | None, retention: Retention
    ) -> None:
        """Set the retention of an object written in parts, and read it back: AWS applies
        CreateMultipartUpload's lock headers, moto and Ceph RGW 16.2 drop them."""
        lock = self._version_lock(key, full, version)
        if lock is None or not lock.covers(retention):
            self._set_retention(key, full, version, lock or ObjectLock(), retention)
            lock = self._version_lock(key, full, version)
        if lock is None or not lock.covers(retention):
            raise StorageError(
                f"The S3 store {self.location} did not keep the retention of {key!r} "
                f"(asked {retention.mode} until {retention.until:%Y-%m-%d %H:%M:%S} UTC, "
                f"read back {lock}); nothing was published."
            )

    def get(self, key: str) -> bytes:
        response = self._call("read", key, self.client.get_object, Key=self._key(key))
        body = response["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def _head(self, key: str) -> dict[str, Any]:
        return dict(self._call("read", key, self.client.head_object, Key=self._key(key)))

    def exists(self, key: str) -> bool:
        try:
            self._head(key)
        except ObjectNotFound:
            return False
        return True

    def _versions(self, full_key: str) -> list[_Version]:
        """Every version and delete marker of exactly `full_key`."""
        found: list[_Version] = []
        paginator = self.client.get_paginator("list_object_versions")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_key):
                for entry, is_marker in (
                    *((v, False) for v in page.get("Versions", [])),
                    *((m, True) for m in page.get("DeleteMarkers", [])),
                ):
                    if entry["Key"] == full_key:
                        found.append(
                            _Version(entry["VersionId"], is_marker, bool(entry.get("IsLatest")))
                        )
        except ClientError as exc:
            raise StorageError(
                f"Cannot list versions in {self.location}: {error_code(exc)}."
            ) from None
        except BotoCoreError as exc:
            raise StorageError(f"Cannot reach the S3 store {self.location}: {exc}.") from None
        return found

    def delete(self, key: str) -> None:
        """Remove every version of the key; a locked version raises `ObjectLocked`.

        Delete markers go last, so a refused version stays visible rather than hidden."""
        full = self._key(key)
        versions = sorted(self._versions(full), key=lambda v: v.is_marker)
        for version in versions:
            try:
                self.client.delete_object(
                    Bucket=self.bucket, Key=full, VersionId=version.version_id
                )
            except ClientError as exc:
                code = error_code(exc)
                if code in MISSING:
                    continue
                lock = self._lock_of_version(full, version.version_id)
                if lock is not None and lock.active(datetime.now(UTC)):
                    held = "a legal hold" if lock.legal_hold else lock.until
                    raise ObjectLocked(key, held) from None
                if code in LOCKED or http_status(exc) == 403:
                    raise StorageError(
                        f"S3 denied deleting {key!r} in {self.location} ({code}) although it is "
                        "not locked: the credentials need s3:DeleteObject and "
                        "s3:DeleteObjectVersion."
                    ) from None
                raise StorageError(f"S3 refused to delete {key!r}: {code}.") from None
            except BotoCoreError as exc:
                raise StorageError(f"Cannot reach the S3 store {self.location}: {exc}.") from None

    def list(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._base + prefix):
                for item in page.get("Contents", []):
                    yield item["Key"][len(self._base) :]
        except ClientError as exc:
            raise StorageError(f"Cannot list {self.location}: {error_code(exc)}.") from None
        except BotoCoreError as exc:
            raise StorageError(f"Cannot reach the S3 store {self.location}: {exc}.") from None

    def size(self, key: str) -> int:
        return int(self._head(key)["ContentLength"])

    def mtime(self, key: str) -> float:
        modified: datetime = self._head(key)["LastModified"]
        return modified.timestamp()

    # Object Lock -------------------------------------------------------------------------

    @staticmethod
    def _lock_from(head: dict[str, Any]) -> ObjectLock:
        until = head.get("ObjectLockRetainUntilDate")
        if isinstance(until, str):
            until = datetime.fromisoformat(until.replace("Z", "+00:00"))
        return ObjectLock(
            mode=head.get("ObjectLockMode") or None,
            until=until.astimezone(UTC) if until else None,
            legal_hold=head.get("ObjectLockLegalHoldStatus") == "ON",
        )

    def _lock_of_version(self, full_key: str, version_id: str) -> ObjectLock | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=full_key, VersionId=version_id)
        except ClientError:
            return None
        return self._lock_from(head)

    def _version_lock(self, key: str, full: str, version: str | None) -> ObjectLock | None:
        """The lock of one version (the current one for None); None once it is gone."""
        which = {"VersionId": version} if version and version != "null" else {}
        try:
            head = self._call("read", key, self.client.head_object, Key=full, **which)
        except ObjectNotFound:
            return None
        return self._lock_from(head)

    def lock_of(self, key: str) -> ObjectLock:
        return self._lock_from(self._head(key))

    def version_locks(self, key: str) -> Sequence[ObjectLock]:
        """The lock of every version of the key (see `Backend.version_locks`)."""
        full = self._key(key)
        versions = self._versions(full)
        if not any(v.is_latest and not v.is_marker for v in versions):
            raise ObjectNotFound(key)  # no version, or hidden behind a delete marker
        locks = [self._version_lock(key, full, v.version_id) for v in versions if not v.is_marker]
        found = [lock for lock in locks if lock is not None]
        if not found:
            raise ObjectNotFound(key)
        return found

    def _set_retention(
        self, key: str, full: str, version: str | None, current: ObjectLock, wanted: Retention
    ) -> None:
        """Put `wanted` merged with the version's `current` lock: never shorter or weaker."""
        if current.mode and current.until:
            wanted = wanted.merged(Retention(current.mode, current.until))
        kwargs: dict[str, Any] = {
            "Key": full,
            "Retention": {"Mode": wanted.mode, "RetainUntilDate": wanted.until.astimezone(UTC)},
            "ChecksumAlgorithm": "SHA256",
        }
        if version and version != "null":
            kwargs["VersionId"] = version
        # Raising GOVERNANCE to COMPLIANCE changes governance settings, which S3 allows
        # only with the bypass header; it strengthens the lock, never weakens it.
        if current.mode == GOVERNANCE and wanted.mode == COMPLIANCE:
            kwargs["BypassGovernanceRetention"] = True
        self._call("set the retention of", key, self.client.put_object_retention, **kwargs)

    def extend_retention(self, key: str, retention: Retention) -> bool:
        """Raise the current version's lock to `retention`, then every other version's
        (`settle_versions`): a version below can become current again."""
        head = self._head(key)
        current = self._lock_from(head)
        changed = False
        if not current.covers(retention):
            self._set_retention(key, self._key(key), head.get("VersionId"), current, retention)
            changed = True
        return self.settle_versions(key, retention) > 0 or changed

    def settle_versions(self, key: str, retention: Retention) -> int:
        """Raise every version of the key to `retention` and to the strongest lock any of
        them holds; how many were changed.

        Called after this writer's own lock is on the key (its write, or its raise of the
        current version). Any version that landed before that is raised here; any version
        landing after it is raised by its own writer's call, which sees this writer's lock.
        So, whatever the interleaving of writers that stack versions (a server ignoring
        If-None-Match), every version ends at least as long as the longest wanted, and
        Holdfast never depends on which of them is current."""
        full = self._key(key)
        versions = [v.version_id for v in self._versions(full) if not v.is_marker]
        if len(versions) < 2:
            return 0  # the one version is the one this writer has just locked
        locks = {vid: self._version_lock(key, full, vid) for vid in versions}
        target = retention
        for lock in locks.values():
            if lock is not None and lock.mode and lock.until:
                target = target.merged(Retention(lock.mode, lock.until))
        changed = 0
        for vid, lock in locks.items():
            if lock is not None and not lock.covers(target):
                self._set_retention(key, full, vid, lock, target)
                changed += 1
        return changed

    # Cold storage classes ----------------------------------------------------------------

    def request_restore(self, key: str, days: int, tier: str = "Standard") -> bool:
        """Ask the storage to restore a cold object for `days`; True once it is readable.

        A `StorageError` with a sentence where the store cannot restore objects."""
        head = self._head(key)
        if head.get("StorageClass", "STANDARD") not in COLD_CLASSES:
            return True
        restore = str(head.get("Restore", ""))
        if 'ongoing-request="false"' in restore:
            return True
        if 'ongoing-request="true"' in restore:
            return False
        try:
            self.client.restore_object(
                Bucket=self.bucket,
                Key=self._key(key),
                RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": tier}},
            )
        except ClientError as exc:
            code = error_code(exc)
            if code == "RestoreAlreadyInProgress":
                return False
            if code in {"NotImplemented", "InvalidRequest", "MethodNotAllowed"}:
                raise StorageError(
                    f"This S3 store cannot restore objects from the {head.get('StorageClass')} "
                    "class; use an instantly readable archive class (e.g. GLACIER_IR) for "
                    "HOLDFAST_S3_ARCHIVE_STORAGE_CLASS."
                ) from None
            raise StorageError(f"S3 refused to restore {key!r}: {code}.") from None
        except BotoCoreError as exc:
            raise StorageError(f"Cannot reach the S3 store {self.location}: {exc}.") from None
        return self.exists(key) and not self._still_cold(key)

    def _still_cold(self, key: str) -> bool:
        head = self._head(key)
        if head.get("StorageClass", "STANDARD") not in COLD_CLASSES:
            return False
        return 'ongoing-request="false"' not in str(head.get("Restore", ""))
