"""Running a job: claim it with a compare-and-set, run its kind's runner under a heartbeat,
record completed or failed. Never raises for the job's own errors."""

from __future__ import annotations

import logging
import os
import socket
from functools import partial

from django.db import InterfaceError, OperationalError

from portal import clock
from portal.gate import DomainError

from ..models import Job
from ..storage import StorageError
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
        with_database(partial(fail, job, str(exc)))
    except (OperationalError, InterfaceError) as exc:
        logger.warning("job %s failed: the database was unreachable: %s", job.pk, exc)
        with_database(partial(fail, job, database_failure(exc)))
    except Exception as exc:
        logger.exception("job %s failed", job.pk)
        with_database(partial(fail, job, f"{type(exc).__name__}: {exc}"))
    with_database(job.refresh_from_db)
    return job


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
