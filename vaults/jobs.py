"""Jobs (SPEC 3.8): backups, restores, verification, tier moves, rehydration and sweeps.

The database is the source of truth for what must run. A job is a ``Job`` row; Celery only
carries its id. A worker claims a queued job with a compare-and-set (``UPDATE ... WHERE
status = 'queued'``), so a message delivered twice (Redis redelivery, a retried task, two
beats) runs the work once. A scheduled backup's (item, slot) is unique, so two dispatchers
racing create one job. A running job heartbeats from a side thread; a job whose heartbeat
went stale (its worker was killed) is failed by :func:`jobs_fail_stale`.

A recovery point row is recorded only after the store has published the point's manifest,
in the same transaction that completes the job: no half point is ever visible. The data
plane is ``vaults.storage``; docs/jobs.md describes the whole flow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    transaction,
)
from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_datetime
from kombu.exceptions import OperationalError as BrokerUnavailable

from policies import rules
from portal import clock, gate
from portal.alerts import raise_alert
from portal.gate import Check, DomainError
from portal.models import Approval
from portal.validators import check_storable

from . import services, stores
from .models import Job, ProtectedItem, RecoveryPoint, Vault
from .storage import (
    ArchiveStore,
    ConcurrentGcConflict,
    PointNotFound,
    RestoreRefused,
    StorageError,
    VaultStore,
    entries_of,
)
from .storage.backends import LocalBackend, Retention
from .storage.errors import ObjectArchived, ObjectLocked, PointRetained
from .storage.holds import Holds
from .storage.restore import resolve_target
from .stores import archive_store, point_retention, point_terms, vault_store

__all__ = ["archive_store", "vault_store"]  # re-exported: callers and tests use jobs.*

logger = logging.getLogger(__name__)

# A slot missed for up to this long (beat down, a deploy) still runs once; older ones don't.
DISPATCH_LOOKBACK = timedelta(hours=1)
# A queued job whose message seems lost is sent again after this long (the claim is a CAS).
REQUEUE_AFTER = timedelta(minutes=10)
VERIFY_EVERY = timedelta(days=7)
REHYDRATE_DAYS = (10, 30)
REHYDRATE_DEFAULT_DAYS = 15
# A point whose expiry is this close is not given a lock: the storage would refuse a date
# that has passed by the time the request arrives.
LOCK_MARGIN = timedelta(minutes=5)
# SPEC 3.6 archive eligibility: monthly and yearly points, 90 days in the standard tier,
# at least 180 days of retention left.
ARCHIVE_MIN_AGE = timedelta(days=90)
ARCHIVE_MIN_REMAINING = timedelta(days=180)
ARCHIVE_TAGS = {"monthly", "yearly"}

Status = Job.Status
Kind = Job.Kind
Tier = RecoveryPoint.Tier


class JobFailed(Exception):
    """A job cannot finish; the message is shown to people as the job's error."""


def _heartbeat_seconds() -> float:
    return float(getattr(settings, "HOLDFAST_JOB_HEARTBEAT_SECONDS", 2.0))


def _stale_after() -> timedelta:
    return timedelta(seconds=float(getattr(settings, "HOLDFAST_JOB_STALE_SECONDS", 300)))


# --- stores ---------------------------------------------------------------------------------


def point_browse(point: RecoveryPoint, path: str = "") -> list[Any]:
    """A point's entries under ``path``, read from whichever tier holds its manifest, so even
    an archived point can be browsed without rehydrating it."""
    store = vault_store(point.vault)
    if store.has_point(point.storage_key):
        return store.list_dir(point.storage_key, path)
    manifest = archive_store(point.vault).manifest(point.storage_key)
    return entries_of(manifest, path, point.storage_key)


def job_state(job: Job) -> dict[str, Any]:
    return {
        "job": job.pk,
        "kind": job.kind,
        "status": job.status,
        "item": job.item.name if job.item_id and job.item else None,
        "recovery_point": job.recovery_point_id,
        "slot": job.slot.isoformat() if job.slot else None,
        "params": {k: v for k, v in job.params.items() if k != "storage_key"},
    }


QUEUE_DOWN = (
    "The job queue (Redis) could not be reached ({reason}). The job is recorded and stays "
    "queued: it is sent to a worker automatically once the queue is back, so there is no "
    "need to submit it again."
)


def _enqueue_on_commit(job: Job) -> None:
    """Send the job's id to a worker once the row is committed (never before)."""
    transaction.on_commit(lambda: _send(job))


def _send(job: Job) -> None:
    """Send ``job`` to the queue; if the broker is down, keep it queued and say so.

    The row and its audit record are already committed, so the request is not lost: the
    reason becomes the queued job's ``error`` (the page or API that asked shows it, see
    :func:`job_waiting_for_queue`), a backup or restore raises its job alert, and the job
    sweep re-sends every queued job with such an error until a worker claims it (the
    claim is a compare-and-set, so a message that did get through runs once anyway).
    """
    from . import tasks

    try:
        tasks.enqueue_job(job.pk)
    except (BrokerUnavailable, OSError) as exc:
        logger.warning("job %s not sent, the broker is unreachable: %s", job.pk, exc)
        first = not job.error
        job.error = QUEUE_DOWN.format(reason=exc)
        alert = FAILURE_ALERTS.get(job.kind) if first else None
        # The alert's own e-mail or webhook delivery goes through the same queue; the alert
        # row is committed before that is attempted, so that failure is dropped, not raised.
        with contextlib.suppress(BrokerUnavailable, OSError), transaction.atomic():
            updated = Job.objects.filter(pk=job.pk, status=Status.QUEUED).update(error=job.error)
            if updated and alert is not None:
                raise_alert(
                    alert,
                    vault_name=job.vault.name if job.vault else "",
                    target=f"item:{job.item.name}" if job.item else f"job:{job.pk}",
                    message=f"{job.get_kind_display()} job #{job.pk} could not be started "
                    f"yet: {job.error}",
                )
        return
    if job.error:  # a re-send by the sweep got through
        Job.objects.filter(pk=job.pk, status=Status.QUEUED).update(error="")
        job.error = ""


