"""Benchmark the compliance report (SPEC 3.12, issue 18) at seed_scale size: 10,000 vaults,
100,000 items and 1,000,000 recovery points over 90 days, next to 100 vaults.

    make bench-reports        # or: .venv/bin/python bench/reports.py [--requests 5]
    .venv/bin/python bench/reports.py --reseed    # drop and seed the databases again

Two PostgreSQL databases on a loopback host, ``holdfast_bench_reports`` (the large portfolio)
and ``holdfast_bench_reports_100`` (100 vaults, 1,000 items, 10,000 points), seeded with
``manage.py seed_scale --days 90 --history 9``: about ten backup jobs per item over the 90
days (about 1,000,000 jobs at the large size, 7% failed), a drill result on every seventh
point and a few audited immutability and soft-delete changes. Seeding takes a few minutes, so a
seeded database is kept: its comment records the seed parameters (``seed_scale vaults=...
items=... points=... days=90 history=9 seed=...``) and it is seeded again only when that
differs (or with ``--reseed``). Pending migrations are applied to a kept database, then the
tables the report reads are vacuumed and analysed, as autovacuum would have done.

Each size is measured in a process of its own, with DATABASE_URL naming its database (not a
router between two databases in one process, as ``bench/portfolio.py`` does: the report runs
raw SQL on ``django.db.connection``, which a router does not move), through Django's test
client logged in as an auditor (the reader role), so the time is server time: middleware,
view, queries, rendering, without a network hop, over a persistent connection. Measured,
after one warm-up request each, as the median of ``--requests`` requests:

- the Reports page, ``/reports/?period=90``;
- the API's JSON, ``/api/v1/reports/compliance/?from=...&to=...`` over the same 90 days;
- the CSV and the PDF of one vault (the one with the most items) over those days.

Goal: the page under 2 s at 10,000 vaults, and every request running the same number of SQL
queries at both sizes (the report aggregates in SQL; a count that grows with the vaults is an
N+1). The exit status is 1 when either is missed, 2 when there is no report to measure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.portfolio import Statements, _setup_django, seeded  # noqa: E402

DAYS, HISTORY = 90, 9
GOAL_SECONDS = 2.0
SIZES = {"large": 10_000, "small": 100}
# Vacuumed and analysed before measuring (seeding leaves dead rows that autovacuum would clear).
VACUUMED = ["vaults_vault", "vaults_protecteditem", "vaults_recoverypoint", "vaults_job",
            "portal_auditrecord", "policies_policy"]  # fmt: skip


def _marker(vaults: int, seed: int) -> str:
    return (
        f"seed_scale vaults={vaults} items={vaults * 10} points={vaults * 100} "
        f"days={DAYS} history={HISTORY} seed={seed}"
    )


def seed_worker(size: int, seed: int) -> None:
    """In this process's database (DATABASE_URL): migrate, seed."""
    _setup_django()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command(
        "seed_scale", vaults=size, items=size * 10, points=size * 100, days=DAYS,
        history=HISTORY, seed=seed, stdout=sys.stderr,
    )  # fmt: skip


def _urls(vault: str, today: dt.date) -> list[tuple[str, str]]:
    start = (today - dt.timedelta(days=DAYS)).isoformat()
    api = f"/api/v1/reports/compliance/?from={start}&to={today.isoformat()}"
    return [
        ("page ?period=90", f"/reports/?period={DAYS}"),
        ("API JSON", api),
        ("API CSV, one vault", f"{api}&vault={vault}&format=csv"),
        ("API PDF, one vault", f"{api}&vault={vault}&format=pdf"),
    ]


def _timed(client: Any, url: str) -> float:
    started = time.perf_counter()
    response = client.get(url)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, (url, response.status_code)
    return elapsed


