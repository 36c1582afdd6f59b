"""A journey in a real browser: shorten a policy on an immutable vault, see the preview warn,
see the refusal on save, then lengthen it and succeed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from policies import services as policy_services
from policies.models import Policy
from tests.browser import sign_in
from tests.conftest import PASSWORD
from tests.factories import make_vault
from vaults import services as vault_services

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_admin_sees_a_shorter_retention_refused_then_lengthens_it(
    live_server: Any, browser: Any, admin: Any, tmp_path: Path
) -> None:
    vault = make_vault(admin, name="sealed-rs", immutability="enabled")
    policy = policy_services.policy_create(actor=admin, vault=vault, name="daily-90", daily_days=90)
    item = vault_services.item_protect(
        actor=admin, vault=vault, name="ledger", source_path=str(tmp_path), policy=policy
    )
    vault_services.point_record(item=item)

    page = sign_in(browser, live_server.url, "alice", PASSWORD)
    page.get_by_role("link", name="sealed-rs").click()
    page.get_by_role("link", name="Backup policies").click()
    page.get_by_role("link", name="daily-90", exact=True).click()

    # Changing a field asks the server for the preview (htmx), before anything is saved.
    daily = page.get_by_label("Keep daily points (days)")
    daily.fill("30")
    daily.press("Tab")
    refusal = page.locator("#preview-refusal")
    refusal.wait_for()
    assert "Will be refused" in refusal.inner_text()
    assert "retention can only grow" in refusal.inner_text()
    assert (
        "Daily retention would drop from 90 to 30 days."
        in page.locator("#policy-preview").inner_text()
    )

    page.get_by_role("button", name="Save").click()
    page.locator("#policy-refusal").wait_for()
    assert "Refused, nothing was saved" in page.locator("#policy-refusal").inner_text()
    assert Policy.objects.get(pk=policy.pk).daily_days == 90

    daily = page.get_by_label("Keep daily points (days)")
    daily.fill("120")
    daily.press("Tab")
    page.locator("#preview-allowed").wait_for()
    assert "Retention grows" in page.locator("#policy-preview").inner_text()
    assert "30 days later" in page.locator("#preview-moves").inner_text()
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Policy daily-90 saved.").wait_for()
    assert Policy.objects.get(pk=policy.pk).daily_days == 120
    assert "120 days" in page.get_by_role("row", name="daily-90").inner_text()