def job_waiting_for_queue(job: Job) -> bool:
    """Whether ``job`` was recorded but could not be sent yet (the broker was down)."""
    return job.status == Status.QUEUED and bool(job.error)


def _new_job(kind: str, *, now: datetime, **fields: Any) -> Job:
    # heartbeat_at doubles as "last sign of life": for a queued job, when it was sent.
    return Job.objects.create(kind=kind, created_at=now, heartbeat_at=now, **fields)


# --- requests: each is an audited operation through the gate ---------------------------------


def _job_request(
    op: str,
    kind: str,
    *,
    actor: Any,
    vault: Vault,
    target: str,
    precheck: Callable[[Check], None] | None = None,
    **job_fields: Any,
) -> Job:
    """The shape of every job request: through the gate, a queued Job row, sent on commit."""

    def change(check: Check) -> Job:
        job = _new_job(kind, now=check.now, vault=check.vault, requested_by=actor, **job_fields)
        _enqueue_on_commit(job)
        return job

    return gate.execute(
        op,
        actor=actor,
        vault=vault,
        target=target,
        precheck=precheck,
        change=change,
        after=job_state,
    )


def _require_protected(item: ProtectedItem) -> None:
    if item.protection_state != ProtectedItem.State.PROTECTED:
        raise DomainError(
            "validation_error",
            f"Backups of {item.name} are suspended ({item.get_protection_state_display()}): "
            "resume protection first.",
            field="item",
        )


def backup_request(*, actor: Any, item: ProtectedItem, retain_until: datetime | None = None) -> Job:
    """Queue an on-demand backup of ``item``, kept until ``retain_until`` when given."""
    check_storable(retain_until=retain_until)

    def precheck(check: Check) -> None:
        _require_protected(item)
        if retain_until is not None:
            services.retain_until_check(retain_until, check.now)

    return _job_request(
        "backup_run",
        Kind.BACKUP,
        actor=actor,
        vault=item.vault,
        target=f"item:{item.name}",
        precheck=precheck,
        item=item,
        params={
            "tier": Tier.SNAPSHOT_AND_VAULT,
            "on_demand": True,
            "retain_until": retain_until.isoformat() if retain_until else None,
        },
    )


def _check_restore_target(target_path: str) -> None:
    if not target_path or not Path(target_path).is_absolute():
        raise DomainError(
            "validation_error",
            "target_path: give an absolute directory path under a restore root.",
            field="target_path",
        )
    try:
        resolve_target(
            Path(target_path), settings.HOLDFAST_RESTORE_ROOTS, services.restore_forbidden_roots()
        )
    except RestoreRefused as exc:
        raise DomainError(
            "validation_error",
            f"target_path: {exc} Restores may only write under a configured restore root "
            "(HOLDFAST_RESTORE_ROOTS).",
            field="target_path",
        ) from None


def _archived_refusal(point: RecoveryPoint) -> DomainError:
    return DomainError(
        "point_archived",
        f"Recovery point {point.pk} is in the archive tier: rehydrate it first (10 to 30 days, "
        "standard or high priority), then restore it.",
    )


def restore_request(
    *,
    actor: Any,
    point: RecoveryPoint,
    target_path: str,
    sub_path: str = "",
    overwrite: bool = False,
) -> Job:
    """Queue a restore of ``point`` (or its ``sub_path``) into ``target_path``.

    Refused when the target lies outside ``HOLDFAST_RESTORE_ROOTS`` or the point sits in
    the archive tier without a live rehydrated copy.
    """
    check_storable(target_path=target_path, sub_path=sub_path)

    def precheck(check: Check) -> None:
        _check_restore_target(target_path)
        if point.is_archived and not point.is_rehydrated(check.now):
            raise _archived_refusal(point)

    return _job_request(
        "restore_start",
        Kind.RESTORE,
        actor=actor,
        vault=point.vault,
        target=f"point:{point.pk}",
        precheck=precheck,
        item=point.item,
        recovery_point=point,
        params={"target_path": target_path, "sub_path": sub_path, "overwrite": overwrite},
    )


def verify_request(*, actor: Any, point: RecoveryPoint) -> Job:
    """Queue a verification (re-read and re-hash) of ``point``; ``actor=None`` is the schedule."""

    return _job_request(
        "verify_start" if actor is not None else "verify_schedule",
        Kind.VERIFY,
        actor=actor,
        vault=point.vault,
        target=f"point:{point.pk}",
        item=point.item,
        recovery_point=point,
    )


def rehydrate_request(
    *,
    actor: Any,
    point: RecoveryPoint,
    days: int = REHYDRATE_DEFAULT_DAYS,
    priority: str = "standard",
) -> Job:
    """Queue the rehydration of an archived point into the standard tier for ``days``."""

    def precheck(check: Check) -> None:
        if not point.is_archived:
            raise DomainError(
                "validation_error", f"Recovery point {point.pk} is not in the archive tier."
            )
        low, high = REHYDRATE_DAYS
        if not low <= days <= high:
            raise DomainError(
                "validation_error", f"days: rehydrate for {low} to {high} days.", field="days"
            )
        if priority not in {"standard", "high"}:
            raise DomainError(
                "validation_error", "priority: 'standard' or 'high'.", field="priority"
            )

    return _job_request(
        "point_rehydrate",
        Kind.REHYDRATE,
        actor=actor,
        vault=point.vault,
        target=f"point:{point.pk}",
        precheck=precheck,
        item=point.item,
        recovery_point=point,
        params={"days": days, "priority": priority},
    )


# --- the dispatcher -------------------------------------------------------------------------


def _backup_tier(item: ProtectedItem, slot: datetime) -> str:
    """Enhanced intra-day runs are operational snapshots; the day's last run and every
    standard-policy run also land in the vault tier (SPEC 3.6)."""
    if rules.is_vault_tier_run(item.policy.schedule(), slot):
        return Tier.SNAPSHOT_AND_VAULT
    return Tier.SNAPSHOT


