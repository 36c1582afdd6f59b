"""Benchmark the audit hash chain (issue 20, deliverable 4): gate throughput with 8 concurrent
writers, and ``audit_verify`` over 1,000,000 records.

    make bench-audit          # BASELINE=<ref> to compare with another commit than db4f7fb
    .venv/bin/python bench/audit.py --baseline db4f7fb [--seconds 20] [--records 1000000]

Throughput: ``--writers`` processes (8), each with its own database connection and its own
vault, run real gate operations for ``--seconds`` and count them. Two workloads:

- ``op``: one gate operation per transaction (``job_alerts_mute`` toggled on the writer's
  vault: role check, vault row lock, rules, the change, the audit record, commit), as an API
  call does it: the gate's own transaction, no enclosing one (Holdfast sets no
  ATOMIC_REQUESTS). Until 2026-12-01 the bench wrapped it in one, which added a SAVEPOINT and
  its RELEASE to every op, before and after alike;
- ``txn``: two gate operations in one transaction (the mute and the unmute of the same
  vault), as services that compose gate calls do (a replica following its source, the
  sweeps' batches): before issue 20 the chain's lock was taken at the first record and held
  to the commit, across the second operation.

After both workloads, ``sql``: the SQL one ``op`` sends, captured from the gate as the
writers send it, replayed by ``pgbench`` from ``--writers`` clients with no application at
all (skipped without pgbench): the ceiling this machine's database puts on any gate.

``--baseline REF`` runs the same workers from a ``git worktree`` of REF (say, the commit before
the change) on a database of its own, so "before" and "after" are measured on the same
machine in one run (``make bench-audit`` passes db4f7fb, main before issue 20's chain).

Verification: ``--records`` (1,000,000) synthetic audit records are inserted set-based
(one ``INSERT ... SELECT generate_series``) and then chained by the chain's own linker, then
``manage.py audit_verify --local-only`` is run in a child process, timed, with its own CPU
time and peak RSS (``wait4``); then the server's CPU for the same stream is read from its
backend's ``/proc`` entry (the server must be this machine; the stream's query runs without
parallel workers, as audit_verify's do, so one backend holds all of it), giving what the
machine's idle cores could do with the verifier's ranges and their servers side by side.

Every database lives on the server of BENCH_POSTGRES (or DATABASE_URL), named
``--database`` (``holdfast_bench_audit``), ``..._before`` for the baseline and ``..._verify``
for the records, and is dropped
and created afresh each run. The machine is shared: the load average is printed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
RESULTS = ROOT / "bench" / "results"


def _url(server: str, name: str) -> str:
    parts = urlsplit(server)
    if parts.hostname not in LOOPBACK:
        raise SystemExit(f"Refusing to drop databases on {parts.hostname}: loopback only.")
    return urlunsplit(parts._replace(path=f"/{name}"))


def _recreate(server: str, name: str) -> str:
    import psycopg

    with psycopg.connect(_url(server, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return _url(server, name)


def _django(url: str, code: Path) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")
    os.environ["DATABASE_CONN_MAX_AGE"] = "600"
    sys.path.insert(0, str(code))
    import django

    django.setup()


# --- gate throughput ------------------------------------------------------------------------


def _prepare_writers(url: str, code: Path, writers: int) -> None:
    _django(url, code)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from portal import services as portal_services
    from portal.gate import entry_point
    from vaults import services

    with entry_point("command"):
        user = portal_services.user_create(
            actor=None, username="bench-admin", role="backup_admin", password="Bench-audit-1234!"
        )
    for index in range(writers):
        services.vault_create(
            actor=user, name=f"bench-audit-{index}", kind="backup", region="westeurope"
        )


def _writer(url: str, code: str, index: int, workload: str, ready: Any, go: Any, out: Any) -> None:
    _django(url, Path(code))
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from vaults import services
    from vaults.models import Vault

    user = get_user_model().objects.get(username="bench-admin")
    vault = Vault.objects.get(name=f"bench-audit-{index}")
    done, muted = 0, False
    ready.put(index)
    go.wait()
    stop = out.get()
    while time.time() < stop:
        muted = not muted
        if workload == "op":  # the gate's own transaction, as an API call runs it
            services.job_alerts_mute(actor=user, vault=vault, muted=muted)
            done += 1
            continue
        with transaction.atomic():
            services.job_alerts_mute(actor=user, vault=vault, muted=muted)
            services.job_alerts_mute(actor=user, vault=vault, muted=not muted)
            done += 2
            muted = not muted
    connection.close()
    ready.put(done)


def throughput(url: str, code: Path, writers: int, seconds: float, workload: str) -> float:
    """Gate operations a second with ``writers`` processes running ``workload``, timed from
    the moment every one of them is ready (Django started, rows read)."""
    ctx = multiprocessing.get_context("spawn")
    ready, go, stops = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(url, str(code), i, workload, ready, go, stops))
        for i in range(writers)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.get(timeout=300)
    stop = time.time() + seconds
    for _ in procs:
        stops.put(stop)
    go.set()
    total = sum(ready.get(timeout=seconds + 300) for _ in procs)
    for proc in procs:
        proc.join()
        if proc.exitcode:
            raise SystemExit(f"a writer failed (exit {proc.exitcode})")
    return total / seconds


UNITS = {
    "op": "gate ops/s",
    "txn": "gate ops/s",
    "sql": "transactions/s of one op's SQL replayed by pgbench alone (no application)",
}


def _throughput_child(url: str, code: Path, args: argparse.Namespace) -> dict[str, float]:
    """In a child process (``code``'s Django): prepare the database, then both workloads."""
    out = subprocess.run(
        [sys.executable, __file__, "--throughput-worker", url, str(code),
         str(args.writers), str(args.seconds)],
        check=True, capture_output=True, text=True,
        # That commit's packages, not ours: Celery puts the working directory first on sys.path.
        cwd=str(code), env={**os.environ, "PYTHONPATH": str(code)},
    )  # fmt: skip
    figures = {}
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            _, name, value = line.split()
            figures[name] = float(value)
    return figures


def _capture(url: str, code: str, out: Any) -> None:
    """The SQL one ``op`` sends, as the writers send it (the second of two, so per-user caches
    are warm): ``(in_transaction, statement)`` pairs, parameters bound as the client binds
    them, the writer's vault id written ``:vid``."""
    _django(url, Path(code))
    from django.contrib.auth import get_user_model
    from django.db import connection

    from vaults import services
    from vaults.models import Vault

    user = get_user_model().objects.get(username="bench-admin")
    vault = Vault.objects.get(name="bench-audit-0")
    sent: list[tuple[bool, str]] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        text = context["cursor"].cursor.mogrify(sql, params)
        text = text.replace(f'"vaults_vault"."id" = {vault.pk}', '"vaults_vault"."id" = :vid')
        sent.append((connection.in_atomic_block, " ".join(text.split())))
        return execute(sql, params, many, context)

    first = Vault.objects.order_by("pk").values_list("pk", flat=True).first()
    services.job_alerts_mute(actor=user, vault=vault, muted=True)
    with connection.execute_wrapper(record):
        services.job_alerts_mute(actor=user, vault=vault, muted=False)
    out.put((sent, first))


def database_alone(url: str, code: Path, writers: int, seconds: float) -> float | None:
    """Transactions a second when pgbench replays one ``op``'s SQL from ``writers`` clients,
    with no application at all: the most the database server of this machine can do for
    the gate's writes, whatever the client. None without pgbench."""
    import shutil

    if shutil.which("pgbench") is None:
        return None
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=_capture, args=(url, str(code), out))
    child.start()
    sent, first = out.get(timeout=300)
    child.join()
    lines = [f"\\set vid :client_id + {first}"]
    inside = False
    for in_transaction, text in sent:
        if in_transaction and not inside:
            lines.append("BEGIN;")
        if inside and not in_transaction:
            lines.append("COMMIT;")
        inside = in_transaction
        lines.append(text + ";")
    if inside:
        lines.append("COMMIT;")
    with tempfile.NamedTemporaryFile("w", suffix=".pgbench", delete=False) as script:
        script.write("\n".join(lines) + "\n")
    try:
        ran = subprocess.run(
            ["pgbench", "--no-vacuum", "--protocol=simple", f"--client={writers}",
             "--jobs=2", f"--time={max(1, round(seconds))}", f"--file={script.name}", url],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
    finally:
        os.unlink(script.name)
    for line in ran.stdout.splitlines():
        if line.startswith("tps = "):
            return float(line.split()[2])
    raise SystemExit(f"pgbench printed no rate: {ran.stdout}{ran.stderr}")


def throughput_worker(url: str, code: Path, writers: int, seconds: float) -> None:
    setup = multiprocessing.get_context("spawn").Process(
        target=_prepare_writers, args=(url, code, writers)
    )
    setup.start()
    setup.join()
    if setup.exitcode:
        raise SystemExit("preparing the writers failed")
    for workload in ("op", "txn"):
        rate = throughput(url, code, writers, seconds, workload)
        print(f"RESULT {workload} {rate:.1f}", flush=True)
    # The writers' tables as a fresh database has them (a server may run without autovacuum,
    # and the workloads left a dead row in the pending table for every record).
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM portal_auditrecord, vaults_vault")
        if conn.execute("SELECT to_regclass('portal_auditpending')").fetchone()[0]:  # type: ignore[index]
            conn.execute("VACUUM portal_auditpending")
    alone = database_alone(url, code, writers, seconds)
    if alone is not None:
        print(f"RESULT sql {alone:.1f}", flush=True)


# --- audit_verify ---------------------------------------------------------------------------

SYNTHETIC = """
INSERT INTO portal_auditpending (at, actor_id, actor_name, operation, outcome, code, reason,
    vault_name, target, source, before, after, details)
SELECT timestamptz '2026-01-01 00:00:00+00' + n * interval '31 seconds', NULL, 'bench-audit',
    'job_alerts_mute', CASE WHEN n %% 17 = 0 THEN 'refused' ELSE 'allowed' END,
    CASE WHEN n %% 17 = 0 THEN 'permission_denied' ELSE '' END,
    CASE WHEN n %% 17 = 0 THEN 'Your role may not do this.' ELSE '' END,
    'vault-' || (n %% 10000), 'vault:vault-' || (n %% 10000), 'api',
    jsonb_build_object('immutability', 'disabled', 'mute_job_alerts', n %% 2 = 0,
        'soft_delete', jsonb_build_object('state', 'enabled', 'retention_days', 14),
        'tags', jsonb_build_object('team', 'ops', 'cost', 'ünïcode €')),
    jsonb_build_object('immutability', 'disabled', 'mute_job_alerts', n %% 2 = 1,
        'soft_delete', jsonb_build_object('state', 'enabled', 'retention_days', 14),
        'tags', jsonb_build_object('team', 'ops', 'cost', 'ünïcode €')),
    '{}'::jsonb
FROM generate_series(1, %s) AS n
"""


def _count(server: str, name: str) -> int | None:
    """How many audit records database ``name`` holds; None when it has no log."""
    import psycopg

    try:
        with psycopg.connect(_url(server, name), autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM portal_auditrecord").fetchone()
            return None if row is None else int(row[0])
    except psycopg.Error:
        return None


def seed_records(url: str, records: int) -> float:
    """``records`` synthetic gate decisions, inserted set-based as pending rows and linked by
    the chain's own linker (one call); seconds taken."""
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SYNTHETIC, [records])
        conn.execute("SELECT holdfast_audit_link()")
        conn.execute("VACUUM ANALYZE portal_auditrecord")
    return time.perf_counter() - started


def verify_child(url: str) -> tuple[float, float, int, str]:
    """``manage.py audit_verify --local-only`` in a child process: wall seconds, its CPU
    seconds, its peak RSS in MB (``wait4``: this child's alone), and its verdict."""
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "portal.settings"}
    env["HOLDFAST_AUDIT_ANCHOR_DIR"] = tempfile.mkdtemp(prefix="bench-audit-anchors-")
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "audit_verify", "--local-only"],
            env=env, stdout=out, stderr=err, text=True,
        )  # fmt: skip
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        said, progress = out.read(), err.read()
    if child.returncode:
        raise SystemExit(f"audit_verify failed: {said}{progress}")
    lines = [line for line in progress.splitlines() if line.startswith("Verified")]
    print("\n".join(f"  {line}" for line in lines), flush=True)
    cpu = usage.ru_utime + usage.ru_stime
    return elapsed, cpu, usage.ru_maxrss // 1024, said.strip().splitlines()[0]


