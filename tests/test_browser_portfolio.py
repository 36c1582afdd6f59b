"""A reader's journey in a real browser: filter the Backup center to locked vaults (in place,
with a bookmarkable URL), open one, and find no action control on any of its blades."""

from __future__ import annotations

from typing import Any

import pytest

from guards.models import ResourceGuard
from tests.conftest import PASSWORD
from vaults.models import Vault

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Anything a person could press to change something: buttons, POST forms, htmx writes, and
# links styled as buttons ("Create policy", "Edit").
ACTION_CONTROLS = (
    "main button, main form[method=post], main form[method=POST], main [hx-post], "
    "main [hx-put], main [hx-patch], main [hx-delete], main a.button"
)


def _sign_in(browser: Any, base_url: str, username: str) -> Any:
    page = browser.new_context(base_url=base_url).new_page()
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Backup center").wait_for()
    return page


def test_a_reader_filters_to_locked_vaults_opens_one_and_finds_no_action_control(
    live_server: Any, browser: Any, reader: Any, security_admin: Any
) -> None:
    guard = ResourceGuard.objects.create(name="guard-one", owner=security_admin)
    for name, immutability, soft_delete, mua in [
        ("open-vault", "disabled", "enabled", False),
        ("enabled-vault", "enabled", "enabled", False),
        ("sealed-vault", "locked", "enabled", False),
        ("fortress-vault", "locked", "always_on", True),
    ]:
        Vault.objects.create(
            name=name,
            kind="backup",
            region="westeurope",
            immutability=immutability,
            soft_delete_state=soft_delete,
            resource_guard=guard if mua else None,
        )

    page = _sign_in(browser, live_server.url, "rita")
    table = page.locator("#portfolio")
    assert table.get_by_role("link", name="open-vault").count() == 1

    page.get_by_label("Immutability").select_option("locked")
    page.wait_for_url("**/?*immutability=locked*")
    table.get_by_role("link", name="open-vault").wait_for(state="detached")
    names = sorted(table.locator("tbody tr td:first-child a").all_inner_texts())
    assert names == ["fortress-vault", "sealed-vault"]
    for row in table.locator("tbody tr").all():
        assert "Locked" in row.inner_text()

    # Sorting swaps the rows in place and the next filter keeps the sort.
    table.get_by_role("link", name="Name").click()
    page.wait_for_url("**sort=-name*")
    assert table.locator("tbody tr td:first-child a").all_inner_texts() == [
        "sealed-vault",
        "fortress-vault",
    ]
    page.get_by_label("MUA").select_option("false")
    page.wait_for_url("**mua=false*")
    table.get_by_role("link", name="fortress-vault").wait_for(state="detached")
    assert "sort=-name" in page.url and "immutability=locked" in page.url
    page.get_by_label("MUA").select_option("")
    page.wait_for_url(lambda url: "mua=false" not in url)
    table.get_by_role("link", name="fortress-vault").wait_for()

    # The filtered URL is a bookmark: loading it again shows the same rows.
    page.reload()
    names = sorted(table.locator("tbody tr td:first-child a").all_inner_texts())
    assert names == ["fortress-vault", "sealed-vault"]
    assert page.get_by_label("Immutability").input_value() == "locked"
    assert page.locator(ACTION_CONTROLS).count() == 1  # the filter form's Apply button only
    assert page.locator("main button").all_inner_texts() == ["Apply"]

    table.get_by_role("link", name="fortress-vault").click()
    page.wait_for_url("**/vaults/fortress-vault/")
    blades = page.locator("nav.blades a")
    hrefs = [blades.nth(i).get_attribute("href") for i in range(blades.count())]
    assert len(hrefs) == 9  # Replication (SPEC 3.10) included
    for href in hrefs:
        page.goto(href)
        assert page.locator(ACTION_CONTROLS).count() == 0, href
    page.goto("/vaults/fortress-vault/immutability/")
    assert "Locked" in page.locator("main").inner_text()
