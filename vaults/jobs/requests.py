"""Asking for a job: every request is an audited operation through the gate that leaves a
queued ``Job`` row, sent to a worker once the transaction commits.

Jobs are sent by task name (``holdfast.run_job``) through :func:`enqueue_job`, so nothing
here imports the tasks module. :func:`storage_lock_follow` is what the services call inside
a transaction that grows a vault's locks (immutability enabled or locked, a longer expiry):
once it commits, a storage lock job brings the vault's objects up to their new locks.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from kombu.exceptions import OperationalError as BrokerUnavailable

from portal import clock, gate
from portal.alerts import raise_alert
from portal.celery import host_queue
from portal.gate import Check, DomainError
from portal.validators import check_storable

from .. import rules
from ..hosts import known_host
from ..locations import vault_store
from ..models import Job, ProtectedItem, RecoveryPoint, Vault
from ..storage import RestoreRefused, StorageError
from ..storage.restore import normalize_sub_path, resolve_target
from ..storage_notes import point_retention
from ..workloads import postgres
from . import databases
from .drills import drill_root_refusal
from .state import FAILURE_ALERTS, job_state, new_job

logger = logging.getLogger(__name__)

# The Celery task that runs a job (vaults/tasks.py); queued messages name it: never rename.
RUN_JOB_TASK = "holdfast.run_job"
REHYDRATE_DAYS = (10, 30)
REHYDRATE_DEFAULT_DAYS = 15

Status = Job.Status
Kind = Job.Kind
Tier = RecoveryPoint.Tier


def enqueue_job(job_id: int, host: str = "", producer: Any = None) -> None:
    """Send a job to a worker, by task name; called once the job's row is committed. A job
    for a host goes to that host's queue (SPEC 3.13), any other to the shared one. With
    ``producer``, over that producer's broker connection (vaults/jobs/sending.py)."""
    queue = host_queue(host) if host else getattr(settings, "HOLDFAST_TASK_QUEUE", None)
    options: dict[str, Any] = {"queue": queue} if queue else {}
    current_app.send_task(RUN_JOB_TASK, args=(job_id,), producer=producer, **options)


def job_route(job: Job) -> str:
    """The host whose workers alone may run ``job`` ("" for any): the one it names, else its
    item's source host. Every job kind, requested or dispatched, is routed by this. A job a
    bulk creator built with its item's host (``route_known``) reads no item: 100,000 jobs
    would otherwise cost a query each."""
    if job.host or not job.item_id or job.route_known:
        return job.host
    return job.item.source_host if job.item is not None else ""


QUEUE_DOWN = (
    "The job queue (Redis) could not be reached ({reason}). The job is recorded and stays "
    "queued: it is sent to a worker automatically once the queue is back, so there is no "
    "need to submit it again."
)


def enqueue_on_commit(job: Job) -> None:
    """Send the job's id to a worker once the row is committed (never before)."""
    transaction.on_commit(lambda: send(job))


def routed(job: Job) -> str:
    """The job's host, written to its row if it was created without it."""
    host = job_route(job)
    if host != job.host:  # created without it: the worker checks it
        Job.objects.filter(pk=job.pk).update(host=host)
        job.host = host
    return host


def send(job: Job, producer: Any = None) -> None:
    """Send ``job`` to the queue; if the broker is down, keep it queued and say so.

    The row and its audit record are already committed, so the request is not lost: the
    reason becomes the queued job's ``error`` (the page or API that asked shows it, see
    :func:`job_waiting_for_queue`), a backup or restore raises its job alert, and the job
    sweep re-sends every queued job with such an error until a worker claims it (the
    claim is a compare-and-set, so a message that did get through runs once anyway).
    """
    host = routed(job)
    try:
        enqueue_job(job.pk, host, producer)
        logger.info("%s job %s sent to host %s", job.kind, job.pk, host or "(any)")
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
        item = job_fields.get("item")
        if not job_fields.get("host") and item is not None:
            # The item's host as committed, not as the caller's copy of the item says.
            hosts = ProtectedItem.objects.filter(pk=item.pk).values_list("source_host", flat=True)
            job_fields["host"] = hosts.first() or ""
        job = new_job(kind, now=check.now, vault=check.vault, requested_by=actor, **job_fields)
        enqueue_on_commit(job)
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
    if item.source_kind == ProtectedItem.SourceKind.REPLICA:
        raise DomainError(
            "validation_error",
            f"{item.name} is a replica: its points are copied from vault {item.source_path}. "
            "Back up the item there instead.",
            field="item",
        )
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
            rules.retain_until_check(retain_until, check.now)

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


