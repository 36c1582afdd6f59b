"""Running a job: claim it with a compare-and-set, run its kind's runner under a heartbeat,
record completed or failed. Never raises for the job's own errors."""

from __future__ import annotations

import logging
import os
from functools import partial

from django.db import InterfaceError, OperationalError, transaction

from portal import clock
from portal.alerts import raise_alert
from portal.celery import worker_host
from portal.gate import DomainError

from .. import services
from ..models import Job
from ..storage import CorruptChunk, StorageError
from ..storage.chunks import chunk_key
from ..storage.crypto import ObjectTampered
from . import requests
from .kinds import RUNNERS
from .state import (
    Heartbeat,
    JobCancelled,
    JobFailed,
    cancelled,
    database_failure,
    fail,
    with_database,
)

logger = logging.getLogger(__name__)

Status = Job.Status
Kind = Job.Kind


def worker_name() -> str:
    return os.environ.get("HOLDFAST_WORKER_NAME") or f"{worker_host()}:{os.getpid()}"


def job_claim(*, job_id: int) -> Job | None:
    """Compare-and-set a queued job to running; None if it is gone, someone else has it, or
    it is another host's (SPEC 3.13: whatever queue its message came through, a job routed
    to a host runs there only; it stays queued for that host)."""
    row = Job.objects.filter(pk=job_id).values("status", "host", "item__source_host").first()
    if row is None or row["status"] != Status.QUEUED:
        return None
    here, host = worker_host(), row["host"] or row["item__source_host"] or ""
    if host and host != here:
        logger.warning("job %s is for host %s; refused on host %s", job_id, host, here)
        if not row["host"]:  # sent before its item named a host: send it there now
            Job.objects.filter(pk=job_id, status=Status.QUEUED, host="").update(host=host)
            requests.enqueue_job(job_id, host)
        return None
    now = clock.now()
    claimed = Job.objects.filter(pk=job_id, status=Status.QUEUED, host=row["host"]).update(
        status=Status.RUNNING, started_at=now, heartbeat_at=now, error="", worker=worker_name()
    )
    if not claimed:
        return None
    return Job.objects.select_related("vault", "item__policy", "item__vault", "recovery_point").get(
        pk=job_id
    )


def job_run(*, job_id: int) -> Job | None:
    """Claim the job and run it to completed or failed; never raises for the job's own errors."""
    job = job_claim(job_id=job_id)
    if job is None:
        return None
    return job_execute(job)


def job_execute(job: Job) -> Job:
    """Run a claimed job to completed, failed or cancelled (see :func:`job_run`)."""
    runner = RUNNERS[job.kind]
    try:
        with Heartbeat(job.pk) as beat:
            runner(job, beat)
    except JobCancelled:
        with_database(partial(cancelled, job))
    except (JobFailed, StorageError, DomainError) as exc:
        damaged = damaged_object(exc)
        if damaged:
            with_database(partial(damage_found, job, damaged, str(exc)))
        else:
            with_database(partial(fail, job, str(exc)))
    except (OperationalError, InterfaceError) as exc:
        logger.warning("job %s failed: the database was unreachable: %s", job.pk, exc)
        with_database(partial(fail, job, database_failure(exc)))
    except Exception as exc:
        logger.exception("job %s failed", job.pk)
        with_database(partial(fail, job, f"{type(exc).__name__}: {exc}"))
    with_database(job.refresh_from_db)
    return job


# Jobs that read only their own point's objects: damage they find is that point's.
POINT_READERS = (Kind.RESTORE, Kind.VERIFY, Kind.TIER_MOVE, Kind.REHYDRATE, Kind.DRILL)


def damaged_object(exc: BaseException) -> str:
    """The object a job's failure found damaged, tampered with or missing (a chunk the
    manifest names, an object failing authentication), or "". Also when the kind's runner
    turned it into its own sentence (`JobFailed` raised while handling it)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ObjectTampered):
            return seen.key
        if isinstance(seen, CorruptChunk):
            return chunk_key(seen.chunk_id)
        seen = seen.__cause__ or seen.__context__
    return ""


def damage_found(job: Job, key: str, error: str) -> None:
    """Fail the job, and raise the security alert verification raises (SPEC 3.11: a
    tampered object fails the job and is reported as corruption): a job that reads only its
    point marks that point corrupt, as a verification would; any other names the object."""
    with transaction.atomic():
        point = job.recovery_point
        if point is not None and job.kind in POINT_READERS:
            fail(job, f"{error} Recovery point {point.pk} is marked corrupt.")
            services.point_flag(
                "point_mark_corrupt", point, corrupted_at=clock.now(), corruption=error
            )
            return
        fail(job, error)
        raise_alert(
            "corruption_found",
            vault_name=job.vault.name if job.vault else "",
            target=f"job:{job.pk}",
            message=f"{job.get_kind_display()} job #{job.pk} found {key} damaged: {error}",
        )


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
