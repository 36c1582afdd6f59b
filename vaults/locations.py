"""Where a vault's store lives: local disk or an S3-compatible bucket.

A vault whose storage location is ``s3://bucket/prefix`` keeps its standard tier under
``prefix/standard`` and its archive tier under ``prefix/archive`` (or under
``HOLDFAST_S3_ARCHIVE_LOCATION/<vault>`` when that is set, e.g. a separate bucket), written
in ``HOLDFAST_S3_ARCHIVE_STORAGE_CLASS``. Any other location keeps the local layout under
``HOLDFAST_STORAGE_ROOT``. Endpoint and credentials come from the environment or a secret
file (docs/storage.md, "S3 and Object Lock"); ``s3://<name>@bucket/prefix`` is on the named
endpoint of ``HOLDFAST_S3_ENDPOINTS`` instead (docs/replicas.md).

Every backend handed out here is sealed with the vault's data key (`vaults.keyring`): the
stores refuse any other, so nothing reaches a vault's storage unencrypted.

What a vault's storage is told to keep is `vaults.storage_notes`.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

from django.conf import settings

from . import keyring
from .models import Vault
from .storage import ArchiveStore, LocalBackend, VaultStore
from .storage.backends import Backend
from .storage.crypto import SealedBackend
from .storage.errors import StorageError
from .storage.holds import Holds
from .storage.s3 import S3Backend
from .storage.s3_client import S3Location, make_client, parse_location

S3_SCHEME = "s3://"


def is_s3(location: str) -> bool:
    return location.startswith(S3_SCHEME)


def _credentials(path: str, access_key: str, secret_key: str) -> dict[str, str]:
    """Access keys from a JSON secret file (``access_key_id``, ``secret_access_key`` and
    optionally ``session_token``), else the keys given (empty: boto3's own chain)."""
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
    return {"access_key": access_key, "secret_key": secret_key}


def endpoint_config(name: str = "") -> tuple[str, str, dict[str, str]]:
    """Endpoint URL, region and credentials of the default endpoint (``name`` empty:
    ``HOLDFAST_S3_ENDPOINT_URL`` and friends) or of a named one (``HOLDFAST_S3_ENDPOINTS``);
    a `StorageError` naming the known endpoints for a name not configured."""
    if not name:
        return (
            getattr(settings, "HOLDFAST_S3_ENDPOINT_URL", ""),
            getattr(settings, "HOLDFAST_S3_REGION", "us-east-1"),
            _credentials(
                getattr(settings, "HOLDFAST_S3_CREDENTIALS_FILE", ""),
                getattr(settings, "HOLDFAST_S3_ACCESS_KEY_ID", ""),
                getattr(settings, "HOLDFAST_S3_SECRET_ACCESS_KEY", ""),
            ),
        )
    endpoints: dict[str, dict[str, str]] = getattr(settings, "HOLDFAST_S3_ENDPOINTS", {})
    if name not in endpoints:
        known = ", ".join(sorted(endpoints)) or "none"
        raise StorageError(
            f"There is no S3 endpoint named {name!r}: the known endpoints are {known} "
            "(HOLDFAST_S3_ENDPOINTS); write s3://bucket/prefix for the default endpoint."
        )
    config = endpoints[name]
    return (
        config.get("endpoint_url", ""),
        config.get("region", "us-east-1"),
        _credentials(
            config.get("credentials_file", ""),
            config.get("access_key_id", ""),
            config.get("secret_access_key", ""),
        ),
    )


@functools.cache
def _client(endpoint_url: str, region: str, credentials: str) -> Any:
    return make_client(endpoint_url=endpoint_url, region=region, **json.loads(credentials))


def s3_client(endpoint: str = "") -> Any:
    """One thread-safe client per process, endpoint and configuration."""
    url, region, credentials = endpoint_config(endpoint)
    return _client(url, region, json.dumps(credentials, sort_keys=True))


def _s3_locations(vault: Vault) -> tuple[S3Location, S3Location]:
    base = parse_location(vault.storage_location)
    archive_base = getattr(settings, "HOLDFAST_S3_ARCHIVE_LOCATION", "")
    archive = (
        parse_location(archive_base).child(vault.name) if archive_base else base.child("archive")
    )
    return base.child("standard"), archive


def _local_root(vault: Vault, tier: str) -> Path:
    return Path(settings.HOLDFAST_STORAGE_ROOT) / tier / vault.name


def raw_standard_backend(vault: Vault) -> Backend:
    """The vault's standard tier as stored (sealed objects): for key management only."""
    if is_s3(vault.storage_location):
        standard = _s3_locations(vault)[0]
        return S3Backend(s3_client(standard.endpoint), standard)
    return LocalBackend(_local_root(vault, "vaults"))


def raw_archive_backend(vault: Vault) -> Backend:
    """The vault's archive tier as stored (sealed objects): for key management only."""
    if is_s3(vault.storage_location):
        archive = _s3_locations(vault)[1]
        return S3Backend(
            s3_client(archive.endpoint),
            archive,
            storage_class=getattr(settings, "HOLDFAST_S3_ARCHIVE_STORAGE_CLASS", ""),
            storage_class_suffix=".zst",
        )
    return LocalBackend(_local_root(vault, "archive"))


def raw_stored_tiers(vault: Vault) -> dict[str, Backend]:
    """The vault's tiers as stored, by name ("standard", "archive"): on local disk only those
    that exist (none is created just to look at it); on S3 both."""
    tiers = {
        "standard": ("vaults", raw_standard_backend),
        "archive": ("archive", raw_archive_backend),
    }
    return {
        name: make(vault)
        for name, (directory, make) in tiers.items()
        if is_s3(vault.storage_location) or _local_root(vault, directory).is_dir()
    }


def standard_backend(vault: Vault) -> SealedBackend:
    return keyring.sealed(vault, lambda: raw_standard_backend(vault))


def archive_backend(vault: Vault) -> SealedBackend:
    return keyring.sealed(vault, lambda: raw_archive_backend(vault))


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
    where = parse_location(location)
    S3Backend(s3_client(where.endpoint), where).check_bucket()


def local_store_names() -> set[str]:
    """The names under the local storage root's tiers (``vaults/``, ``archive/``), read once:
    a local vault whose name is not among them has no store. A superset (whatever the entry
    is): `swept_stores` looks again before opening one."""
    names: set[str] = set()
    root = Path(settings.HOLDFAST_STORAGE_ROOT)
    for tier in ("vaults", "archive"):
        try:
            with os.scandir(root / tier) as entries:
                names.update(entry.name for entry in entries)
        except (FileNotFoundError, NotADirectoryError):
            continue
    return names


def swept_stores(vault: Vault) -> tuple[VaultStore, ArchiveStore] | None:
    """The vault's two stores as they are, for a sweep: None for a local vault with neither
    tier's directory (nothing was ever stored, so there is nothing to collect), and nothing
    is created to look. A local tier that is missing reads as empty; it is made only if
    something is written to it. An S3 vault's stores, always."""
    if is_s3(vault.storage_location):
        return vault_store(vault), archive_store(vault)
    roots = _local_root(vault, "vaults"), _local_root(vault, "archive")
    if not any(root.is_dir() for root in roots):
        return None
    standard = keyring.sealed(vault, lambda: LocalBackend(roots[0], create=False))
    archive = keyring.sealed(vault, lambda: LocalBackend(roots[1], create=False))
    return VaultStore(standard), ArchiveStore(archive, holds=Holds(standard))


def has_store(vault: Vault) -> bool:
    """Whether anything was ever written for the vault; a local store that does not exist
    holds nothing to keep (and is not created just to say so)."""
    if is_s3(vault.storage_location):
        return True
    return _local_root(vault, "vaults").is_dir()
