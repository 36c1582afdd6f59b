"""Benchmark the Backup center at 100 and at 10,000 vaults: every sort and filter of the
portfolio, its summary tiles and the vault list API; median and p95 server time, query
count, and the ratio large/small.

    make bench-portfolio      # or: .venv/bin/python bench/portfolio.py [--requests 20]
    .venv/bin/python bench/portfolio.py --reseed    # drop and seed the databases again

Each size has its own PostgreSQL database (``holdfast_bench_100`` and
``holdfast_bench_10000`` by default), on a loopback host only, seeded with ``manage.py
seed_scale`` (10 items and 100 recovery points per vault, one backup job per protected item).
Seeding 10,000 vaults takes minutes, so a seeded database is kept between runs: the database's
comment records what was seeded (``seed_scale vaults=... items=... points=... seed=...``) and
it is dropped and seeded again only when that marker differs (or with ``--reseed``). Pending
migrations are applied to a kept database (``migrate``), so a new index or column is measured
without seeding again; then the tables the pages read are vacuumed and analysed at both sizes
(``VACUUMED``), as autovacuum would have done.

Both sizes are measured in one Python process, the large database as a second connection
that a router sends each request's queries to; for every URL the small and the large request
alternate, so a machine busy with other work slows both alike and the ratio stays honest
(the load average is printed; ``min`` shows the best case). Requests go through Django's
test client, so the time is server time: middleware, views, queries and template rendering,
without a network hop, over persistent database connections. Each URL gets a few warm-up
requests, then ``--requests`` timed ones per size. Goal, for
every portfolio URL and the tiles: under 150 ms median at 10,000 vaults, within 1.5x of 100
vaults, with the same query count.

Like with like: a filter value that matches 8 of 100 vaults but fills a page of 50 at 10,000
compares a short page with a full one (the "rows" columns show it). Those are still measured
and printed; each is also measured with a value that fills a page at 100 vaults too ("...,
full page"), and the goal line is judged on the pages that show the same number of rows at
both sizes, with the short-page ones summed up on a line of their own.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
PORTFOLIO = "/backup-center/"
SORTS = [
    "name", "-name", "kind", "region", "immutability", "soft_delete", "security_level",
    "-items", "last_backup", "-last_backup", "-storage", "storage",
]  # fmt: skip
FILTERS = [
    ("immutability=locked", "immutability"),
    ("soft_delete=always_on", "soft delete"),
    ("mua=true", "MUA on"),
    ("security_level=good", "security level"),
    ("kind=archive", "kind"),
    ("region=westeurope", "region"),
    ("tag=env=prod", "tag"),
    ("search=prod-west", "search"),
    ("immutability=locked&mua=true&tag=env=prod", "three filters"),
    ("immutability=enabled&sort=-storage", "filtered, by storage"),
    ("page=100", "page 100"),
    # The same filters with values that fill a page at 100 vaults too (the ones above match
    # 3 to 20 of 100 vaults but 50 of 10,000, so they compare a short page with a full one).
    ("kind=recovery_services", "kind, full page"),
    ("soft_delete=enabled", "soft delete, full page"),
    ("mua=false", "MUA off, full page"),
    ("search=east", "search, full page"),
    ("soft_delete=enabled&mua=false&tag=env", "three filters, full page"),
    ("replication=none", "not replicated, full page"),
    ("replication=replicated", "replicated"),
]
URLS: list[tuple[str, str]] = [
    ("portfolio page", PORTFOLIO),
    *[(f"sort {key}", f"{PORTFOLIO}?sort={key}") for key in SORTS],
    *[(f"filter {label}", f"{PORTFOLIO}?{query}") for query, label in FILTERS],
    ("tiles", "/backup-center/tiles/"),
    ("vault list API", "/api/v1/vaults/"),
    ("vault list API, filtered", "/api/v1/vaults/?security_level=good&region=westeurope"),
]
GOAL_RATIO, GOAL_MEDIAN_MS = 1.5, 150.0
# Vacuumed and analysed before measuring, at both sizes: seeding and each migration's backfill
# leave dead rows that autovacuum would clear in production, but a server may run with it off
# (this machine's does), and a vault table three times its size is no fleet's steady state.
VACUUMED = ["vaults_vault", "vaults_protecteditem", "vaults_job", "vaults_jobtally",
            "vaults_rpotally", "django_session", "portal_alert", "portal_approval"]  # fmt: skip


def _database_url(server: str, name: str) -> str:
    parts = urlsplit(server)
    if parts.hostname not in LOOPBACK:
        raise SystemExit(f"refusing a non-loopback database host: {parts.hostname}")
    return urlunsplit(parts._replace(path=f"/{name}"))


def _marker(vaults: int, seed: int) -> str:
    return f"seed_scale vaults={vaults} items={vaults * 10} points={vaults * 100} seed={seed}"


def _prepare(server: str, name: str, marker: str, reseed: bool) -> bool:
    """Create ``name`` unless it holds ``marker``; True when it must be seeded."""
    import psycopg

    with psycopg.connect(_database_url(server, "postgres"), autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            [name],
        ).fetchone()
        if row is not None and row[0] == marker and not reseed:
            return False
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
        return True


def _mark(server: str, name: str, marker: str) -> None:
    import psycopg

    with psycopg.connect(_database_url(server, "postgres"), autocommit=True) as conn:
        conn.execute(f"COMMENT ON DATABASE \"{name}\" IS '{marker}'")


class Statements:
    """Counts the SQL statements of every connection of this process, those opened later
    too (a thread's own, as the compliance report's side-by-side scans use): ``count``."""

    def __init__(self) -> None:
        from django.db import connection
        from django.db.backends.signals import connection_created

        self.count = 0
        connection_created.connect(self._attach, weak=False)
        self._attach(None, connection)

    def __call__(self, execute: Any, sql: Any, params: Any, many: Any, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)

    def _attach(self, sender: Any, connection: Any, **kwargs: Any) -> None:
        if self not in connection.execute_wrappers:
            connection.execute_wrappers.append(self)


def seeded(
    args: argparse.Namespace, script: str, name: str, marker: str, size: int
) -> dict[str, str]:
    """The environment of database ``name`` on ``args.server``, seeded by ``script
    --seed-worker size`` unless it holds ``marker`` already (or ``args.reseed``)."""
    env = {**os.environ, "DATABASE_URL": _database_url(args.server, name)}
    if not _prepare(args.server, name, marker, args.reseed):
        print(f"{name}: kept ({marker})", flush=True)
        return env
    print(f"{name}: seeding {marker}", flush=True)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, script, "--seed-worker", str(size), "--seed", str(args.seed)],
        env=env, check=True, stdout=sys.stderr,
    )  # fmt: skip
    _mark(args.server, name, marker)  # only once seeding succeeded
    print(f"  seeded in {time.perf_counter() - started:.1f} s", flush=True)
    return env


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class Router:
    """Sends every query of the request being timed to one size's database (``alias``)."""

    alias = "default"

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return Router.alias

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return Router.alias

    def allow_relation(self, *args: Any, **hints: Any) -> bool:
        return True

    def allow_migrate(self, *args: Any, **hints: Any) -> bool:
        return True


