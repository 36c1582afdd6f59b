"""A PostgreSQL database protected and restored from a real browser: the item form's kind
selector and database name, Back up now, the restore page's new database (an existing name
refused in place, then a new one restored, its tables compared with the source's). A real
Celery worker (in this process, on a queue of its own) runs the jobs; the local PostgreSQL
server is the workload's, reached through libpq's PG* variables.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker

from policies import services as policy_services
from portal.celery import app
from tests.browser import sign_in
from tests.conftest import PASSWORD
from tests.factories import make_vault
from tests.test_browser_restore import SCREENSHOTS, _axe
from tests.test_postgres_workload import _contents, _create, databases, pg_env  # noqa: F401
from vaults.models import Job, ProtectedItem, RecoveryPoint

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_protect_a_database_back_it_up_and_restore_it_into_a_new_one(
    live_server: Any,
    browser: Any,
    admin: Any,
    settings: Any,
    tmp_path: Path,
    worker_id: str,
    databases: Callable[[str], str],  # noqa: F811
) -> None:
    settings.HOLDFAST_STORAGE_ROOT = tmp_path / "storage"
    settings.HOLDFAST_TASK_QUEUE = f"holdfast-test-{worker_id}-{uuid.uuid4().hex[:8]}"
    settings.HOLDFAST_JOB_HEARTBEAT_SECONDS = 0.2
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    source = _create(databases("browser"), 20_000)
    vault = make_vault(admin, name="db-browser")
    policy_services.policy_create(actor=admin, vault=vault, name="daily", daily_days=7)
    page = sign_in(browser, live_server.url, "alice", PASSWORD)

    page.goto(f"/vaults/{vault.name}/items/new/")
    page.get_by_label("Name", exact=True).fill("sales")
    page.get_by_label("What to protect").select_option("postgres")
    page.get_by_label("Database name").fill(source)
    _axe(page, "protect-database")
    page.screenshot(path=str(SCREENSHOTS / "protect-database.png"), full_page=True)
    page.get_by_role("button", name="Protect").click()
    page.wait_for_url("**/items/*/")
    item = ProtectedItem.objects.get(vault=vault, name="sales")
    assert (item.source_kind, item.source_path) == ("postgres", source)
    assert f"PostgreSQL database {source}" in page.locator(".props").inner_text()

    with start_worker(
        app,
        pool="solo",
        perform_ping_check=False,
        queues=[settings.HOLDFAST_TASK_QUEUE],
        loglevel="WARNING",
        shutdown_timeout=30,
    ):
        page.get_by_role("button", name="Back up now").click()
        page.wait_for_url("**/jobs/*/")
        page.locator("#job-card .job-state-completed").wait_for(timeout=120_000)
        point = RecoveryPoint.objects.get(item=item)

        page.goto(f"/vaults/{vault.name}/items/{item.pk}/")
        page.locator(f"#restore-{point.pk}").click()
        assert (
            f"A dump of PostgreSQL database {source}"
            in page.locator("#restore-workload").inner_text()
        )
        field = page.get_by_label("New database name")
        field.fill(source)
        page.get_by_role("button", name="Restore into a new database").click()
        page.locator("#target-database-error").wait_for()
        assert "already exists on the server" in page.locator("#target-database-error").inner_text()
        _axe(page, "restore-database-refused")
        page.screenshot(path=str(SCREENSHOTS / "restore-database-refused.png"), full_page=True)
        assert not Job.objects.filter(kind="restore").exists()

        target = databases("browser_restored")
        page.get_by_label("New database name").fill(target)
        page.get_by_role("button", name="Restore into a new database").click()
        page.wait_for_url("**/jobs/*/")
        page.locator("#job-card .job-state-completed").wait_for(timeout=120_000)
        assert f"new PostgreSQL database {target}" in page.locator("main").inner_text()
    assert _contents(target) == _contents(source)
    page.context.close()
