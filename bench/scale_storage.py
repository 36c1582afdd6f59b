"""The storage sweep at fleet scale (issue 20, deliverable 6's storage part): every vault of a
``seed_scale`` database (10,000 vaults), ``sweeps.storage_sweep()`` timed in a process of its
own.

    .venv/bin/python bench/scale_storage.py [--copy-from holdfast_bench_reports]
        [--database holdfast_bench_sweep] [--stores 100] [--var DIR] [--code DIR]

``measure(database_url, var_dir=...)`` is what ``make bench-scale`` calls: on an existing
seeded database (it migrates it, and writes to it only what the sweep itself writes, plus
the data keys of the ``stores`` vaults it gives a store). The storage root is a new directory
under ``var_dir``, removed afterwards; ``HOLDFAST_VAR_DIR`` is ``var_dir`` (the master key
lives there). The seeded vaults were never written, so their stores do not exist: the sweep
must pass over them without creating anything (the issue's case: 10,000 vaults whose stores
are empty). With ``stores``, that many of them (the first by id) first get a real store, each
with a point no row names (an orphan past its date) and ``garbage`` chunks a dead backup
left, so the measured run also removes orphans and collects garbage.

Printed and returned: seconds, SQL statements (every connection's, ``bench.portfolio.
Statements``), peak RSS of the sweeping process (``ru_maxrss``), vaults, directories
the sweep created for a store (``dirs_created``: a vault's tier, none should be; and
``all_dirs_created``, inside stores too, e.g. a first ``gc/``), ``fsyncs`` (calls to
``os.fsync``, files and directories), and the sweep's own report.

``--code DIR`` runs the same measurement with another checkout's code (e.g. ``git archive
main | tar -x -C DIR``): how the figures before the change were taken.

Goal: 10,000 vaults under 5 s, peak memory under 300 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("BENCH_POSTGRES", "postgres://root@127.0.0.1:5432/postgres")
TEMPLATE, DATABASE = "holdfast_bench_reports", "holdfast_bench_sweep"
GOAL_SECONDS, GOAL_MB = 5.0, 300.0


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _directories(root: Path) -> int:
    return sum(len(dirnames) for _, dirnames, _ in os.walk(root))


def _stores(root: Path) -> int:
    """Store directories (a tier of a vault) under the storage root."""
    return sum(
        len(os.listdir(root / tier)) for tier in ("vaults", "archive") if (root / tier).is_dir()
    )


def _give_stores(count: int, garbage: int, source: Path) -> int:
    """The first ``count`` vaults by id get a store: an orphan point (no row names it, no
    date of its own, so the sweep removes it) and ``garbage`` chunks no manifest names.
    Returns how many were made."""
    from vaults import locations
    from vaults.models import Vault
    from vaults.storage.chunks import chunk_key

    source.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        (source / f"file-{i}.txt").write_text(f"bench file {i}\n" * 100)
    made = 0
    for vault in Vault.objects.order_by("pk")[:count]:
        store = locations.vault_store(vault)  # its data key is made through the gate
        store.backup(source, f"rp-bench-orphan-{made}")
        for _ in range(garbage):
            store.backend.put(chunk_key(os.urandom(32).hex()), b"left by a dead backup")
        made += 1
    return made


def measure_worker(stores: int, garbage: int) -> dict[str, Any]:
    """In this process (DATABASE_URL, HOLDFAST_STORAGE_ROOT set by `measure`): migrate,
    give ``stores`` vaults a store, then time the sweep."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from bench.portfolio import Statements
    from vaults.jobs import sweeps
    from vaults.models import Vault

    call_command("migrate", verbosity=0)
    connection.ensure_connection()
    root = Path(settings.HOLDFAST_STORAGE_ROOT)
    made = _give_stores(stores, garbage, root.parent / "bench-source") if stores else 0
    vaults = Vault.objects.count()
    rss_before = _rss_mb()
    directories, store_dirs = _directories(root), _stores(root)
    fsyncs = [0]
    real_fsync = os.fsync

    def counting_fsync(fd: Any) -> None:
        fsyncs[0] += 1
        real_fsync(fd)

    os.fsync = counting_fsync  # counts every file and directory sync, then syncs
    statements = Statements()
    failures: list[str] = []
    started = time.perf_counter()
    report = sweeps.storage_sweep(failures=failures)
    seconds = time.perf_counter() - started
    os.fsync = real_fsync
    return {
        "seconds": round(seconds, 3),
        "statements": statements.count,
        "peak_rss_mb": round(_rss_mb(), 1),
        "rss_before_mb": round(rss_before, 1),
        "vaults": vaults,
        "stores": made,
        "dirs_created": _stores(root) - store_dirs,
        "all_dirs_created": _directories(root) - directories,
        "fsyncs": fsyncs[0],
        **{key: value for key, value in report.items() if isinstance(value, int)},
        "failures": failures[:5],
        "code": str(Path(sweeps.__file__).parent.parent.parent),
    }


