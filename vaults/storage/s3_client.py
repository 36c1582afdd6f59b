"""Where an S3 store is and how Holdfast talks to the server: locations (``s3://bucket/prefix``
on the default endpoint, ``s3://<endpoint>@bucket/prefix`` on a named one), the client, and the
error codes servers answer with. The backend itself is `s3.S3Backend`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from .backends import check_key
from .errors import StorageError

# What servers answer: a missing key or version; a write or delete the lock refuses; a body
# that does not match the digest or checksum sent with it; a failed write condition.
MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchVersion"}
LOCKED = {"AccessDenied", "AccessDeniedByLock", "ObjectLocked", "InvalidRequest"}
DAMAGED = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "InvalidChecksum"}
CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict"}

# A named endpoint (HOLDFAST_S3_ENDPOINTS): lower case, so one name is written one way only.
ENDPOINT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or "some/prefix" (no leading or trailing slash)
    endpoint: str = ""  # a named endpoint, or "" for the default one

    def __str__(self) -> str:
        where = f"{self.endpoint}@{self.bucket}" if self.endpoint else self.bucket
        return f"s3://{where}/{self.prefix}" if self.prefix else f"s3://{where}"

    def child(self, name: str) -> S3Location:
        return S3Location(
            self.bucket, f"{self.prefix}/{name}" if self.prefix else name, self.endpoint
        )


def parse_location(location: str) -> S3Location:
    """``s3://[endpoint@]bucket[/prefix]`` as a location; a `StorageError` with a sentence
    otherwise. Whether the endpoint is configured is the caller's to ask."""
    parts = urlsplit(location)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise StorageError(
            f"{location!r} is not an S3 location: write s3://bucket/prefix "
            "or s3://endpoint@bucket/prefix."
        )
    endpoint, at, bucket = parts.netloc.rpartition("@")
    if at and not ENDPOINT_NAME.fullmatch(endpoint):
        raise StorageError(
            f"{location!r} names no valid S3 endpoint before the @: an endpoint name is "
            "lower-case letters, digits, - and _."
        )
    if not bucket:
        raise StorageError(f"{location!r} names no bucket: write s3://endpoint@bucket/prefix.")
    prefix = parts.path.strip("/")
    if prefix:
        check_key(prefix)
    return S3Location(bucket, prefix, endpoint)


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
        # Reads are judged by Holdfast's own hashes (BLAKE3 per chunk, the manifest digest),
        # the same on every server: a checksum some servers return and others do not must
        # not turn a damaged chunk into a transport error instead of `CorruptChunk`.
        response_checksum_validation="when_required",
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


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
