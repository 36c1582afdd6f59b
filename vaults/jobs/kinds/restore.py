"""A restore job: a point, or part of it, written under a restore root."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from django.conf import settings

from portal import clock

from ... import rules
from ...locations import vault_store
from ...models import Job
from ...storage import PointNotFound
from ...storage.manifest import KIND_FILE
from ...storage.restore import select_nodes
from ...storage.writer import Progress
from ..requests import archived_refusal
from ..state import Heartbeat, JobFailed, finish, point_of
from . import postgres


def _offset(report: Progress, base: int, total: int, done: int, _part_total: int) -> None:
    """One path's progress as part of the whole selection's."""
    report(base + done, total)


def run(job: Job, beat: Heartbeat) -> None:
    point = point_of(job)
    store = vault_store(point.vault)
    if point.is_archived and not (
        point.is_rehydrated(clock.now()) and store.has_point(point.storage_key)
    ):
        raise JobFailed(archived_refusal(point).detail)
    if postgres.is_database_point(point):
        try:
            return postgres.restore_run(job, point, store, beat)
        except PointNotFound:
            raise JobFailed(
                f"The data of recovery point {point.pk} is missing from the store."
            ) from None
    params = job.params
    # A selection of files and folders restores one after the other into the same target.
    sub_paths = params.get("sub_paths") or [params.get("sub_path", "")]
    restored = files = 0
    try:
        # The selection's totals, so one bar runs across every path; and every path is in
        # the point, or nothing is written (not half a selection).
        nodes = store.manifest(point.storage_key).nodes
        chosen = [select_nodes(nodes, sub_path) for sub_path in sub_paths]
        all_bytes = sum(n.size for picked in chosen for n in picked if n.kind == KIND_FILE)
        all_entries = sum(len(picked) for picked in chosen)
        for sub_path in sub_paths:
            before_bytes, before_files = restored, files
            result = store.restore(
                point.storage_key,
                Path(params["target_path"]),
                allowed_roots=settings.HOLDFAST_RESTORE_ROOTS,
                # Judged again on what the target leads to now (a symlink swapped in since).
                forbidden_roots=rules.restore_forbidden_roots(),
                sub_path=sub_path,
                overwrite=bool(params.get("overwrite")),
                progress=partial(_offset, beat, before_bytes, all_bytes),
                file_progress=partial(_offset, beat.files, before_files, all_entries),
            )
            restored += result.restored_bytes
            files += result.files + result.dirs + result.symlinks
    except PointNotFound:
        raise JobFailed(
            f"The data of recovery point {point.pk} is missing from the store."
        ) from None
    finish(job, done=restored, total=restored, files=files)
