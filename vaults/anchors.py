"""Where the audit chain's anchors live (``portal/anchors.py``), on the vault storage backends.

- Local disk: ``HOLDFAST_AUDIT_ANCHOR_DIR`` (default ``<storage root>/audit-anchors/``),
  through ``LocalBackend`` (temporary file, fsync, rename). Never overwritten, but nothing
  below Holdfast stops whoever holds the host from deleting files: the weaker anchor.
- S3: ``<location>/audit-anchors/`` for every location in ``HOLDFAST_AUDIT_ANCHOR_LOCATIONS``,
  or, when that is empty, every distinct S3 vault location. Each anchor carries an Object
  Lock (``HOLDFAST_AUDIT_ANCHOR_LOCK_MODE``, COMPLIANCE by default) for
  ``HOLDFAST_AUDIT_ANCHOR_RETENTION_DAYS``; writing an anchor that exists already extends its
  lock, so the latest anchor stays locked while the log does not grow.

Registered with the kernel in ``VaultsConfig.ready``; the kernel never imports this module.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings

from portal import clock
from portal.anchors import AnchorStore, AnchorStoreError

from .locations import S3_SCHEME, s3_client
from .models import Vault
from .storage.backends import Backend, LocalBackend, Retention
from .storage.errors import StorageError
from .storage.s3 import S3Backend
from .storage.s3_client import parse_location

ANCHOR_AREA = "audit-anchors"


@dataclass
class BackendAnchorStore:
    """Anchors as objects of one storage backend, named as the kernel names them."""

    name: str
    make_backend: Callable[[], Backend]
    remote: bool

    @functools.cached_property
    def backend(self) -> Backend:
        # Made on first use, inside the calls that turn failures into sentences: a local
        # backend creates its directory, which a web host without the storage cannot.
        try:
            return self.make_backend()
        except (StorageError, OSError) as exc:
            raise AnchorStoreError(f"cannot open {self.name}: {exc}") from None

    def _retention(self) -> Retention | None:
        if not self.backend.supports_object_lock:
            return None
        days = int(settings.HOLDFAST_AUDIT_ANCHOR_RETENTION_DAYS)
        return Retention(settings.HOLDFAST_AUDIT_ANCHOR_LOCK_MODE, clock.now() + timedelta(days))

    def write_once(self, name: str, data: bytes) -> bool:
        try:
            retention = self._retention()
            if self.backend.put_if_absent(name, data, retention):
                return True
            if retention is not None:
                self.backend.extend_retention(name, retention)
            return False
        except (StorageError, OSError) as exc:
            raise AnchorStoreError(str(exc)) from None

    def names(self) -> Iterator[str]:
        try:
            yield from self.backend.list("")
        except (StorageError, OSError) as exc:
            raise AnchorStoreError(str(exc)) from None

    def read(self, name: str) -> bytes:
        try:
            return self.backend.get(name)
        except (StorageError, OSError) as exc:
            raise AnchorStoreError(str(exc)) from None


def local_store() -> BackendAnchorStore:
    directory = Path(settings.HOLDFAST_AUDIT_ANCHOR_DIR)
    return BackendAnchorStore(
        f"local disk at {directory}", functools.partial(LocalBackend, directory), remote=False
    )


def s3_locations() -> list[str]:
    configured = list(settings.HOLDFAST_AUDIT_ANCHOR_LOCATIONS)
    if configured:
        return configured
    vault_locations = (
        Vault.objects.filter(storage_location__startswith=S3_SCHEME)
        .order_by("storage_location")
        .values_list("storage_location", flat=True)
        .distinct()
    )
    return list(vault_locations)


def _s3_backend(location: str) -> Backend:
    # Parsed here, so a mistyped configured location is a store that says so when used.
    where = parse_location(location).child(ANCHOR_AREA)
    return S3Backend(s3_client(where.endpoint), where)


def anchor_stores(remote: bool) -> list[AnchorStore]:
    stores: list[AnchorStore] = [local_store()]
    for location in s3_locations() if remote else []:
        name = f"{location.rstrip('/')}/{ANCHOR_AREA}"
        stores.append(BackendAnchorStore(name, functools.partial(_s3_backend, location), True))
    return stores
