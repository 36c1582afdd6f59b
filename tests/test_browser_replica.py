"""A whole journey in a real browser (SPEC 3.10): pair two vaults on the Replication blade,
back up, see the lag go to zero, and restore from the replica in the other region."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.browser import sign_in
from tests.conftest import PASSWORD
from tests.factories import make_vault
from tests.test_jobs import protect, storage, tree_of, wait_for, worker, write_tree  # noqa: F401
from vaults.jobs import requests
from vaults.models import Job, RecoveryPoint, Vault

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_pair_back_up_watch_the_lag_and_restore_from_the_replica(
    live_server: Any,
    browser: Any,
    admin: Any,
    storage: Path,  # noqa: F811
    worker: Any,  # noqa: F811
) -> None:
    source = make_vault(admin, name="paris", region="francecentral")
    make_vault(admin, name="dublin", region="northeurope")
    item = protect(admin, source, write_tree(storage / "data"), "docs")

    page = sign_in(browser, live_server.url, "alice", PASSWORD)
    page.goto("/vaults/paris/")
    page.get_by_role("link", name="Replication").click()
    assert "Not replicated" in page.locator("#replication-blade").inner_text()
    page.get_by_label("Replica vault", exact=True).select_option(
        label="dublin (northeurope, immutability disabled)"
    )
    page.get_by_role("button", name="Pair").click()
    page.locator("#replication-notice").wait_for()
    assert Vault.objects.get(name="paris").replica.name == "dublin"
    assert "Up to date" in page.locator("#replication-lag").inner_text()

    # A backup on the source; its copy follows on the worker, and the lag goes back to zero.
    backup = requests.backup_request(actor=admin, item=item)
    (done,) = wait_for(backup.pk, timeout=120)
    assert done.status == "completed", done.error
    deadline = time.monotonic() + 120
    while not Job.objects.filter(kind="copy", status="completed").exists():
        assert time.monotonic() < deadline, "the copy did not complete"
        time.sleep(0.1)
    page.reload()
    assert "Up to date" in page.locator("#replication-lag").inner_text()
    assert "none yet" not in page.locator("#last-copy").inner_text()

    # Restore from the replica: the source point's restore page offers the other region.
    point = RecoveryPoint.objects.get(vault__name="paris")
    page.goto(f"/jobs/points/{point.pk}/restore/")
    copies = page.locator("#replica-copies").inner_text()
    assert "francecentral" in copies and "northeurope" in copies
    page.get_by_role("link", name="restore from dublin (northeurope) instead").click()
    copy = RecoveryPoint.objects.get(vault__name="dublin")
    page.wait_for_url(f"**/jobs/points/{copy.pk}/restore/")
    target = storage / "restores" / "from-dublin"
    page.get_by_label("Restore root").select_option(str(storage / "restores"))
    page.get_by_label("Folder inside the root").fill("from-dublin")
    page.locator("#restore-submit").click()
    page.wait_for_url("**/jobs/*/")
    restore = Job.objects.get(kind="restore")
    assert restore.recovery_point == copy
    (restored,) = wait_for(restore.pk, timeout=120)
    assert restored.status == "completed", restored.error
    assert tree_of(target) == tree_of(storage / "data")
