"""Hosts (SPEC 3.13): the machines workers run on, as they announce themselves.

A worker names its host (``HOLDFAST_WORKER_HOST``, default the machine's name, see
``portal.celery.worker_host``), consumes the shared queue and ``host.<name>``, and beats
(``vaults.services.hosts.host_announce``) while it runs. An item whose source names a host
has its jobs sent to that host's queue only (``vaults.jobs.requests.job_route``); a job
waiting for a host that stopped beating says so (:func:`waiting_sentence`) and fails after
``HOLDFAST_HOST_WAIT_MINUTES`` (``vaults.jobs.sweeps.host_waits_expire``).

Rows are written by ``vaults/services/hosts.py`` only; the model is imported into
``vaults/models.py``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models

from portal.celery import HOST_NAME_PATTERN, host_queue
from portal.gate import DomainError

if TYPE_CHECKING:
    from .models import Job

HOST_NAME_RULE = (
    "1 to 100 letters, digits, dots, hyphens or underscores, starting with a letter or digit"
)
# SPEC 3.13: a host silent for longer than this shows offline.
ONLINE_WINDOW = timedelta(minutes=5)


class Host(models.Model):
    """A host some worker announced; one row however many workers run there."""

    name = models.CharField(max_length=100, unique=True)
    version = models.CharField(max_length=50, blank=True)  # Holdfast's, on the last beat
    queues = models.JSONField(default=list, blank=True)  # what its workers consume
    first_seen = models.DateTimeField()
    started_at = models.DateTimeField()  # when the worker that beat last started
    last_seen = models.DateTimeField()

    class Meta:
        app_label = "vaults"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(name__regex=HOST_NAME_PATTERN), name="host_name_valid"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def queue(self) -> str:
        return host_queue(self.name)

    def is_online(self, now: datetime) -> bool:
        return self.last_seen >= now - ONLINE_WINDOW


def wait_limit() -> timedelta:
    """How long a job waits for its offline host before it fails."""
    return timedelta(minutes=float(getattr(settings, "HOLDFAST_HOST_WAIT_MINUTES", 60)))


def offline_hosts(names: set[str], now: datetime) -> dict[str, datetime | None]:
    """Of the hosts ``names``, those offline now, each with when it was last seen (None:
    never announced). One query."""
    names.discard("")
    if not names:
        return {}
    seen = dict(Host.objects.filter(name__in=names).values_list("name", "last_seen"))
    return {
        name: seen.get(name)
        for name in names
        if seen.get(name) is None or seen[name] < now - ONLINE_WINDOW  # type: ignore[operator]
    }


def waiting_sentence(host: str, last_seen: datetime | None) -> str:
    since = f"offline since {last_seen:%Y-%m-%d %H:%M} UTC" if last_seen else "never seen"
    return f"waiting for host {host} ({since})"


def job_waits(jobs: list[Job], now: datetime) -> None:
    """Set ``job.waiting_for_host`` (the sentence, or "") on each of ``jobs``: a queued job
    whose host is offline waits for it. One query for the whole list."""
    offline = offline_hosts({j.host for j in jobs if j.status == "queued"}, now)
    for job in jobs:
        waiting = job.status == "queued" and job.host in offline
        job.waiting_for_host = waiting_sentence(job.host, offline[job.host]) if waiting else ""


def known_host(name: str, *, field: str = "source.host") -> str:
    """``name`` if a worker announced it (or "" for any host), else a refusal naming it."""
    if not name:
        return ""
    if not re.match(HOST_NAME_PATTERN, name):
        raise DomainError(
            "validation_error", f"{field}: a host name is {HOST_NAME_RULE}.", field=field
        )
    if not Host.objects.filter(name=name).exists():
        known = list(Host.objects.order_by("name").values_list("name", flat=True)[:20])
        raise DomainError(
            "validation_error",
            f"{field}: no worker has announced a host named {name!r} "
            f"(known hosts: {', '.join(known) or 'none yet'}). Start a worker there with "
            f"HOLDFAST_WORKER_HOST={name} (docs/hosts.md), then try again.",
            field=field,
        )
    return name
