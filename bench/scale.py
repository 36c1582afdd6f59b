"""Background work at fleet scale (issue 20): the periodic tasks timed on a ``seed_scale``
portfolio of 10,000 vaults, 100,000 items and 1,000,000 recovery points.

    make bench-scale          # or: .venv/bin/python bench/scale.py [--due 10000] [--baseline]
    .venv/bin/python bench/scale.py --reseed    # drop and seed the database again

One PostgreSQL database on a loopback host, ``holdfast_bench_scale``, seeded with ``manage.py
seed_scale`` (about 6 minutes on an idle 2-core machine, more on a busy one), kept between
runs: its comment records what was seeded, and it is seeded again only when that differs (or
with ``--reseed``). Pending migrations are applied to a kept database, then the tables the
tasks read are vacuumed and analysed, as autovacuum would have done.

Measured so far (issue 20 deliverable 6 grows the list):

- **Dispatch of ``--due`` due items in one tick** (``vaults.jobs.dispatch``). The tick is at
  01:00:30 UTC on a fixed future Tuesday, when no hourly or weekly policy of ``seed_scale``
  has a slot; daily policies are moved to 01:00 (their ``time`` column, kept between runs)
  until exactly ``--due`` protected items are due. One tick is timed (time to the end of the
  enqueue after commit; the share spent sending messages is shown), with its SQL statements,
  the process's peak RSS, and in a second identical tick the peak of Python allocations
  (``tracemalloc``, which slows Python down, so it is not timed). Each tick's jobs are
  deleted afterwards, so the next run creates them again; its audit record stays (the log
  is append-only). Messages go to a queue of their own (``bench-scale``) on
  ``--broker`` (Redis database 13 by default), emptied afterwards: no worker runs them.
- With ``--baseline``, the same tick by main's dispatcher (``git show
  main:vaults/jobs/schedules.py``, one gate transaction per (item, slot)), for comparison.
  It takes minutes and leaves one audit record per job.

- The due items are read on ``--hosts`` worker hosts (100 by default; announced, round robin
  by item id; issue 19), so each job goes to its host's queue: a host's many jobs as batches
  a worker there fans out (vaults/jobs/sending.py). The tick's time includes handing them over.

Goal: the dispatch of 10,000 due items under 10 s, peak memory under 300 MB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.portfolio import _setup_django, seeded  # noqa: E402

SIZE = 10_000
DUE = 10_000
# 01:00:30 UTC on a Tuesday: no seed_scale hourly window (08:00 every 4, 6, 8 or 12 hours)
# or weekly run (Sunday 22:00) has a slot in the hour before.
TICK = dt.datetime(2027, 1, 5, 1, 0, 30, tzinfo=dt.UTC)
SLOT_TIME = dt.time(1, 0)
QUEUE = "bench-scale"
GOAL_SECONDS, GOAL_MB = 10.0, 300.0
VACUUMED = ["vaults_vault", "vaults_protecteditem", "policies_policy", "vaults_job"]


def _marker(vaults: int, seed: int) -> str:
    return f"seed_scale vaults={vaults} items={vaults * 10} points={vaults * 100} seed={seed}"


def seed_worker(size: int, seed: int) -> None:
    """In this process's database (DATABASE_URL): migrate, seed."""
    _setup_django()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command(
        "seed_scale", vaults=size, items=size * 10, points=size * 100, seed=seed,
        stdout=sys.stderr,
    )  # fmt: skip


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


def _host_names(hosts: int) -> list[str]:
    return [f"bench-host-{n:03d}" for n in range(hosts)]


def _spread_over_hosts(hosts: int) -> None:
    """Announce ``hosts`` worker hosts (SPEC 3.13) and read every protected item on one of
    them, round robin by item id; with 0, every item is read on any host (the shared queue)."""
    from django.db import connection

    from portal import clock
    from portal.celery import host_queue
    from portal.gate import entry_point
    from vaults import services

    names = _host_names(hosts)
    now = clock.now()
    with entry_point("command"):
        _announce(services, names, now, host_queue)
    with connection.cursor() as cursor:
        if names:
            cursor.execute(
                "UPDATE vaults_protecteditem SET source_host = (%s::text[])[1 + id %% %s] "
                "WHERE source_kind <> 'replica'",
                [names, len(names)],
            )
        else:
            cursor.execute("UPDATE vaults_protecteditem SET source_host = ''")


