"""Object Lock of a store's points: extend the locks a point's objects need, read them back.

A no-op on backends without object lock (local disk). docs/storage.md, "Object Lock".
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from .backends import COMPLIANCE, GOVERNANCE, Backend, ObjectLock, Retention
from .chunks import chunk_key
from .errors import ObjectNotFound, PointNotFound, StorageError
from .manifest import manifest_key

if TYPE_CHECKING:
    from .store import VaultStore


@dataclass(frozen=True)
class RetentionResult:
    """What `VaultStore.apply_retention` did: objects looked at, extended, and missing."""

    objects: int
    extended: int
    missing: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # the storage's refusals, as sentences


@dataclass(frozen=True)
class PointLock:
    """A point's objects' locks as the storage confirms them (`VaultStore.point_lock`).

    `until` is the earliest retain-until date over the manifest and every chunk, `mode` the
    weakest mode; `short` names objects whose retention is missing or ends before `wanted`.
    A legal hold does not excuse a short retention (whoever may set one may lift it); holds
    are counted in `legal_holds`."""

    objects: int
    until: datetime | None
    mode: str | None
    legal_holds: int
    missing: list[str]
    short: list[str]

    @property
    def ok(self) -> bool:
        return not self.missing and not self.short


def apply_retention(store: VaultStore, wanted: dict[str, Retention]) -> RetentionResult:
    """Lock every object of the given points at least as long as asked, never shorter.

    A chunk shared by several points gets the latest date and strongest mode among
    them. Used when immutability is enabled or locked after the points were written,
    and when a point's expiry grows. A no-op on backends without object lock."""
    if not store.backend.supports_object_lock or not wanted:
        return RetentionResult(0, 0)
    per_object: dict[str, Retention] = {}
    missing: list[str] = []
    for point_id, retention in wanted.items():
        try:
            chunks = store.manifest(point_id).chunks
        except PointNotFound:
            missing.append(manifest_key(point_id))
            continue
        for key in [manifest_key(point_id), *(chunk_key(d) for d in chunks)]:
            per_object[key] = retention.merged(per_object.get(key))

    def extend(item: tuple[str, Retention]) -> bool | str | None:
        try:
            return store.backend.extend_retention(*item)
        except ObjectNotFound:
            return None
        except StorageError as exc:  # one object's refusal must not stop the others
            return str(exc)

    with ThreadPoolExecutor(store.workers, thread_name_prefix="holdfast-lock") as pool:
        outcomes = list(pool.map(extend, per_object.items()))
    pairs = list(zip(per_object, outcomes, strict=True))
    missing += [key for key, done in pairs if done is None]
    return RetentionResult(
        len(per_object),
        sum(1 for _key, done in pairs if done is True),
        missing,
        failed=[done for _key, done in pairs if isinstance(done, str)],
    )


def point_lock(
    store: VaultStore,
    point_id: str,
    wanted: Retention | None = None,
    cache: dict[str, ObjectLock | None] | None = None,
) -> PointLock:
    """Read back the lock of the point's manifest and every chunk from the storage.

    `cache` (object key to lock) lets a caller checking many points read each shared
    chunk once. `PointNotFound` if the manifest is gone."""
    chunks = store.manifest(point_id).chunks
    keys = [manifest_key(point_id), *(chunk_key(d) for d in chunks)]
    return read_locks(store.backend, keys, wanted, cache, store.workers)


def read_locks(
    backend: Backend,
    keys: list[str],
    wanted: Retention | None,
    cache: dict[str, ObjectLock | None] | None = None,
    workers: int = 8,
) -> PointLock:
    """The locks of `keys` as the storage reports them, summed up as one point's lock.

    Each key counts with its weakest version: any version may become current again."""
    cache = {} if cache is None else cache

    def read(key: str) -> ObjectLock | None:
        try:
            return ObjectLock.weakest(backend.version_locks(key))
        except ObjectNotFound:
            return None

    todo = [key for key in dict.fromkeys(keys) if key not in cache]
    with ThreadPoolExecutor(workers, thread_name_prefix="holdfast-lock") as pool:
        cache.update(zip(todo, pool.map(read, todo), strict=True))
    locks = [(key, cache[key]) for key in keys]
    present = [lock for _key, lock in locks if lock is not None]
    short = [
        key
        for key, lock in locks
        if lock is not None and wanted is not None and not lock.covers(wanted)
    ]
    unlocked = any(lock.until is None for lock in present)
    modes = {lock.mode for lock in present}
    weakest = GOVERNANCE if GOVERNANCE in modes else COMPLIANCE
    return PointLock(
        objects=len(keys),
        until=None
        if unlocked or len(present) < len(keys)
        else min(lock.until for lock in present if lock.until is not None),
        mode=None if unlocked or not present else weakest,
        legal_holds=sum(lock.legal_hold for lock in present),
        missing=[key for key, lock in locks if lock is None],
        short=short,
    )
