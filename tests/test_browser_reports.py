"""The Reports page in a real browser (issue 18): a reader opens Reports from the
navigation, chooses a custom period and a vault, sees the tables filtered and the charts
drawn, and downloads the PDF. No console error, no CSP violation, no serious axe finding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from portal import clock
from tests.browser_checks import open_page, screenshot
from tests.conftest import make_user
from tests.test_reports import build

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_reader_filters_the_report_by_vault_and_downloads_the_pdf(
    live_server: Any, browser: Any, admin: Any, tmp_path: Path
) -> None:
    build(admin)
    make_user("rita", "reader")
    try:
        watch = open_page(browser, live_server.url, "rita")
        page = watch.page
        page.get_by_role("link", name="Reports", exact=True).click()
        page.wait_for_url("**/reports/")
        page.get_by_label("Period", exact=True).select_option("custom")
        page.get_by_label("From", exact=True).fill("2026-03-01")
        page.get_by_label("To", exact=True).fill("2026-03-07")
        page.get_by_label("Vault", exact=True).fill("alpha-vault")
        page.get_by_role("button", name="Show").click()
        page.wait_for_url("**/reports/?*vault=alpha-vault*")
        page.wait_for_load_state("networkidle")
        items = page.locator("#report-items tbody").inner_text()
        assert "files" in items and "db" in items and "docs" not in items
        assert "beta-vault" not in page.locator("#report-vaults").inner_text()
        assert "67.05%" in page.locator("#report-vaults").inner_text()  # 177 h of 264 h
        # Chart.js drew both charts into their canvases (none was replaced by a sentence).
        assert page.locator("canvas#chart-report-backups").count() == 1
        assert page.locator("canvas#chart-report-growth").count() == 1
        screenshot(page, "reports-1440")
        with page.expect_download() as download_info:
            page.locator("#report-pdf").click()
        download = download_info.value
        assert download.suggested_filename.endswith(".pdf")
        assert Path(download.path()).read_bytes().startswith(b"%PDF")
        assert watch.errors == []
        assert watch.csp_violations() == []
        assert watch.axe_violations() == []
    finally:
        clock.set_now(None)
