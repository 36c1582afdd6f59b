"""Holdfast's data plane: chunking, the vault store and the archive tier.

Pure Python on top of fastcdc, blake3 and zstandard; nothing here imports Django, so it
can be tested and benchmarked alone. docs/storage.md describes the on-store format.
"""

from __future__ import annotations

from .archive import ArchiveResult, ArchiveStore
from .backends import Backend, LocalBackend
from .errors import (
    ConcurrentGcConflict,
    CorruptChunk,
    ObjectNotFound,
    PointNotFound,
    RestoreRefused,
    SourceUnreadable,
    StorageError,
)
from .store import (
    BackupResult,
    Entry,
    GcResult,
    ImportResult,
    RestoreResult,
    VaultStore,
    VerifyResult,
    entries_of,
)

__all__ = [
    "ArchiveResult",
    "ArchiveStore",
    "Backend",
    "BackupResult",
    "ConcurrentGcConflict",
    "CorruptChunk",
    "Entry",
    "GcResult",
    "ImportResult",
    "LocalBackend",
    "ObjectNotFound",
    "PointNotFound",
    "RestoreRefused",
    "RestoreResult",
    "SourceUnreadable",
    "StorageError",
    "VaultStore",
    "VerifyResult",
    "entries_of",
]
