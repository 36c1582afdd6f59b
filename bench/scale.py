"""Background work at fleet scale (issue 20, deliverable 6): the periodic tasks and the audit
chain timed on one ``seed_scale`` portfolio of 10,000 vaults, 100,000 items and 1,000,000
recovery points, each against the issue's goal.

    make bench-scale          # or: .venv/bin/python bench/scale.py [--only expiry,dispatch]

The tasks, in this order (``--only`` takes a comma-separated subset of the names):

==============  ===========================================================  =============
name            what is timed                                                goal
==============  ===========================================================  =============
expiry          the expiry sweep of 100,000 points (``sweeps.points_expire``)  < 60 s
dispatch        one dispatch tick of 10,000 due items on 100 hosts             < 10 s
verify          the weekly verification schedule of the 100,000 items          < 30 s
storage         the storage sweep of the 10,000 vaults                         < 5 s
audit_verify    ``audit_verify`` of 1,000,000 audit records                    < 10 s
gate            gate operations a second with 8 writers, against ``--baseline``  >= 4x
==============  ===========================================================  =============

and for every one peak memory under 300 MB (the peak resident set of its process; of the
largest process for the ones that start several).

The data: ``holdfast_bench_reports``, the portfolio ``make bench-reports`` seeds (``seed_scale
--vaults 10000 --items 100000 --points 1000000 --days 90 --history 9 --seed 6``: also about
1,000,000 jobs over 90 days), kept between runs; its comment says what was seeded. It is seeded
here the same way (bench/reports.py's seed worker) only if it does not exist; one whose comment
differs (being seeded right now, or other parameters) is waited for (``--wait`` minutes), never
dropped. A task that changes data works on a copy of its own (``CREATE DATABASE <--prefix>_<task>
TEMPLATE holdfast_bench_reports``; PostgreSQL refuses while anyone is connected to the template,
so the copy is retried; with more than one such task, the template is copied once to
``<--prefix>_base`` and the tasks copy that, so another bench may use the template meanwhile),
dropped afterwards (``--keep`` keeps them). In the copy the task's process
migrates (a new index is measured without seeding again), analyses what it reads, then times one
call, counting every connection's SQL statements (``bench.portfolio.Statements``).

- ``expiry``: in the copy, as its owner, every point already past its expiry gets a later one,
  then 100,000 points of vaults that are not immutable expire a day ago (bench/scale_expiry.py);
  the sweep deletes them in batches of 1,000.
- ``dispatch`` and ``verify``: bench/scale_tasks.py. Their messages go to ``--broker`` (Redis
  database 13 unless SCALE_BROKER_URL says otherwise), a queue nobody reads, emptied after.
- ``storage``: ``bench/scale_storage.py``'s ``measure`` when it is there, else the minimal one
  of ``bench/scale_storage_min.py``; the storage root is an empty temporary directory (the
  seeded vaults were never written).
- ``audit_verify`` and ``gate``: ``bench/audit.py --skip-throughput`` and ``--skip-verify
  --baseline REF`` as they are (their own databases, ``<--prefix>_audit...``), read from the
  ``RESULT`` lines they print (or their sentences, for an audit.py without them).

Each task runs in a child process: its peak RSS is its own (``wait4``). The rows are printed as
the tasks end, then one summary table, also written as markdown to
``bench/results/scale-all-<date>.md`` when every task ran (or to ``--results``). The machine is
shared: the load average is printed with each row. Exit status 1 if a goal is missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.portfolio import _database_url  # noqa: E402

SERVER = os.environ.get("BENCH_POSTGRES", "postgres://root@127.0.0.1:5432/postgres")
TEMPLATE, PREFIX = "holdfast_bench_reports", "holdfast_bench_scale"
VAULTS, SEED = 10_000, 6
GOAL_MB = 300.0
RESULTS = ROOT / "bench" / "results"


@dataclass
class Row:
    task: str
    label: str
    goal: str
    seconds: float | None = None
    statements: int | None = None
    peak_rss_mb: float | None = None
    result: str = ""
    met: bool = False
    load: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# --- databases -------------------------------------------------------------------------------


def _admin() -> Any:
    import psycopg

    return psycopg.connect(_database_url(SERVER, "postgres"), autocommit=True)


def _comment(name: str) -> tuple[bool, str | None]:
    with _admin() as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            [name],
        ).fetchone()
    return (row is not None, row[0] if row else None)


def template_ready(args: argparse.Namespace) -> None:
    """The seeded template exists with the expected comment: seeded here if missing, waited
    for if its comment differs (being seeded), never dropped."""
    from bench import reports

    marker = reports._marker(args.vaults, args.seed)
    deadline = time.monotonic() + args.wait * 60
    while True:
        exists, comment = _comment(args.template)
        if exists and comment == marker:
            print(f"{args.template}: {marker}", flush=True)
            return
        if not exists:
            break
        if time.monotonic() > deadline:
            raise SystemExit(
                f"{args.template} exists but its comment is {comment!r}, not {marker!r}: being "
                "seeded, or seeded otherwise (bench/reports.py --reseed seeds it again)"
            )
        print(f"{args.template}: comment {comment!r}; waiting for its seeding", flush=True)
        time.sleep(30)
    from bench.portfolio import seeded

    print(f"{args.template}: missing, seeding it as bench/reports.py does", flush=True)
    seed_args = argparse.Namespace(server=SERVER, reseed=False, seed=args.seed)
    seeded(seed_args, str(ROOT / "bench" / "reports.py"), args.template, marker, args.vaults)


def copy(template: str, name: str, *, tries: int = 120) -> str:
    """A fresh ``name`` from ``template`` (file copy: one checkpoint, then the files); the
    template busy (someone connected) is retried every 5 s."""
    import psycopg

    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for attempt in range(tries):
            try:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
                return _database_url(SERVER, name)
            except psycopg.errors.ObjectInUse:
                if attempt % 6 == 0:
                    print(f"  template {template} busy, retrying", flush=True)
                time.sleep(5)
    raise RuntimeError(f"template {template} stayed busy for {tries * 5} s")


def drop(name: str) -> None:
    with _admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- child processes -------------------------------------------------------------------------


def child(
    command: list[str], env: dict[str, str], cwd: str | None = None, timeout: float = 0
) -> tuple[str, float, float]:
    """Run ``command``; its stdout, wall seconds and peak RSS in MB (``wait4``: the largest of
    it and the processes it waited for). Past ``timeout`` seconds (0: none) its process group
    is stopped and the task reported as too slow."""
    with tempfile.TemporaryFile("w+") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            command, env=env, stdout=out, text=True, cwd=cwd, start_new_session=True
        )
        timer = threading.Timer(timeout, os.killpg, [proc.pid, signal.SIGTERM])
        if timeout:
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        said = out.read()
    if timeout and wall >= timeout:
        raise RuntimeError(f"stopped after {wall:.0f} s (--timeout)")
    if proc.returncode:
        tail = "\n".join(said.strip().splitlines()[-5:])
        raise RuntimeError(f"{' '.join(command[1:3])} exited {proc.returncode}: {tail}")
    return said, wall, usage.ru_maxrss / 1024


def _task_child(task: str, url: str, args: argparse.Namespace, var: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_DEBUG": "0",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-scale-" + os.urandom(16).hex()),
        "HOLDFAST_STORAGE_ROOT": str(var / "storage"),
        "HOLDFAST_AUDIT_ANCHOR_DIR": str(var / "audit-anchors"),
        "HOLDFAST_KEY_FILE": str(var / "keys" / "master.key"),
        "CELERY_BROKER_URL": args.broker,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, __file__, "--task", task, "--var", str(var)]
    command += ["--due", str(args.due), "--hosts", str(args.hosts)]
    said, _, peak = child(command, env, timeout=args.timeout)
    result: dict[str, Any] = json.loads(said.strip().splitlines()[-1])
    result["peak_rss_mb"] = round(max(peak, result.get("peak_rss_mb") or 0), 1)
    return result


def task_main(task: str, var: Path, due: int, hosts: int) -> dict[str, Any]:
    """In the child: one task on DATABASE_URL."""
    if task == "expiry":
        from bench import scale_expiry

        result = scale_expiry.measure_worker(0)
        return {**result.pop("batch"), **result}
    from bench import scale_tasks

    if task == "dispatch":
        return scale_tasks.run_dispatch(due, hosts)
    if task == "verify":
        return scale_tasks.run_verify()
    if task == "storage":
        try:
            from bench.scale_storage import measure  # type: ignore[import-not-found]
        except ImportError:  # the storage sweep's own bench is not on this branch yet
            from bench.scale_storage_min import measure
        return dict(measure(os.environ["DATABASE_URL"], var_dir=var))
    raise SystemExit(f"unknown task {task}")


# --- the tasks -------------------------------------------------------------------------------


def _on_copy(task: str, args: argparse.Namespace, row: Row, prepare: Any = None) -> dict[str, Any]:
    name = f"{args.prefix}_{task}"
    started = time.perf_counter()
    url = copy(args.source, name)
    made = prepare(url) if prepare else None
    print(f"  copy {name} ready in {time.perf_counter() - started:.0f} s", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix=f"bench-scale-{task}-") as var:
            result = _task_child(task, url, args, Path(var))
    finally:
        if not args.keep:
            drop(name)
    if made is not None:
        result["made"] = made
    row.seconds, row.statements = result.get("seconds"), result.get("statements")
    row.peak_rss_mb = result.get("peak_rss_mb")
    return result


def _timely(row: Row, limit: float) -> bool:
    return (
        row.seconds is not None
        and row.seconds < limit
        and row.peak_rss_mb is not None
        and row.peak_rss_mb < GOAL_MB
    )


def expiry(args: argparse.Namespace, row: Row) -> None:
    from bench import scale_expiry

    points = args.vaults * 10
    r = _on_copy("expiry", args, row, lambda url: scale_expiry.make_expired(url, points))
    batches = max(1, -(-r["points"] // 1000))
    row.result = (
        f"{r['points']:,} of {r['made']:,} points expired, {r['left_due']:,} left due; "
        f"{(r['statements'] or 0) / batches:.0f} statements a batch of 1,000"
    )
    row.met = _timely(row, 60) and r["points"] == r["made"] and r["left_due"] == 0


def dispatch(args: argparse.Namespace, row: Row) -> None:
    r = _on_copy("dispatch", args, row)
    row.result = (
        f"{r['jobs']:,} jobs for {r['due']:,} due items on {r['hosts']} hosts, "
        f"{r['sending_seconds']:.2f} s of it sending ({r['messages']:,} messages), "
        f"{r['audit_records']} audit record(s)"
    )
    row.met = _timely(row, 10) and r["jobs"] == r["due"] == args.due


def verify(args: argparse.Namespace, row: Row) -> None:
    r = _on_copy("verify", args, row)
    row.result = (
        f"{r['jobs']:,} verify jobs for {r['items']:,} items, {r['sending_seconds']:.2f} s of "
        f"it sending ({r['messages']:,} messages), {r['audit_records']} audit records"
    )
    row.met = _timely(row, 30) and r["jobs"] > 0


def storage(args: argparse.Namespace, row: Row) -> None:
    r = _on_copy("storage", args, row)
    dirs = r.get("dirs_created")
    row.result = (
        f"{r.get('vaults', 0):,} vaults, {'?' if dirs is None else f'{dirs:,}'} directories "
        f"created ({r.get('measured_by', 'bench/scale_storage.py')})"
    )
    row.met = _timely(row, 5) and r.get("vaults") == args.vaults


def _results(text: str, name: str) -> dict[str, str]:
    """``key=value`` pairs of the last ``RESULT <name> ...`` line of ``text`` (empty: none)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "RESULT" and parts[1] == name:
            found = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
    return found


