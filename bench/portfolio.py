"""Benchmark the Backup center at 100 and at 10,000 vaults: the portfolio page and the vault
list API, median and p95 server time and query count, and the ratio large/small.

    make bench-portfolio      # or: .venv/bin/python bench/portfolio.py [--requests 40]

It uses its own PostgreSQL database (``holdfast_bench`` by default; dropped and created
again), on a loopback host only, seeded with ``manage.py seed_scale`` (10 items and 100
recovery points per vault, one backup job per protected item). Requests go through Django's
test client in this process, so the time is server time: middleware, views, queries and
template rendering, without a network hop, over one persistent database connection. Each
URL gets a few warm-up requests, then ``--requests`` timed ones (bounded). Performance goal:
the portfolio page at 10,000 vaults within 1.5x of 100 vaults, under 150 ms median, with
the same query count.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
URLS = [
    ("portfolio page", "/backup-center/"),
    ("portfolio, filtered", "/backup-center/?immutability=locked&mua=true&tag=env=prod"),
    ("portfolio, by storage", "/backup-center/?sort=-storage"),
    ("vault list API", "/api/v1/vaults/"),
    ("vault list API, filtered", "/api/v1/vaults/?security_level=good&region=westeurope"),
]
GOAL_RATIO, GOAL_MEDIAN_MS = 1.5, 150.0


def _database_url(server: str, name: str) -> str:
    parts = urlsplit(server)
    if parts.hostname not in LOOPBACK:
        raise SystemExit(f"refusing a non-loopback database host: {parts.hostname}")
    return urlunsplit(parts._replace(path=f"/{name}"))


def _recreate(server: str, name: str) -> None:
    import psycopg

    with psycopg.connect(_database_url(server, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _measure(client: Any, url: str, requests: int, warmup: int = 3) -> dict[str, float]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(warmup):
        assert client.get(url).status_code == 200, url
    connection.queries_log.clear()  # a bounded deque: once full, its length stops growing
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, url
    return {
        "median": statistics.median(times),
        "p95": _percentile(times, 0.95),
        "queries": len(queries),
    }


def _seed(vaults: int, first: bool) -> float:
    from django.core.management import call_command

    started = time.perf_counter()
    call_command(
        "seed_scale",
        vaults=vaults,
        items=vaults * 10,
        points=vaults * 100,
        yes_i_know=not first,
        stdout=sys.stderr,
    )
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server",
        default=os.environ.get("BENCH_POSTGRES", "postgres://root@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server URL on a loopback host (the database name is replaced)",
    )
    parser.add_argument("--database", default="holdfast_bench")
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=40, help="timed requests per URL")
    args = parser.parse_args()
    if not 5 <= args.requests <= 500 or not 0 < args.small < args.large <= 100_000:
        raise SystemExit("--requests: 5 to 500; 0 < --small < --large <= 100000")

    _recreate(args.server, args.database)
    os.environ["DATABASE_URL"] = _database_url(args.server, args.database)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")
    # A persistent connection, as a production web process keeps (and it lets the query
    # counter see one connection across the request).
    os.environ.setdefault("DATABASE_CONN_MAX_AGE", "600")
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from rest_framework.test import APIClient

    from portal import services
    from portal.gate import entry_point

    call_command("migrate", verbosity=0)
    with entry_point("command"):
        reader = services.user_create(
            actor=None, username="bench-reader", role="reader", password=secrets.token_urlsafe(24)
        )
    page_client, api_client = Client(), APIClient()
    page_client.force_login(reader)
    api_client.force_authenticate(reader)

    results: dict[int, dict[str, dict[str, float]]] = {}
    seeded = 0
    for size in (args.small, args.large):
        seconds = _seed(size - seeded, first=seeded == 0)
        print(
            f"seed_scale --vaults {size - seeded} --items {(size - seeded) * 10} "
            f"--points {(size - seeded) * 100}: {seconds:.1f} s"
        )
        seeded = size
        results[size] = {
            label: _measure(api_client if "/api/" in url else page_client, url, args.requests)
            for label, url in URLS
        }

    small, large = results[args.small], results[args.large]
    print()
    print(f"{'':26} {args.small:>7} vaults              {args.large:>7} vaults")
    print(f"{'':26} {'median':>8} {'p95':>8} {'queries':>7}  "
          f"{'median':>8} {'p95':>8} {'queries':>7}  {'ratio':>6}")  # fmt: skip
    for label, _ in URLS:
        a, b = small[label], large[label]
        print(
            f"{label:26} {a['median']:7.1f}ms {a['p95']:7.1f}ms {a['queries']:7d}  "
            f"{b['median']:7.1f}ms {b['p95']:7.1f}ms {b['queries']:7d}  "
            f"{b['median'] / a['median']:5.2f}x"
        )
    page_a, page_b = small["portfolio page"], large["portfolio page"]
    ratio = page_b["median"] / page_a["median"]
    ok = (
        ratio <= GOAL_RATIO
        and page_b["median"] < GOAL_MEDIAN_MS
        and page_a["queries"] == page_b["queries"]
    )
    print(
        f"\ngoal (portfolio page at {args.large} vaults: <= {GOAL_RATIO}x of {args.small}, "
        f"< {GOAL_MEDIAN_MS:.0f} ms median, same query count): {'met' if ok else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