def _backup_schedule(item: ProtectedItem, slot: datetime) -> Job | None:
    """Create the backup job of (item, slot) unless it exists; the unique constraint on
    (item, slot) and the vault row lock of the gate make racing dispatchers agree."""

    def change(check: Check) -> tuple[Job, bool]:
        job, created = Job.objects.get_or_create(
            kind=Kind.BACKUP,
            item=item,
            slot=slot,
            defaults={
                "vault": check.vault,
                "created_at": check.now,
                "heartbeat_at": check.now,
                "params": {"tier": _backup_tier(item, slot), "on_demand": False},
            },
        )
        if created:
            _enqueue_on_commit(job)
        return job, created

    job, created = gate.execute(
        "backup_schedule",
        actor=None,
        vault=item.vault,
        target=f"item:{item.name}",
        change=change,
        after=lambda result: {**job_state(result[0]), "created": result[1]},
    )
    return job if created else None


def backups_dispatch(*, now: datetime | None = None) -> list[Job]:
    """Create (once) and enqueue the backup of every protected item's slots due in
    (now - lookback, now]. Safe to run any number of times, concurrently."""
    now = now or clock.now()
    start = now - DISPATCH_LOOKBACK + timedelta(microseconds=1)
    end = now + timedelta(microseconds=1)
    created: list[Job] = []
    items = ProtectedItem.objects.filter(
        protection_state=ProtectedItem.State.PROTECTED
    ).select_related("policy", "vault")
    for item in items:
        slots = rules.scheduled_slots(item.policy.schedule(), start, end)
        if not slots:
            continue
        existing = set(
            Job.objects.filter(kind=Kind.BACKUP, item=item, slot__in=slots).values_list(
                "slot", flat=True
            )
        )
        for slot in slots:
            if slot not in existing:
                job = _backup_schedule(item, slot)
                if job is not None:
                    created.append(job)
    return created


# --- running a job --------------------------------------------------------------------------


class _Heartbeat:
    """Progress kept in memory (the store reports it from its own threads) and written,
    with the heartbeat, every few seconds from a side thread with its own connection."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.done = 0
        self.total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"holdfast-job-{job_id}", daemon=True
        )

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        try:
            while not self._stop.wait(_heartbeat_seconds()):
                try:
                    Job.objects.filter(pk=self.job_id, status=Status.RUNNING).update(
                        bytes_done=self.done, bytes_total=self.total, heartbeat_at=clock.now()
                    )
                except DatabaseError as exc:
                    # The database restarted or is unreachable: a beat is lost, not the job.
                    # Drop the dead connection so the next beat opens a new one.
                    logger.warning("heartbeat of job %s missed: %s", self.job_id, exc)
                    connection.close()
        finally:
            connection.close()


def worker_name() -> str:
    return os.environ.get("HOLDFAST_WORKER_NAME") or f"{socket.gethostname()}:{os.getpid()}"


def job_claim(*, job_id: int) -> Job | None:
    """Compare-and-set a queued job to running; None if it is gone or someone else has it."""
    now = clock.now()
    claimed = Job.objects.filter(pk=job_id, status=Status.QUEUED).update(
        status=Status.RUNNING, started_at=now, heartbeat_at=now, error="", worker=worker_name()
    )
    if not claimed:
        return None
    return Job.objects.select_related("vault", "item__policy", "item__vault", "recovery_point").get(
        pk=job_id
    )


def _finish(
    job: Job, *, error: str = "", done: int | None = None, total: int | None = None
) -> None:
    fields: dict[str, Any] = {
        "status": Status.FAILED if error else Status.COMPLETED,
        "ended_at": clock.now(),
        "heartbeat_at": clock.now(),
        "error": error,
    }
    if done is not None:
        fields["bytes_done"] = done
    if total is not None:
        fields["bytes_total"] = total
    # Not conditioned on RUNNING: a job the stale sweep gave up on that did finish says so.
    Job.objects.filter(pk=job.pk).update(**fields)


FAILURE_ALERTS: dict[str, str] = {Kind.BACKUP: "backup_failed", Kind.RESTORE: "restore_failed"}


def _fail(job: Job, error: str) -> None:
    """Fail the job; a failed backup or restore raises its job alert (SPEC 3.8)."""
    with transaction.atomic():
        _finish(job, error=error)
        _alert_failure(job, error)


def _alert_failure(job: Job, error: str) -> None:
    alert = FAILURE_ALERTS.get(job.kind)
    if alert is None:
        return
    raise_alert(
        alert,
        vault_name=job.vault.name if job.vault else "",
        target=f"item:{job.item.name}" if job.item else f"job:{job.pk}",
        message=f"{job.get_kind_display()} job #{job.pk} failed: {error}",
    )


def with_database(fn: Callable[[], Any], *, attempts: int = 8) -> Any:
    """Run ``fn`` (one transaction's worth of work); if the database connection broke (a
    restart, a failover), reconnect and try again, for up to about 30 s in all. A job's
    storage work can outlive the connection it started with; its result is not lost.

    Inside a caller's transaction there is nothing to reconnect: ``fn`` just runs."""
    if connection.in_atomic_block:
        return fn()
    for attempt in range(attempts):
        if attempt:
            connection.close()
            time.sleep(min(0.25 * 2**attempt, 8.0))
        close_old_connections()  # health checks are on: a dead kept connection is replaced
        try:
            return fn()
        except (OperationalError, InterfaceError):
            if attempt == attempts - 1:
                raise
            logger.warning("database unreachable, retrying (%s/%s)", attempt + 1, attempts)
    return None  # pragma: no cover - the loop returns or raises


def _database_failure(exc: Exception) -> str:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"The database was unreachable while the job ran ({reason}). Nothing half-done is "
        "visible; run the job again."
    )


def job_run(*, job_id: int) -> Job | None:
    """Claim the job and run it to completed or failed; never raises for the job's own errors."""
    job = job_claim(job_id=job_id)
    if job is None:
        return None
    runner = RUNNERS[job.kind]
    try:
        with _Heartbeat(job.pk) as beat:
            runner(job, beat)
    except (JobFailed, StorageError, DomainError) as exc:
        with_database(partial(_fail, job, str(exc)))
    except (OperationalError, InterfaceError) as exc:
        logger.warning("job %s failed: the database was unreachable: %s", job.pk, exc)
        with_database(partial(_fail, job, _database_failure(exc)))
    except Exception as exc:
        logger.exception("job %s failed", job.pk)
        with_database(partial(_fail, job, f"{type(exc).__name__}: {exc}"))
    with_database(job.refresh_from_db)
    return job