def _number(value: Any) -> float | None:
    try:
        return float(str(value).rstrip("sMB").replace(",", ""))
    except (TypeError, ValueError):
        return None


def _audit(extra: list[str], args: argparse.Namespace) -> tuple[str, float, float]:
    command = [sys.executable, str(ROOT / "bench" / "audit.py"), *extra]
    command += ["--database", f"{args.prefix}_audit"]
    # Run from elsewhere than this tree, without PYTHONPATH: the baseline's workers must import
    # the baseline's packages, and Celery puts the working directory first on sys.path.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with tempfile.TemporaryDirectory(prefix="bench-scale-audit-") as cwd:
        said, wall, peak = child(
            command, {**env, "BENCH_POSTGRES": SERVER}, cwd=cwd, timeout=args.timeout
        )
    sys.stdout.write("".join(f"  | {line}\n" for line in said.strip().splitlines()))
    return said, wall, peak


def audit_verify(args: argparse.Namespace, row: Row) -> None:
    records = args.vaults * 100
    said, wall, _ = _audit(["--skip-throughput", "--records", str(records)], args)
    found = _results(said, "audit_verify")
    if found:
        row.seconds = _number(found.get("seconds"))
        row.peak_rss_mb = _number(found.get("peak_rss_mb"))
        row.statements = int(_number(found.get("statements")) or 0) or None
        counted = int(_number(found.get("records")) or 0)
    else:  # an audit.py from before its RESULT lines: its sentence
        match = re.search(r"audit_verify: ([\d,]+) records in ([\d.]+) s.*?peak RSS (\d+) MB", said)
        if not match:
            raise RuntimeError("no audit_verify figures in bench/audit.py's output")
        counted = int(match.group(1).replace(",", ""))
        row.seconds, row.peak_rss_mb = float(match.group(2)), float(match.group(3))
    rate = counted / row.seconds if row.seconds else 0
    row.result = f"{counted:,} records, {rate:,.0f} a second (whole command; bench {wall:.0f} s)"
    row.met = _timely(row, 10) and counted == records


