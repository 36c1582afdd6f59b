"""A minimal measure of the storage sweep (``vaults.jobs.sweeps.storage_sweep``) for
``make bench-scale``, used only while ``bench/scale_storage.py`` (branch i20-sweep, the
storage sweep's own bench) is not there: the same signature and keys, so bench/scale.py
takes whichever exists.

Run in a process of its own on a copy of the seeded database (``database_url``), with the
storage root an empty directory under ``var_dir``: the seeded vaults were never written, so
a sweep that creates no directory to look finds nothing to do. ``dirs_created`` counts the
directories the sweep left under that root.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Any


def _dirs(root: Path) -> int:
    return sum(len(names) for _, names, _ in os.walk(root))


def measure(database_url: str, *, var_dir: Path) -> dict[str, Any]:
    root = Path(var_dir) / "storage"
    root.mkdir(parents=True, exist_ok=True)
    os.environ["DATABASE_URL"] = database_url
    os.environ["HOLDFAST_STORAGE_ROOT"] = str(root)
    os.environ.setdefault("HOLDFAST_AUDIT_ANCHOR_DIR", str(Path(var_dir) / "audit-anchors"))
    os.environ.setdefault("HOLDFAST_KEY_FILE", str(Path(var_dir) / "keys" / "master.key"))
    os.environ.setdefault("DJANGO_DEBUG", "0")
    os.environ.setdefault("SECRET_KEY", "bench-scale-" + os.urandom(16).hex())
    from bench.portfolio import Statements, _setup_django

    _setup_django()
    from django.core.management import call_command
    from django.db import connection

    from portal.gate import entry_point
    from vaults.jobs import sweeps
    from vaults.models import Vault

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE vaults_vault")
    vaults = Vault.objects.count()
    before = _dirs(root)
    statements = Statements()
    failures: list[str] = []
    with entry_point("task"):
        started = time.perf_counter()
        report = sweeps.storage_sweep(failures=failures)
        seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "statements": statements.count,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "vaults": vaults,
        "dirs_created": _dirs(root) - before,
        "vaults_failed": report.get("vaults_failed", 0),
        "measured_by": "bench/scale_storage_min.py",
    }
