"""Sending many jobs at once: a dispatch tick's scheduled backups, a page of verifications.

Sending one Celery message costs about a millisecond of this process's CPU (kombu builds a
Redis client per message): 10,000 scheduled backups would hold one beat tick for over ten
seconds. So a tick hands each host's jobs over in batches, one message per batch of up to
``FAN_OUT`` jobs on that host's queue, and a worker there sends one message per job
(``holdfast.send_jobs``, :func:`jobs_send`): the hosts share the sending, and a host's jobs
never leave its queue. Fewer than ``FAN_OUT_FROM`` jobs for a host are sent one by one at
once. Every message goes by ``requests.send`` (routing, and a broker that is down: the job
stays queued with the reason, and the job sweep re-sends it).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from kombu.exceptions import OperationalError as BrokerUnavailable

from portal.celery import host_queue

from ..models import Job
from .requests import routed, send

logger = logging.getLogger(__name__)

FAN_OUT = 200
FAN_OUT_FROM = 20
# The task a host's worker runs for a batch (vaults/tasks.py); never rename.
SEND_JOBS_TASK = "holdfast.send_jobs"


def enqueue_many(jobs: list[Job]) -> None:
    """Send each of ``jobs`` once the rows are committed (a dispatch tick's scheduled
    backups, a page of verifications), by :func:`send_many`."""
    if jobs:
        transaction.on_commit(lambda: send_many(jobs))


def send_many(jobs: list[Job]) -> None:
    """Send ``jobs``, each to its host's queue (or the shared one): a host's many jobs as
    batches a worker of that host fans out, a few one by one. A batch the broker refused
    leaves its jobs to :func:`requests.send` (queued, with the reason; the job sweep re-sends)."""
    by_route: dict[str, list[Job]] = {}
    for job in jobs:
        by_route.setdefault(routed(job), []).append(job)
    for host, hosts_jobs in by_route.items():
        if len(hosts_jobs) < FAN_OUT_FROM:
            send_now(hosts_jobs)
            continue
        queue = host_queue(host) if host else getattr(settings, "HOLDFAST_TASK_QUEUE", None)
        options: dict[str, Any] = {"queue": queue} if queue else {}
        for first in range(0, len(hosts_jobs), FAN_OUT):
            batch = hosts_jobs[first : first + FAN_OUT]
            try:
                current_app.send_task(SEND_JOBS_TASK, args=([job.pk for job in batch],), **options)
            except (BrokerUnavailable, OSError):
                send_now(batch)
            else:
                logger.info("%d jobs handed to host %s to send", len(batch), host or "(any)")


def send_now(jobs: list[Job]) -> None:
    """:func:`requests.send` each job, all over one producer; if the broker cannot be reached for
    the producer itself, each job left goes by :func:`requests.send` alone."""
    sent = 0
    try:
        with current_app.producer_or_acquire() as producer:
            for job in jobs:
                send(job, producer)
                sent += 1
    except (BrokerUnavailable, OSError):
        for job in jobs[sent:]:
            send(job)


def jobs_send(job_ids: list[int]) -> int:
    """A worker's half of a batch (``holdfast.send_jobs``): send each job of ``job_ids``
    still queued, one message each; how many were sent."""
    jobs = list(
        Job.objects.filter(pk__in=job_ids, status=Job.Status.QUEUED)
        .select_related("vault", "item")
        .order_by("pk")
    )
    send_now(jobs)
    return len(jobs)
