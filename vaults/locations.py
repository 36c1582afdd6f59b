"""Where a vault's store lives: local disk or an S3-compatible bucket.

A vault whose storage location is ``s3://bucket/prefix`` keeps its standard tier under
``prefix/standard`` and its archive tier under ``prefix/archive`` (or under
``HOLDFAST_S3_ARCHIVE_LOCATION/<vault>`` when that is set, e.g. a separate bucket), written
in ``HOLDFAST_S3_ARCHIVE_STORAGE_CLASS``. Any other location keeps the local layout under
``HOLDFAST_STORAGE_ROOT``. Endpoint and credentials come from the environment or a secret
file (docs/storage.md, "S3 and Object Lock").

What a vault's storage is told to keep is `vaults.storage_notes`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from django.conf import settings

from .models import Vault
from .storage import ArchiveStore, LocalBackend, VaultStore
from .storage.backends import Backend
from .storage.errors import StorageError
from .storage.holds import Holds
from .storage.s3 import S3Backend
from .storage.s3_client import S3Location, make_client, parse_location

S3_SCHEME = "s3://"


def is_s3(location: str) -> bool:
    return location.startswith(S3_SCHEME)


def _credentials() -> dict[str, str]:
    """Access keys from ``HOLDFAST_S3_CREDENTIALS_FILE`` (JSON with ``access_key_id``,
    ``secret_access_key`` and optionally ``session_token``), else from the environment
    (``HOLDFAST_S3_ACCESS_KEY_ID``/``..._SECRET_ACCESS_KEY``, then boto3's own chain)."""
    path = getattr(settings, "HOLDFAST_S3_CREDENTIALS_FILE", "")
    if path:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise StorageError(f"Cannot read the S3 credentials file {path}: {exc}.") from None
        return {
            "access_key": str(data.get("access_key_id", "")),
            "secret_key": str(data.get("secret_access_key", "")),
            "session_token": str(data.get("session_token", "")),
        }
    return {
        "access_key": getattr(settings, "HOLDFAST_S3_ACCESS_KEY_ID", ""),
        "secret_key": getattr(settings, "HOLDFAST_S3_SECRET_ACCESS_KEY", ""),
    }


@functools.cache
def _client(endpoint_url: str, region: str, credentials: str) -> Any:
    return make_client(endpoint_url=endpoint_url, region=region, **json.loads(credentials))


def s3_client() -> Any:
    """One thread-safe client per process and configuration."""
    return _client(
        getattr(settings, "HOLDFAST_S3_ENDPOINT_URL", ""),
        getattr(settings, "HOLDFAST_S3_REGION", "us-east-1"),
        json.dumps(_credentials(), sort_keys=True),
    )


def _s3_locations(vault: Vault) -> tuple[S3Location, S3Location]:
    base = parse_location(vault.storage_location)
    archive_base = getattr(settings, "HOLDFAST_S3_ARCHIVE_LOCATION", "")
    archive = (
        parse_location(archive_base).child(vault.name) if archive_base else base.child("archive")
    )
    return base.child("standard"), archive


def standard_backend(vault: Vault) -> Backend:
    if is_s3(vault.storage_location):
        return S3Backend(s3_client(), _s3_locations(vault)[0])
    return LocalBackend(Path(settings.HOLDFAST_STORAGE_ROOT) / "vaults" / vault.name)


def archive_backend(vault: Vault) -> Backend:
    if is_s3(vault.storage_location):
        return S3Backend(
            s3_client(),
            _s3_locations(vault)[1],
            storage_class=getattr(settings, "HOLDFAST_S3_ARCHIVE_STORAGE_CLASS", ""),
            storage_class_suffix=".zst",
        )
    return LocalBackend(Path(settings.HOLDFAST_STORAGE_ROOT) / "archive" / vault.name)


def vault_store(vault: Vault) -> VaultStore:
    """The vault's standard-tier store: one per vault, so deduplication is per vault."""
    return VaultStore(standard_backend(vault))


def archive_store(vault: Vault) -> ArchiveStore:
    # The archive judges its points with the notes kept beside the standard tier.
    return ArchiveStore(archive_backend(vault), holds=Holds(standard_backend(vault)))


def check_location(location: str) -> None:
    """Refuse an S3 location whose bucket lacks versioning or Object Lock, or that holds a
    default retention; a `StorageError` with the sentence to show."""
    if not is_s3(location):
        return
    S3Backend(s3_client(), parse_location(location)).check_bucket()


def has_store(vault: Vault) -> bool:
    """Whether anything was ever written for the vault; a local store that does not exist
    holds nothing to keep (and is not created just to say so)."""
    if is_s3(vault.storage_location):
        return True
    return (Path(settings.HOLDFAST_STORAGE_ROOT) / "vaults" / vault.name).is_dir()
