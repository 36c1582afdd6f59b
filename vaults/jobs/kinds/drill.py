"""A restore drill (SPEC 3.12): restore a point into scratch, re-hash it, record, remove.

The point is restored with the normal restore path (``VaultStore.restore``, allowed only
under the drill root) into ``<HOLDFAST_DRILL_ROOT>/drill-<job id>-<random>``; that path
already checks every chunk it reads against its keyed hash. The drill then checks what
landed on disk, independently of the restore's in-memory data: every regular file the
manifest lists is read back from the scratch copy and must have the manifest's size, and
its bytes, cut at the manifest's extents, must be the chunks the manifest names. An extent
that is a whole chunk is re-hashed with the vault's keyed BLAKE3 and compared with the
chunk id; an extent that is part of a shared chunk (small files are packed together) is
compared with that chunk read back from the store (hash-checked on read). The scratch tree
must hold exactly the manifest's files, no more. So a passed drill means the point's files
came back byte for byte as backed up.

The outcome ``{status, at, files, bytes, seconds}`` (plus ``error`` and ``first_bad`` when
it failed) is recorded on the point through the gate (``services.point_drill_record``);
``seconds`` is wall time (``time.monotonic``) from the start of the restore to the end of
the re-hash: the evidence of the restore time. A failure of the data (a damaged or missing
chunk or manifest, a mismatch) is a failed drill and raises the ``drill_failed`` security
alert naming the first bad file; a damaged chunk also marks the point corrupt, as a
verification would (``runner.POINT_READERS``). The scratch area failing (disk full) fails
the job without judging the point. The scratch copy is always removed; a worker killed
mid-drill leaves it to the jobs sweep (``drills.scratch_sweep``).
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections import OrderedDict
from pathlib import Path

from portal import clock

from ... import rules, services
from ...locations import vault_store
from ...models import Job, RecoveryPoint
from ...storage import StorageError, VaultStore
from ...storage.manifest import KIND_FILE, Manifest
from ..drills import drill_root, drill_root_refusal, scratch_create, scratch_remove
from ..requests import archived_refusal
from ..state import Heartbeat, JobFailed, finish, point_of

logger = logging.getLogger(__name__)

RECENT_CHUNKS = 4  # shared chunks of packed small files kept at hand while re-reading


class Mismatch(Exception):
    """A restored file differs from the manifest; the message says how."""


def run(job: Job, beat: Heartbeat) -> None:
    point = point_of(job)
    store = vault_store(point.vault)
    if point.is_archived and not (
        point.is_rehydrated(clock.now()) and store.has_point(point.storage_key)
    ):
        raise JobFailed(archived_refusal(point, "drill it").detail)
    refusal = drill_root_refusal()
    if refusal is not None:
        raise JobFailed(refusal)
    try:
        scratch = scratch_create(job.pk)
    except OSError as exc:
        raise JobFailed(f"The drill's scratch directory could not be made: {exc}") from None
    current = {"path": ""}  # the file the restore is writing, for a failure to name
    started = time.monotonic()
    try:
        try:
            manifest = store.manifest(point.storage_key)
            paths = [node.path for node in manifest.nodes if node.path]
            total = 2 * manifest.logical_bytes  # restored, then read back

            def on_file(done: int, count: int) -> None:
                current["path"] = paths[done] if done < len(paths) else ""
                beat.files(done, count)

            store.restore(
                point.storage_key,
                scratch,
                allowed_roots=[drill_root()],
                forbidden_roots=rules.restore_forbidden_roots(),
                progress=lambda done, _total: beat(done, total),
                file_progress=on_file,
            )
            files, size = _check(store, manifest, scratch, beat, current)
        except (StorageError, Mismatch) as exc:
            first = current["path"]
            _failed(point, started, str(exc), first)
            raise JobFailed(
                f"The restore drill of recovery point {point.pk} failed"
                f"{f' at {first}' if first else ''}: {exc}"
            ) from exc
        except OSError as exc:
            raise JobFailed(
                f"The drill's scratch area failed ({exc}); the point was not judged. Check "
                "the space and permissions of HOLDFAST_DRILL_ROOT."
            ) from None
    finally:
        try:
            scratch_remove(scratch)
        except OSError as exc:  # the jobs sweep tries again
            logger.warning("drill scratch %s not removed: %s", scratch, exc)
    seconds = round(time.monotonic() - started, 3)
    services.point_drill_record(
        point,
        {
            "status": "passed",
            "at": clock.now().isoformat(),
            "files": files,
            "bytes": size,
            "seconds": seconds,
        },
    )
    finish(job, done=size, total=size, files=files)


def _failed(point: RecoveryPoint, started: float, error: str, first_bad: str) -> None:
    services.point_drill_record(
        point,
        {
            "status": "failed",
            "at": clock.now().isoformat(),
            "files": 0,
            "bytes": 0,
            "seconds": round(time.monotonic() - started, 3),
            "error": error,
            "first_bad": first_bad,
        },
    )


def _check(
    store: VaultStore, manifest: Manifest, scratch: Path, beat: Heartbeat, current: dict[str, str]
) -> tuple[int, int]:
    """Re-read every file of the scratch copy against the manifest; (files, bytes).
    ``current["path"]`` names the file being checked, for a failure to name."""
    recent: OrderedDict[str, bytes] = OrderedDict()
    files = size = 0
    logical = manifest.logical_bytes
    for node in manifest.nodes:
        if node.kind != KIND_FILE:
            continue
        current["path"] = node.path
        try:
            fd = os.open(scratch / node.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise Mismatch(f"{node.path} is missing from the restored copy") from None
        with os.fdopen(fd, "rb") as restored:
            found = os.fstat(restored.fileno())
            if not stat.S_ISREG(found.st_mode):
                raise Mismatch(f"{node.path} was not restored as a regular file")
            if found.st_size != node.size:
                raise Mismatch(f"{node.path} has {found.st_size} bytes, not {node.size}")
            for digest, offset, length in node.extents:
                data = restored.read(length)
                whole = offset == 0 and length == manifest.chunks.get(digest)
                if whole:
                    same = store.backend.chunk_matches(digest, data)
                else:
                    if digest not in recent:
                        recent[digest] = store.read_chunk(digest, manifest.chunks.get(digest))
                        if len(recent) > RECENT_CHUNKS:
                            recent.popitem(last=False)
                    same = recent[digest][offset : offset + length] == data
                if not same:
                    raise Mismatch(f"the bytes of {node.path} differ from chunk {digest}")
            if restored.read(1):
                raise Mismatch(f"{node.path} is longer than the manifest says")
        files += 1
        size += node.size
        beat(logical + size, 2 * logical)
    current["path"] = ""
    on_disk = sum(
        1
        for folder, _dirs, names in os.walk(scratch)
        for name in names
        if stat.S_ISREG(os.lstat(os.path.join(folder, name)).st_mode)
    )
    if on_disk != files:
        raise Mismatch(f"the restored copy holds {on_disk} files, the manifest {files}")
    return files, size
