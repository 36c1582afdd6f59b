"""Celery tasks: thin wrappers that take ids, call one function of ``vaults.jobs`` and return.

Job state lives in ``vaults.models.Job``, never in Celery results. Every task is safe to
run twice (Redis redelivers unacknowledged messages after the visibility timeout, a second
beat fires every periodic task twice): a job is claimed with a compare-and-set and a
scheduled backup's (item, slot) is unique. So ``acks_late`` is on: a worker killed mid-task
leaves its message to be redelivered, and the redelivery finds the job no longer queued.
The periodic schedule is ``portal/schedule.py``; each periodic task runs once at a time
(``portal.periodic.single_run``): a run that overlaps the last one skips, returning 0 or
"skipped", instead of doubling its work.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown
from django.db import InterfaceError, OperationalError

from portal.gate import entry_point
from portal.periodic import single_run

from . import report_mail
from .jobs import beacon, drill_schedule, replication, runner, schedules, sending, sweeps


@worker_ready.connect
def announce_host(sender: Any, **kwargs: Any) -> None:
    """The worker is consuming: announce its host and queues, then beat (SPEC 3.13)."""
    beacon.beacon_start(sorted(sender.app.amqp.queues.consume_from))


@worker_shutdown.connect
def stop_announcing(**kwargs: Any) -> None:
    beacon.beacon_stop()


# Transient database trouble before the job is claimed is worth retrying; the job's own
# errors are recorded on the job by the service and never raised.
RETRY = {
    "autoretry_for": (OperationalError, InterfaceError),
    "retry_backoff": True,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 5,
}
# Below the broker's 6 h visibility timeout, so Redis never redelivers a job still running.
LONG = {"soft_time_limit": 5 * 3600, "time_limit": 5 * 3600 + 300, "acks_late": True}
SHORT = {"soft_time_limit": 240, "time_limit": 300, "acks_late": True}


# Sent by name from ``vaults.jobs.requests.enqueue_job`` (RUN_JOB_TASK), not imported.
@shared_task(name="holdfast.run_job", **RETRY, **LONG)
def run_job(job_id: int) -> str:
    with entry_point("task"):
        job = runner.job_run(job_id=job_id)
    return "skipped" if job is None else job.status


# A batch of jobs a beat tick handed to this host's queue (requests.SEND_JOBS_TASK): one
# message per job, from here. Sent by name, not imported.
@shared_task(name="holdfast.send_jobs", **RETRY, **SHORT)
def send_jobs(job_ids: list[int]) -> int:
    return sending.jobs_send(job_ids)


@shared_task(name="holdfast.dispatch_backups", **RETRY, **SHORT)
def dispatch_backups() -> int:
    with entry_point("task"), single_run("holdfast.dispatch_backups") as mine:
        if not mine:
            return 0
        return len(schedules.backups_dispatch())


@shared_task(name="holdfast.sweep_jobs", **RETRY, **SHORT)
def sweep_jobs() -> int:
    with entry_point("task"), single_run("holdfast.sweep_jobs") as mine:
        if not mine:
            return 0
        return sweeps.jobs_fail_stale()


@shared_task(name="holdfast.sweep_points", **RETRY, **SHORT)
def sweep_points() -> str:
    with entry_point("task"), single_run("holdfast.sweep_points") as mine:
        if not mine:
            return "skipped"
        return runner.sweep_run(sweep="points").status


@shared_task(name="holdfast.sweep_storage", **RETRY, **LONG)
def sweep_storage() -> str:
    with entry_point("task"), single_run("holdfast.sweep_storage") as mine:
        if not mine:
            return "skipped"
        return runner.sweep_run(sweep="storage").status


@shared_task(name="holdfast.schedule_tier_moves", **RETRY, **SHORT)
def schedule_tier_moves() -> int:
    with entry_point("task"), single_run("holdfast.schedule_tier_moves") as mine:
        if not mine:
            return 0
        return len(schedules.tier_moves_schedule())


@shared_task(name="holdfast.schedule_verifications", **RETRY, **SHORT)
def schedule_verifications() -> int:
    with entry_point("task"), single_run("holdfast.schedule_verifications") as mine:
        if not mine:
            return 0
        checks = schedules.verifications_schedule()
        return checks + len(schedules.lock_verifications_schedule())


@shared_task(name="holdfast.schedule_drills", **RETRY, **SHORT)
def schedule_drills() -> int:
    """Queue each item's restore drill of the current period once its moment has passed."""
    with entry_point("task"), single_run("holdfast.schedule_drills") as mine:
        if not mine:
            return 0
        return len(drill_schedule.drills_dispatch())


@shared_task(name="holdfast.replicate", **RETRY, **SHORT)
def replicate() -> int:
    """Queue the copies replica vaults still lack (after a backoff) and raise lag alerts."""
    with entry_point("task"), single_run("holdfast.replicate") as mine:
        if not mine:
            return 0
        return replication.replication_sweep()["copies_queued"]


@shared_task(name="holdfast.report_email", **RETRY, **SHORT)
def report_email() -> str:
    """Last ISO week's compliance report to HOLDFAST_REPORT_EMAILS, once per week."""
    with entry_point("task"), single_run("holdfast.report_email") as mine:
        if not mine:
            return "skipped"
        return report_mail.send_weekly()