def measure_worker(requests: int) -> dict[str, Any]:
    """In this process's database (DATABASE_URL): migrate, vacuum, then time every URL."""
    _setup_django()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.db.models import Count
    from django.test import Client

    from portal import clock, services
    from portal.gate import entry_point
    from vaults.models import Vault

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        for table in VACUUMED:
            cursor.execute(f"VACUUM (ANALYZE) {table}")
    auditor = get_user_model().objects.filter(username="bench-auditor").first()
    if auditor is None:
        with entry_point("command"):
            auditor = services.user_create(
                actor=None, username="bench-auditor", role="reader",
                password=secrets.token_urlsafe(24),
            )  # fmt: skip
    client = Client()
    client.force_login(auditor)
    biggest = Vault.objects.annotate(n=Count("items")).order_by("-n", "pk").first()
    assert biggest is not None, "no vaults"
    result: dict[str, Any] = {"vaults": Vault.objects.count(), "one vault": biggest.n}
    # Statements on every connection: the report's second one (its side-by-side scans, a
    # thread's own connection) counts too.
    statements = Statements()
    for label, url in _urls(biggest.name, clock.now().date()):
        _timed(client, url)  # warm-up
        statements.count = 0
        _timed(client, url)
        queries = statements.count
        times = [_timed(client, url) for _ in range(requests)]
        result[label] = {"queries": queries, "median": statistics.median(times),
                         "max": max(times)}  # fmt: skip
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server",
        default=os.environ.get("BENCH_POSTGRES", "postgres://root@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server URL on a loopback host (the database name is replaced)",
    )
    parser.add_argument("--database", default="holdfast_bench_reports")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--requests", type=int, default=5, help="timed requests per URL")
    parser.add_argument("--reseed", action="store_true", help="seed again even if kept")
    parser.add_argument("--seed-worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--measure-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 3 <= args.requests <= 100:
        raise SystemExit("--requests: 3 to 100")
    if args.seed_worker:
        seed_worker(args.seed_worker, args.seed)
        return 0
    if args.measure_worker:
        print(json.dumps(measure_worker(args.requests)))
        return 0

    envs: dict[str, dict[str, str]] = {}
    for which, size in SIZES.items():  # seed first, so a failed measurement keeps them
        name = args.database if which == "large" else f"{args.database}_{size}"
        envs[which] = seeded(args, __file__, name, _marker(size, args.seed), size)
    if importlib.util.find_spec("vaults.reports") is None:
        print("SKIPPED: no reports service on this branch (vaults/reports.py); seeded only.")
        return 2
    command = [sys.executable, __file__, "--requests", str(args.requests), "--measure-worker"]
    measured: dict[str, dict[str, Any]] = {}
    for which in SIZES:
        done = subprocess.run(
            command, env=envs[which], stdout=subprocess.PIPE, check=True, text=True
        )
        measured[which] = json.loads(done.stdout.strip().splitlines()[-1])
    small, large = measured["small"]["vaults"], measured["large"]["vaults"]
    print(f"load average (1, 5, 15 min): {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(
        f"median of {args.requests} requests after a warm-up; "
        "statements of one request, on every connection"
    )
    print(
        f"one vault: the one with the most items ({measured['small']['one vault']} at "
        f"{small} vaults, {measured['large']['one vault']} at {large})\n"
    )
    print(f"{'':22} {small:>6} vaults       {large:>6} vaults")
    print(f"{'':22} {'median':>8} {'queries':>7}  {'median':>8} {'max':>7} {'queries':>7}")
    same = True
    for label in (key for key in measured["large"] if key not in {"vaults", "one vault"}):
        a, b = measured["small"][label], measured["large"][label]
        same = same and a["queries"] == b["queries"]
        print(
            f"{label:22} {a['median']:7.3f}s {a['queries']:7d}  {b['median']:7.3f}s "
            f"{b['max']:6.3f}s {b['queries']:7d}"
            f"{'' if a['queries'] == b['queries'] else '  queries differ'}"
        )
    page = measured["large"]["page ?period=90"]["median"]
    fast = page < GOAL_SECONDS
    print(
        f"\ngoal: the page under {GOAL_SECONDS:.0f} s at {large} vaults "
        f"({'met' if fast else 'NOT met'}: {page:.3f} s); the same query count at both sizes "
        f"for every request ({'met' if same else 'NOT met'})"
    )
    return 0 if fast and same else 1


if __name__ == "__main__":
    sys.exit(main())
