"""The periodic tasks ``make bench-scale`` (bench/scale.py) times, each run by
``bench/scale.py --task NAME`` in a process of its own (so its peak RSS is its own), on a copy
of the seeded database that ``DATABASE_URL`` names. Each ``run_*`` migrates the copy (a new
index is measured without seeding again), analyses what it reads, then times one call of the
task with every connection's SQL statements counted (``bench.portfolio.Statements``), and
returns a dict: ``seconds``, ``statements``, ``peak_rss_mb`` (``ru_maxrss`` of this process)
and what the task did.

- ``dispatch``: one beat tick of ``--due`` due items (``vaults.jobs.dispatch``). The tick is at
  01:00:30 UTC on a fixed future Tuesday, when no hourly or weekly policy of ``seed_scale``
  has a slot; daily policies are moved to 01:00 until exactly ``due`` protected items are
  due, read on ``hosts`` announced worker hosts (round robin by item id, issue 19), so each
  host's jobs go to its queue as batches (vaults/jobs/sending.py). The time runs to the end
  of the sends after commit; the share spent sending is shown.
- ``verify``: the weekly verification schedule of every item
  (``schedules.verifications_schedule``), its jobs sent as in production.

Messages go to the broker of ``CELERY_BROKER_URL`` (``make bench-scale``: Redis database 13),
the shared queue named ``bench-scale``; no worker reads them, and they are deleted after.
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import time
from typing import Any

from bench.portfolio import Statements, _setup_django

QUEUE = "bench-scale"
# 01:00:30 UTC on a Tuesday: no seed_scale hourly window (08:00 every 4, 6, 8 or 12 hours)
# or weekly run (Sunday 22:00) has a slot in the hour before.
TICK = dt.datetime(2027, 1, 5, 1, 0, 30, tzinfo=dt.UTC)
SLOT_TIME = dt.time(1, 0)


def rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _prepare(tables: list[str]) -> Any:
    """Django on DATABASE_URL (DEBUG off: no query log growing with the statements),
    migrated, ``tables`` analysed; the Redis client of the broker."""
    os.environ.setdefault("DJANGO_DEBUG", "0")
    os.environ.setdefault("SECRET_KEY", "bench-scale-" + os.urandom(16).hex())
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"
    _setup_django()
    import redis
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f'VACUUM ANALYZE "{table}"')
    settings.HOLDFAST_TASK_QUEUE = QUEUE
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def _empty_queues(broker: Any) -> int:
    """Delete the messages the task left on the bench's queues (this broker database is the
    bench's own); how many there were."""
    keys = [QUEUE, *broker.scan_iter("host.*")]
    waiting = sum(broker.llen(key) for key in keys if broker.type(key) == b"list")
    broker.delete(*keys)
    return waiting


def _timed_sends() -> tuple[dict[str, float], Any]:
    """Count the seconds spent handing messages to the broker; a function that undoes it."""
    from vaults.jobs import sending

    spent = {"seconds": 0.0}
    send_many = sending.send_many

    def timed(jobs: Any) -> None:
        started = time.perf_counter()
        send_many(jobs)
        spent["seconds"] += time.perf_counter() - started

    sending.send_many = timed  # type: ignore[assignment]

    def undo() -> None:
        sending.send_many = send_many  # type: ignore[assignment]

    return spent, undo


# --- dispatch --------------------------------------------------------------------------------


def _make_due(target: int) -> int:
    """Move daily policies to 01:00 until exactly ``target`` backed-up items are due at
    TICK (fewer only if the portfolio has fewer); the number due."""
    from django.db import connection

    eligible = (
        "SELECT p.id, count(i.id) FROM policies_policy p JOIN vaults_protecteditem i "
        "ON i.policy_id = p.id AND i.protection_state = 'protected' "
        "AND i.source_kind <> 'replica' WHERE p.frequency = 'daily' AND p.timezone = 'UTC' "
        "AND p.time {} %s GROUP BY p.id ORDER BY p.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(eligible.format("="), [SLOT_TIME])
        due = sum(n for _, n in cursor.fetchall())
        if due >= target:
            return due
        cursor.execute(eligible.format("<>"), [SLOT_TIME])
        moved = []
        for pk, n in cursor.fetchall():
            if due + n <= target:
                moved.append(pk)
                due += n
            if due == target:
                break
        cursor.execute(
            "UPDATE policies_policy SET time = %s WHERE id = ANY(%s)", [SLOT_TIME, moved]
        )
    return due


def _spread_over_hosts(hosts: int) -> None:
    """Announce ``hosts`` worker hosts (SPEC 3.13) and read every protected item on one of
    them, round robin by item id; with 0, every item is read on any host (the shared queue)."""
    from django.db import connection

    from portal import clock
    from portal.celery import host_queue
    from portal.gate import entry_point
    from vaults import services

    names = [f"bench-host-{n:03d}" for n in range(hosts)]
    now = clock.now()
    with entry_point("command"):
        for name in names:
            services.host_announce(
                name=name, version="bench", queues=["celery", host_queue(name)], started_at=now
            )
    with connection.cursor() as cursor:
        if names:
            cursor.execute(
                "UPDATE vaults_protecteditem SET source_host = (%s::text[])[1 + id %% %s] "
                "WHERE source_kind <> 'replica'",
                [names, len(names)],
            )
        else:
            cursor.execute("UPDATE vaults_protecteditem SET source_host = ''")


def run_dispatch(due: int, hosts: int) -> dict[str, Any]:
    broker = _prepare([])
    from django.db import connection

    from vaults.jobs.dispatch import backups_dispatch

    due = _make_due(due)
    _spread_over_hosts(hosts)
    with connection.cursor() as cursor:
        for table in ("vaults_vault", "vaults_protecteditem", "policies_policy", "vaults_job"):
            cursor.execute(f'VACUUM ANALYZE "{table}"')
    _empty_queues(broker)
    result = _timed_task(backups_dispatch, "backup_dispatch", broker, now=TICK)
    jobs = result.pop("result")
    return {**result, "due": due, "jobs": len(jobs), "hosts": hosts}


def _timed_task(run: Any, operation: str, broker: str, **kwargs: Any) -> dict[str, Any]:
    """``run(**kwargs)`` as the beat task would run it, timed: its statements on every
    connection, its peak RSS, the time spent sending and the ``operation`` records it wrote."""
    from portal.gate import entry_point
    from portal.models import AuditRecord

    records = AuditRecord.objects.filter(operation=operation).count()
    rss_before = rss_mb()
    statements = Statements()
    spent, undo = _timed_sends()
    try:
        with entry_point("task"):
            started = time.perf_counter()
            result = run(**kwargs)
            seconds = time.perf_counter() - started
    finally:
        undo()
    counted = statements.count
    return {
        "result": result,
        "seconds": round(seconds, 2),
        "statements": counted,
        "peak_rss_mb": rss_mb(),
        "rss_before_mb": rss_before,
        "sending_seconds": round(spent["seconds"], 2),
        "audit_records": AuditRecord.objects.filter(operation=operation).count() - records,
        "messages": _empty_queues(broker),
    }


# --- verification schedule -------------------------------------------------------------------


def run_verify() -> dict[str, Any]:
    broker = _prepare(["vaults_protecteditem", "vaults_recoverypoint", "vaults_job"])
    from vaults.jobs import schedules
    from vaults.models import ProtectedItem

    _empty_queues(broker)
    items = ProtectedItem.objects.count()
    result = _timed_task(schedules.verifications_schedule, "verifications_schedule", broker)
    queued = result.pop("result")
    return {**result, "items": items, "jobs": queued}
