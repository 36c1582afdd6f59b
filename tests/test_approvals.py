"""SPEC 3.5: typed confirmation, a second approver, expiry, cancel, deny and the race."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from portal import services
from portal.gate import DomainError
from portal.models import Approval, AuditRecord
from tests.conftest import make_user
from tests.factories import make_vault
from vaults import services as vault_services
from vaults.models import Vault

pytestmark = pytest.mark.django_db


def request_lock(admin: Any, vault: Vault) -> Approval:
    return vault_services.immutability_lock_request(
        actor=admin, vault=vault, confirmation=vault.name
    )


def test_wrong_confirmation_is_refused_and_creates_nothing(admin: Any, vault: Vault) -> None:
    with pytest.raises(DomainError) as refusal:
        vault_services.immutability_lock_request(
            actor=admin, vault=vault, confirmation=vault.name.upper()
        )
    assert refusal.value.code == "confirmation_mismatch"
    assert not Approval.objects.exists()
    record = AuditRecord.objects.first()
    assert (record.operation, record.outcome, record.code) == (
        "immutability_lock_request",
        "refused",
        "confirmation_mismatch",
    )


def test_requester_cannot_approve_their_own_request(admin: Any, vault: Vault) -> None:
    # Superuser status grants no capability of any role (SPEC 1): a backup admin who is also a
    # superuser approves nothing, their own request least of all.
    boss = make_user("boss", "backup_admin", is_superuser=True)
    approval = request_lock(boss, vault)
    with pytest.raises(DomainError) as refusal:
        services.approval_approve(actor=boss, approval=approval)
    assert refusal.value.code == "permission_denied"
    vault.refresh_from_db()
    assert vault.immutability == "disabled"


def test_backup_admin_cannot_approve(admin: Any, admin2: Any, vault: Vault) -> None:
    approval = request_lock(admin, vault)
    with pytest.raises(DomainError) as refusal:
        services.approval_approve(actor=admin2, approval=approval)
    assert refusal.value.code == "permission_denied"


def test_pending_approval_expires_after_24_hours(
    admin: Any, security_admin: Any, vault: Vault, clock: Any
) -> None:
    approval = request_lock(admin, vault)
    clock.advance(timedelta(hours=24))
    assert approval.effective_status(clock.now()) == "expired"
    with pytest.raises(DomainError) as refusal:
        services.approval_approve(actor=security_admin, approval=approval)
    assert refusal.value.code == "approval_not_pending"
    vault.refresh_from_db()
    assert vault.immutability == "disabled"


def test_approval_just_before_expiry_succeeds(
    admin: Any, security_admin: Any, vault: Vault, clock: Any
) -> None:
    approval = request_lock(admin, vault)
    clock.advance(timedelta(hours=23, minutes=59))
    services.approval_approve(actor=security_admin, approval=approval)
    vault.refresh_from_db()
    assert vault.is_locked


def test_cancel_by_requester_then_nothing_more_can_be_decided(
    admin: Any, security_admin: Any, vault: Vault
) -> None:
    approval = request_lock(admin, vault)
    services.approval_cancel(actor=admin, approval=approval)
    approval.refresh_from_db()
    assert approval.status == "cancelled"
    with pytest.raises(DomainError) as refusal:
        services.approval_approve(actor=security_admin, approval=approval)
    assert refusal.value.code == "approval_not_pending"


def test_only_the_requester_can_cancel(admin: Any, admin2: Any, vault: Vault) -> None:
    approval = request_lock(admin, vault)
    with pytest.raises(DomainError) as refusal:
        services.approval_cancel(actor=admin2, approval=approval)
    assert refusal.value.code == "permission_denied"


def test_deny_leaves_the_vault_unlocked(admin: Any, security_admin: Any, vault: Vault) -> None:
    approval = request_lock(admin, vault)
    services.approval_deny(actor=security_admin, approval=approval, reason="not now")
    approval.refresh_from_db()
    vault.refresh_from_db()
    assert (approval.status, approval.decided_by, approval.reason) == (
        "denied",
        security_admin,
        "not now",
    )
    assert vault.immutability == "disabled"
    with pytest.raises(DomainError):
        services.approval_approve(actor=security_admin, approval=approval)


@pytest.mark.django_db(transaction=True)
def test_two_approvers_racing_exactly_one_wins(
    admin: Any, security_admin: Any, security_admin2: Any
) -> None:
    assert connection.vendor == "postgresql"
    vault = make_vault(admin, name="race-vault")
    approval = request_lock(admin, vault)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def decide(actor: Any, action: str) -> None:
        barrier.wait()
        try:
            fresh = Approval.objects.get(pk=approval.pk)
            getattr(services, f"approval_{action}")(actor=actor, approval=fresh)
            outcomes.append(f"{action}:ok")
        except DomainError as error:
            outcomes.append(f"{action}:{error.code}")
        finally:
            connection.close()

    threads = [
        threading.Thread(target=decide, args=(security_admin, "approve")),
        threading.Thread(target=decide, args=(security_admin2, "deny")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o.split(":")[1] for o in outcomes) == ["approval_not_pending", "ok"]
    approval.refresh_from_db()
    vault.refresh_from_db()
    assert (approval.status == "approved") == vault.is_locked
    assert (
        AuditRecord.objects.filter(
            operation__in=["approval_approve", "approval_deny"], outcome="allowed"
        ).count()
        == 1
    )


@pytest.mark.django_db(transaction=True)
def test_two_approvers_both_approving_lock_once(
    admin: Any, security_admin: Any, security_admin2: Any
) -> None:
    vault = make_vault(admin, name="race-two")
    approval = request_lock(admin, vault)
    barrier = threading.Barrier(2)
    codes: list[str] = []

    def approve(actor: Any) -> None:
        barrier.wait()
        try:
            services.approval_approve(actor=actor, approval=Approval.objects.get(pk=approval.pk))
            codes.append("ok")
        except DomainError as error:
            codes.append(error.code)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=approve, args=(u,)) for u in (security_admin, security_admin2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == ["approval_not_pending", "ok"]
    assert AuditRecord.objects.filter(operation="immutability_lock", outcome="allowed").count() == 1
