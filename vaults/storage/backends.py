"""Object backends: a flat key -> bytes namespace with whole-object writes.

The interface is what an object store offers (PUT, GET, HEAD, DELETE, LIST by prefix), so
an S3 backend can implement it directly; the local backend emulates atomic PUT with a
temporary file, fsync and rename, none of which leaks out of `put`.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import os
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from .errors import ObjectNotFound, StorageError

# Every path component starts with an alphanumeric, so "." / ".." / hidden temporaries
# can never be named by a key.
_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
_TEMP_PREFIX = ".tmp-"


def check_key(key: str) -> str:
    if not isinstance(key, str) or len(key) > 1024 or not _KEY_RE.fullmatch(key):
        raise StorageError(f"Invalid object key {key!r}.")
    return key


# Object-lock modes, weakest first (S3 Object Lock: GOVERNANCE can be bypassed by a holder
# of s3:BypassGovernanceRetention, COMPLIANCE by nobody, the bucket's owner included).
GOVERNANCE = "GOVERNANCE"
COMPLIANCE = "COMPLIANCE"
_STRENGTH = {None: 0, GOVERNANCE: 1, COMPLIANCE: 2}


@dataclass(frozen=True)
class Retention:
    """A write-once-read-many retention to put on an object: mode and retain-until date."""

    mode: str
    until: datetime  # timezone-aware

    def __post_init__(self) -> None:
        if self.mode not in (GOVERNANCE, COMPLIANCE):
            raise StorageError(f"Unknown object-lock mode {self.mode!r}.")
        if self.until.tzinfo is None:
            raise StorageError("A retain-until date must carry its time zone.")
        # Storages keep whole seconds: round up, so the lock never ends before the expiry.
        if self.until.microsecond:
            rounded = self.until.replace(microsecond=0) + timedelta(seconds=1)
            object.__setattr__(self, "until", rounded)

    def merged(self, other: Retention | None) -> Retention:
        """The stronger mode and the later date of the two: never weaker than either."""
        if other is None:
            return self
        mode = self.mode if _STRENGTH[self.mode] >= _STRENGTH[other.mode] else other.mode
        return Retention(mode, max(self.until, other.until))


@dataclass(frozen=True)
class ObjectLock:
    """An object's lock as the storage reports it."""

    mode: str | None = None
    until: datetime | None = None
    legal_hold: bool = False

    def covers(self, wanted: Retention) -> bool:
        """Whether this lock is at least as strong and as long as `wanted`."""
        return (
            self.until is not None
            and self.until >= wanted.until
            and _STRENGTH[self.mode] >= _STRENGTH[wanted.mode]
        )

    def active(self, now: datetime) -> bool:
        return self.legal_hold or (self.until is not None and self.until > now)

    @staticmethod
    def weakest(locks: Sequence[ObjectLock]) -> ObjectLock:
        """What holds for all of `locks` (an object's versions): the weakest mode, the
        earliest date, a legal hold only if every one has it."""
        if not locks:
            return ObjectLock()
        modes = [lock.mode for lock in locks]
        dates = [lock.until for lock in locks]
        return ObjectLock(
            mode=min(modes, key=lambda mode: _STRENGTH[mode]),
            until=None if None in dates else min(d for d in dates if d is not None),
            legal_hold=all(lock.legal_hold for lock in locks),
        )


class Backend(abc.ABC):
    """A strongly consistent object namespace.

    Contract (relied on by garbage collection, see docs/storage.md):
    - `put` is atomic and durable when it returns: readers see the old object, no object,
      or the complete new one, never a prefix. Putting the same key twice is harmless.
    - after `put` or `delete` returns, `get`, `exists` and `list` from any process see it.
    """

    # Backends that can lock objects (S3 Object Lock) set this and implement `lock_of` and
    # `extend_retention`; the others ignore `retention` (docs/storage.md, "Object Lock").
    supports_object_lock = False

    @abc.abstractmethod
    def put(self, key: str, data: bytes, retention: Retention | None = None) -> None: ...

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """Return the object's bytes; raise `ObjectNotFound` if it does not exist."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Yield every key that starts with `prefix`, in lexicographic order."""

    @abc.abstractmethod
    def size(self, key: str) -> int: ...

    @abc.abstractmethod
    def mtime(self, key: str) -> float:
        """Seconds since the epoch when the object was last written."""

    def put_if_absent(self, key: str, data: bytes, retention: Retention | None = None) -> bool:
        """Write the object unless the key exists; whether it was written. Backends with a
        conditional write make the check and the write one step."""
        if self.exists(key):
            return False
        self.put(key, data, retention)
        return True

    def lock_of(self, key: str) -> ObjectLock | None:
        """The object's lock as the storage reports it; None where locks do not exist.

        Raises `ObjectNotFound` for a missing object."""
        return None

    def version_locks(self, key: str) -> Sequence[ObjectLock]:
        """The lock of every stored version of the object, the current one included.

        Where a store keeps versions (S3), an older version becomes current again once the
        ones above it are gone (a delete by version once their own lock ends, the
        governance bypass, a delete marker removed): the object is only as locked as its
        weakest version. Raises `ObjectNotFound` when there is no current version."""
        lock = self.lock_of(key)
        return [] if lock is None else [lock]

    def extend_retention(self, key: str, retention: Retention) -> bool:
        """Raise the object's lock to at least `retention`, never lowering it, on every
        version the store keeps of it.

        Returns whether the storage was changed; False where locks do not exist. Raises
        `ObjectNotFound` for a missing object."""
        return False

    @contextlib.contextmanager
    def deletes_batched(self) -> Iterator[None]:
        """Deletes inside are durable together when it ends (a local store syncs each
        directory they touched once, not once a delete); each is visible as soon as it
        returns, as always. Where deletes are durable on return (S3), nothing changes."""
        yield


