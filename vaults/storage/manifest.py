"""The manifest of a recovery point: one JSON document listing the tree and its chunks.

Paths are POSIX, relative to the backup source, "" being the source itself. Names that
are not valid UTF-8 travel as Python's surrogate escapes (JSON `\\udcXX`), so any Linux
file name round-trips. See docs/storage.md for the schema.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from .chunks import (
    AVG_SIZE,
    MAX_SIZE,
    MIN_SIZE,
    SMALL_AVG_SIZE,
    SMALL_MAX_SIZE,
    SMALL_MIN_SIZE,
)
from .errors import RestoreRefused, StorageError

MANIFEST_FORMAT = "holdfast.manifest"
# Version 2 adds, per file, the `ctime_ns`, `inode` and `device` a later backup compares
# to skip reading unchanged files, and the point's `started_at_ns`. Version 1 manifests
# still restore, verify, archive and list; they are just never used as a parent. The
# point's retention terms (`retain_until`, `locked_vault`, `operational`) are optional
# fields of version 2: a reader that does not know them still reads the manifest.
MANIFEST_VERSION = 2
READABLE_VERSIONS = (1, 2)

_POINT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_point_id(point_id: str) -> str:
    if not isinstance(point_id, str) or not _POINT_ID_RE.fullmatch(point_id):
        raise StorageError(
            f"Invalid recovery point id {point_id!r}: use letters, digits, '.', '_' or '-'."
        )
    return point_id


def manifest_key(point_id: str) -> str:
    return f"manifests/{check_point_id(point_id)}.json"


KIND_DIR = "dir"
KIND_FILE = "file"
KIND_SYMLINK = "symlink"
KINDS = (KIND_DIR, KIND_FILE, KIND_SYMLINK)


@dataclass
class Node:
    path: str
    kind: str
    mode: int = 0
    mtime_ns: int = 0
    size: int = 0
    # (chunk id, offset inside the chunk's plaintext, length), in file order.
    extents: list[tuple[str, int, int]] = field(default_factory=list)
    target: str = ""
    # Files only, version 2 on: what `VaultStore.backup(parent=...)` compares with the
    # source's current stat to reuse `extents` without reading the file.
    ctime_ns: int | None = None
    inode: int | None = None
    device: int | None = None

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]

    @property
    def parent(self) -> str:
        return self.path.rpartition("/")[0]

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path, "kind": self.kind, "mtime_ns": self.mtime_ns}
        if self.kind == KIND_SYMLINK:
            data["target"] = self.target
        else:
            data["mode"] = self.mode
        if self.kind == KIND_FILE:
            data["size"] = self.size
            data["extents"] = [list(extent) for extent in self.extents]
            if self.ctime_ns is not None and self.inode is not None and self.device is not None:
                data["ctime_ns"] = self.ctime_ns
                data["inode"] = self.inode
                data["device"] = self.device
        return data


def check_relative_path(path: str) -> str:
    """Refuse anything that could name a place outside the restore target."""
    if path == "":
        return path
    if not isinstance(path, str) or path.startswith("/") or "\x00" in path:
        raise RestoreRefused(f"The manifest names an unsafe path {path!r}; nothing was restored.")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise RestoreRefused(
                f"The manifest names an unsafe path {path!r}; nothing was restored."
            )
    return path


@dataclass(frozen=True)
class Terms:
    """How long the storage must keep a point, as its manifest records it (SPEC 8.3).

    Written with the manifest, from the code path that made the backup, never read back
    from the database: a sweep that finds a manifest the database no longer names keeps it
    until `retain_until` (docs/storage.md, "What the storage was told to keep")."""

    retain_until: datetime  # timezone-aware; stored as UTC
    # The vault's immutability was locked when the point was written: its retain-until may
    # only ever be raised, and no release is honoured before it (compliance).
    locked_vault: bool = False
    # An operational (snapshot-only) point: outside immutability, so a vault-wide lock
    # recorded later does not cover it (SPEC 3.2).
    operational: bool = False

    def __post_init__(self) -> None:
        if self.retain_until.tzinfo is None:
            raise StorageError("A retain-until date must carry its time zone.")

    def to_json(self) -> dict[str, Any]:
        until = self.retain_until.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return {
            "retain_until": until,
            "locked_vault": self.locked_vault,
            "operational": self.operational,
        }

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Terms | None:
        """The terms a manifest document records; None for one written before them."""
        raw = document.get("retain_until")
        if raw is None:
            return None
        return cls(
            retain_until=parse_utc(str(raw)),
            locked_vault=bool(document.get("locked_vault", False)),
            operational=bool(document.get("operational", False)),
        )


def parse_utc(text: str) -> datetime:
    """An ISO 8601 date with a zone (``Z`` accepted), as a UTC datetime."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"date {text!r} has no time zone")
    return parsed.astimezone(UTC)