def gate(args: argparse.Namespace, row: Row) -> None:
    extra = ["--skip-verify", "--baseline", args.baseline, "--seconds", str(args.gate_seconds)]
    said, wall, peak = _audit(extra, args)
    found = _results(said, "gate_throughput")
    ops, base = _number(found.get("ops")), _number(found.get("baseline_ops"))
    if ops is None or base is None:  # an audit.py from before its RESULT lines
        now = re.search(r"^now op: ([\d.]+)", said, re.M)
        before = re.search(r"^before \(.*?\) op: ([\d.]+)", said, re.M)
        if not (now and before):
            raise RuntimeError("no gate throughput figures in bench/audit.py's output")
        ops, base = float(now.group(1)), float(before.group(1))
    ratio = _number(found.get("ratio")) or (ops / base if base else 0.0)
    row.seconds, row.peak_rss_mb = round(wall, 1), round(peak, 1)
    alone = _number(found.get("sql_alone"))
    row.result = (
        f"{ops:,.0f} ops/s vs {base:,.0f} at {args.baseline}: {ratio:.2f}x "
        f"(time: the whole bench, both gates)"
    )
    row.extra = {"ops": ops, "baseline_ops": base, "ratio": ratio}
    if alone is not None and alone == alone and base:  # not NaN
        # The ceiling: one op's SQL replayed by pgbench with no application at all.
        row.result += f"; its SQL alone in pgbench {alone:,.0f}/s ({alone / base:.2f}x)"
        row.extra.update(sql_alone=alone, sql_alone_ratio=round(alone / base, 2))
    row.met = ratio >= 4 and row.peak_rss_mb < GOAL_MB


