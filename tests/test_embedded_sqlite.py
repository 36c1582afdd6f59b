"""The embedded default of ``make run`` (SQLite) from an empty database: migrations apply in
order, the SQLite triggers that keep each vault's storage totals survive later migrations
that rebuild the vault, item and point tables, and the demo's Backup center answers with
every filter (the tag filter once answered 500 there: SQLite has no JSON containment)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHECK = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
call_command("seed_demo", verbosity=0)
from django.test import Client
client = Client()
assert client.login(username="alice", password="holdfast-alice")
for query in ("", "?tag=env=prod", "?tag=env", "?security_level=good", "?sort=-storage"):
    response = client.get("/backup-center/" + query)
    print("ANSWER", query or "default", response.status_code)
"""


def test_make_runs_database_migrates_seeds_and_serves_every_filter(tmp_path: Path) -> None:
    database = tmp_path / "holdfast.sqlite3"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    environment.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DATABASE_URL=f"sqlite:///{database}",
        HOLDFAST_VAR_DIR=str(tmp_path / "var"),
        HOLDFAST_STORAGE_ROOT=str(tmp_path / "var" / "storage"),
        CELERY_BROKER_URL="filesystem://",
    )
    result = subprocess.run(
        [sys.executable, "-c", CHECK],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answers = dict(
        line.split(" ")[1:] for line in result.stdout.splitlines() if line.startswith("ANSWER ")
    )
    assert answers == {
        "default": "200",
        "?tag=env=prod": "200",
        "?tag=env": "200",
        "?security_level=good": "200",
        "?sort=-storage": "200",
    }, result.stdout
    with sqlite3.connect(database) as connection:
        triggers = {
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='trigger'")
        }
        assert {
            "item_count_insert",
            "item_count_delete",
            "point_storage_insert",
            "point_storage_delete",
            "point_storage_update",
            "job_last_backup_insert",
            "job_last_backup_update",
            "job_last_backup_delete",
        } <= triggers
        # The demo's points are counted in their vaults' totals by those triggers.
        (stored,) = connection.execute(
            "SELECT SUM(stored_snapshot_bytes + stored_standard_bytes + stored_archive_bytes)"
            " FROM vaults_vault"
        ).fetchone()
        (points,) = connection.execute(
            "SELECT SUM(stored_bytes) FROM vaults_recoverypoint"
        ).fetchone()
        assert stored and stored == points
