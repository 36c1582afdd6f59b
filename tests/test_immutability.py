"""SPEC 3.2's state table, from the service layer and through the API."""

from __future__ import annotations

from typing import Any

import pytest

from portal.gate import DomainError
from portal.models import Approval, AuditRecord
from tests.factories import lock_vault, make_vault
from vaults import services
from vaults.models import Vault

pytestmark = pytest.mark.django_db

# from, requested, expected outcome (new state or error code)
TRANSITIONS = [
    ("disabled", "enabled", "enabled"),
    ("disabled", "disabled", "disabled"),
    ("enabled", "disabled", "disabled"),
    ("enabled", "enabled", "enabled"),
    ("locked", "disabled", "immutability_locked"),
    ("locked", "enabled", "immutability_locked"),
]


@pytest.mark.parametrize(("start", "requested", "expected"), TRANSITIONS)
def test_service_immutability_transition(
    admin: Any, start: str, requested: str, expected: str
) -> None:
    vault = make_vault(admin, immutability=start)
    audit_before = AuditRecord.objects.count()
    if expected in Vault.Immutability.values:
        vault = services.immutability_set(actor=admin, vault=vault, state=requested)
        assert vault.immutability == expected
        record = AuditRecord.objects.first()
        assert record.outcome == "allowed"
    else:
        with pytest.raises(DomainError) as refusal:
            services.immutability_set(actor=admin, vault=vault, state=requested)
        assert refusal.value.code == expected
        vault.refresh_from_db()
        assert vault.immutability == start
        record = AuditRecord.objects.first()
        assert (record.outcome, record.code) == ("refused", expected)
    assert AuditRecord.objects.count() == audit_before + 1
    assert record.vault_name == vault.name
    assert record.actor == admin


@pytest.mark.parametrize(("start", "requested", "expected"), TRANSITIONS)
def test_api_immutability_transition(
    admin: Any, api: Any, start: str, requested: str, expected: str
) -> None:
    vault = make_vault(admin, immutability=start)
    response = api(admin).post(
        f"/api/v1/vaults/{vault.name}/immutability/", {"state": requested}, format="json"
    )
    if expected in Vault.Immutability.values:
        assert response.status_code == 200, response.json()
        assert response.json()["immutability"]["state"] == expected
    else:
        assert response.status_code == 409
        assert response.json()["code"] == expected
        vault.refresh_from_db()
        assert vault.immutability == start
    assert AuditRecord.objects.filter(source="api", vault_name=vault.name).count() == 1


@pytest.mark.parametrize("start", ["disabled", "enabled"])
def test_lock_goes_through_an_approval_from_disabled_or_enabled(
    admin: Any, security_admin: Any, start: str
) -> None:
    vault = make_vault(admin, immutability=start)
    approval = services.immutability_lock_request(actor=admin, vault=vault, confirmation=vault.name)
    vault.refresh_from_db()
    assert vault.immutability == start, "a lock request alone changes nothing"
    assert approval.status == Approval.Status.PENDING
    from portal.services import approval_approve

    approval_approve(actor=security_admin, approval=approval)
    vault.refresh_from_db()
    assert vault.immutability == Vault.Immutability.LOCKED
    operations = list(
        AuditRecord.objects.filter(vault_name=vault.name).values_list("operation", flat=True)
    )
    assert "immutability_lock" in operations and "approval_approve" in operations


def test_locked_vault_refuses_a_new_lock_request(admin: Any) -> None:
    vault = make_vault(admin, immutability="locked")
    with pytest.raises(DomainError) as refusal:
        services.immutability_lock_request(actor=admin, vault=vault, confirmation=vault.name)
    assert refusal.value.code == "immutability_locked"
    assert not Approval.objects.filter(vault=vault, status="pending").exists()


def test_locked_state_cannot_be_set_directly(admin: Any, api: Any) -> None:
    vault = make_vault(admin)
    with pytest.raises(DomainError) as refusal:
        services.immutability_set(actor=admin, vault=vault, state="locked")
    assert refusal.value.code == "validation_error"
    response = api(admin).post(
        f"/api/v1/vaults/{vault.name}/immutability/", {"state": "locked"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    vault.refresh_from_db()
    assert vault.immutability == "disabled"


def test_superuser_cannot_unlock_a_locked_vault(admin: Any, superuser: Any) -> None:
    vault = make_vault(admin, immutability="locked")
    with pytest.raises(DomainError) as refusal:
        services.immutability_set(actor=superuser, vault=vault, state="disabled")
    assert refusal.value.code == "immutability_locked"


def test_approval_rechecks_that_the_vault_is_not_already_locked(
    admin: Any, admin2: Any, security_admin: Any
) -> None:
    vault = make_vault(admin)
    first = services.immutability_lock_request(actor=admin, vault=vault, confirmation=vault.name)
    # A second pending request for the same vault is the same approval, not a duplicate.
    again = services.immutability_lock_request(actor=admin2, vault=vault, confirmation=vault.name)
    assert again.pk == first.pk
    lock_vault(vault, requester=admin)
    with pytest.raises(DomainError) as refusal:
        from portal.services import approval_approve

        approval_approve(actor=security_admin, approval=first)
    assert refusal.value.code in {"immutability_locked", "approval_not_pending"}