@dataclass
class Manifest:
    point_id: str
    created_at: float
    source: str
    nodes: list[Node]
    # Every chunk the point references, once, with its plaintext size.
    chunks: dict[str, int]
    logical_bytes: int = 0
    file_count: int = 0
    # Wall clock (ns) before the source was scanned: a file whose ctime is not safely
    # older than this may have changed again within the same timestamp tick.
    started_at_ns: int | None = None
    version: int = MANIFEST_VERSION
    # None only for manifests written before points recorded their retention.
    terms: Terms | None = None

    def to_bytes(self) -> bytes:
        document = {
            "format": MANIFEST_FORMAT,
            "version": self.version,
            "point_id": self.point_id,
            "created_at": self.created_at,
            "started_at_ns": self.started_at_ns,
            "source": self.source,
            "chunking": {
                "algorithm": "fastcdc",
                "min_size": MIN_SIZE,
                "avg_size": AVG_SIZE,
                "max_size": MAX_SIZE,
                "small_files": {
                    "below": MIN_SIZE,
                    "min_size": SMALL_MIN_SIZE,
                    "avg_size": SMALL_AVG_SIZE,
                    "max_size": SMALL_MAX_SIZE,
                },
                # Keyed by the vault's data key (docs/storage.md, "Encryption").
                "hash": "blake3-keyed",
            },
            "logical_bytes": self.logical_bytes,
            "file_count": self.file_count,
            **(self.terms.to_json() if self.terms is not None else {}),
            "chunks": [[chunk, size] for chunk, size in self.chunks.items()],
            "entries": [node.to_json() for node in self.nodes],
        }
        # ensure_ascii keeps surrogate-escaped names encodable.
        return json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode("ascii")

    def rekeyed(self, ids: dict[str, str]) -> Manifest:
        """The same point with every chunk id mapped through ``ids`` (a copy into another
        vault, whose chunk ids are keyed by its own data key; ids not in ``ids`` stay)."""
        nodes = [
            replace(node, extents=[(ids.get(c, c), o, n) for c, o, n in node.extents])
            for node in self.nodes
        ]
        chunks = {ids.get(chunk, chunk): size for chunk, size in self.chunks.items()}
        return replace(self, nodes=nodes, chunks=chunks)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Manifest:
        try:
            document = json.loads(raw)
            if document.get("format") != MANIFEST_FORMAT:
                raise StorageError("The object is not a Holdfast manifest.")
            version = document.get("version")
            if version not in READABLE_VERSIONS:
                raise StorageError(f"Unsupported manifest version {document.get('version')!r}.")
            nodes = []
            for item in document["entries"]:
                kind = item["kind"]
                if kind not in KINDS:
                    raise StorageError(f"Unknown entry kind {kind!r} in manifest.")
                nodes.append(
                    Node(
                        path=check_relative_path(item["path"]),
                        kind=kind,
                        mode=int(item.get("mode", 0)),
                        mtime_ns=int(item.get("mtime_ns", 0)),
                        size=int(item.get("size", 0)),
                        extents=[(str(c), int(o), int(n)) for c, o, n in item.get("extents", [])],
                        target=str(item.get("target", "")),
                        ctime_ns=_optional_int(item.get("ctime_ns")),
                        inode=_optional_int(item.get("inode")),
                        device=_optional_int(item.get("device")),
                    )
                )
            return cls(
                point_id=document["point_id"],
                created_at=float(document["created_at"]),
                source=document.get("source", ""),
                nodes=nodes,
                chunks={str(chunk): int(size) for chunk, size in document["chunks"]},
                logical_bytes=int(document.get("logical_bytes", 0)),
                file_count=int(document.get("file_count", 0)),
                started_at_ns=_optional_int(document.get("started_at_ns")),
                version=int(version),
                terms=Terms.from_json(document),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StorageError(f"The manifest is damaged: {exc!r}.") from None


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def chunk_ids_of(raw: bytes) -> set[str]:
    """The chunk ids a manifest references, without building its whole tree."""
    try:
        document = json.loads(raw)
        return {str(chunk) for chunk, _size in document["chunks"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"A manifest is damaged: {exc!r}; garbage collection stops.") from None


def terms_of(raw: bytes) -> Terms | None:
    """The retention terms a manifest records, without building its whole tree."""
    try:
        document = json.loads(raw)
        if document.get("format") != MANIFEST_FORMAT:
            raise ValueError("not a Holdfast manifest")
        return Terms.from_json(document)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StorageError(f"A manifest is damaged: {exc!r}; its point is kept.") from None
