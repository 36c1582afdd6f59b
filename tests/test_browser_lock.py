"""A whole journey in a real browser: enable immutability, ask to lock, approve, see Locked."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import sign_in
from tests.conftest import PASSWORD
from tests.factories import make_vault
from vaults.models import Vault

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_admin_locks_a_vault_with_a_security_admins_approval(
    live_server: Any,
    browser: Any,
    admin: Any,
    security_admin: Any,
) -> None:
    make_vault(admin, name="journey-vault")
    page = sign_in(browser, live_server.url, "alice", PASSWORD)
    page.get_by_role("link", name="journey-vault").click()
    page.get_by_role("link", name="Immutable vault").click()
    page.get_by_role("button", name="Enable immutability").click()
    page.get_by_role("button", name="Disable immutability").wait_for()
    assert Vault.objects.get(name="journey-vault").immutability == "enabled"

    # A wrong name is refused in place, and nothing is requested.
    page.get_by_label("Type journey-vault to confirm").fill("journey")
    page.get_by_role("button", name="Request lock").click()
    page.get_by_text("Type the vault's exact name").first.wait_for()
    page.get_by_label("Type journey-vault to confirm").fill("journey-vault")
    page.get_by_role("button", name="Request lock").click()
    page.locator("#pending-lock").wait_for()
    assert "waiting for a security admin" in page.locator("#pending-lock").inner_text()

    approver = sign_in(browser, live_server.url, "sam", PASSWORD)
    assert approver.locator("#approvals-inbox .count").inner_text() == "1"
    approver.locator("#approvals-inbox").click()
    approver.get_by_role("link", name="Review and approve request").click()
    approver.get_by_label("Type journey-vault to approve").fill("journey-vault")
    approver.get_by_role("button", name="Approve request").click()
    approver.get_by_text("approved, the change is made").first.wait_for()

    page.reload()
    assert "can never be disabled" in page.locator("#immutability-blade").inner_text()
    page.get_by_role("link", name="Vaults").first.click()
    row = page.get_by_role("row", name="journey-vault")
    assert "Locked" in row.inner_text()
    assert Vault.objects.get(name="journey-vault").is_locked
