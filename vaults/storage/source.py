"""Reading a backup source: open its directory safely, list the tree, open each file.

The source is judged by the directory actually opened, never by its name, and every file
read must lie beneath it (`open_source_root`, `open_source_file`): a directory swapped for a
symlink into the store, before or during the backup, is refused or skipped (SPEC 8).
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .chunks import READ_SIZE
from .errors import SourceRefused, SourceUnreadable, StorageError
from .manifest import KIND_DIR, KIND_FILE, KIND_SYMLINK, Node


@dataclass
class ScanItem:
    rel: str
    path: str
    kind: str
    st: os.stat_result


@dataclass
class Scan:
    items: list[ScanItem] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    total_bytes: int = 0


def open_source_file(item: ScanItem, beneath: str | None = None) -> int | None:
    """Open a scanned file, or None if it went away or became a symlink since the scan.

    With `beneath` (the source root's real path), a file that opened somewhere else is
    refused too: a directory on its way swapped for a symlink mid-backup (O_NOFOLLOW guards
    only the last component) must not let the backup read the store or anything else."""
    try:
        fd = os.open(item.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a symlink since the scan
            return None
        raise SourceUnreadable(f"Cannot read {item.path}: {exc.strerror}.") from None
    if beneath is not None and not os.readlink(f"/proc/self/fd/{fd}").startswith(
        beneath.rstrip("/") + "/"
    ):
        os.close(fd)
        return None
    return fd


def open_source_root(
    source: Path, check: Callable[[str, str], str | None] | None
) -> tuple[int, str]:
    """Open the backup source directory and judge it by what was opened, not by its name.

    The real path of the open directory (``/proc/self/fd/N``) is what `check` sees, so a
    source replaced by a symlink into the store or elsewhere is refused, and a swap after the
    check changes nothing: the whole scan then reads through this descriptor's path, never
    `source` again. Without procfs the check falls back to the resolved path, and a swap in
    that moment could still win.
    """
    try:
        fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except NotADirectoryError:
        raise StorageError(f"Backup source {source} is not a directory.") from None
    except OSError as exc:
        raise SourceUnreadable(f"Cannot read backup source {source}: {exc.strerror}.") from None
    try:
        root = f"/proc/self/fd/{fd}"
        if os.path.isdir(root):
            opened = os.readlink(root)
        else:  # pragma: no cover - every Linux has procfs
            root = opened = os.path.realpath(source)
        refusal = check(str(source), opened) if check is not None else None
        if refusal:
            raise SourceRefused(refusal)
    except BaseException:
        os.close(fd)
        raise
    return fd, root


def same_file(old: Node, st: os.stat_result) -> bool:
    """Whether a parent's file entry still describes the file, by its stat alone."""
    return (
        old.size == st.st_size
        and old.mtime_ns == st.st_mtime_ns
        and old.ctime_ns == st.st_ctime_ns
        and old.inode == st.st_ino
        and old.device == st.st_dev
    )


def reused_node(item: ScanItem, old: Node) -> Node:
    st = item.st
    return Node(
        item.rel,
        KIND_FILE,
        stat.S_IMODE(st.st_mode),
        st.st_mtime_ns,
        size=st.st_size,
        extents=list(old.extents),
        ctime_ns=st.st_ctime_ns,
        inode=st.st_ino,
        device=st.st_dev,
    )


def read_fd(fd: int, path: str, size: int) -> Iterator[bytes]:
    while True:
        try:
            piece = os.read(fd, READ_SIZE if size >= READ_SIZE else max(size, 65536))
        except OSError as exc:
            raise SourceUnreadable(f"Cannot read {path}: {exc.strerror}.") from None
        if not piece:
            return
        yield piece


def scan(source: Path, root_stat: os.stat_result) -> Scan:
    """Every entry under `source` (opened as `root_stat`), each directory before its
    contents, sorted by name; sockets, FIFOs and devices are listed as skipped."""
    scan = Scan()
    scan.items.append(ScanItem("", str(source), KIND_DIR, root_stat))
    stack: list[tuple[str, str]] = [("", str(source))]
    while stack:
        rel_dir, dir_path = stack.pop()
        try:
            with os.scandir(dir_path) as it:
                entries = sorted(it, key=lambda e: os.fsencode(e.name))
            children = []
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                st = entry.stat(follow_symlinks=False)
                children.append((rel, entry.path, st))
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise SourceUnreadable(f"Cannot list {dir_path}: {exc.strerror}.") from None
        subdirs = []
        for rel, path, st in children:
            if stat.S_ISDIR(st.st_mode):
                scan.items.append(ScanItem(rel, path, KIND_DIR, st))
                subdirs.append((rel, path))
            elif stat.S_ISREG(st.st_mode):
                scan.items.append(ScanItem(rel, path, KIND_FILE, st))
                scan.total_bytes += st.st_size
            elif stat.S_ISLNK(st.st_mode):
                scan.items.append(ScanItem(rel, path, KIND_SYMLINK, st))
            else:
                scan.skipped.append(rel)
        stack.extend(reversed(subdirs))
    # Depth-first order with each directory before its contents, sorted by name.
    scan.items[1:] = sorted(scan.items[1:], key=lambda i: os.fsencode(i.rel).split(b"/"))
    return scan


# How far the readahead runs in front of the backup's reading: enough to hide the latency
# of thousands of small cold files, little enough not to evict what it warmed.
READAHEAD_BYTES = 256 * 1024 * 1024
READAHEAD_FILES = 512


class Readahead:
    """Asks the kernel to read the next files of a scan into the page cache while the
    backup cuts, hashes and compresses the current ones (``POSIX_FADV_WILLNEED``): on a cold
    cache, thousands of small files otherwise cost one disk round trip each, in series.

    Nothing is read into the process and nothing is trusted: every file is opened again,
    with all its checks, when the backup reads it (`open_source_file`). A file is opened
    here as the backup opens it (no symlink followed, non-blocking, regular files only), so
    warming it has no effect the backup would not have."""

    def __init__(self, items: list[ScanItem], unchanged: Container[str]) -> None:
        self._paths: list[str] = []
        self._ends: list[int] = []  # bytes of the files up to and including each one
        total = 0
        for item in items:
            if item.kind == KIND_FILE and item.rel not in unchanged:
                total += item.st.st_size
                self._paths.append(item.path)
                self._ends.append(total)
        self._done = 0  # files the backup has reached (written by it alone)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="holdfast-readahead", daemon=True)
        self._thread.start()

    def reached(self, count: int) -> None:
        """The backup has come to file number ``count`` (of those not unchanged)."""
        self._done = count

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _ahead(self, index: int) -> bool:
        done = self._done
        if index <= done:
            return False
        consumed = self._ends[done - 1] if done else 0
        return index - done > READAHEAD_FILES or self._ends[index - 1] - consumed > READAHEAD_BYTES

    def _run(self) -> None:
        for index, path in enumerate(self._paths):
            while self._ahead(index):
                if self._stopped.wait(0.005):
                    return
            if self._stopped.is_set():
                return
            _warm(path)


def _warm(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return  # the backup will say what is wrong, if anything
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
    except OSError:
        pass
    finally:
        os.close(fd)
