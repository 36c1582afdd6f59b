"""A tier move: a point's data into the archive tier (SPEC 3.6); its expiry is kept."""

from __future__ import annotations

from portal import clock, gate
from portal.gate import Check

from ...locations import archive_store, vault_store
from ...models import Job, RecoveryPoint
from ...storage import PointNotFound
from ...storage.errors import ObjectLocked, PointRetained
from ...storage_notes import point_retention
from ..state import Heartbeat, finish, point_of

Tier = RecoveryPoint.Tier


def run(job: Job, beat: Heartbeat) -> None:
    point = point_of(job)
    if point.is_archived:
        finish(job)
        return
    store, archive = vault_store(point.vault), archive_store(point.vault)
    retention = point_retention(point.vault, point.expires_at, operational=False)
    if not archive.has_point(point.storage_key):
        result = archive.archive_point(store, point.storage_key, retention=retention)
        beat(result.logical_bytes, result.logical_bytes)
    elif retention is not None:  # a copy left by an attempt that died: lock it before use
        archive.apply_retention(point.storage_key, retention)

    def change(check: Check) -> None:
        # The expiry is untouched: a point keeps it through every move (SPEC 3.7).
        RecoveryPoint.objects.filter(pk=point.pk).update(
            tier=Tier.VAULT_ARCHIVE, archived_at=check.now, snapshot_expires_at=None
        )

    gate.execute(
        "point_tier_move",
        actor=None,
        vault=point.vault,
        target=f"point:{point.pk}",
        before=point.audit_state(),
        change=change,
        after=lambda _: {"tier": Tier.VAULT_ARCHIVE},
    )
    # Only once the move is recorded does the standard copy go; GC reclaims its chunks. On
    # S3 the standard copy may be under an object lock until the point's expiry: it then
    # stays (restores still go through rehydration) and the job says so.
    try:
        store.delete_point(point.storage_key, now=clock.now(), copy_in=archive)
    except PointNotFound:
        pass
    except (ObjectLocked, PointRetained) as exc:
        note = f"The standard-tier copy stays until its storage lock ends: {exc}"
        Job.objects.filter(pk=job.pk).update(params={**job.params, "note": note})
    finish(job, done=beat.done, total=beat.total)
