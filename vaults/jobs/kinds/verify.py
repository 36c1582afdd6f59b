"""A verification job: re-read and re-hash a point; mark it verified or corrupt."""

from __future__ import annotations

from portal import clock

from ... import services
from ...locations import vault_store
from ...models import Job
from ...storage import PointNotFound
from ..state import Heartbeat, JobFailed, finish, point_of


def run(job: Job, beat: Heartbeat) -> None:
    point = point_of(job)
    store = vault_store(point.vault)
    if point.is_archived and not store.has_point(point.storage_key):
        raise JobFailed(
            f"Recovery point {point.pk} is archived: it is verified when it is rehydrated."
        )
    try:
        result = store.verify(point.storage_key, progress=beat)
    except PointNotFound:
        result = None
    now = clock.now()
    if result is None or not result.ok:
        if result is None:
            detail = "its manifest is missing from the store"
        else:
            first = (result.bad_chunks + result.missing_chunks)[0]
            detail = (
                f"{len(result.bad_chunks)} corrupt and {len(result.missing_chunks)} missing "
                f"chunk(s) of {result.checked_chunks} (first: {first})"
            )
        services.point_flag("point_mark_corrupt", point, corrupted_at=now, corruption=detail)
        raise JobFailed(
            f"Verification of recovery point {point.pk} found {detail}; the point is marked "
            "corrupt. Take a new backup and restore from another point."
        )
    if result.manifest_digest != point.digest:
        detail = "its manifest digest does not match the one recorded"
        services.point_flag("point_mark_corrupt", point, corrupted_at=now, corruption=detail)
        raise JobFailed(f"Verification of recovery point {point.pk}: {detail}.")
    services.point_flag("point_mark_verified", point, verified_at=now)
    finish(job, done=result.checked_chunks, total=result.checked_chunks)