def _check_restore_target(target_path: str, host: str = "") -> None:
    if not target_path or not Path(target_path).is_absolute():
        raise DomainError(
            "validation_error",
            "target_path: give an absolute directory path under a restore root.",
            field="target_path",
        )
    if host:  # written on that host: its worker judges the path against its restore roots
        return
    try:
        resolve_target(
            Path(target_path), settings.HOLDFAST_RESTORE_ROOTS, rules.restore_forbidden_roots()
        )
    except RestoreRefused as exc:
        raise DomainError(
            "validation_error",
            f"target_path: {exc} Restores may only write under a configured restore root "
            "(HOLDFAST_RESTORE_ROOTS).",
            field="target_path",
        ) from None


def archived_refusal(point: RecoveryPoint, then: str = "restore it") -> DomainError:
    return DomainError(
        "point_archived",
        f"Recovery point {point.pk} is in the archive tier: rehydrate it first (10 to 30 days, "
        f"standard or high priority), then {then}.",
    )


def restore_request(
    *,
    actor: Any,
    point: RecoveryPoint,
    target_path: str = "",
    sub_path: str = "",
    overwrite: bool = False,
    sub_paths: list[str] | None = None,
    target_database: str = "",
    target_host: str = "",
) -> Job:
    """Queue a restore of ``point`` (or its ``sub_path``, or the files and folders
    ``sub_paths``) into ``target_path``, or a database dump's into the new database
    ``target_database`` (``databases.check_target``), on ``target_host`` or else the item's
    host.

    Refused when the target lies outside ``HOLDFAST_RESTORE_ROOTS``, a path to restore is
    not a relative path inside the point, or the point sits in the archive tier without a
    live rehydrated copy.
    """
    chosen = [p for p in (sub_paths or []) if p] or None
    check_storable(
        target_path=target_path,
        sub_path=sub_path,
        sub_paths=chosen or [],
        target_database=target_database,
        target_host=target_host,
    )
    params: dict[str, Any] = (
        {"target_database": target_database}
        if postgres.is_dump(point.workload)
        else {
            "target_path": target_path,
            "sub_path": sub_path,
            "overwrite": overwrite,
            **({"sub_paths": chosen} if chosen else {}),
        }
    )

    def precheck(check: Check) -> None:
        known_host(target_host, field="target_host")
        item_host = ProtectedItem.objects.filter(pk=point.item_id).values_list(
            "source_host", flat=True
        )
        host = target_host or (item_host.first() or "")
        if databases.check_target(
            point, target_path=target_path, target_database=target_database, on_host=host
        ):
            if sub_path or chosen:
                raise DomainError(
                    "validation_error",
                    f"sub_path: recovery point {point.pk} is one database dump: it restores whole.",
                    field="sub_path",
                )
            if point.is_archived and not point.is_rehydrated(check.now):
                raise archived_refusal(point)
            return
        _check_restore_target(target_path, host)
        for path in chosen or [sub_path]:
            try:
                normalize_sub_path(path)
            except RestoreRefused:
                raise DomainError(
                    "validation_error",
                    f"sub_path: {path!r} is not a relative path inside the recovery point.",
                    field="sub_path",
                ) from None
        if point.is_archived and not point.is_rehydrated(check.now):
            raise archived_refusal(point)

    return _job_request(
        "restore_start",
        Kind.RESTORE,
        actor=actor,
        vault=point.vault,
        target=f"point:{point.pk}",
        precheck=precheck,
        item=point.item,
        recovery_point=point,
        host=target_host,
        params=params,
    )


# What a person may stop: the work people and the backup schedule ask for. Sweeps, tier moves
# and storage locks carry out retention and immutability: stopping one would weaken them.
# Verifications and lock checks are how damage and under-locked objects are found: one person
# cancelling each as it starts would hide them, so they are upkeep too.
# Job.cancellable names them: backup, restore and rehydrate.