def measure(
    database_url: str,
    *,
    var_dir: Path,
    stores: int = 0,
    garbage: int = 50,
    code: Path = ROOT,
    storage_root: Path | None = None,
) -> dict[str, float | int]:
    """Time ``storage_sweep()`` over every vault of the seeded database at
    ``database_url``, in a process of its own (the module docstring); the figures. The
    storage root is a new directory under ``var_dir``, removed afterwards, unless
    ``storage_root`` names one to keep (`main`'s repeated runs)."""
    var_dir = Path(var_dir)
    var_dir.mkdir(parents=True, exist_ok=True)
    kept = storage_root is not None
    root = Path(storage_root or tempfile.mkdtemp(prefix="bench-sweep-", dir=var_dir))
    try:
        (root / "storage").mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "DJANGO_DEBUG": "0",
            "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-sweep-" + os.urandom(16).hex()),
            "HOLDFAST_VAR_DIR": str(var_dir),
            "HOLDFAST_STORAGE_ROOT": str(root / "storage"),
            "PYTHONPATH": os.pathsep.join(dict.fromkeys([str(code), str(ROOT)])),
        }
        command = [sys.executable, __file__, "--measure-worker", "--stores", str(stores)]
        command += ["--garbage", str(garbage)]
        # In ``code``: Celery puts the working directory first on the import path.
        done = subprocess.run(
            command, env=env, cwd=code, stdout=subprocess.PIPE, check=True, text=True
        )
    finally:
        if not kept:
            shutil.rmtree(root, ignore_errors=True)
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    for failure in result.pop("failures"):
        print(f"  failure: {failure}", file=sys.stderr)
    print(f"  code measured: {result.pop('code')}", file=sys.stderr)
    return result


def _print(result: dict[str, float | int], label: str) -> None:
    print(f"load average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"{label}: {result['vaults']} vaults ({result['stores']} with a store) swept in "
        f"{result['seconds']} s, {result['statements']} statements, peak RSS "
        f"{result['peak_rss_mb']} MB, {result['dirs_created']} store directories created "
        f"({result['all_dirs_created']} directories in all), "
        f"{result['fsyncs']} fsyncs; orphans {result.get('orphan_manifests')}, chunks "
        f"{result.get('deleted_chunks')}, failed vaults {result.get('vaults_failed')}"
    )
    ok = result["seconds"] < GOAL_SECONDS and result["peak_rss_mb"] < GOAL_MB
    print(f"goal (<{GOAL_SECONDS:.0f} s, <{GOAL_MB:.0f} MB): {'met' if ok else 'MISSED'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=SERVER)
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument("--copy-from", default="", help="copy this template first")
    parser.add_argument("--stores", type=int, default=0, help="vaults given a store first")
    parser.add_argument("--garbage", type=int, default=50, help="dead chunks in each")
    parser.add_argument("--var", type=Path, default=ROOT / "var" / "bench-sweep")
    parser.add_argument("--code", type=Path, default=ROOT, help="the code to measure")
    parser.add_argument("--runs", type=int, default=1, help="sweeps one after the other")
    parser.add_argument("--measure-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_worker:
        print(json.dumps(measure_worker(args.stores, args.garbage)))
        return 0
    url = args.server.rsplit("/", 1)[0] + "/" + args.database
    if args.copy_from:
        sys.path.insert(0, str(ROOT))
        from bench.scale_expiry import copy_database

        copy_database(args.server, args.copy_from, args.database)
    result: dict[str, float | int] = {}
    args.var.mkdir(parents=True, exist_ok=True)
    # One storage root for all runs: the second finds what the first left (its stores).
    with tempfile.TemporaryDirectory(prefix="bench-sweep-", dir=args.var) as root:
        for run in range(args.runs):
            stores = args.stores if run == 0 else 0
            result = measure(
                url,
                var_dir=args.var,
                stores=stores,
                garbage=args.garbage,
                code=args.code,
                storage_root=Path(root),
            )
            _print(result, f"run {run + 1}")
    return 0 if result and result["seconds"] < GOAL_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
