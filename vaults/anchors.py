"""Where the audit chain's anchors live (``portal/anchors.py``), on the vault storage backends.

- Local disk: ``HOLDFAST_AUDIT_ANCHOR_DIR`` (default ``<storage root>/audit-anchors/``),
  through ``LocalBackend`` (temporary file, fsync, rename). Never overwritten, but nothing
  below Holdfast stops whoever holds the host from deleting files: the weaker anchor.
- S3: ``<location>/audit-anchors/`` for every location in ``HOLDFAST_AUDIT_ANCHOR_LOCATIONS``,
  or, when that is empty, every distinct S3 vault location. Each anchor carries an Object
  Lock (``HOLDFAST_AUDIT_ANCHOR_LOCK_MODE``, COMPLIANCE by default) for
  ``HOLDFAST_AUDIT_ANCHOR_RETENTION_DAYS``; writing an anchor that exists already extends its
  lock, so the latest anchor stays locked while the log does not grow.

Every anchor is sealed (SPEC 3.11) with a data key of its own store, kept only wrapped by
the master key under ``keys/`` beside the anchors (`vaults.keyring.anchor_backend`). Anchors
written in plaintext before encryption are still read, but only those older than the store's
first key: a plaintext anchor written since is refused.

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
from portal.anchors import AnchorStore, AnchorStoreError, AnchorUntrusted

from .keyring import anchor_backend
from .locations import S3_SCHEME, s3_client
from .models import Vault
from .storage.backends import Backend, LocalBackend, Retention
from .storage.crypto import KEYS_PREFIX, ObjectTampered, SealedBackend, is_sealed
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
    def backend(self) -> SealedBackend:
        # Made on first use, inside the calls that turn failures into sentences: a local
        # backend creates its directory, which a web host without the storage cannot.
        try:
            return anchor_backend(self.make_backend())
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
            if retention is not None:
                self.backend.keep_key_locked(retention)  # the key that opens the anchors
            if self.backend.put_if_absent(name, data, retention):
                return True
            if retention is not None:
                self.backend.extend_retention(name, retention)
            return False
        except (StorageError, OSError) as exc:
            raise AnchorStoreError(str(exc)) from None

    def names(self) -> Iterator[str]:
        try:
            yield from (key for key in self.backend.list("") if not key.startswith(KEYS_PREFIX))
        except (StorageError, OSError) as exc:
            raise AnchorStoreError(str(exc)) from None

    def read(self, name: str) -> bytes:
        try:
            backend = self.backend
            blob = backend.inner.get(name)
            if not is_sealed(blob) and backend.inner.mtime(name) >= self._encrypted_since():
                raise AnchorUntrusted(
                    f"the anchor {name} is in plaintext but was written after the anchors were "
                    "encrypted (it is not trusted)"
                )
            return backend.open(name, blob)
        except ObjectTampered as exc:
            raise AnchorUntrusted(str(exc)) from None
        except (StorageError, OSError) as exc:
            raise AnchorStoreError(str(exc)) from None

    def _encrypted_since(self) -> float:
        keys = list(self.backend.inner.list(KEYS_PREFIX))
        return min((self.backend.inner.mtime(key) for key in keys), default=float("inf"))


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
