"""Storage lock jobs (S3 Object Lock, SPEC 6): lock a vault's existing objects until their
points' expiries, and read every lock back (the lock verification)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from portal import clock, gate
from portal.alerts import raise_alert
from portal.gate import Check

from ...locations import archive_store, vault_store
from ...models import Job, RecoveryPoint, Vault
from ...storage import PointNotFound, StorageError
from ...storage.backends import Retention
from ...storage_notes import point_retention
from ..requests import object_lock_missing
from ..state import Heartbeat, JobFailed, finish

# A point whose expiry is this close is not given a lock: the storage would refuse a date
# that has passed by the time the request arrives.
LOCK_MARGIN = timedelta(minutes=5)


def _lock_candidates(vault: Vault, now: datetime) -> list[RecoveryPoint]:
    return list(
        RecoveryPoint.objects.filter(vault=vault, expires_at__gt=now)
        .exclude(storage_key="")
        .select_related("item")
        .order_by("created_at", "id")
    )


def _require_object_lock(vault: Vault) -> None:
    reason = object_lock_missing(vault)
    if reason is not None:
        raise JobFailed(reason)


def run_storage_lock(job: Job, beat: Heartbeat) -> None:
    """Set every unexpired point's retention on its objects (never shortening one), then
    read the locks back as a lock verification does."""
    vault = job.vault
    assert vault is not None
    _require_object_lock(vault)
    now = clock.now()
    store, archive = vault_store(vault), archive_store(vault)
    standard: dict[str, Retention] = {}
    archived: dict[str, Retention] = {}
    for point in _lock_candidates(vault, now + LOCK_MARGIN):
        wanted = point_retention(vault, point.expires_at, operational=point.is_operational_only)
        if wanted is not None:
            (archived if point.is_archived else standard)[point.storage_key] = wanted
    result = store.apply_retention(standard)
    extended = result.extended
    failed = list(result.failed)
    for key, wanted in archived.items():
        try:
            extended += archive.apply_retention(key, wanted)
        except PointNotFound:
            continue
        except StorageError as exc:
            failed.append(str(exc))
    beat(len(standard) + len(archived), len(standard) + len(archived))
    Job.objects.filter(pk=job.pk).update(
        params={
            **job.params,
            "points": len(standard) + len(archived),
            "objects": result.objects,
            "extended": extended,
            "missing": len(result.missing),
            "refused": failed[:20],
        }
    )
    _verify_locks(job, vault, now)
    if failed:  # reached only when every lock read back covers its point: say what was refused
        raise JobFailed(
            f"The storage refused {len(failed)} retention change(s) (first: {failed[0]}); "
            "the locks read back still cover every point."
        )


def run_lock_verify(job: Job, beat: Heartbeat) -> None:
    vault = job.vault
    assert vault is not None
    _require_object_lock(vault)
    _verify_locks(job, vault, clock.now())


def _verify_locks(job: Job, vault: Vault, now: datetime) -> None:
    """Read back every object's retention and legal hold; record per point the date until
    which the storage itself confirms the lock, and alert on any missing or short lock."""
    store, archive = vault_store(vault), archive_store(vault)
    cache: dict[str, Any] = {}
    found: dict[int, dict[str, Any]] = {}
    problems: list[str] = []
    objects = 0
    for point in _lock_candidates(vault, now):
        wanted = point_retention(vault, point.expires_at, operational=point.is_operational_only)
        try:
            if point.is_archived:
                lock = archive.point_lock(point.storage_key, wanted)
            else:
                lock = store.point_lock(point.storage_key, wanted, cache)
        except PointNotFound:
            problem = "its manifest is missing from the storage"
            found[point.pk] = {"until": None, "mode": "", "problem": problem}
            problems.append(f"point {point.pk}: {problem}")
            continue
        objects += lock.objects
        problem = ""
        if wanted is not None and lock.missing:
            problem = f"{len(lock.missing)} object(s) missing, e.g. {lock.missing[0]}"
        elif wanted is not None and lock.short:
            problem = (
                f"{len(lock.short)} of {lock.objects} object(s) locked for less than the "
                f"expiry {point.expires_at:%Y-%m-%d %H:%M} UTC, e.g. {lock.short[0]}"
            )
        found[point.pk] = {"until": lock.until, "mode": lock.mode or "", "problem": problem}
        if problem:
            problems.append(f"point {point.pk}: {problem}")

    def change(check: Check) -> int:
        rows = [
            RecoveryPoint(
                pk=pk,
                storage_locked_until=seen["until"],
                storage_lock_mode=seen["mode"],
                storage_lock_problem=seen["problem"],
                storage_lock_checked_at=check.now,
            )
            for pk, seen in found.items()
        ]
        RecoveryPoint.objects.bulk_update(
            rows,
            [
                "storage_locked_until",
                "storage_lock_mode",
                "storage_lock_problem",
                "storage_lock_checked_at",
            ],
            batch_size=500,
        )
        if problems:
            raise_alert(
                "storage_lock_missing",
                vault_name=vault.name,
                target=f"vault:{vault.name}",
                message=f"The storage does not hold the lock of {len(problems)} recovery "
                f"point(s) of vault {vault.name} until their expiry: " + "; ".join(problems[:5]),
            )
        return len(found)

    gate.execute(
        "point_lock_verified",
        actor=None,
        vault=vault,
        target=f"vault:{vault.name}",
        change=change,
        after=lambda n: {"points": n, "objects": objects, "problems": len(problems)},
    )
    Job.objects.filter(pk=job.pk).update(
        params={
            **Job.objects.get(pk=job.pk).params,
            "checked_points": len(found),
            "checked_objects": objects,
            "problems": problems[:20],
        }
    )
    if problems:
        raise JobFailed(
            f"{len(problems)} recovery point(s) are not locked by the storage until their "
            f"expiry (first: {problems[0]}); a security alert was raised."
        )
    finish(job, done=objects, total=objects)