# Write failures that mean the storage itself is unusable (not a bug in the caller): turned
# into a `StorageError` with a sentence, so the job fails saying what to fix.
_UNWRITABLE = {
    errno.ENOSPC: "it is full (no space left on the device)",
    errno.EDQUOT: "its disk quota is exhausted",
    errno.EROFS: "it is mounted read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


class StoreUnwritable(StorageError):
    """The store's filesystem refused a write (full, read-only, no permission)."""

    def __init__(self, root: Path, reason: str, errno_: int) -> None:
        super().__init__(
            f"Cannot write to the store at {root}: {reason}. Nothing half-written is visible; "
            "free space or make the storage writable, then run the job again."
        )
        self.errno = errno_


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBackend(Backend):
    """Objects as files under `root`; a key's slashes are directories.

    `create` False opens a store that may not exist without making its directory: reading
    finds nothing, and the first write makes it (a sweep looks without creating)."""

    def __init__(self, root: Path | str, *, create: bool = True) -> None:
        self.root = Path(root)
        # Directories whose deletes wait for one sync (`deletes_batched`); None: sync each.
        self._unsynced: set[Path] | None = None
        if create:
            self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalBackend({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            reason = _UNWRITABLE.get(exc.errno or 0)
            if reason is None:
                raise
            raise StoreUnwritable(self.root, reason, exc.errno or 0) from exc

    def _ensure_dir(self, directory: Path) -> None:
        if directory.is_dir():
            return
        missing = []
        probe = directory
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        directory.mkdir(parents=True, exist_ok=True)
        # A new directory entry is durable only once its parent is synced.
        for created in reversed(missing):
            fsync_dir(created.parent)

    def put(self, key: str, data: bytes, retention: Retention | None = None) -> None:
        with self._writing():
            self._put(self._path(key), data)

    def _put(self, path: Path, data: bytes) -> None:
        self._ensure_dir(path.parent)
        temp = path.parent / f"{_TEMP_PREFIX}{uuid.uuid4().hex}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temp, flags, 0o644)
        try:
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._writing():
            try:
                path.unlink()
            except (FileNotFoundError, NotADirectoryError):
                return
            if self._unsynced is not None:
                self._unsynced.add(path.parent)
                return
            fsync_dir(path.parent)

    @contextlib.contextmanager
    def deletes_batched(self) -> Iterator[None]:
        """Unlink now, sync each touched directory once at the end (also when the block
        fails: what was unlinked is made durable). A crash before the sync may bring an
        unlinked file back; every delete here is idempotent, so the next run removes it."""
        if self._unsynced is not None:  # nested: the outer block syncs
            yield
            return
        self._unsynced = set()
        try:
            yield
        finally:
            directories, self._unsynced = sorted(self._unsynced), None
            with self._writing():
                for directory in directories:
                    with contextlib.suppress(FileNotFoundError):
                        fsync_dir(directory)

    def list(self, prefix: str) -> Iterator[str]:
        directory, _, _ = prefix.rpartition("/")
        if directory:
            check_key(directory)
        start = self.root / directory if directory else self.root
        yield from (key for key in self._walk(start, directory) if key.startswith(prefix))

    def _walk(self, directory: Path, key_prefix: str) -> Iterator[str]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        # Sorting "name/" for directories keeps the overall key order lexicographic.
        keyed = sorted(
            (entry.name + ("/" if entry.is_dir(follow_symlinks=False) else ""), entry)
            for entry in entries
            if not entry.name.startswith(".")
        )
        for sort_name, entry in keyed:
            key = f"{key_prefix}/{entry.name}" if key_prefix else entry.name
            if sort_name.endswith("/"):
                yield from self._walk(Path(entry.path), key)
            elif entry.is_file(follow_symlinks=False):
                yield key

    def _stat(self, key: str) -> os.stat_result:
        try:
            return os.stat(self._path(key), follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(key) from None

    def size(self, key: str) -> int:
        return self._stat(key).st_size

    def mtime(self, key: str) -> float:
        return self._stat(key).st_mtime

    def sweep_temporaries(self, older_than: float = 3600.0) -> int:
        """Remove temporaries left by writers that crashed mid-`put`; returns the count.

        Only files older than `older_than` seconds are touched, so a `put` in progress is
        never disturbed.
        """
        cutoff = time.time() - older_than
        removed = 0
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for name in filenames:
                if not name.startswith(_TEMP_PREFIX):
                    continue
                path = os.path.join(dirpath, name)
                try:
                    if os.stat(path, follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(path)
                        removed += 1
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        raise
        return removed
