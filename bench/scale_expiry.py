"""The expiry sweep at fleet scale (issue 20, deliverable 6's expiry part): 100,000 expired
points among 1,000,000, in 10,000 vaults.

    .venv/bin/python bench/scale_expiry.py [--points 100000] [--before 2000]

Works on its own copy of a seeded database: ``CREATE DATABASE holdfast_bench_expiry TEMPLATE
holdfast_bench_reports`` (seed_scale, 10,000 vaults / 1,000,000 points; the copy waits for the
template to have no other connection, retrying). In the copy, as the database's owner, every
point already past its expiry gets a later one (a longer retention: the triggers allow it), and
then ``--before + --points`` points of vaults that are not immutable get an expiry a day ago
(a shorter one: allowed there). One process (``DATABASE_URL`` naming the copy, DEBUG off) then
migrates it, and measures:

- ``before``: the sweep as it was before issue 20 (each point re-read, its running jobs looked
  up, deleted through ``services.point_expire``: one gate transaction and audit record each),
  on the first ``--before`` points, to state its cost per point;
- ``batch``: ``sweeps.points_expire()``, 1,000 points per transaction, on the rest.

With ``--verify``, then the weekly verification schedule (issue 20, deliverable 3) of every
item on the same copy, its broker sends left out (see ``measure_worker``).

Each prints its time, statements (every connection's, through an execute wrapper) and the
process's peak resident memory (``ru_maxrss``) before and after. ``measure_expiry()`` is the
function ``bench/scale.py`` calls; the stores of the seeded vaults were never written, so the
data step opens none (``HOLDFAST_STORAGE_ROOT`` points at an empty temporary directory).

Goal: 100,000 points under 60 s, statements per batch not per point, peak memory under 300 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.portfolio import Statements  # noqa: E402

SERVER = os.environ.get("BENCH_POSTGRES", "postgres://root@127.0.0.1:5432/postgres")
TEMPLATE, DATABASE = "holdfast_bench_reports", "holdfast_bench_expiry"
GOAL_SECONDS, GOAL_MB = 60.0, 300.0


def _url(server: str, name: str) -> str:
    return server.rsplit("/", 1)[0] + "/" + name


def copy_database(server: str, template: str, database: str, *, tries: int = 60) -> None:
    """A fresh ``database`` from ``template``; PostgreSQL refuses while anyone is connected to
    the template (another bench, a helper's psql): then wait and try again."""
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}"')
        for attempt in range(tries):
            try:
                admin.execute(f'CREATE DATABASE "{database}" TEMPLATE "{template}"')
                return
            except psycopg.errors.ObjectInUse:
                print(f"template {template} busy, retrying ({attempt + 1}/{tries})", flush=True)
                time.sleep(5)
    raise SystemExit(f"template {template} stayed busy; nothing measured")