TASKS: dict[str, tuple[str, str, Callable[[argparse.Namespace, Row], None]]] = {
    "expiry": ("expiry sweep of 100,000 points", "< 60 s", expiry),
    "dispatch": ("dispatch of 10,000 due items", "< 10 s", dispatch),
    "verify": ("verification schedule of 100,000 items", "< 30 s", verify),
    "storage": ("storage sweep of 10,000 vaults", "< 5 s", storage),
    "audit_verify": ("audit_verify of 1,000,000 records", "< 10 s", audit_verify),
    "gate": ("gate throughput, 8 writers vs baseline", ">= 4x", gate),
}
COPIED = {"expiry", "dispatch", "verify", "storage"}


# --- the table -------------------------------------------------------------------------------


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _cells(row: Row) -> list[str]:
    return [
        row.label,
        "-" if row.seconds is None else f"{row.seconds:.2f} s",
        "-" if row.statements is None else f"{row.statements:,}",
        "-" if row.peak_rss_mb is None else f"{row.peak_rss_mb:.0f}",
        f"{row.goal}, < {GOAL_MB:.0f} MB",
        "met" if row.met else "NOT met",
        row.load,
    ]


HEADER = ["task", "time", "SQL statements", "peak RSS (MB)", "goal", "", "load (1, 5, 15 min)"]