def _announce(services: Any, names: list[str], now: Any, host_queue: Any) -> None:
    for name in names:
        services.host_announce(
            name=name, version="bench", queues=["celery", host_queue(name)], started_at=now
        )


def _queued(broker: Any, hosts: int) -> dict[str, int]:
    """Messages waiting after a tick: on the shared bench queue and on the hosts' queues."""
    from portal.celery import host_queue

    return {
        "shared": broker.llen(QUEUE),
        "hosts": sum(broker.llen(host_queue(name)) for name in _host_names(hosts)),
    }


def _clear(broker: Any, hosts: int = 0) -> None:
    """Delete the tick's jobs (a later run creates them again) and its queued messages."""
    from django.db import connection

    from portal.celery import host_queue

    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM vaults_job WHERE kind = 'backup' AND slot > %s AND slot <= %s",
            [TICK - dt.timedelta(hours=1), TICK],
        )
    broker.delete(QUEUE, *[host_queue(name) for name in _host_names(hosts)])


def _baseline() -> Any:
    """main's ``backups_dispatch``, loaded from git beside this branch's modules."""
    source = subprocess.run(
        ["git", "show", "main:vaults/jobs/schedules.py"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    module = types.ModuleType("vaults.jobs._schedules_main")
    module.__package__ = "vaults.jobs"
    sys.modules[module.__name__] = module
    exec(compile(source, "main:vaults/jobs/schedules.py", "exec"), module.__dict__)
    return module.backups_dispatch


def _tick(dispatch: Any, *, trace: bool = False) -> dict[str, Any]:
    from django.db import connection

    from portal.gate import entry_point
    from vaults.jobs import dispatch as dispatch_module
    from vaults.jobs import requests, sending

    spent = {"seconds": 0.0}
    send, send_many = requests.enqueue_job, sending.send_many

    def timed_send(*args: Any) -> None:  # how long the tick spends handing messages over
        started = time.perf_counter()
        send(*args)
        spent["seconds"] += time.perf_counter() - started

    def timed_send_many(jobs: Any) -> None:
        started = time.perf_counter()
        send_many(jobs)
        spent["seconds"] += time.perf_counter() - started

    requests.enqueue_job = timed_send  # type: ignore[assignment]
    sending.send_many = timed_send_many  # type: ignore[assignment]
    assert dispatch_module.enqueue_many is sending.enqueue_many
    if trace:
        tracemalloc.start()
    try:
        queries = 0

        def counted(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            nonlocal queries
            queries += 1
            return execute(sql, params, many, context)

        with entry_point("task"), connection.execute_wrapper(counted):
            started = time.perf_counter()
            jobs = dispatch(now=TICK)
            seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
    finally:
        tracemalloc.stop()
        requests.enqueue_job = send  # type: ignore[assignment]
        sending.send_many = send_many  # type: ignore[assignment]
    return {
        "jobs": len(jobs),
        "seconds": seconds,
        "sending": spent["seconds"],
        "queries": queries,
        "rss_mb": _rss_mb(),
        "python_peak_mb": peak,
    }


def measure_worker(due: int, baseline: bool, hosts: int) -> dict[str, Any]:
    _setup_django()
    import redis
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from portal.models import AuditRecord
    from vaults.jobs.dispatch import backups_dispatch

    call_command("migrate", verbosity=0)
    settings.HOLDFAST_TASK_QUEUE = QUEUE
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    due = _make_due(due)
    _spread_over_hosts(hosts)
    _clear(broker, hosts)
    with connection.cursor() as cursor:
        for table in VACUUMED:
            cursor.execute(f'VACUUM ANALYZE "{table}"')
    result: dict[str, Any] = {"due": due, "hosts": hosts, "baseline_rss_mb": _rss_mb()}
    records = AuditRecord.objects.filter(operation="backup_dispatch").count()
    result["dispatch"] = _tick(backups_dispatch)
    result["dispatch"]["audit_records"] = (
        AuditRecord.objects.filter(operation="backup_dispatch").count() - records
    )
    result["dispatch"]["messages"] = _queued(broker, hosts)
    _clear(broker, hosts)
    result["dispatch"]["python_peak_mb"] = _tick(backups_dispatch, trace=True)["python_peak_mb"]
    _clear(broker, hosts)
    if baseline:
        records = AuditRecord.objects.filter(operation="backup_schedule").count()
        result["main"] = _tick(_baseline())
        result["main"]["audit_records"] = (
            AuditRecord.objects.filter(operation="backup_schedule").count() - records
        )
        _clear(broker, hosts)
    return result


def _report(result: dict[str, Any]) -> bool:
    print(f"load average (1, 5, 15 min): {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(
        f"due items at {TICK:%Y-%m-%d %H:%M:%S} UTC: {result['due']:,}, read on "
        f"{result['hosts'] or 'any'} host(s)"
    )
    messages = result["dispatch"].get("messages")
    if messages:
        print(
            f"messages the tick left: {messages['hosts']:,} on the hosts' queues (batches a "
            f"worker there fans out, or jobs), {messages['shared']:,} on the shared queue"
        )
    print(f"process RSS before the ticks: {result['baseline_rss_mb']:.0f} MB\n")
    print(f"{'':28} {'jobs':>7} {'time':>9} {'sending':>9} {'queries':>8} {'audit':>6} "
          f"{'peak RSS':>9} {'py peak':>8}")  # fmt: skip
    for label, key in (("dispatch (this branch)", "dispatch"), ("dispatch (main)", "main")):
        row = result.get(key)
        if row is None:
            continue
        peak = row.get("python_peak_mb")
        print(
            f"{label:28} {row['jobs']:7,} {row['seconds']:8.2f}s {row['sending']:8.2f}s "
            f"{row['queries']:8,} {row['audit_records']:6,} {row['rss_mb']:7.0f}MB "
            f"{'' if peak is None else f'{peak:6.0f}MB':>8}"
        )
    row = result["dispatch"]
    ok = row["jobs"] == result["due"] and row["seconds"] < GOAL_SECONDS and row["rss_mb"] < GOAL_MB
    print(
        f"\ngoal: {result['due']:,} due items dispatched in one tick under {GOAL_SECONDS:.0f} s "
        f"with peak memory under {GOAL_MB:.0f} MB: {'met' if ok else 'NOT met'}"
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server",
        default=os.environ.get("BENCH_POSTGRES", "postgres://root@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server URL on a loopback host (the database name is replaced)",
    )
    parser.add_argument("--database", default="holdfast_bench_scale")
    parser.add_argument(
        "--broker", default=os.environ.get("SCALE_BROKER_URL", "redis://127.0.0.1:6379/13")
    )
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--due", type=int, default=DUE, help="items due in the tick")
    parser.add_argument("--baseline", action="store_true", help="time main's dispatcher too")
    parser.add_argument(
        "--hosts", type=int, default=100, help="worker hosts the items are read on (0: any)"
    )
    parser.add_argument("--reseed", action="store_true", help="seed again even if kept")
    parser.add_argument("--seed-worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--measure-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed_worker:
        seed_worker(args.seed_worker, args.seed)
        return 0
    if args.measure_worker:
        print(json.dumps(measure_worker(args.due, args.baseline, args.hosts)))
        return 0
    env = seeded(args, __file__, args.database, _marker(SIZE, args.seed), SIZE)
    env.update(CELERY_BROKER_URL=args.broker, CELERY_TASK_ALWAYS_EAGER="0")
    command = [sys.executable, __file__, "--measure-worker", "--due", str(args.due)]
    command += ["--hosts", str(args.hosts)]
    done = subprocess.run(
        command + (["--baseline"] if args.baseline else []),
        env=env, stdout=subprocess.PIPE, check=True, text=True,
    )  # fmt: skip
    return 0 if _report(json.loads(done.stdout.strip().splitlines()[-1])) else 1


if __name__ == "__main__":
    sys.exit(main())
