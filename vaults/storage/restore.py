"""The restore path: writing a recovery point back to disk without ever leaving the target.

`restore_point` fetches the point's chunks ahead on a thread pool, hash-checks each, and
writes the files through `TargetTree`. Every write goes through directory descriptors
opened with O_NOFOLLOW, starting from the resolved target, so a symlink already in the
target (or planted meanwhile) is never followed; files are written to a temporary name and
linked or renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from collections import OrderedDict, deque
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import RestoreRefused, StorageError
from .manifest import KIND_DIR, KIND_FILE, KIND_SYMLINK, Node, check_relative_path
from .writer import Progress

if TYPE_CHECKING:
    from .store import VaultStore

RESTORE_LOOKAHEAD = 8
# Decoded chunks a restore keeps at hand: a point whose unchanged small files reuse a
# parent's chunks interleaves them with new ones, and must not fetch them twice.
RESTORE_RECENT = 4


@dataclass(frozen=True)
class RestoreResult:
    point_id: str
    target: Path
    files: int
    dirs: int
    symlinks: int
    restored_bytes: int


def normalize_sub_path(sub_path: str) -> str:
    cleaned = "/".join(part for part in sub_path.split("/") if part not in ("", "."))
    return check_relative_path(cleaned)


def select_nodes(nodes: list[Node], sub_path: str) -> list[Node]:
    """The nodes to restore, with paths rebased onto the restore target."""
    wanted = normalize_sub_path(sub_path)
    if not wanted:
        return [node for node in nodes if node.path]
    match = next((node for node in nodes if node.path == wanted), None)
    if match is None:
        raise StorageError(f"{sub_path!r} is not in this recovery point.")
    base = wanted.rpartition("/")[0]
    cut = len(base) + 1 if base else 0
    prefix = wanted + "/"
    return [
        Node(
            path=node.path[cut:],
            kind=node.kind,
            mode=node.mode,
            mtime_ns=node.mtime_ns,
            size=node.size,
            extents=node.extents,
            target=node.target,
        )
        for node in nodes
        if node.path == wanted or node.path.startswith(prefix)
    ]


def resolve_target(
    target: Path, allowed_roots: Sequence[Path], forbidden_roots: Sequence[Path] = ()
) -> Path:
    """``target`` with every symlink followed, refused unless it lies under an allowed root
    and neither lies under nor holds a forbidden one (the caller's own storage: a restore
    root wide enough to hold it must still never let a restore write into it)."""
    resolved = Path(os.path.abspath(target)).resolve()
    roots = [Path(os.path.abspath(root)).resolve() for root in allowed_roots]
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(root) for root in roots) or "none configured"
        raise RestoreRefused(
            f"Restore target {target} resolves to {resolved}, which is outside the allowed"
            f" restore locations ({allowed})."
        )
    for forbidden in (Path(os.path.abspath(root)).resolve() for root in forbidden_roots):
        if resolved.is_relative_to(forbidden) or forbidden.is_relative_to(resolved):
            raise RestoreRefused(
                f"Restore target {target} resolves to {resolved}, which holds or lies in"
                f" Holdfast's own storage ({forbidden}): restores never write there."
            )
    return resolved


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class TargetTree:
    """Directory-descriptor based writes under one restore target."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root_fd = -1
        self._stack: list[tuple[tuple[str, ...], int]] = []
        self._dirs: list[Node] = []

    def __enter__(self) -> TargetTree:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.root_fd = os.open(self.root, _DIR_FLAGS)
        except OSError as exc:
            raise RestoreRefused(f"Restore target {self.root} is not a directory.") from exc
        proc = f"/proc/self/fd/{self.root_fd}"
        if os.path.exists(proc) and os.readlink(proc) != str(self.root):
            raise RestoreRefused(f"Restore target {self.root} changed while it was opened.")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._close_to(())
        os.close(self.root_fd)

    def _close_to(self, keep: tuple[str, ...]) -> None:
        while self._stack and self._stack[-1][0] != keep[: len(self._stack[-1][0])]:
            os.close(self._stack.pop()[1])

    def dir_fd(self, parts: tuple[str, ...]) -> int:
        """A descriptor of the real directory `parts` inside the target (no symlinks)."""
        self._close_to(parts)
        fd = self._stack[-1][1] if self._stack else self.root_fd
        depth = len(self._stack[-1][0]) if self._stack else 0
        for index in range(depth, len(parts)):
            try:
                fd = os.open(parts[index], _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                where = "/".join(parts[: index + 1])
                raise RestoreRefused(
                    f"{where!r} under the restore target is not a real directory"
                    f" ({exc.strerror}); nothing is written through symlinks."
                ) from None
            self._stack.append((parts[: index + 1], fd))
        return fd

    def _lstat(self, node: Node) -> os.stat_result | None:
        parts = tuple(node.path.split("/"))
        try:
            parent = self.dir_fd(parts[:-1])
        except RestoreRefused:
            return None  # an ancestor is in the way; it is reported itself
        try:
            return os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def conflicts(self, node: Node, overwrite: bool) -> bool:
        existing = self._lstat(node)
        if existing is None:
            return False
        is_dir = stat.S_ISDIR(existing.st_mode)
        if node.kind == KIND_DIR:
            return not is_dir and not overwrite
        # Replacing a directory by a file would mean deleting a tree: never.
        return is_dir or not overwrite

    def _parent(self, node: Node) -> tuple[int, str]:
        parts = tuple(node.path.split("/"))
        return self.dir_fd(parts[:-1]), parts[-1]

    def make_dir(self, node: Node, overwrite: bool) -> None:
        parent, name = self._parent(node)
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
        except FileExistsError:
            existing = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISDIR(existing.st_mode):
                if not overwrite:
                    raise RestoreRefused(f"{node.path!r} already exists in the target.") from None
                os.unlink(name, dir_fd=parent)
                os.mkdir(name, 0o700, dir_fd=parent)
        self._dirs.append(node)

    def make_symlink(self, node: Node, overwrite: bool) -> None:
        parent, name = self._parent(node)
        if overwrite:
            temp = f".holdfast-{uuid.uuid4().hex}"
            os.symlink(node.target, temp, dir_fd=parent)
            try:
                os.replace(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
            except OSError:
                os.unlink(temp, dir_fd=parent)
                raise RestoreRefused(f"{node.path!r} is a directory in the target.") from None
        else:
            try:
                os.symlink(node.target, name, dir_fd=parent)
            except FileExistsError:
                raise RestoreRefused(f"{node.path!r} already exists in the target.") from None
        os.utime(name, ns=(node.mtime_ns, node.mtime_ns), dir_fd=parent, follow_symlinks=False)

    def make_file(self, node: Node, pieces: Iterator[bytes], overwrite: bool) -> None:
        parent, name = self._parent(node)
        temp = f".holdfast-{uuid.uuid4().hex}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temp, flags, 0o600, dir_fd=parent)
        try:
            try:
                for piece in pieces:
                    view = memoryview(piece)
                    while view:
                        view = view[os.write(fd, view) :]
                # Ownership is not restored, so set-id bits would hand our privileges out.
                os.fchmod(fd, node.mode & 0o1777)
                os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))
            finally:
                os.close(fd)
            if overwrite:
                try:
                    os.replace(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
                except IsADirectoryError:
                    raise RestoreRefused(f"{node.path!r} is a directory in the target.") from None
            else:
                # link() fails instead of replacing, so nothing appearing meanwhile is lost.
                try:
                    os.link(temp, name, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
                except FileExistsError:
                    raise RestoreRefused(f"{node.path!r} already exists in the target.") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp, dir_fd=parent)

    def finish_dirs(self) -> None:
        """Apply directory modes and times last, deepest first, once nothing else changes."""
        for node in reversed(self._dirs):
            fd = self.dir_fd(tuple(node.path.split("/")))
            os.fchmod(fd, node.mode & 0o1777)
            os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))


