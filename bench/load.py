"""Load test: 50 concurrent users browsing the portfolio and running operations for two
minutes against a real gunicorn, PostgreSQL, Redis and Celery worker, all on loopback.

    make bench-load                                  # or: .venv/bin/python bench/load.py
    LOAD_RUN_TIME=20s make bench-load                # a quick check
    .venv/bin/python bench/load.py --record bench/results/load-$(date -u +%F).md

What it does, bounded in time and to this machine:

1. Drops and creates its own PostgreSQL database (``holdfast_load``; loopback hosts only),
   migrates it and seeds it: ``seed_demo`` (a user per role, a dozen vaults through the
   gate), ``seed_scale`` (300 vaults, 3,000 items, 30,000 recovery points), 10 readers and
   5 backup admins for the load, and 5 vaults whose item is a small real directory, so
   on-demand backups really run.
2. Starts gunicorn on a free loopback port (4 workers x 2 threads, persistent database
   connections) and a ``celery worker`` on a Redis database of its own (``/14``, flushed).
3. Runs locust headless (``bench/locustfile.py``): 50 users spawned at 10/s for 2 minutes,
   7 in 10 browsing with a signed-in session, 3 in 10 driving the API with a backup admin's
   token (reads, and operations: create a vault, lengthen its soft delete, enable its
   immutability, request a backup).
4. Prints requests, failures and p50/p95/p99 per endpoint, per group and in total, and
   requests per second; ``--record FILE`` also writes them as markdown. Checks the audit
   chain (``manage.py audit_verify``) at the end.

Exits non-zero if any request failed (an HTTP error, a refused sign-in) or the chain is broken.
Django runs with DEBUG on, the embedded default: production's secure cookies need HTTPS,
which a loopback run does not have.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
GROUPS = [("sign-in", "sign-in"), ("pages", "page:"), ("API reads", "api: "), ("API writes", "")]
WRITES = {"api: create vault", "api: change soft delete", "api: enable immutability",
          "api: request backup"}  # fmt: skip


def _loopback_url(url: str, path: str | None = None) -> str:
    parts = urlsplit(url)
    if parts.hostname not in LOOPBACK:
        raise SystemExit(f"refusing a non-loopback host: {parts.hostname}")
    return urlunsplit(parts._replace(path=path)) if path is not None else url


def _recreate(server: str, name: str) -> None:
    import psycopg

    with psycopg.connect(_loopback_url(server, "/postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)


def _seed(workdir: Path, vaults: int, password: str) -> dict[str, Any]:
    """Migrate and seed in this process; return what the locust users need."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from policies import services as policy_services
    from portal import services
    from portal.gate import entry_point
    from vaults import services as vault_services
    from vaults.models import ProtectedItem, Vault

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    call_command("seed_demo", stdout=open(os.devnull, "w"))  # noqa: SIM115
    call_command(
        "seed_scale",
        vaults=vaults,
        items=vaults * 10,
        points=vaults * 100,
        yes_i_know=True,  # seed_demo's vaults are there already
        stdout=sys.stderr,
    )
    source = workdir / "source"
    source.mkdir()
    for i in range(20):
        (source / f"file-{i:02d}.txt").write_bytes(secrets.token_bytes(4096))
    readers = [f"load-reader-{i:02d}" for i in range(10)]
    admins = [f"load-admin-{i:02d}" for i in range(5)]
    ops = [f"load-ops-{i}" for i in range(5)]
    with entry_point("command"):
        for name in readers:
            services.user_create(actor=None, username=name, role="reader", password=password)
        for name in admins:
            services.user_create(actor=None, username=name, role="backup_admin", password=password)
        alice = get_user_model().objects.get(username="alice")
        for name in ops:
            vault = vault_services.vault_create(
                actor=alice, name=name, kind="backup", region="westeurope"
            )
            policy = policy_services.policy_create(
                actor=alice, vault=vault, name="daily", daily_days=30, time=dt.time(3)
            )
            vault_services.item_protect(
                actor=alice, vault=vault, name="docs", source_path=str(source), policy=policy
            )
    fixture = {
        "password": password,
        "readers": readers,
        "admins": admins,
        "ops": ops,
        "vaults": list(Vault.objects.order_by("?").values_list("name", flat=True)[:200]),
        "items": [
            list(pair)
            for pair in ProtectedItem.objects.order_by("?").values_list("vault__name", "name")[:200]
        ],
    }
    print(
        f"seeded {Vault.objects.count()} vaults, {ProtectedItem.objects.count()} items, "
        f"{len(readers)} readers and {len(admins)} backup admins "
        f"in {time.perf_counter() - started:.1f} s"
    )
    connection.close()  # the web and the worker are the database's clients from here on
    return fixture


