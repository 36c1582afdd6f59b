"""The Security settings and Multi-user authorization blades (SPEC 3.3, 3.4, 7)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from guards import services as guard_services
from policies import services as policy_services
from portal import services as portal_services
from portal.models import Approval, AuditRecord
from vaults import services
from vaults.models import ProtectedItem, RecoveryPoint, Vault

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def soft_deleted_items(admin: Any, vault: Vault, tmp_path: Path, count: int) -> list:
    policy = policy_services.policy_create(actor=admin, vault=vault, name="p", daily_days=30)
    items = []
    for number in range(count):
        item = services.item_protect(
            actor=admin,
            vault=vault,
            name=f"item-{number}",
            source_path=str(tmp_path),
            policy=policy,
        )
        services.point_record(item=item)
        services.protection_stop(actor=admin, item=item, delete_data=True)
        items.append(item)
    return items


def guarded(admin: Any, security_admin: Any, vault: Vault) -> Any:
    guard = guard_services.guard_create(actor=security_admin, name="g1")
    services.vault_guard_set(actor=admin, vault=vault, guard=guard)
    vault.refresh_from_db()
    return guard


def elevate(admin: Any, security_admin: Any, guard: Any, minutes: int = 60) -> Approval:
    request = guard_services.elevation_request(
        actor=admin, guard=guard, justification="maintenance", duration_minutes=minutes
    )
    return portal_services.approval_approve(actor=security_admin, approval=request)


# --- Security settings ------------------------------------------------------------------------


def test_security_blade_shows_state_retention_and_soft_deleted_items(
    admin: Any, vault: Vault, tmp_path: Path
) -> None:
    soft_deleted_items(admin, vault, tmp_path, 2)
    page = client_for(admin).get(f"/vaults/{vault.name}/security/").content.decode()
    assert "Soft delete on" in page and "14 days" in page
    assert "Undelete item-0" in page and "Undelete item-1" in page
    assert "purges the 2 soft-deleted items" in page
    assert "Request always-on" in page and "This cannot be undone" in page


def test_retention_changes_in_place_with_htmx(admin: Any, vault: Vault) -> None:
    response = client_for(admin).post(
        f"/vaults/{vault.name}/soft-delete/", {"retention_days": 30}, headers=HTMX
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="security-blade">')
    assert "30 days" in body
    vault.refresh_from_db()
    assert vault.soft_delete_retention_days == 30


def test_retention_change_works_without_javascript(admin: Any, vault: Vault) -> None:
    response = client_for(admin).post(f"/vaults/{vault.name}/soft-delete/", {"retention_days": 60})
    assert (response.status_code, response["Location"]) == (302, f"/vaults/{vault.name}/security/")
    vault.refresh_from_db()
    assert vault.soft_delete_retention_days == 60


@pytest.mark.parametrize("days", ["13", "181", "many"])
def test_bad_retention_is_refused_in_place(admin: Any, vault: Vault, days: str) -> None:
    response = client_for(admin).post(
        f"/vaults/{vault.name}/soft-delete/", {"retention_days": days}, headers=HTMX
    )
    assert response.status_code == 400
    assert "14 to 180" in response.content.decode()
    vault.refresh_from_db()
    assert vault.soft_delete_retention_days == 14


def test_disable_with_the_wrong_count_is_refused_then_the_right_count_purges(
    admin: Any, vault: Vault, tmp_path: Path
) -> None:
    soft_deleted_items(admin, vault, tmp_path, 2)
    client = client_for(admin)
    url = f"/vaults/{vault.name}/soft-delete/"
    wrong = client.post(url, {"state": "disabled", "confirm_purge_count": 1}, headers=HTMX)
    assert wrong.status_code == 409
    assert 'id="disable-error"' in wrong.content.decode()
    assert "purges 2 soft-deleted item(s)" in wrong.content.decode()
    assert ProtectedItem.objects.filter(vault=vault).count() == 2
    right = client.post(url, {"state": "disabled", "confirm_purge_count": 2}, headers=HTMX)
    assert right.status_code == 200
    assert '<span class="badge disabled">Off</span>' in right.content.decode()
    assert not ProtectedItem.objects.filter(vault=vault).exists()
    vault.refresh_from_db()
    assert vault.soft_delete_state == "disabled"


def test_enable_soft_delete_again(admin: Any, vault: Vault) -> None:
    services.soft_delete_set(actor=admin, vault=vault, state="disabled", confirm_purge_count=0)
    client = client_for(admin)
    assert "Enable soft delete" in client.get(f"/vaults/{vault.name}/security/").content.decode()
    client.post(f"/vaults/{vault.name}/soft-delete/", {"state": "enabled"})
    vault.refresh_from_db()
    assert vault.soft_delete_state == "enabled"


def test_undelete_button_brings_the_item_back(admin: Any, vault: Vault, tmp_path: Path) -> None:
    (item,) = soft_deleted_items(admin, vault, tmp_path, 1)
    response = client_for(admin).post(
        f"/vaults/{vault.name}/security/items/{item.pk}/undelete/", headers=HTMX
    )
    assert response.status_code == 200
    assert "No soft-deleted items." in response.content.decode()
    item.refresh_from_db()
    assert item.protection_state == "protection_stopped"


def test_undelete_of_an_item_not_soft_deleted_is_refused_in_place(
    admin: Any, vault: Vault, tmp_path: Path
) -> None:
    (item,) = soft_deleted_items(admin, vault, tmp_path, 1)
    item.refresh_from_db()
    services.item_undelete(actor=admin, item=item)
    response = client_for(admin).post(
        f"/vaults/{vault.name}/security/items/{item.pk}/undelete/", headers=HTMX
    )
    assert response.status_code == 400
    assert 'id="undelete-error"' in response.content.decode()


def test_always_on_request_then_approval_shows_always_on(
    admin: Any, security_admin: Any, vault: Vault
) -> None:
    requester, approver = client_for(admin), client_for(security_admin)
    url = f"/vaults/{vault.name}/soft-delete/always-on/"
    wrong = requester.post(url, {"confirmation": "wrong"}, headers=HTMX)
    assert wrong.status_code == 409
    assert "Type the vault&#x27;s exact name" in wrong.content.decode()
    assert not Approval.objects.exists()
    pending = requester.post(url, {"confirmation": vault.name}, headers=HTMX)
    assert pending.status_code == 200
    assert "waiting for a security admin" in pending.content.decode()
    approval = Approval.objects.get(kind=Approval.Kind.ALWAYS_ON_SOFT_DELETE)
    approver.post(f"/approvals/{approval.pk}/approve/")
    page = requester.get(f"/vaults/{vault.name}/security/").content.decode()
    assert '<span class="badge locked">Always-on</span>' in page
    assert "Disable soft delete" not in page and "Request always-on" not in page


def test_always_on_vault_refuses_a_shorter_retention_in_place(
    admin: Any, security_admin: Any, vault: Vault
) -> None:
    approval = services.soft_delete_always_on_request(
        actor=admin, vault=vault, confirmation=vault.name
    )
    portal_services.approval_approve(actor=security_admin, approval=approval)
    client = client_for(admin)
    client.post(f"/vaults/{vault.name}/soft-delete/", {"retention_days": 60})
    response = client.post(
        f"/vaults/{vault.name}/soft-delete/", {"retention_days": 30}, headers=HTMX
    )
    assert response.status_code == 409
    assert "always-on" in response.content.decode()
    disable = client.post(
        f"/vaults/{vault.name}/soft-delete/",
        {"state": "disabled", "confirm_purge_count": 0},
        headers=HTMX,
    )
    assert disable.status_code == 409
    vault.refresh_from_db()
    assert (vault.soft_delete_state, vault.soft_delete_retention_days) == ("always_on", 60)


def test_mua_refusal_links_to_the_guard(admin: Any, security_admin: Any, vault: Vault) -> None:
    guarded(admin, security_admin, vault)
    response = client_for(admin).post(
        f"/vaults/{vault.name}/soft-delete/",
        {"state": "disabled", "confirm_purge_count": 0},
        headers=HTMX,
    )
    assert response.status_code == 409
    body = response.content.decode()
    assert "Unlock privilege access is needed" in body
    assert 'href="/resource-guards/g1/"' in body
    vault.refresh_from_db()
    assert vault.soft_delete_state == "enabled"


def test_mua_refusal_without_javascript_redirects_to_the_blade_and_shows_it_there(
    admin: Any, security_admin: Any, vault: Vault
) -> None:
    guarded(admin, security_admin, vault)
    browser = client_for(admin)
    response = browser.post(
        f"/vaults/{vault.name}/soft-delete/", {"state": "disabled", "confirm_purge_count": 0}
    )
    # Redirect after the POST: the address bar shows the blade, reloading repeats nothing.
    assert response.status_code == 302
    assert response["Location"] == f"/vaults/{vault.name}/security/"
    body = browser.get(response["Location"]).content.decode()
    assert "<html" in body and 'id="disable-error"' in body
    assert "Request access on Resource Guard g1" in body
    assert "/resource-guards/g1/access/?operation=disable_soft_delete&amp;next=" in body
    # Shown once: the next visit is clean.
    assert 'id="disable-error"' not in browser.get(response["Location"]).content.decode()


def test_soft_deleted_points_are_listed_with_their_purge_date(
    admin: Any, vault: Vault, tmp_path: Path, clock: Any
) -> None:
    policy = policy_services.policy_create(actor=admin, vault=vault, name="p", daily_days=30)
    item = services.item_protect(
        actor=admin, vault=vault, name="web", source_path=str(tmp_path), policy=policy
    )
    services.point_record(item=item, created_at=clock.now() - timedelta(days=20))
    policy_services.policy_update(actor=admin, policy=policy, changes={"daily_days": 7})
    page = client_for(admin).get(f"/vaults/{vault.name}/security/").content.decode()
    purge = (clock.now() + timedelta(days=14)).strftime("%Y-%m-%d %H:%M")
    table = page[page.index('id="soft-deleted-points"') :]
    assert "web" in table and purge in table


def test_security_blade_query_count_does_not_grow_with_rows(
    admin: Any, vault: Vault, tmp_path: Path, clock: Any
) -> None:
    client = client_for(admin)
    url = f"/vaults/{vault.name}/security/"
    (item,) = soft_deleted_items(admin, vault, tmp_path, 1)
    policy = item.policy
    services.point_record(item=item, created_at=clock.now() - timedelta(days=20))
    policy_services.policy_update(actor=admin, policy=policy, changes={"daily_days": 7})
    with CaptureQueriesContext(connection) as few:
        client.get(url)

    policy_services.policy_update(actor=admin, policy=policy, changes={"daily_days": 30})
    for number in range(3):
        extra = services.item_protect(
            actor=admin,
            vault=vault,
            name=f"more-{number}",
            source_path=str(tmp_path),
            policy=policy,
        )
        services.point_record(item=extra, created_at=clock.now() - timedelta(days=20))
        services.protection_stop(actor=admin, item=extra, delete_data=True)
    policy_services.policy_update(actor=admin, policy=policy, changes={"daily_days": 7})
    assert RecoveryPoint.objects.soft_deleted(clock.now()).count() == 4
    with CaptureQueriesContext(connection) as many:
        page = client.get(url).content.decode()
    assert "Undelete more-2" in page
    assert len(many.captured_queries) == len(few.captured_queries)


# --- readers ----------------------------------------------------------------------------------


def test_reader_sees_no_security_or_mua_controls(
    admin: Any, security_admin: Any, reader: Any, vault: Vault, tmp_path: Path
) -> None:
    soft_deleted_items(admin, vault, tmp_path, 1)
    guarded(admin, security_admin, vault)
    client = client_for(reader)
    security = client.get(f"/vaults/{vault.name}/security/").content.decode()
    assert "item-0" in security and "Soft delete on" in security
    for control in ["Save retention", "Disable soft delete", "Request always-on", ">Undelete<"]:
        assert control not in security
    mua = client.get(f"/vaults/{vault.name}/mua/").content.decode()
    assert "MUA on" in mua
    for control in ["Associate guard", "Replace guard", "Remove Resource Guard"]:
        assert control not in mua


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("soft-delete/", {"retention_days": 30}),
        ("soft-delete/", {"state": "disabled", "confirm_purge_count": 1}),
        ("soft-delete/always-on/", {"confirmation": "vault-one"}),
        ("security/items/{item}/undelete/", {}),
        ("resource-guard/", {"guard": "g1"}),
        ("resource-guard/remove/", {}),
    ],
)
def test_reader_changes_nothing_from_the_security_pages(
    admin: Any,
    security_admin: Any,
    reader: Any,
    vault: Vault,
    tmp_path: Path,
    path: str,
    data: dict,
) -> None:
    (item,) = soft_deleted_items(admin, vault, tmp_path, 1)
    guard = guard_services.guard_create(actor=security_admin, name="g1")
    if "remove" in path:
        services.vault_guard_set(actor=admin, vault=vault, guard=guard)
    vault.refresh_from_db()
    before = vault.audit_state()
    response = client_for(reader).post(
        f"/vaults/{vault.name}/{path.format(item=item.pk)}", data, headers=HTMX
    )
    assert response.status_code == 403
    assert "Your role does not allow" in response.content.decode()
    vault.refresh_from_db()
    assert vault.audit_state() == before
    item.refresh_from_db()
    assert item.protection_state == "soft_deleted"
    assert not Approval.objects.exists()
    assert AuditRecord.objects.filter(actor=reader, code="permission_denied").count() == 1


# --- Multi-user authorization -----------------------------------------------------------------


def test_associate_a_guard_and_see_what_it_protects(
    admin: Any, security_admin: Any, vault: Vault
) -> None:
    guard_services.guard_create(
        actor=security_admin, name="g1", protected_operations=["delete_vault"]
    )
    client = client_for(admin)
    before = client.get(f"/vaults/{vault.name}/mua/").content.decode()
    assert "MUA off" in before and '<option value="g1"' in before
    response = client.post(f"/vaults/{vault.name}/resource-guard/", {"guard": "g1"}, headers=HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="mua-blade">')
    assert "MUA on" in body
    operations = body[body.index('id="guard-operations"') :]
    assert "Protected</span> Delete the vault" in operations
    assert "Not protected</span> Disable immutability" in operations
    assert "Protected</span> Remove the Resource Guard from a vault" in operations
    vault.refresh_from_db()
    assert vault.resource_guard.name == "g1"


def test_unknown_guard_is_refused_in_place(admin: Any, vault: Vault) -> None:
    response = client_for(admin).post(
        f"/vaults/{vault.name}/resource-guard/", {"guard": "nope"}, headers=HTMX
    )
    assert response.status_code == 400
    assert "Choose an existing Resource Guard" in response.content.decode()


def test_removing_the_guard_needs_an_elevation(
    admin: Any, security_admin: Any, vault: Vault
) -> None:
    guard = guarded(admin, security_admin, vault)
    client = client_for(admin)
    page = client.get(f"/vaults/{vault.name}/mua/").content.decode()
    assert "You hold no elevation" in page
    refused = client.post(f"/vaults/{vault.name}/resource-guard/remove/", headers=HTMX)
    assert refused.status_code == 409
    body = refused.content.decode()
    assert 'id="guard-remove-error"' in body and 'href="/resource-guards/g1/"' in body
    vault.refresh_from_db()
    assert vault.resource_guard_id == guard.pk

    elevate(admin, security_admin, guard, minutes=30)
    page = client.get(f"/vaults/{vault.name}/mua/").content.decode()
    assert "30 minutes left" in page
    removed = client.post(f"/vaults/{vault.name}/resource-guard/remove/", headers=HTMX)
    assert removed.status_code == 200
    assert "MUA off" in removed.content.decode()
    vault.refresh_from_db()
    assert vault.resource_guard_id is None


def test_elevation_remaining_time_counts_down(
    admin: Any, security_admin: Any, vault: Vault, clock: Any
) -> None:
    guard = guarded(admin, security_admin, vault)
    elevate(admin, security_admin, guard, minutes=60)
    clock.advance(timedelta(minutes=45))
    page = client_for(admin).get(f"/vaults/{vault.name}/mua/").content.decode()
    assert "15 minutes left" in page
    clock.advance(timedelta(minutes=15))
    page = client_for(admin).get(f"/vaults/{vault.name}/mua/").content.decode()
    assert "You hold no elevation" in page
