"""A backup admin's daily work in a real browser, at desktop and phone widths: back up now
from the item page and watch the job card reach Completed without a reload, restore a
selected file to an allowed root (checked on disk), download another (checked byte for
byte). A real Celery worker (in this process, on a queue of its own) runs the jobs.

Screenshots go to ``var/screenshots/`` (not committed) at both widths.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker

from portal.celery import app
from tests.conftest import PASSWORD
from tests.point_world import protect
from vaults.models import Job

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(__file__).resolve().parents[1] / "var" / "screenshots"
WIDTHS = {"desktop": (1440, 900), "phone": (390, 844)}


@pytest.fixture
def world(settings: Any, tmp_path: Path, worker_id: str) -> Iterator[dict[str, Path]]:
    settings.HOLDFAST_STORAGE_ROOT = tmp_path / "storage"
    settings.HOLDFAST_RESTORE_ROOTS = [tmp_path / "restores", tmp_path / "restores-two"]
    settings.HOLDFAST_TASK_QUEUE = f"holdfast-test-{worker_id}-{uuid.uuid4().hex[:8]}"
    settings.HOLDFAST_JOB_HEARTBEAT_SECONDS = 0.2
    for root in settings.HOLDFAST_RESTORE_ROOTS:
        root.mkdir()
    source = tmp_path / "data" / "docs"
    (source / "reports").mkdir(parents=True)
    (source / "notes.txt").write_text("notes to restore\n")
    (source / "budget.csv").write_bytes(b"year,amount\n" + b"2026,42\n" * 4000)
    (source / "reports" / "q1.txt").write_text("quarter one\n")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield {"source": source, "restores": tmp_path / "restores-two"}


AXE = Path(__file__).resolve().parent / "vendor" / "axe-4.14.1.min.js"


def _shot(page: Any, name: str, width: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
    _axe(page, name)


def _axe(page: Any, name: str) -> None:
    """No serious or critical axe-core finding in the page's main content (the frame
    around it is checked by the site-wide crawl)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    found = page.evaluate(
        "async () => (await axe.run('main', {resultTypes: ['violations']})).violations"
        ".filter(v => ['serious', 'critical'].includes(v.impact))"
        ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))"
    )
    assert found == [], f"{name}: {found}"