def _point_of(job: Job) -> RecoveryPoint:
    point = job.recovery_point
    if point is None:
        raise JobFailed("The recovery point no longer exists (it expired or was deleted).")
    return point


def _run_backup(job: Job, beat: _Heartbeat) -> None:
    item = job.item
    if item is None or job.vault is None:
        raise JobFailed("The protected item no longer exists.")
    on_demand = bool(job.params.get("on_demand"))
    if not on_demand and item.protection_state != ProtectedItem.State.PROTECTED:
        raise JobFailed(f"Protection of {item.name} is stopped: scheduled backups are suspended.")
    store = vault_store(job.vault)
    # The newest earlier point still in the store lets unchanged files skip the read
    # (size, mtime, ctime, inode and device match; see docs/storage.md). Archived points
    # have left the store; looking at the newest few is enough.
    parent = next(
        (
            key
            for key in RecoveryPoint.objects.filter(item=item, vault=job.vault)
            .exclude(storage_key="")
            .order_by("-created_at", "-id")
            .values_list("storage_key", flat=True)[:10]
            if store.has_point(key)
        ),
        None,
    )
    tier = job.params.get("tier", Tier.VAULT_STANDARD)
    retain_until = parse_datetime(job.params.get("retain_until") or "")
    # The expiry the point will get, known before a byte is written, so that on S3 every
    # object is locked until then as it is written (SPEC 6); point_record recomputes the
    # same value from the same inputs.
    assert job.started_at is not None
    _tags, expires_at = services.point_expiry(item, job.started_at, retain_until, tier)
    retention = point_retention(job.vault, expires_at, operational=tier == Tier.SNAPSHOT)
    # The manifest records the same expiry: no sweep deletes the point before it (SPEC 8.3).
    terms = point_terms(job.vault, expires_at, operational=tier == Tier.SNAPSHOT)
    result = None
    for attempt in range(2):
        key = f"rp-{job.pk}-{uuid.uuid4().hex[:12]}"
        # Recorded first, so the orphan sweep never mistakes our manifest for garbage.
        with_database(
            partial(Job.objects.filter(pk=job.pk).update, params={**job.params, "storage_key": key})
        )
        try:
            result = store.backup(
                Path(item.source_path),
                key,
                progress=beat,
                parent=parent,
                retention=retention,
                terms=terms,
                # Judged again on what the backup opens: the directory protected may have
                # been swapped for a symlink into the store since (SPEC 8).
                check_source=services.backup_source_refusal,
            )
            break
        except ConcurrentGcConflict:
            if attempt:
                raise
    assert result is not None
    vault_pk = job.vault.pk

    def record() -> None:
        with transaction.atomic():
            # A retry after a commit whose answer was lost finds the point recorded already.
            if Job.objects.filter(pk=job.pk, recovery_point__isnull=False).exists():
                return
            point = services.point_record(
                item=item,
                created_at=job.started_at,
                retain_until=retain_until,
                tier=tier,
                logical_bytes=result.logical_bytes,
                stored_bytes=result.stored_bytes,
                digest=result.manifest_digest,
            )
            extra: dict[str, Any] = {"storage_key": key}
            if retention is not None:  # as written; lock_verify confirms it from the storage
                extra["storage_locked_until"] = retention.until
                extra["storage_lock_mode"] = retention.mode
            if tier == Tier.SNAPSHOT_AND_VAULT:
                days = item.policy.instant_restore_days
                extra["snapshot_expires_at"] = point.created_at + timedelta(days=days)
            RecoveryPoint.objects.filter(pk=point.pk).update(**extra)
            Job.objects.filter(pk=job.pk).update(recovery_point=point)
            _finish(job, done=result.logical_bytes, total=result.logical_bytes)
            # Immutability enabled or locked while this backup ran: the storage_lock job it
            # queued could not see this point yet; queue another now that the point exists.
            now_wanted = point_retention(
                Vault.objects.get(pk=vault_pk), expires_at, operational=tier == Tier.SNAPSHOT
            )
            if now_wanted is not None and (retention is None or retention.mode != now_wanted.mode):
                storage_lock_follow(point.vault)

    # The manifest is durable: a database that restarted meanwhile must not lose the point.
    with_database(record)


def _run_restore(job: Job, beat: _Heartbeat) -> None:
    point = _point_of(job)
    store = vault_store(point.vault)
    if point.is_archived and not (
        point.is_rehydrated(clock.now()) and store.has_point(point.storage_key)
    ):
        raise JobFailed(_archived_refusal(point).detail)
    params = job.params
    try:
        result = store.restore(
            point.storage_key,
            Path(params["target_path"]),
            allowed_roots=settings.HOLDFAST_RESTORE_ROOTS,
            # Judged again on what the target leads to now (a symlink swapped in since).
            forbidden_roots=services.restore_forbidden_roots(),
            sub_path=params.get("sub_path", ""),
            overwrite=bool(params.get("overwrite")),
            progress=beat,
        )
    except PointNotFound:
        raise JobFailed(
            f"The data of recovery point {point.pk} is missing from the store."
        ) from None
    _finish(job, done=result.restored_bytes, total=result.restored_bytes)


def _point_flag(op: str, point: RecoveryPoint, **fields: Any) -> None:
    def change(check: Check) -> None:
        RecoveryPoint.objects.filter(pk=point.pk).update(**fields)
        if op == "point_mark_corrupt":
            raise_alert(
                "corruption_found",
                vault_name=point.vault.name,
                target=f"point:{point.pk}",
                message=f"Recovery point {point.pk} of {point.item.name}: {fields['corruption']}.",
            )

    gate.execute(
        op,
        actor=None,
        vault=point.vault,
        target=f"point:{point.pk}",
        before=point.audit_state(),
        change=change,
        after=lambda _: {k: str(v) for k, v in fields.items()},
    )


