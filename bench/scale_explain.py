"""The plans of the sweeps' SQL at fleet scale (issue 20, deliverable 5; docs/jobs.md quotes
them): every statement a sweep runs on ``seed_scale`` data, captured while it runs and then
``EXPLAIN (ANALYZE, BUFFERS)``-ed, each in a transaction rolled back.

    .venv/bin/python bench/scale_explain.py [--template holdfast_bench_reports] > plans.txt

Works on a copy (``CREATE DATABASE holdfast_bench_explain TEMPLATE ...``, dropped after). In the
copy, as its owner, each sweep is given work as a fleet would have it at one sweep: 100,000
expired points (bench/scale_expiry.py), instant-restore copies lapsing (``snapshot_expires_at``
five days after creation on every snapshot_and_vault point), 1% of archived points rehydrated
(half of them ended), a tenth of the soft-deleted items past their purge, daily policies moved
so that 10,000 items are due at the bench's tick. Then each sweep runs once (its first page, for
the paged ones) inside a transaction that is rolled back, with its statements captured
(``CaptureQueriesContext``; the gate's own audit statements left out), and each distinct
statement is explained, also rolled back: a DELETE's plan includes its triggers' time.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PREPARE = [
    # As the owner, past the guard triggers (a purge brought forward, a copy's lapse changed).
    "SET session_replication_role = replica",
    # Instant-restore copies kept five days: the older ones are due to lapse.
    "UPDATE vaults_recoverypoint SET snapshot_expires_at = created_at + interval '5 days' "
    "WHERE tier = 'snapshot_and_vault'",
    # 1% of archived points rehydrated, half of them until a moment already past.
    "UPDATE vaults_recoverypoint SET rehydrated_until = now() + (id % 2 * 2 - 1) * "
    "interval '1 day' WHERE tier = 'vault_archive' AND id % 100 = 0",
    # A tenth of the soft-deleted items past their purge.
    "UPDATE vaults_protecteditem SET purge_at = now() - interval '1 hour' "
    "WHERE protection_state = 'soft_deleted' AND id % 10 = 0",
    "SET session_replication_role = DEFAULT",
    "VACUUM ANALYZE vaults_recoverypoint",
    "VACUUM ANALYZE vaults_protecteditem",
]
# Statements that are the gate's or the transaction's, not a sweep's own.
SKIPPED = re.compile(
    r"^\s*(SAVEPOINT|RELEASE|ROLLBACK|SET |SELECT pg_advisory|SELECT pg_try_advisory)"
    r"|portal_audit|holdfast_audit|django_session|auth_user",
    re.I,
)


def _sweeps(now: Any) -> list[tuple[str, Callable[[], Any]]]:
    from bench.scale_tasks import TICK
    from portal.services import approvals_expire
    from vaults import services
    from vaults.jobs import schedules, sweeps
    from vaults.jobs.dispatch import backups_dispatch
    from vaults.models import ProtectedItem, RecoveryPoint

    def first_pages(due: Any, field: str, batch: Callable[..., Any]) -> None:
        pages = sweeps.due_pages(due, field, size=sweeps.BATCH)
        ids = next(pages, [])
        next(pages, None)  # the second page: the keyset form of the read
        if ids:
            batch(ids, now=now)

    def expiry() -> None:
        due = RecoveryPoint.objects.filter(expires_at__lte=now).exclude(soft_deleted_until__gt=now)
        first_pages(due, "expires_at", services.points_expire_batch)

    def lapse() -> None:
        due = RecoveryPoint.objects.filter(
            tier=RecoveryPoint.Tier.SNAPSHOT_AND_VAULT, snapshot_expires_at__lte=now
        )
        first_pages(due, "snapshot_expires_at", services.snapshots_lapse_batch)

    def rehydration() -> None:
        due = RecoveryPoint.objects.filter(
            tier=RecoveryPoint.Tier.VAULT_ARCHIVE, rehydrated_until__lte=now
        )
        first_pages(due, "rehydrated_until", services.rehydrations_end_batch)

    def verify() -> None:
        items = list(ProtectedItem.objects.order_by("pk").values_list("pk", flat=True)[:1000])
        ids = [pk for pk, _ in schedules._newest_points(items)]
        schedules.verifications_schedule_batch(ids, since=now - schedules.VERIFY_EVERY)

    return [
        ("expiry", expiry),
        ("snapshot lapse", lapse),
        ("rehydration end", rehydration),
        ("dispatch", lambda: backups_dispatch(now=TICK)),
        ("verification schedule", verify),
        ("job sweep", lambda: sweeps.jobs_fail_stale(now=now)),
        ("soft-delete purge", sweeps.soft_delete_sweep),
        ("approvals expiry", lambda: approvals_expire(now=now)),
    ]


def _short(text: str) -> str:
    """A long array literal (a page's ids) as its length."""
    return re.sub(r"'\{([\d,]{60,})\}'", lambda m: f"'{{<{m.group(1).count(',') + 1} ids>}}'", text)


# The portfolio's sorts (bench/portfolio.py's): the page's key query is ORDER BY <sort>, name
# LIMIT 50 over every vault (``portal.center.views._page``).
SORTS = ["name", "kind", "region", "immutability", "soft_delete", "security_level", "-items",
         "last_backup", "-storage"]  # fmt: skip


def _portfolio() -> list[tuple[str, Callable[[], Any]]]:
    import secrets

    from django.conf import settings
    from django.test import Client

    from portal import services as portal_services
    from portal.gate import entry_point

    settings.ALLOWED_HOSTS = ["*"]
    with entry_point("command"):
        user = portal_services.user_create(
            actor=None, username="bench-explain", role="reader",
            password=secrets.token_urlsafe(24),
        )  # fmt: skip
    client = Client()
    client.force_login(user)

    def page(sort: str) -> None:
        assert client.get(f"/backup-center/?sort={sort}").status_code == 200

    return [(f"portfolio sort={sort}", lambda sort=sort: page(sort)) for sort in SORTS]


def explain_worker(migrate_to: str, only: str = "") -> None:
    from bench import scale_tasks

    scale_tasks._prepare([])
    from django.core.management import call_command
    from django.db import DatabaseError, connection, transaction
    from django.test.utils import CaptureQueriesContext

    from portal import clock
    from portal.gate import entry_point

    if migrate_to:  # the plans before a migration: unapply it (its indexes go)
        app, name = migrate_to.split(":")
        call_command("migrate", app, name, verbosity=0)
    with connection.cursor() as cursor:
        for sql in PREPARE:
            cursor.execute(sql)
    scale_tasks._make_due(10_000)
    now = clock.now()
    for name, run in [*_sweeps(now), *_portfolio()]:
        if only not in name:
            continue
        portfolio = name.startswith("portfolio")
        # Every statement of a sweep, however many (the log keeps 9,000 by default).
        connection.queries_limit = 1_000_000
        connection.queries_log = collections.deque(maxlen=connection.queries_limit)
        captured = CaptureQueriesContext(connection)
        with entry_point("task"), transaction.atomic():
            with captured:
                run()
            transaction.set_rollback(True)
        seen: set[str] = set()
        print(f"\n######## {name}: {len(captured)} statements", flush=True)
        for query in captured.captured_queries:
            sql = query["sql"]
            shape = re.sub(r"'[^']*'|\b\d+\b", "?", sql)
            if SKIPPED.search(sql) or shape in seen:
                continue
            if portfolio and not ("LIMIT 50" in sql and "ORDER BY" in sql):
                continue  # of the page, only its key query
            seen.add(shape)
            print(f"\n-- {_short(sql)}")
            try:
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
                    print(_short("\n".join(row[0] for row in cursor.fetchall())), flush=True)
                    transaction.set_rollback(True)
            except DatabaseError as exc:  # a step that needs the ones before it (rolled back)
                print(f"(not explained on its own: {str(exc).splitlines()[0]})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", default="holdfast_bench_reports")
    parser.add_argument("--database", default="holdfast_bench_explain")
    parser.add_argument("--points", type=int, default=100_000, help="points made expired")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--only", default="", help="sections whose name contains this")
    parser.add_argument(
        "--migrate-to", default="", help="app:migration to migrate back to first (plans before)"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        explain_worker(args.migrate_to, args.only)
        return 0
    from bench import scale, scale_expiry

    url = scale.copy(args.template, args.database)
    try:
        scale_expiry.make_expired(url, args.points)
        with tempfile.TemporaryDirectory(prefix="bench-explain-") as var:
            env = {
                **os.environ,
                "DATABASE_URL": url,
                "DJANGO_DEBUG": "1",  # the portfolio page as bench/portfolio.py renders it
                "HOLDFAST_STORAGE_ROOT": str(Path(var) / "storage"),
                "HOLDFAST_KEY_FILE": str(Path(var) / "keys" / "master.key"),
                "HOLDFAST_AUDIT_ANCHOR_DIR": str(Path(var) / "anchors"),
                "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", "memory://"),
                "PYTHONPATH": str(ROOT),
            }
            command = [sys.executable, __file__, "--worker", "--migrate-to", args.migrate_to]
            command += ["--only", args.only]
            subprocess.run(command, env=env, check=True)
    finally:
        if not args.keep:
            scale.drop(args.database)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