def make_expired(url: str, points: int) -> int:
    """As the owner: points already expired get a later expiry, then ``points`` points of
    vaults that are not immutable expire a day ago. Returns how many were so expired."""
    with psycopg.connect(url, autocommit=True) as owner:
        owner.execute(
            "UPDATE vaults_recoverypoint SET expires_at = now() + interval '365 days' "
            "WHERE expires_at <= now() + interval '1 day'"
        )
        done = owner.execute(
            "UPDATE vaults_recoverypoint SET expires_at = now() - interval '1 day' - "
            "(id %% 86400) * interval '1 second' WHERE id IN (SELECT p.id FROM "
            "vaults_recoverypoint p JOIN vaults_vault v ON v.id = p.vault_id "
            "WHERE v.immutability = 'disabled' AND p.soft_deleted_until IS NULL "
            "ORDER BY p.id LIMIT %s)",
            [points],
        ).rowcount
        owner.execute("VACUUM (ANALYZE) vaults_recoverypoint")
        owner.execute("VACUUM (ANALYZE) vaults_job")
    return done


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_worker(before: int, verify: bool = False) -> dict[str, Any]:
    """In this process's database (DATABASE_URL): migrate, then both sweeps."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from portal import clock
    from portal.gate import DomainError
    from vaults import services
    from vaults.jobs import sweeps
    from vaults.models import Job, RecoveryPoint

    call_command("migrate", verbosity=0)
    connection.ensure_connection()
    statements = Statements()

    def one_by_one(now: Any, limit: int) -> int:
        """The sweep before issue 20, verbatim but for the limit (and no data step)."""
        done = 0
        expired = RecoveryPoint.objects.filter(expires_at__lte=now).exclude(
            soft_deleted_until__gt=now
        )
        for point in expired.select_related("vault", "item")[:limit]:
            if Job.objects.filter(recovery_point=point, status="running").exists():
                continue
            try:
                services.point_expire(point=point)
            except DomainError:
                continue
            done += 1
        return done

    result: dict[str, Any] = {"rss_start_mb": round(_rss_mb(), 1)}
    now = clock.now()
    due = RecoveryPoint.objects.filter(expires_at__lte=now)
    result["due"] = due.count()
    for label, run in (
        ("before", lambda: one_by_one(now, before)),
        ("batch", lambda: sweeps.points_expire(now=now)),
    ):
        if label == "before" and not before:
            continue
        statements.count = 0
        started = time.perf_counter()
        done = run()
        elapsed = time.perf_counter() - started
        result[label] = {
            "points": done,
            "seconds": round(elapsed, 2),
            "statements": statements.count,
            "per_point_ms": round(elapsed * 1000 / max(done, 1), 3),
            "statements_per_point": round(statements.count / max(done, 1), 3),
            "peak_rss_mb": round(_rss_mb(), 1),
        }
    result["left_due"] = due.count()
    if verify:
        # Deliverable 3 on the same copy: the weekly verification schedule of every item. The
        # broker sends (one per job, after each page's commit) are left out (``enqueue_job``
        # a no-op): they are the dispatcher's concern and cost ~5 ms each on this machine.
        from vaults.jobs import requests, schedules

        requests.enqueue_job = lambda job_id: None
        statements.count = 0
        started = time.perf_counter()
        queued = schedules.verifications_schedule()
        elapsed = time.perf_counter() - started
        result["verify"] = {
            "points": queued,
            "seconds": round(elapsed, 2),
            "statements": statements.count,
            "per_point_ms": round(elapsed * 1000 / max(queued, 1), 3),
            "statements_per_point": round(statements.count / max(queued, 1), 3),
            "peak_rss_mb": round(_rss_mb(), 1),
        }
    result["audit_records"] = {
        op: n
        for op, n in (
            ("point_expire", _records("point_expire")),
            ("points_expire", _records("points_expire")),
        )
    }
    return result


def _records(op: str) -> int:
    from portal.models import AuditRecord

    return AuditRecord.objects.filter(operation=op).count()


def measure_expiry(
    *,
    points: int = 100_000,
    before: int = 2_000,
    server: str = SERVER,
    template: str = TEMPLATE,
    database: str = DATABASE,
    verify: bool = False,
) -> dict[str, Any]:
    """Copy the template, expire ``before + points`` points, measure in a process of its own;
    the figures (also printed). ``bench/scale.py`` may call this after seeding ``template``."""
    copy_database(server, template, database)
    url = _url(server, database)
    expired = make_expired(url, before + points)
    with tempfile.TemporaryDirectory(prefix="holdfast-bench-expiry-") as root:
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "DJANGO_DEBUG": "0",
            "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-expiry-" + os.urandom(16).hex()),
            "HOLDFAST_STORAGE_ROOT": root,
            "PYTHONPATH": str(ROOT),
        }
        command = [sys.executable, __file__, "--measure-worker", "--before", str(before)]
        command += ["--verify"] if verify else []
        done = subprocess.run(command, env=env, stdout=subprocess.PIPE, check=True, text=True)
    result: dict[str, Any] = {"made_expired": expired, **json.loads(done.stdout.splitlines()[-1])}
    _print(result)
    return result


def _print(result: dict[str, Any]) -> None:
    print(f"load average (1, 5, 15 min): {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"points made expired: {result['made_expired']}, due at start: {result['due']}")
    for label in ("before", "batch", "verify"):
        if label in result:
            r = result[label]
            print(
                f"{label:>6}: {r['points']} points in {r['seconds']} s "
                f"({r['per_point_ms']} ms a point), {r['statements']} statements "
                f"({r['statements_per_point']} a point), peak RSS {r['peak_rss_mb']} MB"
            )
    print(f"left due: {result['left_due']}; audit records: {result['audit_records']}")
    batch = result.get("batch", {})
    ok = batch.get("seconds", 1e9) < GOAL_SECONDS and batch.get("peak_rss_mb", 1e9) < GOAL_MB
    print(f"goal (<{GOAL_SECONDS:.0f} s, <{GOAL_MB:.0f} MB): {'met' if ok else 'MISSED'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--before", type=int, default=2_000, help="points for today's sweep")
    parser.add_argument("--server", default=SERVER)
    parser.add_argument("--template", default=TEMPLATE)
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument("--verify", action="store_true", help="then the verification schedule")
    parser.add_argument("--measure-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_worker:
        print(json.dumps(measure_worker(args.before, args.verify)))
        return 0
    result = measure_expiry(
        points=args.points,
        before=args.before,
        server=args.server,
        template=args.template,
        database=args.database,
        verify=args.verify,
    )
    batch = result.get("batch", {})
    return 0 if batch.get("seconds", 1e9) < GOAL_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
