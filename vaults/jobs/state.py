"""A job row through its life: created, heartbeating while it runs, finished or failed.

Also :func:`with_database`, which lets a job's result outlive a database restart, and the
job alert a failed backup or restore raises (SPEC 3.8).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
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

from portal import clock
from portal.alerts import raise_alert

from ..models import Job, RecoveryPoint

logger = logging.getLogger(__name__)

Status = Job.Status
Kind = Job.Kind


class JobFailed(Exception):
    """A job cannot finish; the message is shown to people as the job's error."""


class JobCancelled(Exception):
    """Someone cancelled the running job (``job_cancel``); raised at a file or chunk
    boundary from the progress callbacks, so the store publishes nothing half-done."""


def _heartbeat_seconds() -> float:
    return float(getattr(settings, "HOLDFAST_JOB_HEARTBEAT_SECONDS", 2.0))


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


def new_job(kind: str, *, now: datetime, **fields: Any) -> Job:
    # heartbeat_at doubles as "last sign of life": for a queued job, when it was sent.
    return Job.objects.create(kind=kind, created_at=now, heartbeat_at=now, **fields)


class Heartbeat:
    """Progress kept in memory (the store reports it from its own threads) and written,
    with the heartbeat, every few seconds from a side thread with its own connection."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.done = 0
        self.total = 0
        self.files_done = 0
        self.files_total = 0
        self.cancelled = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"holdfast-job-{job_id}", daemon=True
        )

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        self.stop_if_cancelled()

    def files(self, done: int, total: int) -> None:
        """Files and folders taken so far; also the boundary where a cancel takes effect."""
        self.files_done, self.files_total = done, total
        self.stop_if_cancelled()

    def stop_if_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise JobCancelled()

    def _read_cancel(self) -> None:
        if Job.objects.filter(pk=self.job_id, cancel_requested_at__isnull=False).exists():
            self.cancelled.set()

    def __enter__(self) -> Heartbeat:
        # Cancelled between the claim and now: do not even start.
        self._read_cancel()
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
                        bytes_done=self.done,
                        bytes_total=self.total,
                        files_done=self.files_done,
                        files_total=self.files_total,
                        heartbeat_at=clock.now(),
                    )
                    self._read_cancel()
                except DatabaseError as exc:
                    # The database restarted or is unreachable: a beat is lost, not the job.
                    # Drop the dead connection so the next beat opens a new one.
                    logger.warning("heartbeat of job %s missed: %s", self.job_id, exc)
                    connection.close()
        finally:
            connection.close()


def finish(
    job: Job,
    *,
    error: str = "",
    done: int | None = None,
    total: int | None = None,
    files: int | None = None,
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
    if files is not None:
        fields["files_done"] = fields["files_total"] = files
    # Not conditioned on RUNNING: a job the stale sweep gave up on that did finish says so.
    Job.objects.filter(pk=job.pk).update(**fields)


FAILURE_ALERTS: dict[str, str] = {
    Kind.BACKUP: "backup_failed",
    Kind.RESTORE: "restore_failed",
    Kind.COPY: "copy_failed",
}


def fail(job: Job, error: str) -> None:
    """Fail the job; a failed backup or restore raises its job alert (SPEC 3.8)."""
    with transaction.atomic():
        finish(job, error=error)
        alert_failure(job, error)


def cancelled(job: Job) -> None:
    """End a job that stopped because it was cancelled: failed (SPEC 5 has no other ending),
    saying who cancelled it; no job alert, since a person asked for it."""
    row = Job.objects.select_related("cancel_requested_by").get(pk=job.pk)
    who = row.cancel_requested_by.username if row.cancel_requested_by else "someone"
    finish(job, error=f"Cancelled by {who} while it ran; nothing half-done was kept.")


def alert_failure(job: Job, error: str) -> None:
    alert = FAILURE_ALERTS.get(job.kind)
    if alert is None:
        return
    raise_alert(
        alert,
        vault_name=job.vault.name if job.vault else "",
        target=f"item:{job.item.name}" if job.item else f"job:{job.pk}",
        message=f"{job.get_kind_display()} job #{job.pk}"
        f"{f' on host {job.host}' if job.host else ''} failed: {error}",
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


def database_failure(exc: Exception) -> str:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"The database was unreachable while the job ran ({reason}). Nothing half-done is "
        "visible; run the job again."
    )


def point_of(job: Job) -> RecoveryPoint:
    point = job.recovery_point
    if point is None:
        raise JobFailed("The recovery point no longer exists (it expired or was deleted).")
    return point