def job_cancel(*, actor: Any, job: Job) -> Job:
    """Cancel a queued or running job. A queued job ends at once (failed, saying who
    cancelled it; no worker will claim it); a running one is asked to stop and its worker
    ends it at the next file or chunk boundary, publishing nothing. An ended job answers
    ``job_ended``."""

    def refresh(facts: dict[str, Any]) -> None:
        locked = facts["job"] = Job.objects.select_for_update().get(pk=job.pk)
        # Skipping a scheduled slot stops protection for it: backup admins, and the guard.
        facts["scheduled_backup"] = (
            locked.kind == Kind.BACKUP and locked.slot is not None and not locked.is_finished
        )

    def precheck(check: Check) -> None:
        locked: Job = check.facts["job"]
        if not locked.cancellable:
            raise DomainError(
                "job_not_cancellable",
                f"{locked.get_kind_display()} jobs are Holdfast's own upkeep (they keep locks, "
                "tiers and expiries as the rules say, and find damage) and cannot be "
                "cancelled.",
            )
        if locked.is_finished:
            raise DomainError(
                "job_ended",
                f"Job #{locked.pk} has already ended ({locked.get_status_display().lower()}): "
                "there is nothing to cancel.",
            )

    def change(check: Check) -> Job:
        locked: Job = check.facts["job"]
        fields: dict[str, Any] = {"cancel_requested_at": check.now, "cancel_requested_by": actor}
        if locked.status == Status.QUEUED:
            who = getattr(actor, "username", "") or "Holdfast"
            fields.update(
                status=Status.FAILED,
                ended_at=check.now,
                error=f"Cancelled by {who} before it started.",
            )
        Job.objects.filter(pk=locked.pk).update(**fields)
        locked.refresh_from_db()
        return locked

    def state(facts: dict[str, Any]) -> dict[str, Any]:
        return job_state(facts["job"])

    return gate.execute(
        "job_cancel",
        actor=actor,
        vault=job.vault,
        target=f"job:{job.pk}",
        refresh=refresh,
        before=state,
        precheck=precheck,
        change=change,
        after=job_state,
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


def drill_request(
    *,
    actor: Any,
    point: RecoveryPoint,
    slot: datetime | None = None,
    params: dict[str, Any] | None = None,
) -> Job:
    """Queue a restore drill of ``point`` (SPEC 3.12); ``actor=None`` is the schedule.

    Refused for a point past its expiry (soft-deleted or about to go: there is nothing to
    prove for it), when the drill root overlaps a restore root or the storage, and, with
    ``point_archived``, for an archived point without a live rehydrated copy: the drill
    waits for its rehydration. A scheduled drill names its period (``slot``): one drill per
    item and slot, checked under the vault's row lock (and a unique index behind it), so
    two dispatchers racing for a slot queue one drill and the other is refused."""

    def precheck(check: Check) -> None:
        taken = Job.objects.filter(kind=Kind.DRILL, item_id=point.item_id, slot=slot)
        if slot is not None and taken.exists():
            raise DomainError(
                "drill_slot_taken",
                f"{point.item.name} already has its drill of the period starting "
                f"{slot:%Y-%m-%d %H:%M} UTC.",
            )
        if point.is_expired(check.now):
            raise DomainError(
                "validation_error",
                f"Recovery point {point.pk} is past its expiry"
                f"{' (soft-deleted)' if point.is_soft_deleted(check.now) else ''}: drills "
                "prove the points retention keeps. Drill a current point.",
            )
        refusal = drill_root_refusal()
        if refusal is not None:
            raise DomainError("validation_error", refusal)
        if point.is_archived and not point.is_rehydrated(check.now):
            raise archived_refusal(point, "drill it")

    return _job_request(
        "drill_start" if actor is not None else "drill_schedule",
        Kind.DRILL,
        actor=actor,
        vault=point.vault,
        target=f"point:{point.pk}",
        precheck=precheck,
        item=point.item,
        recovery_point=point,
        slot=slot,
        params=params or {},
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


def object_lock_missing(vault: Vault) -> str | None:
    """Why the vault's storage locks cannot be checked, or None when they can."""
    if vault_store(vault).backend.supports_object_lock:
        return None
    return (
        f"Vault {vault.name} keeps its data on local disk, which has no object lock; "
        "storage locks apply to vaults on S3-compatible storage."
    )


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
        reason = object_lock_missing(vault)
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
