"""A restore drill from the item page in a real browser: "Run drill" on a point opens the
drill's job, the job runs (the runner, as a worker would), and the item page then shows the
drill passed with its file count and duration; then Reports, filtered to the vault, shows
the item's last good drill, and the PDF downloads (issue 18's browser walk-through).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser import sign_in
from tests.conftest import PASSWORD
from tests.point_world import backed_up, protect
from vaults.jobs import runner
from vaults.models import Job

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_run_a_drill_from_the_item_page_and_see_it_passed(
    live_server: Any, browser: Any, admin: Any, settings: Any, tmp_path: Path
) -> None:
    settings.HOLDFAST_STORAGE_ROOT = tmp_path / "storage"
    settings.HOLDFAST_RESTORE_ROOTS = [tmp_path / "restores"]
    source = tmp_path / "data" / "docs"
    (source / "reports").mkdir(parents=True)
    (source / "notes.txt").write_text("notes\n")
    (source / "reports" / "q1.txt").write_text("quarter one\n" * 100)
    item = protect(admin, source)
    point = backed_up(admin, item)

    page = sign_in(browser, live_server.url, "alice", PASSWORD)
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(f"/vaults/{item.vault.name}/items/{item.pk}/")
    assert page.locator("#item-last-drill").inner_text().startswith("None yet")
    page.get_by_role("button", name=f"Run drill of point {point.pk}").click()
    page.wait_for_url("**/jobs/*/")
    job = Job.objects.get(kind=Job.Kind.DRILL)
    assert page.url.endswith(f"/jobs/{job.pk}/")

    done = runner.job_run(job_id=job.pk)
    assert done is not None and done.status == "completed", done and done.error

    page.goto(f"/vaults/{item.vault.name}/items/{item.pk}/")
    last = page.locator("#item-last-drill")
    assert last.locator(".drill-status").inner_text() == "Passed"
    assert last.locator(".drill-files").inner_text() == "2 files"
    assert re.fullmatch(r"\d+\.\d s", last.locator(".drill-duration").inner_text())
    assert page.locator(f"#point-{point.pk}").get_by_text("Drill passed").is_visible()

    # The compliance report for this vault names the drill; its PDF downloads.
    page.get_by_role("link", name="Reports", exact=True).click()
    page.wait_for_url("**/reports/")
    page.get_by_label("Vault", exact=True).fill(item.vault.name)
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(f"**/reports/?*vault={item.vault.name}*")
    row = page.locator("#report-items tbody tr", has_text=item.name)
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC, ", row.inner_text()), row.inner_text()
    with page.expect_download() as download_info:
        page.locator("#report-pdf").click()
    assert Path(download_info.value.path()).read_bytes().startswith(b"%PDF")
    assert not [e for e in errors if "Content Security Policy" in e], errors
    page.context.close()