def _run_verify(job: Job, beat: _Heartbeat) -> None:
    point = _point_of(job)
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
        _point_flag("point_mark_corrupt", point, corrupted_at=now, corruption=detail)
        raise JobFailed(
            f"Verification of recovery point {point.pk} found {detail}; the point is marked "
            "corrupt. Take a new backup and restore from another point."
        )
    if result.manifest_digest != point.digest:
        detail = "its manifest digest does not match the one recorded"
        _point_flag("point_mark_corrupt", point, corrupted_at=now, corruption=detail)
        raise JobFailed(f"Verification of recovery point {point.pk}: {detail}.")
    _point_flag("point_mark_verified", point, verified_at=now)
    _finish(job, done=result.checked_chunks, total=result.checked_chunks)


def _run_tier_move(job: Job, beat: _Heartbeat) -> None:
    point = _point_of(job)
    if point.is_archived:
        _finish(job)
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
    _finish(job, done=beat.done, total=beat.total)


def _run_rehydrate(job: Job, beat: _Heartbeat) -> None:
    point = _point_of(job)
    if not point.is_archived:
        raise JobFailed(f"Recovery point {point.pk} is not in the archive tier.")
    archive = archive_store(point.vault)
    days = int(job.params.get("days", REHYDRATE_DEFAULT_DAYS))
    tier = "Expedited" if job.params.get("priority") == "high" else "Standard"
    pending = archive.request_restore(point.storage_key, days=days, tier=tier)
    if pending:
        raise JobFailed(
            f"The archive storage is restoring {pending} object(s) of recovery point "
            f"{point.pk} from its cold storage class; this takes hours. Request the "
            "rehydration again later."
        )
    try:
        result = archive.rehydrate(point.storage_key, vault_store(point.vault))
    except ObjectArchived as exc:
        raise JobFailed(f"{exc} Request the rehydration again once it is restored.") from None
    until = clock.now() + timedelta(days=int(job.params.get("days", REHYDRATE_DEFAULT_DAYS)))
    if point.rehydrated_until is None or point.rehydrated_until < until:
        RecoveryPoint.objects.filter(pk=point.pk).update(rehydrated_until=until)
    _finish(job, done=result.stored_bytes, total=result.stored_bytes)


def _run_sweep(job: Job, beat: _Heartbeat) -> None:
    what = job.params.get("sweep", "points")
    failures: list[str] = []
    if what == "jobs":
        report = {"failed_stale_jobs": jobs_fail_stale()}
    elif what == "points":
        report = sweep_points()
    else:
        report = sweep_storage(failures=failures)
    Job.objects.filter(pk=job.pk).update(params={**job.params, "report": report})
    if failures:
        raise JobFailed(
            f"The storage of {len(failures)} vault(s) could not be swept ("
            + "; ".join(failures[:5])
            + "). The other vaults were swept; the next sweep tries these again."
        )
    _finish(job)


# --- storage locks (S3 Object Lock, SPEC 6) --------------------------------------------------


def _lock_candidates(vault: Vault, now: datetime) -> list[RecoveryPoint]:
    return list(
        RecoveryPoint.objects.filter(vault=vault, expires_at__gt=now)
        .exclude(storage_key="")
        .select_related("item")
        .order_by("created_at", "id")
    )


def _without_object_lock(vault: Vault) -> str | None:
    """Why the vault's storage locks cannot be checked, or None when they can."""
    if vault_store(vault).backend.supports_object_lock:
        return None
    return (
        f"Vault {vault.name} keeps its data on local disk, which has no object lock; "
        "storage locks apply to vaults on S3-compatible storage."
    )


def _require_object_lock(vault: Vault) -> None:
    reason = _without_object_lock(vault)
    if reason is not None:
        raise JobFailed(reason)


def storage_lock_request(vault: Vault) -> Job | None:
    """Queue the job that locks a vault's existing objects, after immutability is enabled
    or locked, or an expiry grew. Only for S3 vaults with immutability on; one at a time."""
    if point_retention(vault, clock.now(), operational=False) is None:
        return None  # local disk, or immutability off: nothing to lock
    if Job.objects.filter(vault=vault, kind=Kind.STORAGE_LOCK, status=Status.QUEUED).exists():
        return None
    return _job_request(
        "storage_lock_apply",
        Kind.STORAGE_LOCK,
        actor=None,
        vault=vault,
        target=f"vault:{vault.name}",
    )


def storage_lock_follow(vault: Vault) -> None:
    """Call inside the transaction that changed immutability or an expiry: once it commits,
    the vault's objects are brought up to their new locks by a job."""
    transaction.on_commit(lambda: _storage_lock_after_commit(vault))


def _storage_lock_after_commit(vault: Vault) -> None:
    # The change is committed; a storage that cannot be asked now must not turn it into an
    # error page. The vault's objects are then behind their lock: say so with an alert (the
    # weekly lock check would find it too).
    try:
        storage_lock_request(vault)
    except (StorageError, DomainError) as exc:
        logger.warning("storage lock job for vault %s not queued: %s", vault.name, exc)
        raise_alert(
            "storage_lock_missing",
            vault_name=vault.name,
            target=f"vault:{vault.name}",
            message=f"The objects of vault {vault.name} could not be given their new storage "
            f"lock: {getattr(exc, 'detail', exc)} Verify the storage locks once the storage "
            "answers.",
        )


def lock_verify_request(*, actor: Any, vault: Vault) -> Job:
    """Queue the read-back of every object lock of the vault's points; ``actor=None`` is the
    weekly schedule."""

    def precheck(check: Check) -> None:
        reason = _without_object_lock(vault)
        if reason is not None:
            raise DomainError("validation_error", reason)

    return _job_request(
        "lock_verify_start" if actor is not None else "lock_verify_schedule",
        Kind.LOCK_VERIFY,
        actor=actor,
        vault=vault,
        target=f"vault:{vault.name}",
        precheck=precheck,
    )


def _run_storage_lock(job: Job, beat: _Heartbeat) -> None:
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


