"""A backup admin with two file servers, in a real browser (SPEC 3.13): two real worker
processes announce their hosts; the Hosts page (from the left navigation) shows both
online; the item form protects a directory that only one of them can read, on that host;
its backup runs there, and the Hosts page then counts the item on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from policies import services as policy_services
from tests.conftest import PASSWORD
from tests.factories import make_vault
from tests.host_workers import host_workers
from tests.test_browser_restore import _axe
from tests.test_jobs import storage, write_tree  # noqa: F401
from vaults.models import Job, ProtectedItem

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_hosts_page_shows_both_hosts_and_the_item_form_protects_a_directory_on_one(
    live_server: Any,
    browser: Any,
    admin: Any,
    storage: Path,  # noqa: F811
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the worker subprocesses share the test database: PostgreSQL only")
    vault = make_vault(admin, name="files")
    policy_services.policy_create(actor=admin, vault=vault, name="nightly", daily_days=14)
    with host_workers(storage, "files1", "files2") as (first, second):
        source = write_tree(second.sources / "projects")
        page = browser.new_context(base_url=live_server.url).new_page()
        page.goto("/accounts/login/")
        page.get_by_label("Username").fill("alice")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/accounts/login/" not in url)

        page.get_by_role("navigation", name="Main").get_by_role("link", name="Hosts").click()
        page.wait_for_url("**/hosts/")
        for worker in (first, second):
            row = page.locator(f"#host-{worker.name}")
            assert worker.name in row.inner_text()
            assert "Online" in row.inner_text()
        _axe(page, "hosts")

        page.goto("/vaults/files/items/new/")
        page.get_by_label("Name", exact=True).fill("projects")
        page.get_by_label("Directory path").fill(str(source))
        page.get_by_label("Host").select_option(second.name)
        page.get_by_role("button", name="Protect").click()
        page.wait_for_url("**/items/*/")
        assert page.locator("#item-host").inner_text() == second.name
        item = ProtectedItem.objects.get(name="projects")
        assert item.source_host == second.name

        page.get_by_role("button", name="Back up now").click()
        page.wait_for_url("**/jobs/*/")
        page.locator("#job-card .job-state-completed").wait_for(timeout=90_000)
        job = Job.objects.get(item=item, kind="backup")
        assert job.worker.startswith(f"{second.name}:") and job.recovery_point is not None
        assert second.name in page.locator("#job-host").inner_text()

        page.goto("/hosts/")
        cells = page.locator(f"#host-{second.name} td").all_inner_texts()
        assert cells[3] == "1"  # items read from it
        assert page.locator(f"#host-{first.name} td").all_inner_texts()[3] == "0"