def _timed(client: Any, alias: str, url: str) -> float:
    Router.alias = alias
    started = time.perf_counter()
    response = client.get(url)
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, (alias, url, response.status_code)
    return elapsed


def _rows(client: Any, alias: str, url: str) -> int:
    """Vault rows on the page (a page of 50 renders more than a page of 3: a filtered page
    matching few vaults of the small fleet is cheaper for that reason alone)."""
    Router.alias = alias
    match = re.search(rb"Export these (\d+) vaults", client.get(url).content)
    return min(50, int(match.group(1))) if match else -1


def _measure(clients: dict[str, Any], url: str, requests: int, warmup: int = 3) -> dict[str, Any]:
    """Small and large requests alternate, so a busy machine slows both alike."""
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    result: dict[str, Any] = {}
    for alias, client in clients.items():
        for _ in range(warmup):
            _timed(client, alias, url)
        connections[alias].queries_log.clear()
        with CaptureQueriesContext(connections[alias]) as queries:
            _timed(client, alias, url)
        result[alias] = {"queries": len(queries), "times": [], "rows": _rows(client, alias, url)}
    for _ in range(requests):
        for alias, client in clients.items():
            result[alias]["times"].append(_timed(client, alias, url))
    for entry in result.values():
        times = entry.pop("times")
        entry.update(median=statistics.median(times), p95=_percentile(times, 0.95))
        entry["min"] = min(times)
    return result


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")
    # A persistent connection, as a production web process keeps (and it lets the query
    # counter see one connection across the request).
    os.environ.setdefault("DATABASE_CONN_MAX_AGE", "600")
    import django

    django.setup()


def seed_worker(size: int, seed: int) -> None:
    """In this process's database (DATABASE_URL): migrate, seed."""
    _setup_django()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command(
        "seed_scale", vaults=size, items=size * 10, points=size * 100, seed=seed,
        stdout=sys.stderr,
    )  # fmt: skip