def _run_lock_verify(job: Job, beat: _Heartbeat) -> None:
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
    _finish(job, done=objects, total=objects)


def lock_verifications_schedule(*, now: datetime | None = None) -> list[Job]:
    """Weekly per S3 vault: read every storage lock back."""
    now = now or clock.now()
    jobs = []
    for vault in Vault.objects.filter(storage_location__startswith="s3://"):
        recent = Job.objects.filter(
            vault=vault, kind=Kind.LOCK_VERIFY, created_at__gt=now - VERIFY_EVERY
        )
        if not recent.exists():
            jobs.append(lock_verify_request(actor=None, vault=vault))
    return jobs


RUNNERS: dict[str, Callable[[Job, _Heartbeat], None]] = {
    Kind.BACKUP: _run_backup,
    Kind.RESTORE: _run_restore,
    Kind.VERIFY: _run_verify,
    Kind.TIER_MOVE: _run_tier_move,
    Kind.REHYDRATE: _run_rehydrate,
    Kind.SWEEP: _run_sweep,
    Kind.STORAGE_LOCK: _run_storage_lock,
    Kind.LOCK_VERIFY: _run_lock_verify,
}


# --- sweeps ---------------------------------------------------------------------------------


def jobs_fail_stale(*, now: datetime | None = None) -> int:
    """Fail running jobs whose heartbeat stopped (their worker died), and re-send queued
    jobs whose message seems lost or could not be sent (the broker was down: their error
    says so). Nothing a dead backup wrote is visible: its point has no manifest, and GC
    reclaims its chunks once its store lease expires."""
    now = now or clock.now()
    cutoff = now - _stale_after()
    failed = 0
    running = Job.objects.filter(status=Status.RUNNING, heartbeat_at__lt=cutoff)
    for job in running.select_related("vault", "item"):
        error = (
            f"The worker running this job stopped responding (last heartbeat "
            f"{job.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC); it was probably killed. Nothing "
            "it wrote is visible; the next run starts afresh."
        )
        with transaction.atomic():
            if Job.objects.filter(
                pk=job.pk, status=Status.RUNNING, heartbeat_at=job.heartbeat_at
            ).update(status=Status.FAILED, ended_at=now, error=error):
                _alert_failure(job, error)
                failed += 1
    lost = Job.objects.filter(status=Status.QUEUED).filter(
        Q(heartbeat_at__lt=now - REQUEUE_AFTER) | ~Q(error="")
    )
    for job in lost.select_related("vault", "item"):
        if Job.objects.filter(pk=job.pk, heartbeat_at=job.heartbeat_at).update(heartbeat_at=now):
            _enqueue_on_commit(job)
    return failed


def approvals_expire(*, now: datetime | None = None) -> int:
    """Close pending approvals past their expiry (their effective status already says so)."""
    now = now or clock.now()
    count = 0
    for approval in Approval.objects.filter(status=Approval.Status.PENDING, expires_at__lte=now):

        def refresh(facts: dict[str, Any], pk: int = approval.pk) -> None:
            facts["approval"] = Approval.objects.select_for_update().get(pk=pk)

        def change(check: Check) -> bool:
            locked: Approval = check.facts["approval"]
            if locked.effective_status(check.now) != Approval.Status.EXPIRED:
                return False
            locked.status = Approval.Status.EXPIRED
            locked.decided_at = check.now
            locked.save(update_fields=["status", "decided_at"])
            return True

        if gate.execute(
            "approval_expire",
            actor=None,
            vault=approval.vault,
            target=f"approval:{approval.pk}:{approval.kind}",
            facts={"approval": approval},
            refresh=refresh,
            change=change,
            after=lambda changed: {"status": "expired" if changed else "unchanged"},
        ):
            count += 1
    return count


def _delete_point_data(vault: Vault, key: str, now: datetime) -> None:
    """Remove a point's data from both tiers. An object the storage still locks (its clock
    is behind ours, or a legal hold) is left and logged; the orphan sweep retries it once
    its lock has ended. A point the storage itself was told to keep longer than the row
    says (the row was changed outside Holdfast) stays too: the orphan sweep reports it."""
    if not key:
        return
    for store in (vault_store(vault), archive_store(vault)):
        try:
            store.delete_point(key, now=now)
        except PointNotFound:
            pass
        except (ObjectLocked, PointRetained) as exc:
            logger.warning("point data %s of vault %s kept: %s", key, vault.name, exc)


def points_expire(*, now: datetime | None = None) -> int:
    """Remove points past their expiry, rows through the gate (which always allows it, even
    in an immutable vault) and then their data; GC then frees the unreferenced chunks."""
    now = now or clock.now()
    count = 0
    # Soft-deleted points (SPEC 3.3) wait for the end of their soft-delete period.
    expired = RecoveryPoint.objects.filter(expires_at__lte=now).exclude(soft_deleted_until__gt=now)
    for point in expired.select_related("vault", "item"):
        vault, key = point.vault, point.storage_key
        if Job.objects.filter(recovery_point=point, status=Status.RUNNING).exists():
            continue  # a restore is reading it; next sweep
        try:
            services.point_expire(point=point)
        except DomainError as exc:
            logger.warning("point %s not expired: %s", point.pk, exc.detail)
            continue
        _delete_point_data(vault, key, now)
        count += 1
    return count


def snapshots_lapse(*, now: datetime | None = None) -> int:
    """A snapshot_and_vault point whose instant-restore days are over is vault-standard."""
    now = now or clock.now()
    points = RecoveryPoint.objects.filter(
        tier=Tier.SNAPSHOT_AND_VAULT, snapshot_expires_at__lte=now
    ).select_related("vault", "item")
    for point in points:
        _point_flag("point_snapshot_lapse", point, tier=Tier.VAULT_STANDARD)
    return len(points)