def _warm_up(base: str, fixture: dict[str, Any], rounds: int) -> None:
    """Every gunicorn worker imports the URLconf, views and templates on its first requests:
    send each page a few times, concurrently, before measuring (not counted)."""
    import http.cookiejar
    import re
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{base}/accounts/login/", timeout=60) as form:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.read().decode())
    assert token is not None
    body = urlencode(
        {
            "csrfmiddlewaretoken": token.group(1),
            "username": fixture["readers"][0],
            "password": fixture["password"],
        }
    ).encode()
    request = urllib.request.Request(
        f"{base}/accounts/login/", data=body, headers={"Referer": f"{base}/accounts/login/"}
    )
    opener.open(request, timeout=60).close()
    vault = fixture["vaults"][0]
    paths = ["/accounts/login/", "/backup-center/", "/backup-center/?sort=-storage",
             f"/vaults/{vault}/", f"/vaults/{vault}/items/", "/items/", "/jobs/",
             "/dashboard/", "/api/v1/vaults/"]  # fmt: skip

    def fetch(path: str) -> None:
        opener.open(base + path, timeout=60).close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(fetch, paths * rounds))


def _percentile(ordered: list[float], share: float) -> float:
    """Nearest rank: the smallest value with at least ``share`` of the values at or below it."""
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _group(name: str) -> str:
    if name in WRITES:
        return "API writes"
    return next(label for label, prefix in GROUPS if prefix and name.startswith(prefix))


HEADER = [
    "| {} | requests | failures | req/s | p50 ms | p95 ms | p99 ms | max ms |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
]


def _table(samples: list[list[Any]], first: str, key: Any, order: list[str]) -> list[str]:
    """One row per ``key(sample)`` in ``order``, then the total; req/s over the samples' span."""
    ends = [s[1] for s in samples]
    window = max(ends) - min(ends) if len(ends) > 1 else 1.0
    rows: dict[str, list[list[Any]]] = defaultdict(list)
    for sample in samples:
        rows[key(sample[0])].append(sample)

    def row(label: str, chosen: list[list[Any]]) -> str:
        times = sorted(s[2] for s in chosen)
        failed = sum(1 for s in chosen if not s[3])
        return (
            f"| {label} | {len(chosen)} | {failed} | {len(chosen) / window:.1f} | "
            f"{_percentile(times, 0.50):.0f} | {_percentile(times, 0.95):.0f} | "
            f"{_percentile(times, 0.99):.0f} | {times[-1]:.0f} |"
        )

    return [
        HEADER[0].format(first),
        HEADER[1],
        *(row(label, rows[label]) for label in order if label in rows),
        row("**total**", samples),
    ]