def table(rows: list[Row]) -> str:
    lines = [_cells(row) for row in rows]
    widths = [max(len(c[i]) for c in [HEADER, *lines]) for i in range(len(HEADER))]
    out = ["  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)).rstrip()]
    for cells in lines:
        out.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(out)


def markdown(rows: list[Row], args: argparse.Namespace, started: str) -> str:
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    lines = [
        f"# bench-scale, {dt.date.today().isoformat()} (2 CPUs, shared with other sessions)",
        "",
        f"`make bench-scale` (bench/scale.py) at {commit}, started {started} UTC, on copies of "
        f"`{args.template}` ({args.vaults:,} vaults, {args.vaults * 10:,} items, "
        f"{args.vaults * 100:,} points, about {args.vaults * 100:,} jobs over 90 days). "
        "Each task in a process of its own; peak RSS is that process's (for the gate, the "
        "largest writer's). The load average is the machine's when the task ended.",
        "",
        "| " + " | ".join(HEADER) + " | what it did |",
        "| --- | ---: | ---: | ---: | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append("| " + " | ".join([*_cells(row), row.result]) + " |")
    met = all(row.met for row in rows)
    lines += ["", f"Goals: {'all met' if met else 'not all met'}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(TASKS), help="tasks, comma-separated")
    parser.add_argument("--template", default=TEMPLATE)
    parser.add_argument("--prefix", default=PREFIX, help="name prefix of the copies")
    parser.add_argument("--vaults", type=int, default=VAULTS, help="the template's size")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--wait", type=float, default=30, help="minutes to wait for seeding")
    parser.add_argument("--due", type=int, help="items due in the tick (default: --vaults)")
    parser.add_argument("--hosts", type=int, default=100, help="hosts the items are read on")
    parser.add_argument(
        "--broker", default=os.environ.get("SCALE_BROKER_URL", "redis://127.0.0.1:6379/13")
    )
    parser.add_argument("--baseline", default="db4f7fb", help="the gate's commit to beat 4x")
    parser.add_argument("--gate-seconds", type=float, default=20.0)
    parser.add_argument("--keep", action="store_true", help="keep the copies")
    parser.add_argument(
        "--timeout", type=float, default=1200, help="seconds a task may take (0: no limit)"
    )
    parser.add_argument("--results", type=Path, help="markdown file (default: when all ran)")
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("--var", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.due = args.due or args.vaults
    if args.task:
        print(json.dumps(task_main(args.task, args.var, args.due, args.hosts), default=str))
        return 0
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(TASKS)
    if unknown:
        raise SystemExit(f"unknown task(s) {', '.join(sorted(unknown))}; known: {', '.join(TASKS)}")
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
    print(f"load average (1, 5, 15 min): {_load()}", flush=True)
    args.source = args.template
    if len(COPIED & set(chosen)) > 1:
        template_ready(args)
        # One copy first, the tasks' copies from it: others may use the template meanwhile.
        print(f"copying {args.template} to {args.prefix}_base", flush=True)
        copy(args.template, f"{args.prefix}_base")
        args.source = f"{args.prefix}_base"
    elif COPIED & set(chosen):
        template_ready(args)
    rows = []
    for name in chosen:
        label, goal, run = TASKS[name]
        row = Row(name, label, goal)
        print(f"\n== {label}", flush=True)
        try:
            run(args, row)
        except Exception as exc:  # one task failing leaves the others to run
            row.result = f"failed: {exc}"
        row.load = _load()
        rows.append(row)
        print(table([row]), f"\n  {row.result}", flush=True)
    if args.source != args.template and not args.keep:
        drop(args.source)
    print("\n" + table(rows))
    path = args.results or (
        RESULTS / f"scale-all-{dt.date.today().isoformat()}.md" if chosen == list(TASKS) else None
    )
    if path:
        path.write_text(markdown(rows, args, started))
        print(f"\nwritten to {path}")
    return 0 if all(row.met for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
