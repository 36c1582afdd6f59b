"""The scratch area of restore drills (SPEC 3.12): where a drill may write, and its clean-up.

A drill restores into ``<HOLDFAST_DRILL_ROOT>/drill-<job id>-<random>`` and removes it when
it ends, passed or failed. A worker killed mid-drill cannot: the jobs sweep removes every
``drill-*`` directory whose job is not running (:func:`scratch_sweep`). Removal refuses any
path that is not such a directory directly under the drill root, so a misconfigured root
or a planted symlink never turns clean-up into deleting something else.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
from pathlib import Path

from django.conf import settings

from ..models import Job
from ..storage import StorageError

logger = logging.getLogger(__name__)

SCRATCH_RE = re.compile(r"drill-(\d+)-[0-9a-f]{16}")


def drill_root() -> Path:
    return Path(os.path.abspath(settings.HOLDFAST_DRILL_ROOT)).resolve()


def drill_root_refusal() -> str | None:
    """Why drills cannot run with the configured drill root, or None when they can: it must
    neither lie in nor hold a restore root, the vault storage or the audit anchors."""
    root = drill_root()
    others = [
        *(("restore root", Path(p)) for p in settings.HOLDFAST_RESTORE_ROOTS),
        ("vault storage", Path(settings.HOLDFAST_STORAGE_ROOT)),
        ("audit anchors", Path(settings.HOLDFAST_AUDIT_ANCHOR_DIR)),
    ]
    for what, path in others:
        other = Path(os.path.abspath(path)).resolve()
        if root.is_relative_to(other) or other.is_relative_to(root):
            return (
                f"HOLDFAST_DRILL_ROOT ({root}) overlaps the {what} {other}: a drill's scratch "
                "copy must stay apart from restores and storage. Point HOLDFAST_DRILL_ROOT at "
                "a directory of its own."
            )
    return None


def scratch_create(job_id: int) -> Path:
    """A new, empty scratch directory for the drill job ``job_id`` (mode 0700)."""
    refusal = drill_root_refusal()
    if refusal is not None:
        raise StorageError(refusal)
    root = drill_root()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"drill-{job_id}-{secrets.token_hex(8)}"
    path.mkdir(mode=0o700)
    return path


def scratch_remove(path: Path) -> None:
    """Remove a drill's scratch directory, only if it is one directly under the drill root."""
    root = drill_root()
    if path.parent != root or not SCRATCH_RE.fullmatch(path.name) or path.is_symlink():
        raise StorageError(f"{path} is not a drill scratch directory under {root}: kept.")
    if path.exists():
        shutil.rmtree(path)


def scratch_sweep() -> int:
    """Remove the scratch directories of drills whose job no longer runs (a worker killed
    mid-drill); returns how many went."""
    root = drill_root()
    if not root.is_dir():
        return 0
    found = {}
    for entry in os.scandir(root):
        match = SCRATCH_RE.fullmatch(entry.name)
        if match and entry.is_dir(follow_symlinks=False):
            found[entry.name] = int(match.group(1))
    running = set(
        Job.objects.filter(pk__in=set(found.values()), status=Job.Status.RUNNING).values_list(
            "pk", flat=True
        )
    )
    removed = 0
    for name, job_id in sorted(found.items()):
        if job_id in running:
            continue
        try:
            scratch_remove(root / name)
        except OSError as exc:
            logger.warning("drill scratch %s not removed: %s", name, exc)
            continue
        removed += 1
    return removed
