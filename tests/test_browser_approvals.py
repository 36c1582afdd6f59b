"""Journeys of issue 15 in a real browser: approve a lock from its page on a phone-width
screen (typing the vault's name, with a second factor), the same by keyboard alone, and a
MUA refusal that leads to a request for access, a second person's approval and a retry."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice

from guards import services as guard_services
from portal.models import Approval
from tests.browser_checks import open_page, screenshot
from tests.factories import make_vault
from tests.test_web_surface import enrol, fresh_code
from vaults import services
from vaults.models import Vault

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Chrome logs every 4xx answer to a fetch as a console error: the intended refusals (409)
# of these journeys are expected there; anything else is not.
REFUSED = re.compile(r"Failed to load resource: the server responded with a status of 409")


def unexpected(errors: list[str]) -> list[str]:
    return [error for error in errors if not REFUSED.search(error)]


def lock_requested(admin: Any, name: str) -> Approval:
    vault = make_vault(admin, name=name)
    services.immutability_set(actor=admin, vault=vault, state="enabled")
    return services.immutability_lock_request(
        actor=admin, vault=vault, confirmation=name, otp=fresh_code(admin)
    )


def test_a_security_admin_approves_a_lock_on_a_phone(
    live_server: Any, browser: Any, settings: Any, admin: Any, security_admin: Any
) -> None:
    settings.HOLDFAST_APPROVER_2FA = "required"
    approval = lock_requested(admin, "phone-vault")
    enrol(security_admin)
    watch = open_page(browser, live_server.url, "sam", width=390)
    page = watch.page
    assert page.locator("#approvals-inbox .count").inner_text() == "1"
    # The navigation is folded away behind its Menu button on a phone.
    menu = page.get_by_role("button", name="Menu")
    assert menu.get_attribute("aria-expanded") == "false"
    assert not page.locator("#sidenav").is_visible()
    menu.click()
    assert menu.get_attribute("aria-expanded") == "true"
    page.locator("#sidenav").get_by_role("link", name="Approvals").click()
    page.get_by_role("link", name=f"Review and approve request {approval.pk}").click()
    page.wait_for_url(f"**/approvals/{approval.pk}/")
    facts = page.locator("main").inner_text()
    assert "Lock immutability of vault phone-vault" in facts
    assert "Enabled and locked" in facts and "Cannot be undone." in facts
    screenshot(page, "journey-approval-390")

    # A wrong name is refused in place: nothing changes, the address stays the page's.
    page.get_by_label("Type phone-vault to approve").fill("phone")
    page.get_by_label("Code from your authenticator app").fill("000000")
    page.get_by_role("button", name=f"Approve request {approval.pk}").click()
    page.locator("#decision-error").wait_for()
    assert (
        "Type the vault's exact name (phone-vault)" in page.locator("#decision-error").inner_text()
    )
    assert page.url.endswith(f"/approvals/{approval.pk}/")
    assert not Vault.objects.get(name="phone-vault").is_locked

    device = TOTPDevice.objects.get(user=security_admin)
    page.get_by_label("Type phone-vault to approve").fill("phone-vault")
    page.get_by_label("Code from your authenticator app").fill(fresh_code_for(device))
    page.get_by_role("button", name=f"Approve request {approval.pk}").click()
    # The message shows where the person acted, and the header count follows (HX-Trigger).
    page.locator("#messages").get_by_text("approved, the change is made").wait_for()
    page.locator("#approvals-inbox .count", has_text="0").wait_for()
    assert "Approved" in page.locator("#approval-status").inner_text()
    assert page.url.endswith(f"/approvals/{approval.pk}/")
    assert Vault.objects.get(name="phone-vault").is_locked
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1
    assert unexpected(watch.errors) == [] and watch.csp_violations() == []


def fresh_code_for(device: TOTPDevice) -> str:
    from django_otp.oath import TOTP

    device.refresh_from_db()
    totp = TOTP(bytes.fromhex(device.key))
    totp.time = (device.last_t + 1) * 30
    return f"{totp.token():06d}"


def tab_to(page: Any, selector: str, limit: int = 80) -> None:
    """Press Tab until ``selector`` has the focus (keyboard only: no click, no focus())."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"() => document.activeElement.matches({selector!r})"):
            return
    raise AssertionError(f"{selector} never got the focus by Tab")


def test_the_lock_approval_by_keyboard_alone(
    live_server: Any, browser: Any, admin: Any, security_admin: Any
) -> None:
    approval = lock_requested(admin, "keyboard-vault")
    watch = open_page(browser, live_server.url, "sam")
    page = watch.page
    page.goto("/approvals/")
    tab_to(page, f'a[href="/approvals/{approval.pk}/"].button')
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/approvals/{approval.pk}/")
    tab_to(page, "#approve-confirmation")
    page.keyboard.type("keyboard-vault")
    tab_to(page, "#approve")
    page.keyboard.press("Enter")
    page.locator("#messages").get_by_text("approved, the change is made").wait_for()
    assert Vault.objects.get(name="keyboard-vault").is_locked
    assert watch.errors == [] and watch.csp_violations() == []