def _report(samples: list[list[Any]], args: argparse.Namespace) -> tuple[str, int]:
    ends = [s[1] for s in samples]
    window = max(ends) - min(ends) if len(ends) > 1 else 1.0
    failures = sum(1 for s in samples if not s[3])
    groups = [label for label, _ in GROUPS]
    # Steady state: from the moment the last user has signed in (50 password hashes of
    # 0.4 s CPU each saturate 2 cores for the first seconds).
    signed_in = max((s[1] for s in samples if s[0].startswith("sign-in")), default=min(ends))
    steady = [s for s in samples if s[1] > signed_in]
    lines = [
        f"Load test, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC: {args.users} users "
        f"(spawn {args.spawn_rate}/s, think time {args.think.replace(',', '-')} s), "
        f"{args.run_time}, gunicorn {args.web_workers} workers x "
        f"{args.web_threads} threads, {os.cpu_count()} CPUs, everything on this machine.",
        "",
        "Whole run, by endpoint:",
        "",
        *_table(samples, "endpoint", lambda name: name, sorted({s[0] for s in samples})),
        "",
        "Whole run, by group:",
        "",
        *_table(samples, "group", _group, groups),
    ]
    if steady:
        lines += [
            "",
            f"Steady state, after the last sign-in ({signed_in - min(ends):.0f} s in):",
            "",
            *_table(steady, "group", _group, groups),
        ]
    lines += [
        "",
        f"{len(samples)} requests in {window:.0f} s ({len(samples) / window:.1f}/s), "
        f"{failures} failed.",
    ]
    return "\n".join(lines), failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server",
        default=os.environ.get("BENCH_POSTGRES", "postgres://root@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server URL on a loopback host (the database name is replaced)",
    )
    parser.add_argument("--database", default="holdfast_load")
    parser.add_argument(
        "--broker",
        default=os.environ.get("LOAD_BROKER_URL", "redis://127.0.0.1:6379/14"),
        help="a Redis database of the bench's own on a loopback host (flushed first)",
    )
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--spawn-rate", type=float, default=10)
    parser.add_argument("--run-time", default=os.environ.get("LOAD_RUN_TIME", "2m"))
    parser.add_argument(
        "--think",
        default=os.environ.get("LOAD_THINK", "1,5"),
        help="each user's pause between two actions: uniform between these seconds",
    )
    parser.add_argument("--vaults", type=int, default=300, help="seed_scale vaults")
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--web-threads", type=int, default=2)
    parser.add_argument("--record", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if not 1 <= args.users <= 200 or not 10 <= args.vaults <= 10_000:
        raise SystemExit("--users: 1 to 200; --vaults: 10 to 10000")
    if shutil.which("locust", path=str(BIN)) is None:
        raise SystemExit("locust is not installed in this virtualenv: pip install -e '.[dev]'")

    import redis

    redis.Redis.from_url(_loopback_url(args.broker)).flushdb()
    _recreate(args.server, args.database)
    database_url = _loopback_url(args.server, f"/{args.database}")
    workdir = Path(tempfile.mkdtemp(prefix="holdfast-load-"))
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_OWNER_URL"},
        "DATABASE_URL": database_url,  # the server's role for migrations and the app alike
        "CELERY_BROKER_URL": args.broker,
        "HOLDFAST_STORAGE_ROOT": str(workdir / "storage"),
        "HOLDFAST_RESTORE_ROOTS": str(workdir / "restores"),
        "DATABASE_CONN_MAX_AGE": "600",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "portal.settings",
    }
    os.environ.update(env)
    processes: list[subprocess.Popen[bytes]] = []
    log_path = workdir / "web-and-worker.log"
    passed = False
    try:
        fixture = _seed(workdir, args.vaults, secrets.token_urlsafe(16))
        (workdir / "fixture.json").write_text(json.dumps(fixture))
        port = _free_port()
        log = log_path.open("ab")
        common: dict[str, Any] = {
            "cwd": ROOT,
            "env": env,
            "start_new_session": True,
            "stdout": log,
            "stderr": subprocess.STDOUT,
        }
        processes.append(
            subprocess.Popen(
                [
                    *(str(BIN / "gunicorn"), "portal.wsgi:application"),
                    *("-b", f"127.0.0.1:{port}", "-w", str(args.web_workers)),
                    *("--threads", str(args.web_threads), "--timeout", "60"),
                    # Idle connections outlive a user's longest pause, as behind a proxy:
                    # with gunicorn's 2 s default a request sent just as the server closes
                    # the kept-alive connection fails ("connection closed"), POSTs included.
                    *("--keep-alive", "30"),
                ],
                **common,
            )
        )
        processes.append(
            subprocess.Popen(
                [
                    *(str(BIN / "celery"), "-A", "portal", "worker", "-P", "solo"),
                    *("-l", "WARNING", "--without-heartbeat", "--without-mingle"),
                    "--without-gossip",
                ],
                **common,
            )
        )
        base = f"http://127.0.0.1:{port}"

        def serving() -> bool:
            with contextlib.suppress(OSError), urlopen(f"{base}/healthz/", timeout=2) as answer:
                return bool(answer.status == 200)
            return False

        _wait(serving, 60, "gunicorn to serve")
        _warm_up(base, fixture, rounds=2 * args.web_workers)
        print(f"web on {base}; locust: {args.users} users, {args.spawn_rate}/s, {args.run_time}")
        samples_path = workdir / "samples.jsonl"
        locust_log = (workdir / "locust.log").open("ab")
        locust = subprocess.run(
            [
                *(str(BIN / "locust"), "-f", str(ROOT / "bench" / "locustfile.py")),
                *("--headless", "--host", base, "-u", str(args.users)),
                *("-r", str(args.spawn_rate), "-t", args.run_time, "--stop-timeout", "10"),
                *("--only-summary", "--loglevel", "WARNING"),
            ],
            cwd=ROOT,
            env={
                **env,
                "LOAD_FIXTURE": str(workdir / "fixture.json"),
                "LOAD_SAMPLES": str(samples_path),
                "LOAD_THINK": args.think,
            },
            stdout=locust_log,
            stderr=subprocess.STDOUT,
            timeout=3600,
        )
        samples = [json.loads(line) for line in samples_path.read_text().splitlines()]
        if not samples:
            raise SystemExit("locust recorded no request")
        report, failures = _report(samples, args)
        verified = subprocess.run(
            [sys.executable, "manage.py", "audit_verify"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        chain = verified.stdout.strip().splitlines()[0] if verified.returncode == 0 else "BROKEN"
        report += f"\nAudit chain after the run: {chain}\n"
        print()
        print(report)
        if args.record:
            args.record.parent.mkdir(parents=True, exist_ok=True)
            args.record.write_text(f"# Load test\n\n{report}")
            print(f"written to {args.record}")
        passed = failures == 0 and locust.returncode == 0 and verified.returncode == 0
        if not passed:
            print(f"FAILED (locust exit {locust.returncode}); logs in {workdir}")
        return 0 if passed else 1
    finally:
        for process in processes:
            _stop(process)
        if passed:  # otherwise keep the logs and the storage for a look
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
