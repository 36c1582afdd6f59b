"""The approval's own page and the inbox (issue 15): the facts before the decision, a typed
name to approve a lock or a guard weakening, decisions in place with htmx, and MUA refusals
that lead to a request for access and back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from guards import services as guard_services
from guards.models import ResourceGuard
from portal import services as portal_services
from portal.models import Approval, AuditRecord
from tests.factories import make_vault
from vaults import services
from vaults.models import Vault

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def request_lock(admin: Any, vault: Vault) -> Approval:
    services.immutability_set(actor=admin, vault=vault, state="enabled")
    return services.immutability_lock_request(actor=admin, vault=vault, confirmation=vault.name)


def weaken(security_admin: Any) -> Approval:
    guard = guard_services.guard_create(actor=security_admin, name="g1")
    result = guard_services.guard_update(
        actor=security_admin,
        guard=guard,
        protected_operations=sorted(ResourceGuard.MANDATORY),
    )
    assert isinstance(result, Approval)
    return result


def test_the_page_shows_who_when_why_and_the_change(
    admin: Any, security_admin: Any, vault: Vault
) -> None:
    approval = request_lock(admin, vault)
    page = client_for(security_admin).get(f"/approvals/{approval.pk}/").content.decode()
    assert "Lock immutability of vault vault-one" in page
    assert "Requested by</dt><dd>alice" in page
    assert approval.created_at.strftime("%Y-%m-%d %H:%M") in page
    # Before → after: the vault's immutability now, and once approved.
    assert "<td>Enabled</td><td><strong>Enabled and locked</strong></td>" in page
    # The vault's other protections, as they stay.
    assert '<th scope="row">Soft delete</th><td>Enabled (14 days)</td>' in page
    assert "<td>None (MUA off)</td>" in page
    assert "Cannot be undone." in page
    assert "Request valid until" in page and "an undecided request expires then" in page
    assert "Type <strong>vault-one</strong> to approve" in page


def test_a_wrong_name_approves_nothing_and_says_so(
    admin: Any, security_admin: Any, vault: Vault
) -> None:
    approval = request_lock(admin, vault)
    approver = client_for(security_admin)
    for typed in ("", "vault-on", "VAULT-ONE", "g1"):
        response = approver.post(
            f"/approvals/{approval.pk}/approve/", {"confirmation": typed}, headers=HTMX
        )
        assert response.status_code == 409
        assert "Type the vault&#x27;s exact name (vault-one)" in response.content.decode()
    # A forged POST without the field at all is refused the same way.
    assert approver.post(f"/approvals/{approval.pk}/approve/").status_code == 302
    vault.refresh_from_db()
    assert not vault.is_locked
    assert Approval.objects.get(pk=approval.pk).status == Approval.Status.PENDING
    refused = AuditRecord.objects.filter(operation="approval_approve", outcome="refused")
    assert set(refused.values_list("code", flat=True)) == {"confirmation_mismatch"}
    response = approver.post(
        f"/approvals/{approval.pk}/approve/", {"confirmation": "vault-one"}, headers=HTMX
    )
    assert response.status_code == 200
    vault.refresh_from_db()
    assert vault.is_locked


def test_the_api_keeps_its_contract_and_checks_a_name_when_given(
    admin: Any, security_admin: Any, api: Any
) -> None:
    first = request_lock(admin, make_vault(admin, name="api-one"))
    second = request_lock(admin, make_vault(admin, name="api-two"))
    client = api(security_admin)
    # The API's body stays optional (SPEC 5): no name, no question asked.
    assert (
        client.post(f"/api/v1/approvals/{first.pk}/approve/", {}, format="json").status_code == 200
    )
    assert Vault.objects.get(name="api-one").is_locked
    wrong = client.post(
        f"/api/v1/approvals/{second.pk}/approve/", {"confirmation": "api-one"}, format="json"
    )
    assert (wrong.status_code, wrong.json()["code"]) == (409, "confirmation_mismatch")
    assert not Vault.objects.get(name="api-two").is_locked
    right = client.post(
        f"/api/v1/approvals/{second.pk}/approve/", {"confirmation": "api-two"}, format="json"
    )
    assert right.status_code == 200 and Vault.objects.get(name="api-two").is_locked


def test_a_guard_weakening_needs_the_guards_name(security_admin: Any, security_admin2: Any) -> None:
    approval = weaken(security_admin)
    approver = client_for(security_admin2)
    page = approver.get(f"/approvals/{approval.pk}/").content.decode()
    assert "Weaken Resource Guard g1" in page
    assert "No longer protected:" in page and "Delete a recovery point" in page
    assert 'href="/resource-guards/g1/"' in page
    wrong = approver.post(
        f"/approvals/{approval.pk}/approve/", {"confirmation": "vault-one"}, headers=HTMX
    )
    assert wrong.status_code == 409
    assert "Type the Resource Guard&#x27;s exact name (g1)" in wrong.content.decode()
    assert "delete_recovery_point" in ResourceGuard.objects.get().protected_operations
    approver.post(f"/approvals/{approval.pk}/approve/", {"confirmation": "g1"}, headers=HTMX)
    assert "delete_recovery_point" not in ResourceGuard.objects.get().protected_operations


def test_an_elevation_shows_its_guard_operations_and_duration(
    admin: Any, security_admin: Any, vault: Vault
) -> None:
    guard = guard_services.guard_create(actor=security_admin, name="g1")
    services.vault_guard_set(actor=admin, vault=vault, guard=guard)
    approval = guard_services.elevation_request(
        actor=admin, guard=guard, justification="migrate the vault", duration_minutes=120
    )
    approver = client_for(security_admin)
    page = approver.get(f"/approvals/{approval.pk}/").content.decode()
    assert '<a href="/resource-guards/g1/" id="approval-guard">g1</a>' in page
    assert "Duration of the elevation: <strong>2 h</strong>" in page
    assert "Disable soft delete or shorten its retention" in page
    assert "migrate the vault" in page
    # The inbox row carries the same facts, and links to the page.
    inbox = approver.get("/approvals/").content.decode()
    assert f'href="/approvals/{approval.pk}/"' in inbox
    assert "Duration of the elevation: <strong>2 h</strong>" in inbox
    assert "Request expires" in inbox


def test_a_decision_with_htmx_answers_in_place_with_message_and_count_event(
    admin: Any, security_admin: Any, vault: Vault
) -> None:
    guard = guard_services.guard_create(actor=security_admin, name="g1")
    approval = guard_services.elevation_request(
        actor=admin, guard=guard, justification="x", duration_minutes=30
    )
    response = client_for(security_admin).post(
        f"/approvals/{approval.pk}/approve/",
        headers={**HTMX, "HX-Target": f"approval-row-{approval.pk}"},
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith(f'<tr data-approval="{approval.pk}"')
    assert '<div id="messages" class="messages-region" aria-live="polite" hx-swap-oob="true">' in (
        body
    )
    assert "can now retry" in body
    assert "holdfast:changed" in json.loads(response["HX-Trigger"])


def test_header_counts_are_served_for_the_refresh(admin: Any, vault: Vault) -> None:
    request_lock(admin, vault)
    body = client_for(admin).get("/header-counts/").content.decode()
    assert 'id="header-counts"' in body and 'aria-label="1 pending"' in body


def test_a_mua_refusal_offers_access_prefilled_and_a_retry_back(
    admin: Any, security_admin: Any, vault: Vault
) -> None:
    guard = guard_services.guard_create(actor=security_admin, name="g1")
    services.vault_guard_set(actor=admin, vault=vault, guard=guard)
    browser = client_for(admin)
    refused = browser.post(
        f"/vaults/{vault.name}/soft-delete/",
        {"state": "disabled", "confirm_purge_count": 0},
        headers=HTMX,
    )
    assert refused.status_code == 409
    assert refused["HX-Replace-Url"] == f"/vaults/{vault.name}/security/"
    link = (
        "/resource-guards/g1/access/?operation=disable_soft_delete&amp;"
        "next=%2Fvaults%2Fvault-one%2Fsecurity%2F#request-access"
    )
    assert link in refused.content.decode()
    form = browser.get(link.replace("&amp;", "&")).content.decode()
    assert "You were refused <strong>Disable soft delete or shorten its retention</strong>" in form
    assert "To disable soft delete or shorten its retention." in form
    assert 'name="next" value="/vaults/vault-one/security/"' in form
    browser.post(
        "/resource-guards/g1/access/",
        {
            "justification": "retire",
            "duration_minutes": "30",
            "next": "/vaults/vault-one/security/",
        },
    )
    approval = Approval.objects.get(kind=Approval.Kind.ELEVATION)
    pending = browser.get("/resource-guards/g1/").content.decode()
    assert "once approved, a Retry link appears here" in pending
    assert 'class="button primary retry"' not in pending
    portal_services.approval_approve(actor=security_admin, approval=approval)
    retry = '<a class="button primary retry" href="/vaults/vault-one/security/">'
    assert retry in browser.get("/resource-guards/g1/").content.decode()
    assert retry in browser.get(f"/approvals/{approval.pk}/").content.decode()


def test_a_next_outside_the_site_is_not_kept(admin: Any, security_admin: Any, vault: Vault) -> None:
    guard_services.guard_create(actor=security_admin, name="g1")
    browser = client_for(admin)
    page = browser.get("/resource-guards/g1/access/?next=https://evil.example/").content
    assert b"evil.example" not in page
    browser.post(
        "/resource-guards/g1/access/",
        {"justification": "x", "duration_minutes": "30", "next": "//evil.example/x"},
    )
    assert b"evil.example" not in browser.get("/resource-guards/g1/").content


def test_guarded_actions_are_marked_before_the_click(
    admin: Any, security_admin: Any, vault: Vault
) -> None:
    guard = guard_services.guard_create(actor=security_admin, name="g1")
    services.vault_guard_set(actor=admin, vault=vault, guard=guard)
    browser = client_for(admin)
    marker = 'class="mua-marker">Protected by <a href="/resource-guards/g1/">g1</a>'
    for blade in ("security", "mua", "properties"):
        page = browser.get(f"/vaults/{vault.name}/{blade}/").content.decode()
        assert marker in page, blade
    services.immutability_set(actor=admin, vault=vault, state="enabled")
    assert marker in browser.get(f"/vaults/{vault.name}/immutability/").content.decode()