def rehydrations_end(*, now: datetime | None = None) -> int:
    """Drop standard-tier copies of archived points whose rehydration period is over."""
    now = now or clock.now()
    count = 0
    points = RecoveryPoint.objects.filter(
        tier=Tier.VAULT_ARCHIVE, rehydrated_until__lte=now
    ).select_related("vault", "item")
    for point in points:
        if Job.objects.filter(recovery_point=point, status=Status.RUNNING).exists():
            continue
        _point_flag("point_rehydration_end", point, rehydrated_until=None)
        # Only while the archive holds its copy: the storage keeps the point otherwise.
        with contextlib.suppress(PointNotFound, ObjectLocked, PointRetained):
            vault_store(point.vault).delete_point(
                point.storage_key, now=now, copy_in=archive_store(point.vault)
            )
        count += 1
    return count


def tier_moves_schedule(*, now: datetime | None = None) -> list[Job]:
    """Queue tier moves for points the policy's tiering rule makes eligible (SPEC 3.6).

    ``after``: N days (at least 90) after creation. ``recommended``: as soon as a point is
    eligible, since archive storage costs a fraction of standard and an eligible point is
    certain to stay the 180 days archive bills at minimum (docs/jobs.md has the model).
    """
    now = now or clock.now()
    jobs: list[Job] = []
    candidates = (
        RecoveryPoint.objects.filter(
            tier__in=[Tier.VAULT_STANDARD, Tier.SNAPSHOT_AND_VAULT],
            corrupted_at__isnull=True,
            expires_at__gte=now + ARCHIVE_MIN_REMAINING,
            created_at__lte=now - ARCHIVE_MIN_AGE,
        )
        .exclude(item__policy__tiering_mode="off")
        .select_related("item__policy", "vault")
    )
    for point in candidates:
        policy = point.item.policy
        if not ARCHIVE_TAGS & set(point.tags):
            continue
        if point.jobs.filter(
            kind=Kind.TIER_MOVE, status__in=[Status.QUEUED, Status.RUNNING]
        ).exists():
            continue
        if policy.tiering_mode == "after" and point.created_at > now - timedelta(
            days=max(90, policy.tiering_after_days or 90)
        ):
            continue
        job = _new_job(
            Kind.TIER_MOVE, now=now, vault=point.vault, item=point.item, recovery_point=point
        )
        _enqueue_on_commit(job)
        jobs.append(job)
    return jobs


def verifications_schedule(*, now: datetime | None = None) -> list[Job]:
    """Weekly per vault: verify each item's newest standard-tier point not verified lately."""
    now = now or clock.now()
    jobs = []
    for item in ProtectedItem.objects.select_related("vault"):
        point = (
            item.recovery_points.exclude(tier=Tier.VAULT_ARCHIVE)
            .filter(corrupted_at__isnull=True)
            .order_by("-created_at")
            .first()
        )
        if point is None or (point.verified_at and point.verified_at > now - VERIFY_EVERY):
            continue
        if point.jobs.filter(kind=Kind.VERIFY, status__in=[Status.QUEUED, Status.RUNNING]).exists():
            continue
        jobs.append(verify_request(actor=None, point=point))
    return jobs


def orphans_remove(
    vault: Vault, report: dict[str, int] | None = None, *, now: datetime | None = None
) -> int:
    """Delete points of either tier that no point row names and no running job is writing,
    once the storage itself no longer keeps them (SPEC 8.3): the retain-until their manifest
    records, raised by later notes, has passed, or a release was noted (a point deleted by a
    person, or purged). That covers a backup that crashed between its manifest and its row
    (once its expiry has passed) and data whose deletion the storage refused while its lock
    lasted. A point the storage must still keep is kept whatever the database says: counted
    (``kept_unknown``), audited and raised as one ``point_missing`` security alert per vault.
    A manifest or note that cannot be read stops the vault's sweep with a `StorageError`,
    as a damaged manifest stops GC: nothing is deleted on a guess.

    Returns how many standard-tier manifests went; ``report`` also counts archive copies,
    refusals and kept points."""
    now = now or clock.now()
    store, archive = vault_store(vault), archive_store(vault)
    # Order matters. Notes first: a note is written only for a point whose manifest exists,
    # so a noted point in neither listing below is gone for good (a tier move writes the
    # archive copy before it removes the standard one, and standard is listed first). Then
    # keys, running jobs, rows: a backup commits its row while its job is running, so this
    # order never misses a point being published.
    noted = store.holds.noted_points()
    keys = set(store.points())
    archived = set(archive.points())
    busy = {
        job.params.get("storage_key")
        for job in Job.objects.filter(vault=vault, status__in=[Status.QUEUED, Status.RUNNING])
    }
    rows = RecoveryPoint.objects.filter(vault=vault).exclude(storage_key="")
    known = set(rows.values_list("storage_key", flat=True))
    counts = {"standard": 0, "archive": 0, "locked": 0}
    kept: set[str] = set()
    for tier, tier_store, orphans in (
        ("standard", store, keys - busy - known),
        ("archive", archive, archived - busy - known),
    ):
        for key in sorted(orphans):
            try:
                tier_store.delete_point(key, now=now)
            except PointNotFound:
                continue
            except PointRetained:
                kept.add(key)
                continue
            except ObjectLocked as exc:  # reported; deleted by a sweep once the lock ended
                logger.info("orphan %s point %s of vault %s kept: %s", tier, key, vault.name, exc)
                counts["locked"] += 1
                continue
            counts[tier] += 1
    for key in sorted(noted - keys - archived):
        store.holds.forget(key)
    _terms_stamp(vault, store, archive, rows.exclude(storage_key__in=noted), keys, archived)
    if kept:
        _point_missing(vault, sorted(kept))
    if report is not None:
        report["orphan_archive_points"] = report.get("orphan_archive_points", 0) + counts["archive"]
        report["locked_orphans"] = report.get("locked_orphans", 0) + counts["locked"]
        report["kept_unknown"] = report.get("kept_unknown", 0) + len(kept)
    return counts["standard"]


