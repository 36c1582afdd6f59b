"""The Backup center and the dashboard in a real browser, on the demo data, at 1,440, 1,280
and 390 px: the tiles load after the table and link to their lists, the portfolio table fits
its card at 1,280 px and scrolls inside it below, the storage axis reads in round steps (and
an empty dashboard says so). Screenshots go to var/screenshots/ (not committed)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from tests.browser import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(django_settings.BASE_DIR) / "var" / "screenshots"
WIDTHS = {"desktop": 1440, "laptop": 1280, "phone": 390}


@pytest.fixture
def demo(settings: Any, tmp_path: Path) -> None:
    settings.VAR_DIR = tmp_path / "var"
    settings.HOLDFAST_STORAGE_ROOT = tmp_path / "var" / "storage"
    settings.HOLDFAST_RESTORE_ROOTS = [tmp_path / "var" / "restores"]
    settings.VAR_DIR.mkdir()
    call_command("seed_demo", stdout=io.StringIO())


def _watch(page: Any) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("size", list(WIDTHS))
def test_backup_center_overview_at_each_width(
    live_server: Any, browser: Any, demo: None, size: str
) -> None:
    page = sign_in(browser, live_server.url, "alice", "holdfast-alice")
    problems = _watch(page)
    page.set_viewport_size({"width": WIDTHS[size], "height": 900})
    page.goto("/backup-center/")
    page.locator('#tiles[aria-busy="false"]').wait_for()  # swapped in by htmx
    tiles = page.locator("#tiles .tile")
    assert tiles.count() == 6
    assert "Pending approvals" in page.locator("#tile-approvals").inner_text()
    scroll = page.locator("#results .table-scroll")
    widths = scroll.evaluate("el => [el.scrollWidth, el.clientWidth]")
    if size == "phone":
        assert widths[0] > widths[1]  # the table scrolls inside its card
    else:
        assert widths[0] <= widths[1], widths  # fits: "Storage used" is not clipped
        header = page.get_by_role("link", name="Storage used")
        box, frame = header.bounding_box(), scroll.bounding_box()
        assert box["x"] + box["width"] <= frame["x"] + frame["width"]
    _shot(page, f"backup-center-{WIDTHS[size]}")
    # A tile's number opens the list of exactly those rows.
    page.locator("#tile-jobs .tile-entries a", has_text="Failed").click()
    page.wait_for_url("**/jobs/?status=failed&since=24h")
    assert "legacy-share" in page.content()
    assert problems == []


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_dashboard_on_the_demo_data(live_server: Any, browser: Any, demo: None, size: str) -> None:
    page = sign_in(browser, live_server.url, "alice", "holdfast-alice")
    problems = _watch(page)
    page.set_viewport_size({"width": WIDTHS[size], "height": 900})
    page.goto("/dashboard/")
    page.wait_for_function("() => window.Chart && Chart.getChart('chart-storage')")
    labels = page.evaluate("() => Chart.getChart('chart-storage').scales.y.ticks.map(t => t.label)")
    assert len(labels) >= 2 and len(set(labels)) == len(labels), labels  # never "1 B, 1 B"
    assert labels[0].startswith("0") and all(" " in label for label in labels)
    _shot(page, f"dashboard-{WIDTHS[size]}")
    assert problems == []


def test_an_empty_dashboard_says_so_instead_of_drawing_axes(
    live_server: Any, browser: Any, admin: Any
) -> None:
    from tests.conftest import PASSWORD

    page = sign_in(browser, live_server.url, "alice", PASSWORD)
    problems = _watch(page)
    page.goto("/dashboard/")
    page.locator(".chart-empty").first.wait_for()
    text = page.locator("#dashboard").inner_text()
    assert "No recovery points written in the last 14 days." in text
    assert "No jobs in the last 24 hours." in text
    assert page.locator("#chart-storage").count() == 0
    _shot(page, "dashboard-empty-1440")
    assert problems == []