def restore_point(
    store: VaultStore,
    point_id: str,
    target: Path,
    *,
    allowed_roots: Sequence[Path],
    forbidden_roots: Sequence[Path] = (),
    sub_path: str = "",
    overwrite: bool = False,
    progress: Progress | None = None,
    file_progress: Progress | None = None,
) -> RestoreResult:
    """Write point `point_id` (or just `sub_path` of it) under `target`.

    The whole point restores into `target`; a `sub_path` restores as
    `target/<its last name>`. Every operation is relative to directory descriptors
    opened with O_NOFOLLOW, so nothing is ever written through a symlink, and every
    chunk is hash-checked before its bytes are written. `file_progress(done, total)` is
    called before each file, folder or link is written (raising from it stops there).
    """
    manifest = store.manifest(point_id)
    selection = select_nodes(manifest.nodes, sub_path)
    root = resolve_target(Path(target), allowed_roots, forbidden_roots)
    total = sum(node.size for node in selection if node.kind == KIND_FILE)

    with TargetTree(root) as tree:
        conflicts = [node.path for node in selection if tree.conflicts(node, overwrite)]
        if conflicts:
            raise RestoreRefused(
                f"Restoring would overwrite {len(conflicts)} existing path(s) under {root}"
                f" (e.g. {conflicts[0]!r}). Choose an empty target or allow overwriting."
            )
        # Chunks in the order they must be fetched: a chunk still among the last
        # RESTORE_RECENT used is served from memory; pieces() replays the same LRU.
        order: list[str] = []
        recent: OrderedDict[str, None] = OrderedDict()
        for node in selection:
            for digest, _offset, _length in node.extents:
                if digest in recent:
                    recent.move_to_end(digest)
                    continue
                order.append(digest)
                recent[digest] = None
                if len(recent) > RESTORE_RECENT:
                    recent.popitem(last=False)
        done = 0
        counts = {KIND_DIR: 0, KIND_FILE: 0, KIND_SYMLINK: 0}
        with ThreadPoolExecutor(store.workers, thread_name_prefix="holdfast-restore") as pool:
            chunks = _prefetch(store, order, manifest.chunks, pool)
            cache: OrderedDict[str, bytes] = OrderedDict()
            try:
                for position, node in enumerate(selection):
                    if file_progress is not None:
                        file_progress(position, len(selection))
                    counts[node.kind] += 1
                    if node.kind == KIND_DIR:
                        tree.make_dir(node, overwrite)
                    elif node.kind == KIND_SYMLINK:
                        tree.make_symlink(node, overwrite)
                    else:

                        def pieces(node: Node = node) -> Iterator[bytes]:
                            for digest, offset, length in node.extents:
                                if digest in cache:
                                    cache.move_to_end(digest)
                                else:
                                    fetched, data = next(chunks)
                                    if fetched != digest:  # the replay diverged: a bug
                                        raise StorageError("Restore chunk order mismatch.")
                                    cache[digest] = data
                                    if len(cache) > RESTORE_RECENT:
                                        cache.popitem(last=False)
                                yield cache[digest][offset : offset + length]

                        tree.make_file(node, pieces(), overwrite)
                        done += node.size
                        if progress is not None:
                            progress(done, total)
            finally:
                chunks.close()
        tree.finish_dirs()
    return RestoreResult(
        point_id=point_id,
        target=root,
        files=counts[KIND_FILE],
        dirs=counts[KIND_DIR],
        symlinks=counts[KIND_SYMLINK],
        restored_bytes=done,
    )


def _prefetch(
    store: VaultStore, order: list[str], sizes: dict[str, int], pool: ThreadPoolExecutor
) -> Generator[tuple[str, bytes], None, None]:
    window: deque[tuple[str, Future[bytes]]] = deque()
    try:
        for digest in order:
            window.append((digest, pool.submit(store.read_chunk, digest, sizes.get(digest))))
            if len(window) >= RESTORE_LOOKAHEAD:
                head, future = window.popleft()
                yield head, future.result()
        while window:
            head, future = window.popleft()
            yield head, future.result()
    finally:
        for _digest, future in window:
            future.cancel()