def test_a_mua_refusal_leads_to_access_approval_and_a_retry(
    live_server: Any, browser: Any, admin: Any, security_admin: Any
) -> None:
    vault = make_vault(admin, name="mua-vault")
    guard = guard_services.guard_create(actor=security_admin, name="g1")
    services.vault_guard_set(actor=admin, vault=vault, guard=guard)
    watch = open_page(browser, live_server.url, "alice")
    page = watch.page
    page.goto("/vaults/mua-vault/security/")
    # Marked before the click.
    assert "Protected by g1" in page.locator("#security-blade").inner_text()
    page.get_by_label("Type the number of items that will be purged").fill("0")
    page.get_by_role("button", name="Disable soft delete").click()
    page.locator("#disable-error").wait_for()
    assert page.url.endswith("/vaults/mua-vault/security/")
    assert watch.csp_violations() == []  # the htmx swap of the refusal included

    page.get_by_role("link", name="Request access on Resource Guard g1").click()
    page.wait_for_url("**/resource-guards/g1/access/?**")
    assert "Disable soft delete" in page.locator("#requested-operation").inner_text()
    assert page.get_by_label("Justification").input_value().startswith("To disable soft delete")
    page.get_by_label("Duration").select_option("30")
    page.get_by_role("button", name="Request access").click()
    page.get_by_text("Access requested").wait_for()
    elevation = Approval.objects.get(kind=Approval.Kind.ELEVATION)

    approver = open_page(browser, live_server.url, "sam").page
    approver.goto("/approvals/")
    approver.get_by_role("button", name=f"Approve request {elevation.pk}").click()
    approver.locator("#messages").get_by_text("can now retry").wait_for()

    page.reload()
    page.get_by_role("link", name="Retry: back to where you were refused").click()
    page.wait_for_url("**/vaults/mua-vault/security/")
    page.get_by_label("Type the number of items that will be purged").fill("0")
    page.get_by_role("button", name="Disable soft delete").click()
    page.get_by_role("button", name="Enable soft delete").wait_for()
    assert Vault.objects.get(name="mua-vault").soft_delete_state == "disabled"
    assert unexpected(watch.errors) == [] and watch.csp_violations() == []


def test_api_docs_render_without_csp_violations(live_server: Any, browser: Any, admin: Any) -> None:
    watch = open_page(browser, live_server.url, "alice")
    watch.page.goto("/api/docs/")
    watch.page.locator(".swagger-ui .info").wait_for()
    watch.page.get_by_text("Holdfast API").first.wait_for()
    watch.page.wait_for_load_state("networkidle")
    assert watch.errors == [] and watch.csp_violations() == []


def test_the_policy_form_shows_only_the_chosen_frequencys_fields(
    live_server: Any, browser: Any, admin: Any
) -> None:
    make_vault(admin, name="policy-vault")
    watch = open_page(browser, live_server.url, "alice", width=390)
    page = watch.page
    page.goto("/vaults/policy-vault/policies/new/")
    weekdays = page.locator("fieldset.freq-weekly")
    page.get_by_label("Backup frequency").select_option("daily")
    assert not weekdays.is_visible() and page.locator(".freq-hourly").first.is_hidden()
    page.get_by_label("Backup frequency").select_option("weekly")
    assert weekdays.is_visible() and page.locator(".freq-hourly").first.is_hidden()
    page.get_by_label("Backup frequency").select_option("hourly")
    assert not weekdays.is_visible() and page.locator(".freq-hourly").first.is_visible()
    assert watch.errors == [] and watch.csp_violations() == []


def test_sign_in_and_error_pages_on_both_widths(
    live_server: Any, browser: Any, reader: Any
) -> None:
    for width in (1440, 390):
        context = browser.new_context(
            base_url=live_server.url, viewport={"width": width, "height": 844}
        )
        page = context.new_page()
        page.goto("/accounts/login/")
        label = page.locator("label[for=id_username]").bounding_box()
        field = page.locator("#id_username").bounding_box()
        assert label and field and label["y"] + label["height"] <= field["y"]  # above, apart
        screenshot(page, f"login-{width}")
        page.get_by_label("Username").fill("rita")
        page.get_by_label("Password").fill("correct-horse-battery-staple")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/accounts/login/" not in url)
        assert page.goto("/users/").status == 403
        assert "Your role does not allow" in page.locator("#refusal-reason").inner_text()
        screenshot(page, f"403-{width}")
        assert page.goto("/vaults/nope/").status == 404
        screenshot(page, f"404-{width}")
        context.close()


def test_the_navigation_opens_without_javascript_on_a_phone(
    live_server: Any, browser: Any, admin: Any
) -> None:
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 390, "height": 844}, java_script_enabled=False
    )
    page = context.new_page()
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("correct-horse-battery-staple")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    assert not page.locator("#sidenav").is_visible()
    page.get_by_role("link", name="Menu").click()  # #sidenav:target shows it
    assert page.locator("#sidenav").is_visible()
    page.locator("#sidenav").get_by_role("link", name="Vaults").click()
    page.wait_for_url("**/vaults/")
    assert not page.locator("#sidenav").is_visible()
    context.close()


def test_other_region_is_asked_for_only_when_chosen(
    live_server: Any, browser: Any, admin: Any
) -> None:
    watch = open_page(browser, live_server.url, "alice", width=390)
    page = watch.page
    page.goto("/vaults/new/")
    other = page.get_by_label("Other region")
    assert not other.is_visible()
    page.get_by_label("Name").fill("basement-vault")
    page.get_by_label("Region", exact=True).select_option("other")
    other.wait_for()
    other.fill("basement")
    page.get_by_role("button", name="Create").click()
    page.wait_for_url("**/vaults/basement-vault/properties/")
    assert Vault.objects.get(name="basement-vault").region == "basement"
    assert watch.errors == [] and watch.csp_violations() == []
