"""Exceptions raised by the data plane.

Every error the storage layer raises on purpose derives from `StorageError`, so callers
(services, tasks) can turn one type into a failed job with a readable message.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class: something in the store or its inputs prevents the operation."""


class ObjectNotFound(StorageError, KeyError):
    """A backend key does not exist."""

    def __init__(self, key: str) -> None:
        super().__init__(f"Object {key!r} does not exist in the store.")
        self.key = key

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return str(self.args[0])


class PointNotFound(StorageError):
    """No complete recovery point with this id exists in the store."""

    def __init__(self, point_id: str) -> None:
        super().__init__(f"Recovery point {point_id!r} does not exist in this store.")
        self.point_id = point_id


class CorruptChunk(StorageError):
    """A stored chunk does not decode, or its content does not match its hash."""

    def __init__(self, chunk_id: str, reason: str) -> None:
        super().__init__(f"Chunk {chunk_id} is corrupt: {reason}.")
        self.chunk_id = chunk_id
        self.reason = reason


class RestoreRefused(StorageError):
    """A restore would write outside its allowed place or over existing data."""


class SourceUnreadable(StorageError):
    """A file or directory under a backup source cannot be read."""


class SourceRefused(StorageError):
    """A backup source now leads somewhere no backup may read (Holdfast's own storage, say)."""


class ConcurrentGcConflict(StorageError):
    """A garbage collection that started before this backup reused a chunk deleted it.

    The backup is abandoned before its manifest is written, so no broken point becomes
    visible; running the backup again stores the chunk anew.
    """


class ObjectLocked(StorageError):
    """The storage refused to delete an object because its object lock has not ended.

    Reported, never retried blindly: the object stays until its retention passes (or, for
    a legal hold, until the hold is released), and a later sweep deletes it then.
    """

    def __init__(self, key: str, until: object = None) -> None:
        when = f" until {until}" if until else ""
        super().__init__(f"The storage refuses to delete {key!r}: it is locked{when}.")
        self.key = key
        self.until = until


class PointRetained(StorageError):
    """The storage was told to keep this point longer (SPEC 8.3): its manifest stays.

    Raised by `delete_point` before touching anything, whatever the database says: its
    manifest's retain-until, raised by later notes, has not passed and no release the
    storage honours was written (docs/storage.md, "What the storage was told to keep")."""

    def __init__(self, point_id: str, until: object = None) -> None:
        when = f"until {until:%Y-%m-%d %H:%M:%S} UTC" if until else "until it is released"
        super().__init__(
            f"Recovery point {point_id!r} is kept by its storage {when}: its data was not deleted."
        )
        self.point_id = point_id
        self.until = until


class ObjectArchived(StorageError):
    """An object sits in a cold storage class and must be restored before it can be read."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"Object {key!r} is in a cold storage class and must be restored by the storage "
            "before it can be read."
        )
        self.key = key
