"""The PIM journey in a real browser (SPEC 3.4): refused, ask for access, approved, act, and
refused again once the elevation is revoked or has expired."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from guards import services as guard_services
from portal import clock
from portal import services as portal_services
from tests.conftest import PASSWORD
from tests.factories import make_vault
from vaults import services
from vaults.models import Vault

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REFUSAL = "Unlock privilege access is needed"


def sign_in(browser: Any, base_url: str, username: str) -> Any:
    """Like ``tests.browser.sign_in``, without assuming which page follows the login."""
    page = browser.new_context(base_url=base_url).new_page()
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    return page


def guarded_vault(admin: Any, security_admin: Any) -> Vault:
    vault = make_vault(admin, name="pim-vault")
    guard = guard_services.guard_create(actor=security_admin, name="g1")
    return services.vault_guard_set(actor=admin, vault=vault, guard=guard)


def try_to_disable(page: Any) -> None:
    page.get_by_label("Type the number of items that will be purged").fill("0")
    page.get_by_role("button", name="Disable soft delete").click()


def test_admin_disables_soft_delete_only_while_elevated(
    live_server: Any, browser: Any, admin: Any, security_admin: Any
) -> None:
    guarded_vault(admin, security_admin)
    page = sign_in(browser, live_server.url, "alice")
    page.goto("/vaults/")
    page.get_by_role("link", name="pim-vault").click()
    page.get_by_role("link", name="Security settings").click()

    # Refused in place, with the way to ask for access.
    try_to_disable(page)
    page.locator("#disable-error").wait_for()
    assert REFUSAL in page.locator("#disable-error").inner_text()
    page.get_by_role("link", name="Request access on Resource Guard g1").click()
    page.wait_for_url("**/resource-guards/g1/access/?**")
    page.get_by_label("Justification").fill("Retire the vault's soft delete for the migration")
    page.get_by_label("Duration").select_option("30")
    page.get_by_role("button", name="Request access").click()
    page.get_by_text("Access requested").wait_for()

    approver = sign_in(browser, live_server.url, "sam")
    assert approver.locator("#approvals-inbox .count").inner_text() == "1"
    approver.locator("#approvals-inbox").click()
    approver.get_by_role("button", name="Approve request").click()
    approver.get_by_text("can now retry").first.wait_for()

    # Elevated: the MUA blade shows the time left, and disabling goes through.
    page.goto("/vaults/pim-vault/mua/")
    assert "30 minutes left" in page.locator("#active-elevation").inner_text()
    page.get_by_role("link", name="Security settings").click()
    try_to_disable(page)
    page.get_by_role("button", name="Enable soft delete").wait_for()
    assert "Off" in page.locator("#soft-delete-state").inner_text()
    assert Vault.objects.get(name="pim-vault").soft_delete_state == "disabled"
    page.get_by_role("button", name="Enable soft delete").click()
    page.get_by_role("button", name="Disable soft delete").wait_for()

    # The security admin revokes the elevation early: the next attempt is refused again.
    approver.goto("/resource-guards/g1/")
    approver.get_by_role("button", name="Revoke").click()
    approver.wait_for_url("**/resource-guards/g1/")
    try_to_disable(page)
    page.locator("#disable-error").wait_for()
    assert REFUSAL in page.locator("#disable-error").inner_text()
    assert Vault.objects.get(name="pim-vault").soft_delete_state == "enabled"


def test_an_expired_elevation_no_longer_unlocks(
    live_server: Any, browser: Any, admin: Any, security_admin: Any
) -> None:
    vault = guarded_vault(admin, security_admin)
    # The live server runs in a thread of this process, so it reads the same injected clock.
    clock.set_now(timezone.now())
    try:
        request = guard_services.elevation_request(
            actor=admin, guard=vault.resource_guard, justification="drill", duration_minutes=15
        )
        portal_services.approval_approve(actor=security_admin, approval=request)
        page = sign_in(browser, live_server.url, "alice")
        page.goto("/vaults/pim-vault/mua/")
        assert "15 minutes left" in page.locator("#active-elevation").inner_text()
        clock.advance(timedelta(minutes=15))
        page.reload()
        page.locator("#no-elevation").wait_for()
        page.goto("/vaults/pim-vault/security/")
        try_to_disable(page)
        page.locator("#disable-error").wait_for()
        assert REFUSAL in page.locator("#disable-error").inner_text()
    finally:
        clock.set_now(None)
    assert Vault.objects.get(name="pim-vault").soft_delete_state == "enabled"
