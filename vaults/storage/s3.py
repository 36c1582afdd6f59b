"""An S3-compatible object backend (AWS S3, MinIO, Ceph RGW) with Object Lock.

A store lives under ``s3://bucket/prefix``. The bucket must have versioning and Object Lock
enabled (:meth:`S3Backend.check_bucket` says which is missing). Object Lock protects object
*versions*: a plain DELETE would only add a delete marker over a locked version, so
`delete` removes every version of a key by id, and the storage refuses the locked ones
(`ObjectLocked`). Writes that carry a retention send a checksum, as S3 requires of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .backends import COMPLIANCE, GOVERNANCE, Backend, ObjectLock, Retention, check_key
from .errors import ObjectArchived, ObjectLocked, ObjectNotFound, StorageError

# Storage classes whose objects must be restored (RestoreObject) before a GET succeeds.
COLD_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchVersion"}
_LOCKED = {"AccessDenied", "AccessDeniedByLock", "ObjectLocked", "InvalidRequest"}


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or "some/prefix" (no leading or trailing slash)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def child(self, name: str) -> S3Location:
        return S3Location(self.bucket, f"{self.prefix}/{name}" if self.prefix else name)


def parse_location(location: str) -> S3Location:
    """``s3://bucket[/prefix]`` as a location; a `StorageError` with a sentence otherwise."""
    parts = urlsplit(location)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise StorageError(f"{location!r} is not an S3 location: write s3://bucket/prefix.")
    prefix = parts.path.strip("/")
    if prefix:
        check_key(prefix)
    return S3Location(parts.netloc, prefix)


def make_client(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    session_token: str | None = None,
    max_connections: int = 32,
) -> Any:
    """A thread-safe S3 client; credentials default to boto3's chain (env, files, roles)."""
    config = Config(
        retries={"max_attempts": 5, "mode": "standard"},
        max_pool_connections=max_connections,
        # Checksums on every upload that supports them, as Object Lock uploads require.
        request_checksum_calculation="when_supported",
        s3={"addressing_style": "path"} if endpoint_url else None,
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region or "us-east-1",
        aws_access_key_id=access_key or None,
        aws_secret_access_key=secret_key or None,
        aws_session_token=session_token or None,
        config=config,
    )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


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
    ) -> None:
        self.client = client
        self.location = location
        self.bucket = location.bucket
        # Written in `storage_class` (e.g. GLACIER_IR for the archive tier's packs): only
        # keys ending in `storage_class_suffix`, so indexes and manifests stay readable.
        self.storage_class = storage_class
        self.storage_class_suffix = storage_class_suffix
        self._base = f"{location.prefix}/" if location.prefix else ""

    def __repr__(self) -> str:
        return f"S3Backend({str(self.location)!r})"

    def _key(self, key: str) -> str:
        return self._base + check_key(key)

    def _call(self, what: str, key: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = _code(exc)
            if code in _MISSING or (_status(exc) == 404 and code != "NoSuchBucket"):
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
            raise StorageError(f"Cannot read {where}: {_code(exc) or exc}.") from None
        except BotoCoreError as exc:
            raise StorageError(f"Cannot reach the S3 store for {where}: {exc}.") from None
        if versioning.get("Status") != "Enabled":
            raise StorageError(f"The {where} does not have versioning enabled; enable it.")
        try:
            lock = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as exc:
            raise StorageError(
                f"The {where} does not have Object Lock enabled ({_code(exc)}); create the "
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
        extra = self._put_args(key, retention)
        self._call("write", key, self.client.put_object, Key=self._key(key), Body=data, **extra)

    def put_if_absent(self, key: str, data: bytes, retention: Retention | None = None) -> bool:
        """A conditional PUT (``If-None-Match: *``): False if the key exists already.

        Two writers storing the same new chunk then never stack a second version whose
        lock could be shorter than the first's; the loser extends the winner's lock. A
        store without conditional writes gets a plain PUT."""
        extra = self._put_args(key, retention)
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*", **extra
            )
        except ClientError as exc:
            code = _code(exc)
            if code in {"PreconditionFailed", "ConditionalRequestConflict"} or _status(exc) == 412:
                return False
            if code in {"NotImplemented", "InvalidArgument"}:
                self.put(key, data, retention)
                return True
            raise StorageError(f"S3 refused to write {key!r} in {self.location}: {code}.") from None
        except BotoCoreError as exc:
            raise StorageError(f"Cannot reach the S3 store {self.location}: {exc}.") from None
        return True

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

    def _versions(self, full_key: str) -> list[tuple[str, bool]]:
        """(version id, is a delete marker) of every version of exactly `full_key`."""
        found: list[tuple[str, bool]] = []
        paginator = self.client.get_paginator("list_object_versions")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_key):
                for version in page.get("Versions", []):
                    if version["Key"] == full_key:
                        found.append((version["VersionId"], False))
                for marker in page.get("DeleteMarkers", []):
                    if marker["Key"] == full_key:
                        found.append((marker["VersionId"], True))
        except ClientError as exc:
            raise StorageError(f"Cannot list versions in {self.location}: {_code(exc)}.") from None
        except BotoCoreError as exc:
            raise StorageError(f"Cannot reach the S3 store {self.location}: {exc}.") from None
        return found

    def delete(self, key: str) -> None:
        """Remove every version of the key; a locked version raises `ObjectLocked`.

        Delete markers go last, so a refused version stays visible rather than hidden."""
        full = self._key(key)
        versions = sorted(self._versions(full), key=lambda v: v[1])
        for version_id, _is_marker in versions:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=full, VersionId=version_id)
            except ClientError as exc:
                code = _code(exc)
                if code in _MISSING:
                    continue
                lock = self._lock_of_version(full, version_id)
                if lock is not None and lock.active(datetime.now(UTC)):
                    held = "a legal hold" if lock.legal_hold else lock.until
                    raise ObjectLocked(key, held) from None
                if code in _LOCKED or _status(exc) == 403:
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
            raise StorageError(f"Cannot list {self.location}: {_code(exc)}.") from None
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

    def lock_of(self, key: str) -> ObjectLock:
        return self._lock_from(self._head(key))

    def extend_retention(self, key: str, retention: Retention) -> bool:
        head = self._head(key)
        current = self._lock_from(head)
        if current.covers(retention):
            return False
        wanted = retention
        if current.mode and current.until:
            wanted = retention.merged(Retention(current.mode, current.until))
        kwargs: dict[str, Any] = {
            "Key": self._key(key),
            "Retention": {"Mode": wanted.mode, "RetainUntilDate": wanted.until.astimezone(UTC)},
            "ChecksumAlgorithm": "SHA256",
        }
        if head.get("VersionId") and head["VersionId"] != "null":
            kwargs["VersionId"] = head["VersionId"]
        # Raising GOVERNANCE to COMPLIANCE changes governance settings, which S3 allows
        # only with the bypass header; it strengthens the lock, never weakens it.
        if current.mode == GOVERNANCE and wanted.mode == COMPLIANCE:
            kwargs["BypassGovernanceRetention"] = True
        self._call("set the retention of", key, self.client.put_object_retention, **kwargs)
        return True

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
            code = _code(exc)
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