def measure_worker(large_url: str, requests: int) -> dict[str, Any]:
    """DATABASE_URL is the small database, ``large_url`` the large one: migrate both, then
    time every URL on both, request by request in turn."""
    _setup_django()
    import dj_database_url
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections, router
    from django.test import Client
    from rest_framework.test import APIClient

    from portal import services
    from portal.gate import entry_point

    settings.DATABASES["large"] = {
        **settings.DATABASES["default"],
        **dj_database_url.parse(large_url, conn_max_age=600),
    }
    settings.DATABASE_ROUTERS = [Router()]
    router.routers = [Router()]  # in case the router list was read already
    page_clients, api_clients = {}, {}
    for alias in ("default", "large"):
        Router.alias = alias
        call_command("migrate", database=alias, verbosity=0)
        with connections[alias].cursor() as cursor:  # what autovacuum does in production
            for table in VACUUMED:
                cursor.execute(f"VACUUM (ANALYZE) {table}")
        reader = get_user_model().objects.filter(username="bench-reader").first()
        if reader is None:
            with entry_point("command"):
                reader = services.user_create(
                    actor=None, username="bench-reader", role="reader",
                    password=secrets.token_urlsafe(24),
                )  # fmt: skip
        page_clients[alias], api_clients[alias] = Client(), APIClient()
        page_clients[alias].force_login(reader)
        api_clients[alias].force_authenticate(reader)
    return {
        label: _measure(api_clients if "/api/" in url else page_clients, url, requests)
        for label, url in URLS
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server",
        default=os.environ.get("BENCH_POSTGRES", "postgres://root@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server URL on a loopback host (the database name is replaced)",
    )
    parser.add_argument("--database", default="holdfast_bench", help="name prefix")
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--requests", type=int, default=20, help="timed requests per URL")
    parser.add_argument("--reseed", action="store_true", help="seed again even if kept")
    parser.add_argument("--seed-worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--measure-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 5 <= args.requests <= 500 or not 0 < args.small < args.large <= 100_000:
        raise SystemExit("--requests: 5 to 500; 0 < --small < --large <= 100000")
    if args.seed_worker:
        seed_worker(args.seed_worker, args.seed)
        return 0
    if args.measure_worker:
        print(json.dumps(measure_worker(args.measure_worker, args.requests)))
        return 0

    envs: dict[int, dict[str, str]] = {}
    for size in (args.small, args.large):  # seed first, so a failed measurement keeps them
        name = f"{args.database}_{size}"
        envs[size] = seeded(args, __file__, name, _marker(size, args.seed), size)
    command = [sys.executable, __file__, "--requests", str(args.requests)]
    command += ["--measure-worker", envs[args.large]["DATABASE_URL"]]
    done = subprocess.run(
        command, env=envs[args.small], stdout=subprocess.PIPE, check=True, text=True
    )
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"load average (1, 5, 15 min): {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print()
    print(f"{'':28} {args.small:>7} vaults                     {args.large:>7} vaults")
    print(f"{'':28} {'median':>8} {'min':>7} {'queries':>7} {'rows':>4}  "
          f"{'median':>8} {'min':>7} {'p95':>8} {'queries':>7} {'rows':>4}  "
          f"{'ratio':>6}  goal")  # fmt: skip
    all_met, short_pages = True, []
    for label, url in URLS:
        a, b = measured[label]["default"], measured[label]["large"]
        ratio = b["median"] / a["median"]
        met = ratio <= GOAL_RATIO and b["median"] < GOAL_MEDIAN_MS and a["queries"] == b["queries"]
        like = a["rows"] == b["rows"]
        if "/api/" not in url and like:
            all_met = all_met and met
        elif "/api/" not in url:
            short_pages.append((label, met))
        rows_a, rows_b = (f"{x['rows']:4d}" if x["rows"] >= 0 else "   -" for x in (a, b))
        print(
            f"{label:28} {a['median']:7.1f}ms {a['min']:6.1f}ms {a['queries']:7d} {rows_a}  "
            f"{b['median']:7.1f}ms {b['min']:6.1f}ms {b['p95']:7.1f}ms {b['queries']:7d} "
            f"{rows_b}  {ratio:5.2f}x  {'met' if met else 'NOT met'}{'' if like else ' *'}"
        )
    print(
        f"\ngoal (every portfolio sort and filter and the tiles at {args.large} vaults: "
        f"<= {GOAL_RATIO}x of {args.small}, < {GOAL_MEDIAN_MS:.0f} ms median, same query "
        f"count; pages showing as many rows at both sizes): {'met' if all_met else 'NOT met'}"
    )
    if short_pages:
        missed = [label for label, met in short_pages if not met]
        print(
            f"* fewer rows at {args.small} vaults than at {args.large} (a short page against "
            f"a full one): {len(short_pages) - len(missed)} of {len(short_pages)} within the "
            f"goal anyway{'; not: ' + ', '.join(missed) if missed else ''}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
