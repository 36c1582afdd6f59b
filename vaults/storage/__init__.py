"""Holdfast's data plane: chunking, the vault store and the archive tier.

Pure Python on top of fastcdc, blake3 and zstandard; nothing here imports Django, so it
can be tested and benchmarked alone. docs/storage.md describes the on-store format.
"""

from __future__ import annotations

from .archive import ArchiveResult, ArchiveStore
from .backends import Backend, LocalBackend
from .backup import BackupResult, ImportResult
from .errors import (
    ConcurrentGcConflict,
    CorruptChunk,
    ObjectNotFound,
    PointNotFound,
    RestoreRefused,
    SourceUnreadable,
    StorageError,
)
from .gc import GcResult
from .restore import RestoreResult
from .store import Entry, VaultStore, entries_of
from .verify import VerifyResult

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