def _terms_stamp(
    vault: Vault,
    store: VaultStore,
    archive: ArchiveStore,
    unnoted: QuerySet[RecoveryPoint],
    keys: set[str],
    archived: set[str],
) -> int:
    """Once per vault: note the expiry of every point whose manifest predates recorded terms
    (docs/storage.md), from its row, so the storage keeps older points as it keeps new ones.
    This trusts the database once, at the first storage sweep after the upgrade; from then
    on the vault's store says it was done. Also records a locked vault's lock if its store
    lacks it (a vault locked before its first backup, or before the upgrade)."""
    if store.holds.stamped():
        stores.storage_note(vault=vault)
        return 0
    old = []
    for point in unnoted.select_related("vault"):
        key = point.storage_key
        source = store if key in keys else archive if key in archived else None
        with contextlib.suppress(PointNotFound):  # gone since listed: nothing to stamp
            if source is not None and source.terms(key) is None:
                old.append(point)
    stores.storage_note(old, vault=vault)
    store.holds.mark_stamped(clock.now())
    return len(old)


def _point_missing(vault: Vault | None, kept: list[str], *, name: str = "") -> None:
    """Audit the discovery and raise (or count again) the vault's ``point_missing`` alert;
    ``vault`` None: the store of a vault named ``name`` whose row is gone."""
    name = vault.name if vault is not None else name
    shown = ", ".join(kept[:5]) + (", ..." if len(kept) > 5 else "")
    whose = "that the database no longer names" if vault else "and the database has no such vault"
    message = (
        f"The storage of vault {name} holds {len(kept)} recovery point(s) {whose} ({shown}). "
        "Their data is kept until the storage's own retain-until date and restores from the "
        "store as it is. Rows deleted outside Holdfast leave this (so does a backup that "
        "crashed before recording its point): check the audit log and who can write to "
        "the database."
    )
    target = f"vault:{name}"
    gate.execute(
        "point_missing_found",
        actor=None,
        vault=vault,
        vault_name=name,
        target=target,
        change=lambda check: raise_alert(
            "point_missing", vault_name=name, target=target, message=message
        ),
        after=lambda _: {"kept": len(kept), "storage_keys": kept[:100]},
    )


def stores_without_vault(*, now: datetime | None = None) -> int:
    """Local vault stores whose vault row is gone. No sweep visits them, so nothing deletes
    their data; but one still holding points its storage keeps means the database forgot a
    whole vault: the same ``point_missing`` alert, under the store's vault name. (An S3
    vault's location lives only in its row, so its store cannot be found this way.)
    Returns how many such stores keep points."""
    now = now or clock.now()
    root = Path(settings.HOLDFAST_STORAGE_ROOT)
    names = {
        entry.name
        for tier in ("vaults", "archive")
        if (root / tier).is_dir()
        for entry in os.scandir(root / tier)
        if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".")
    }
    found = 0
    for name in sorted(names - set(Vault.objects.values_list("name", flat=True))):
        holds = Holds(LocalBackend(root / "vaults" / name))
        kept: set[str] = set()
        for store in (
            VaultStore(holds.backend),
            ArchiveStore(LocalBackend(root / "archive" / name), holds=holds),
        ):
            for key in store.points():
                with contextlib.suppress(PointNotFound):
                    if not store.keep(key).allows_delete(now):
                        kept.add(key)
        if kept:
            _point_missing(None, sorted(kept), name=name)
            found += 1
    return found


def sweep_points(*, now: datetime | None = None) -> dict[str, int]:
    now = now or clock.now()
    return {
        "expired_points": points_expire(now=now),
        "lapsed_snapshots": snapshots_lapse(now=now),
        "ended_rehydrations": rehydrations_end(now=now),
        "expired_approvals": approvals_expire(now=now),
        **{f"soft_delete_{key}": n for key, n in services.soft_delete_sweep().items()},
    }


def sweep_storage(
    *, now: datetime | None = None, failures: list[str] | None = None
) -> dict[str, int]:
    """Remove orphan manifests the storage no longer keeps, then collect unreferenced chunks
    in every vault's store. One vault whose storage fails does not stop the others; its
    sentence goes to ``failures``.

    The store's GC is lease-based and never deletes a chunk a running backup is about to
    reference, nor one a kept manifest names (docs/storage.md), so this may run at any time."""
    now = now or clock.now()
    report = {
        "orphan_manifests": 0,
        "orphan_archive_points": 0,
        "locked_orphans": 0,
        "kept_unknown": 0,
        "deleted_chunks": 0,
        "freed_bytes": 0,
        "retained_chunks": 0,
        "refused_deletes": 0,
        "vaults_failed": 0,
        "stores_without_vault": 0,
    }
    for vault in Vault.objects.all():
        try:
            report["orphan_manifests"] += orphans_remove(vault, report, now=now)
            result = vault_store(vault).gc()
        # One unreachable store must not stop the others (OSError: a local store that
        # cannot be opened at all, e.g. its directory replaced or unmounted).
        except (StorageError, DomainError, OSError) as exc:
            reason = getattr(exc, "detail", None) or str(exc)
            logger.warning("storage sweep of vault %s failed: %s", vault.name, reason)
            report["vaults_failed"] += 1
            if failures is not None:
                failures.append(f"vault {vault.name}: {reason}")
            continue
        report["deleted_chunks"] += result.deleted_chunks
        report["freed_bytes"] += result.freed_bytes
        report["retained_chunks"] += result.retained_chunks
        report["refused_deletes"] += result.refused_deletes
    try:
        report["stores_without_vault"] = stores_without_vault(now=now)
    except (StorageError, OSError) as exc:
        logger.warning("looking for stores without a vault failed: %s", exc)
        if failures is not None:
            failures.append(f"stores without a vault row: {exc}")
    return report


SWEEPS = ("jobs", "points", "storage")


def sweep_run(*, sweep: str) -> Job:
    """Run a sweep (``jobs``, ``points`` or ``storage``) now, recorded as a sweep job."""
    if sweep not in SWEEPS:
        raise DomainError(
            "validation_error", f"sweep: choose one of {', '.join(SWEEPS)}.", field="sweep"
        )
    now = clock.now()
    job = Job.objects.create(
        kind=Kind.SWEEP,
        status=Status.QUEUED,
        created_at=now,
        heartbeat_at=now,
        params={"sweep": sweep},
    )
    return job_run(job_id=job.pk) or job