def server_cpu(url: str, records: int) -> float:
    """The database server's CPU seconds to produce audit_verify's stream (its query, every
    version 2 hash recomputed, to /dev/null on the server), read from the backend's /proc
    entry: with the verifier's own CPU, what an idle machine's two processes would each spend."""
    import psycopg

    from portal import audit_scan

    query = audit_scan.query(0, None).replace(" TO STDOUT", " TO '/dev/null'")
    with psycopg.connect(url) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        audit_scan.set_session(conn.execute)

        def ticks() -> int:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])  # utime, stime

        before = ticks()
        conn.execute(query)
        return (ticks() - before) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--database", default="holdfast_bench_audit")
    parser.add_argument(
        "--baseline", default="db4f7fb", help="a git ref whose gate to measure too ('' for none)"
    )
    parser.add_argument("--skip-verify", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the records of the last run if they are --records",
    )
    parser.add_argument("--throughput-worker", nargs=4, metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.throughput_worker:
        url, code, writers, seconds = args.throughput_worker
        throughput_worker(url, Path(code), int(writers), float(seconds))
        return
    server = os.environ.get("BENCH_POSTGRES") or os.environ.get("DATABASE_URL", "")
    if not server.startswith("postgres"):
        raise SystemExit("Set BENCH_POSTGRES (or DATABASE_URL) to a loopback PostgreSQL URL.")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    results = []
    before: dict[str, float] = {}
    if not args.skip_throughput:
        if args.baseline:
            with tempfile.TemporaryDirectory() as tmp:
                tree = Path(tmp) / "baseline"
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree),
                     args.baseline], check=True, capture_output=True,
                )  # fmt: skip
                try:
                    url = _recreate(server, args.database + "_before")
                    before = _throughput_child(url, tree, args)
                finally:
                    subprocess.run(
                        ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                        check=False,
                    )
            for name, rate in before.items():
                print(f"before ({args.baseline}) {name}: {rate:.1f} {UNITS[name]}", flush=True)
        url = _recreate(server, args.database)
        after = _throughput_child(url, ROOT, args)
        for name, rate in after.items():
            print(f"now {name}: {rate:.1f} {UNITS[name]}", flush=True)
        ops = after.get("op", 0.0)
        base = before.get("op", float("nan")) if args.baseline else float("nan")
        alone = after.get("sql", float("nan"))
        results.append(
            f"RESULT gate_throughput ops={ops:.1f} baseline_ops={base:.1f} "
            f"ratio={ops / base if base else float('nan'):.2f} "
            f"sql_alone={alone:.1f} sql_alone_ratio={alone / base if base else float('nan'):.2f}"
        )
    if not args.skip_verify:
        name = args.database + "_verify"
        if args.reuse and _count(server, name) == args.records:
            url = _url(server, name)
            print(f"reusing the {args.records:,} records of {name}")
        else:
            url = _recreate(server, name)
            subprocess.run(
                [sys.executable, str(ROOT / "manage.py"), "migrate", "-v", "0"],
                env={**os.environ, "DATABASE_URL": url}, check=True,
            )  # fmt: skip
            seeded = seed_records(url, args.records)
            print(f"seeded {args.records:,} records set-based and linked them in {seeded:.1f} s")
        elapsed, cpu, peak, said = verify_child(url)
        results.append(
            f"RESULT audit_verify seconds={elapsed:.2f} records={args.records} "
            f"rate={args.records / elapsed:.0f} peak_rss_mb={peak:.0f}"
        )
        print(
            f"audit_verify: {args.records:,} records in {elapsed:.1f} s (whole command, "
            f"Django start-up included), {args.records / elapsed:,.0f} records/s; its own CPU "
            f"{cpu:.1f} s ({cpu / args.records * 1e6:.1f} us a record); peak RSS {peak} MB. "
            f"{said}",
            flush=True,
        )
        _django(url, ROOT)
        server_s = server_cpu(url, args.records)
        cores = os.cpu_count() or 1
        per_record = (cpu + server_s) / cores / args.records
        print(
            f"server CPU for the stream: {server_s:.1f} s "
            f"({server_s / args.records * 1e6:.1f} us a record, every hash recomputed; no "
            f"parallel query: all of it in one backend); the verifier's and the server's CPU "
            f"spread over {cores} idle cores (the ranges run side by side): at most about "
            f"{1 / per_record:,.0f} records/s",
            flush=True,
        )
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"peak RSS of this process: {peak_self} MB")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for line in results:
        print(line, flush=True)


if __name__ == "__main__":
    main()