@pytest.mark.parametrize("width", list(WIDTHS))
def test_back_up_watch_restore_a_file_and_download_another(
    live_server: Any, browser: Any, admin: Any, world: dict[str, Path], settings: Any, width: str
) -> None:
    item = protect(admin, world["source"])
    view_width, view_height = WIDTHS[width]
    context = browser.new_context(
        base_url=live_server.url,
        viewport={"width": view_width, "height": view_height},
        accept_downloads=True,
    )
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text) if msg.type == "error" else None)
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)

    # Back up now, from the item page, kept until a chosen date.
    page.goto(f"/vaults/{item.vault.name}/items/{item.pk}/")
    page.get_by_label("Retain until (UTC)").fill("2030-01-31T23:00")
    _shot(page, "item-before-backup", width)
    page.get_by_role("button", name="Back up now").click()
    page.wait_for_url("**/jobs/*/")
    job = Job.objects.get(kind="backup")
    card = page.locator("#job-card")
    assert "Queued" in card.inner_text()
    assert page.locator("#job-started").inner_text() == "—"
    _shot(page, "job-queued", width)
    page.evaluate("window.__stayed = true")  # gone if the page were reloaded

    with start_worker(
        app,
        pool="solo",
        perform_ping_check=False,
        queues=[settings.HOLDFAST_TASK_QUEUE],
        loglevel="WARNING",
        shutdown_timeout=30,
    ):
        card.locator(".job-state-completed").wait_for(timeout=60_000)
        job.refresh_from_db()
        assert job.recovery_point is not None
        # The whole card was refreshed in place: no reload, every field filled in.
        assert page.evaluate("window.__stayed") is True
        assert page.locator("#job-started").inner_text().endswith("UTC")
        assert page.locator("#job-ended").inner_text().endswith("UTC")
        assert page.locator("#job-duration").inner_text() != "—"
        assert f"Point {job.recovery_point.pk}" in page.locator("#job-point").inner_text()
        assert "0 bytes of 0 bytes" not in card.inner_text()
        _shot(page, "job-completed", width)

        # Restore one selected file to the second allowed root.
        page.get_by_role("link", name="Browse its files").click()
        page.get_by_label("Select notes.txt").check()
        _shot(page, "browse", width)
        page.get_by_role("button", name="Restore selected…").click()
        page.get_by_label("Restore root").select_option(str(world["restores"]))
        page.get_by_label("Folder inside the root").fill("from-browser")
        _shot(page, "restore-form", width)
        page.get_by_role("button", name="Restore 1 selected").click()
        page.wait_for_url("**/jobs/*/")
        page.locator("#job-card .job-state-completed").wait_for(timeout=60_000)
        restored = world["restores"] / "from-browser" / "notes.txt"
        assert restored.read_text() == "notes to restore\n"
        assert sorted(p.name for p in restored.parent.iterdir()) == ["notes.txt"]
        _shot(page, "restore-completed", width)

    # Download another file from the same point.
    page.goto(f"/vaults/{item.vault.name}/items/{item.pk}/points/{job.recovery_point.pk}/browse/")
    page.get_by_label("Select budget.csv").check()
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download selected").click()
    download = download_info.value
    assert download.suggested_filename == "budget.csv"
    assert Path(download.path()).read_bytes() == (world["source"] / "budget.csv").read_bytes()

    page.goto(f"/vaults/{item.vault.name}/items/{item.pk}/")
    _shot(page, "item-after", width)
    # Delete asks first, saying what soft delete keeps.
    point_row = page.locator(f"#point-{job.recovery_point.pk}")
    point_row.locator("summary").click()
    confirm = point_row.locator(".irreversible")
    confirm.wait_for()
    assert "kept, restorable, for 14 days" in confirm.inner_text()
    point_row.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / f"item-delete-confirm-{width}.png"))
    page.goto("/jobs/")
    _shot(page, "jobs", width)
    assert not [v for v in violations if "Content Security Policy" in v], violations
    context.close()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_a_running_jobs_card_shows_its_progress_and_cancels_in_place(
    live_server: Any, browser: Any, admin: Any, world: dict[str, Path], width: str
) -> None:
    from datetime import timedelta

    from portal import clock

    item = protect(admin, world["source"])
    now = clock.now()
    job = Job.objects.create(
        kind="backup",
        status="running",
        vault=item.vault,
        item=item,
        requested_by=admin,
        created_at=now - timedelta(seconds=95),
        started_at=now - timedelta(seconds=80),
        heartbeat_at=now,
        bytes_done=400 * 1024 * 1024,
        bytes_total=1000 * 1024 * 1024,
        files_done=120,
        files_total=300,
    )
    view_width, view_height = WIDTHS[width]
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": view_width, "height": view_height}
    )
    page = context.new_page()
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    page.goto(f"/jobs/{job.pk}/")
    card = page.locator("#job-card")
    text = card.inner_text().replace("\xa0", " ")
    assert "400.0 MB of 1000.0 MB" in text and "about 2 min left" in text
    assert card.locator("progress.job-bar").get_attribute("value") == "40"
    _shot(page, "job-running", width)
    page.evaluate("window.__stayed = true")
    page.get_by_role("button", name="Cancel job").click()
    card.locator(".job-state-cancelling").wait_for()
    assert page.evaluate("window.__stayed") is True
    # The worker (here: the test) ends it at its next file boundary; the card follows.
    Job.objects.filter(pk=job.pk).update(
        status="failed", ended_at=clock.now(), error="Cancelled by alice while it ran."
    )
    card.locator(".job-state-cancelled").wait_for(timeout=10_000)
    assert page.locator("#job-ended").inner_text().endswith("UTC")
    _shot(page, "job-cancelled", width)
    context.close()
