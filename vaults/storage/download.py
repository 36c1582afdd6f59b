"""Reading a point's files out as a stream: one file as it is, or a selection as a zip.

Nothing is written anywhere: the bytes go to the caller (a web response) as they are read,
every chunk hash-checked by the store. The selection is judged against the manifest only,
so a path that is not in the point (``../``, an absolute path, a name it never held) is
refused before a byte is read.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import RestoreRefused, StorageError
from .manifest import KIND_DIR, KIND_FILE, Manifest, Node, check_relative_path
from .restore import normalize_sub_path

if TYPE_CHECKING:
    from .store import VaultStore


@dataclass(frozen=True)
class Selection:
    """What a download holds: ``(name in the download, node)`` pairs, files and folders."""

    entries: list[tuple[str, Node]]

    @property
    def total_bytes(self) -> int:
        return sum(node.size for _name, node in self.entries if node.kind == KIND_FILE)

    @property
    def single_file(self) -> Node | None:
        if len(self.entries) == 1 and self.entries[0][1].kind == KIND_FILE:
            return self.entries[0][1]
        return None


def select(manifest: Manifest, paths: Iterable[str]) -> Selection:
    """The files and folders under ``paths`` (relative to the point's root), named in the
    download relative to each path's parent. Raises ``RestoreRefused`` for an unsafe path
    and ``StorageError`` for one the point does not hold."""
    by_path = {node.path: node for node in manifest.nodes}
    entries: dict[str, tuple[str, Node]] = {}
    wanted = list(paths)
    if not wanted:
        raise StorageError("Choose at least one file or folder.")
    for raw in wanted:
        try:
            path = normalize_sub_path(raw)
        except RestoreRefused:
            raise RestoreRefused(f"{raw!r} is not a path inside this recovery point.") from None
        if raw.startswith("/") or not path:
            raise RestoreRefused(f"{raw!r} is not a path inside this recovery point.")
        node = by_path.get(path)
        if node is None:
            raise StorageError(f"{raw!r} is not in this recovery point.")
        base = path.rpartition("/")[0]
        cut = len(base) + 1 if base else 0
        prefix = path + "/"
        for candidate in manifest.nodes:
            inside = candidate.path == path or candidate.path.startswith(prefix)
            if inside and candidate.kind in (KIND_FILE, KIND_DIR):
                # A manifest naming an unsafe path is refused, never written into a zip.
                check_relative_path(candidate.path)
                entries.setdefault(candidate.path, (candidate.path[cut:], candidate))
    if not entries:
        raise StorageError("The selection holds no file or folder (links are not downloaded).")
    return Selection(list(entries.values()))


def file_bytes(store: VaultStore, manifest: Manifest, node: Node) -> Iterator[bytes]:
    """A file's bytes, chunk by chunk, each chunk hash-checked on the way."""
    for digest, offset, length in node.extents:
        data = store.read_chunk(digest, manifest.chunks.get(digest))
        yield data[offset : offset + length]


class _Pipe:
    """A write-only, unseekable buffer: zipfile writes into it, the response drains it."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._offset = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self._offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self._offset

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def zip_stream(store: VaultStore, manifest: Manifest, selection: Selection) -> Iterator[bytes]:
    """The selection as a zip, produced as it is read (no temporary file, no whole file in
    memory: zipfile writes data descriptors when its output cannot seek)."""
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, mode="w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:  # type: ignore[call-overload]
        for name, node in selection.entries:
            stamp = time.gmtime(max(node.mtime_ns // 1_000_000_000, 315532800))[:6]
            if node.kind == KIND_DIR:
                info = zipfile.ZipInfo(name.rstrip("/") + "/", date_time=stamp)
                info.external_attr = (0o40000 | (node.mode or 0o755)) << 16
                zf.writestr(info, b"")
            else:
                info = zipfile.ZipInfo(name, date_time=stamp)
                info.external_attr = (0o100000 | (node.mode or 0o644)) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                info.file_size = node.size
                with zf.open(info, mode="w", force_zip64=node.size >= zipfile.ZIP64_LIMIT) as out:
                    for piece in file_bytes(store, manifest, node):
                        out.write(piece)
                        chunk = pipe.drain()
                        if chunk:
                            yield chunk
            chunk = pipe.drain()
            if chunk:
                yield chunk
    yield pipe.drain()
