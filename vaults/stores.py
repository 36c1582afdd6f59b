"""Which store a vault's data lives in: local disk or an S3-compatible bucket.

A vault whose storage location is ``s3://bucket/prefix`` keeps its standard tier under
``prefix/standard`` and its archive tier under ``prefix/archive`` (or under
``HOLDFAST_S3_ARCHIVE_LOCATION/<vault>`` when that is set, e.g. a separate bucket), written
in ``HOLDFAST_S3_ARCHIVE_STORAGE_CLASS``. Any other location keeps the local layout under
``HOLDFAST_STORAGE_ROOT``. Endpoint and credentials come from the environment or a secret
file (docs/storage.md, "S3 and Object Lock").

It is also where the services tell a vault's storage what the gate allowed after a backup
(:func:`storage_note`), so the storage never has to learn it from the database.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from portal import clock
from portal.gate import DomainError

from .models import RecoveryPoint, Vault
from .storage import ArchiveStore, LocalBackend, VaultStore
from .storage.backends import COMPLIANCE, GOVERNANCE, Backend, Retention
from .storage.errors import StorageError
from .storage.holds import Holds
from .storage.manifest import Terms
from .storage.s3 import S3Backend
from .storage.s3_client import S3Location, make_client, parse_location

__all__ = [
    "S3_SCHEME",
    "archive_store",
    "is_s3",
    "parse_location",
    "storage_note",
    "vault_store",
]

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


def lock_mode(vault: Vault) -> str | None:
    """The object-lock mode immutability maps to (SPEC 6): none while disabled."""
    modes: dict[str, str] = {
        Vault.Immutability.ENABLED: GOVERNANCE,
        Vault.Immutability.LOCKED: COMPLIANCE,
    }
    return modes.get(vault.immutability)


def point_retention(vault: Vault, expires_at: datetime, *, operational: bool) -> Retention | None:
    """The storage lock a point's objects get: until its expiry, in the vault's mode.

    Operational (snapshot-only) points are outside immutability (SPEC 3.2)."""
    mode = lock_mode(vault)
    if mode is None or operational or not standard_backend(vault).supports_object_lock:
        return None
    return Retention(mode, expires_at)


# As jobs.LOCK_MARGIN: a retain-until this close gets no object lock on a note.
NOTE_LOCK_MARGIN = timedelta(minutes=5)


def point_terms(vault: Vault, expires_at: datetime, *, operational: bool) -> Terms:
    """What a new point's manifest records of how long the storage keeps it (SPEC 8.3)."""
    return Terms(
        retain_until=expires_at,
        locked_vault=vault.is_locked and not operational,
        operational=operational,
    )


def keep_until(point: RecoveryPoint) -> datetime:
    """Until when a point stays: its expiry, or the end of its soft-delete period if later."""
    if point.soft_deleted_until is not None and point.soft_deleted_until > point.expires_at:
        return point.soft_deleted_until
    return point.expires_at


def _has_store(vault: Vault) -> bool:
    """Whether anything was ever written for the vault; a local store that does not exist
    holds nothing to keep (and is not created just to say so)."""
    if is_s3(vault.storage_location):
        return True
    return (Path(settings.HOLDFAST_STORAGE_ROOT) / "vaults" / vault.name).is_dir()


def storage_note(
    points: Iterable[RecoveryPoint] = (), *, release: bool = False, vault: Vault | None = None
) -> None:
    """Tell the vaults' storage what the gate has just allowed for ``points``: their new
    retain-until (expiry, or the end of their soft-delete period), or with ``release`` that
    they were deleted early; and, for a locked vault, that it is locked.

    Call it inside the gate's transaction, after the change (``vault`` is the row the gate
    locked): a storage that cannot be told refuses the change with ``storage_unavailable``
    and nothing changes. The storage never learns these from the database later, which
    someone holding only the database could forge; and it ignores a release or an earlier
    date for a point held by a locked vault (docs/storage.md, "What the storage was told to
    keep")."""
    if isinstance(points, QuerySet):
        points = points.select_related("vault")
    by_vault: dict[int, tuple[Vault, list[RecoveryPoint]]] = {}
    if vault is not None:
        by_vault[vault.pk] = (vault, [])
    for point in points:
        owner = vault if vault is not None and point.vault_id == vault.pk else point.vault
        by_vault.setdefault(owner.pk, (owner, []))[1].append(point)
    now = clock.now()
    for owner, noted in by_vault.values():
        if not _has_store(owner):
            continue
        try:
            holds = vault_store(owner).holds
            if owner.is_locked:
                holds.lock_vault(now)
            notes: list[tuple[str, datetime | None, Retention | None]] = []
            for point in noted:
                if not point.storage_key:
                    continue  # a point without data (never backed up): nothing to keep
                if release:
                    notes.append((point.storage_key, None, None))
                    continue
                until = keep_until(point)
                # Locked like the point's own objects; a date about to pass gets no lock
                # (the storage would refuse one that has passed when the request lands).
                operational = point.is_operational_only
                retention = None
                if until > now + NOTE_LOCK_MARGIN:
                    retention = point_retention(owner, until, operational=operational)
                notes.append((point.storage_key, until, retention))
            holds.note_many(notes, at=now)
        except (StorageError, OSError) as exc:
            raise DomainError(
                "storage_unavailable",
                f"The storage of vault {owner.name} could not be told of this change ({exc}); "
                "nothing was changed. Try again once the storage answers.",
            ) from None
