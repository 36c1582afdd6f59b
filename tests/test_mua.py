"""SPEC 3.4: every protectable operation on a guarded vault needs an active elevation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from guards import services as guard_services
from guards.models import ResourceGuard
from policies import services as policy_services
from portal import services as portal_services
from portal.gate import DomainError
from portal.models import Alert, AuditRecord
from tests.conftest import make_user
from tests.factories import make_vault
from vaults import services
from vaults.models import ProtectedItem, RecoveryPoint

pytestmark = pytest.mark.django_db


def world(admin: Any, security_admin: Any, tmp_path: Path, guarded: bool) -> dict[str, Any]:
    vault = make_vault(admin, name="guarded" if guarded else "open", immutability="enabled")
    policy = policy_services.policy_create(
        actor=admin, vault=vault, name="p", daily_days=30, weekly_weeks=8
    )
    shorter = policy_services.policy_create(actor=admin, vault=vault, name="short", daily_days=7)
    weekly = policy_services.policy_create(
        actor=admin,
        vault=vault,
        name="weekly",
        daily_days=30,
        weekly_weeks=8,
        frequency="weekly",
        weekdays=["sunday"],
    )
    item = services.item_protect(
        actor=admin, vault=vault, name="i", source_path=str(tmp_path), policy=policy
    )
    snapshot = services.point_record(item=item, tier="snapshot")
    guard = guard_services.guard_create(actor=security_admin, name="g1")
    # Only an empty vault may be deleted at all (SPEC 3.2): the one delete_vault acts on.
    empty = make_vault(admin, name=f"{vault.name}-empty")
    if guarded:
        services.vault_guard_set(actor=admin, vault=vault, guard=guard)
        services.vault_guard_set(actor=admin, vault=empty, guard=guard)
        vault.refresh_from_db()
    return {
        "vault": vault,
        "policy": policy,
        "shorter": shorter,
        "weekly": weekly,
        "item": item,
        "snapshot": snapshot,
        "guard": guard,
        "empty": empty,
    }


# Each protectable operation, done so that only MUA could refuse it (immutability would
# refuse some on their own: elevation never unlocks those, tested separately).
def disable_soft_delete(admin: Any, w: dict) -> Any:
    return services.soft_delete_set(
        actor=admin, vault=w["vault"], state="disabled", confirm_purge_count=0
    )


def shorten_soft_delete(admin: Any, w: dict) -> Any:
    return services.soft_delete_set(actor=admin, vault=w["vault"], retention_days=14)


def disable_mua(admin: Any, w: dict) -> Any:
    return services.vault_guard_remove(actor=admin, vault=w["vault"])


def disable_immutability(admin: Any, w: dict) -> Any:
    return services.immutability_set(actor=admin, vault=w["vault"], state="disabled")


def weaken_policy(admin: Any, w: dict) -> Any:
    # Fewer backups a day is weaker without shortening retention.
    return policy_services.policy_update(
        actor=admin, policy=w["policy"], changes={"frequency": "weekly", "weekdays": ["sunday"]}
    )


def weaken_protection(admin: Any, w: dict) -> Any:
    return policy_services.item_change_policy(actor=admin, item=w["item"], policy=w["weekly"])


def stop_delete(admin: Any, w: dict) -> Any:
    return services.protection_stop(actor=admin, item=w["item"], delete_data=True)


def stop_retain(admin: Any, w: dict) -> Any:
    return services.protection_stop(actor=admin, item=w["item"], delete_data=False)


def delete_point(admin: Any, w: dict) -> Any:
    return services.point_delete(actor=admin, point=w["snapshot"])


def delete_vault(admin: Any, w: dict) -> Any:
    return services.vault_delete(actor=admin, vault=w["empty"])


PROTECTED = {
    "disable_soft_delete": disable_soft_delete,
    "disable_soft_delete (shorter retention)": shorten_soft_delete,
    "disable_mua": disable_mua,
    "disable_immutability": disable_immutability,
    "modify_policy_weaken": weaken_policy,
    "modify_protection_weaken": weaken_protection,
    "stop_protection_delete_data": stop_delete,
    "stop_protection_retain_data": stop_retain,
    "delete_recovery_point": delete_point,
    "delete_vault": delete_vault,
}
ELEVATIONS = ["none", "another_users", "expired", "revoked", "valid", "unguarded"]


def elevate(user: Any, guard: ResourceGuard, approver: Any, minutes: int = 60) -> Any:
    request = guard_services.elevation_request(
        actor=user, guard=guard, justification="change window", duration_minutes=minutes
    )
    return portal_services.approval_approve(actor=approver, approval=request)


@pytest.mark.parametrize("elevation", ELEVATIONS)
@pytest.mark.parametrize("operation", list(PROTECTED))
def test_protectable_operation(
    admin: Any,
    admin2: Any,
    security_admin: Any,
    tmp_path: Path,
    clock: Any,
    operation: str,
    elevation: str,
) -> None:
    w = world(admin, security_admin, tmp_path, guarded=elevation != "unguarded")
    if operation.startswith("disable_soft_delete ("):
        # Raising the retention is not protected; shortening it back is.
        services.soft_delete_set(actor=admin, vault=w["vault"], retention_days=30)
        w["vault"].refresh_from_db()
    if elevation == "another_users":
        elevate(admin2, w["guard"], security_admin)
    elif elevation == "expired":
        elevate(admin, w["guard"], security_admin, minutes=30)
        clock.advance(timedelta(minutes=30))
    elif elevation == "revoked":
        grant = elevate(admin, w["guard"], security_admin)
        portal_services.approval_revoke(actor=security_admin, approval=grant)
    elif elevation == "valid":
        grant = elevate(admin, w["guard"], security_admin)
    audits = AuditRecord.objects.count()
    if elevation == "unguarded" and operation == "disable_mua":
        with pytest.raises(DomainError, match="no Resource Guard"):
            disable_mua(admin, w)
        return
    if elevation in {"valid", "unguarded"}:
        PROTECTED[operation](admin, w)
        record = AuditRecord.objects.filter(outcome="allowed").order_by("-id").first()
        if elevation == "valid":
            assert record.details["elevation"] == grant.pk, "every use is audited"
            assert record.details["guard"] == "g1"
    else:
        with pytest.raises(DomainError) as refusal:
            PROTECTED[operation](admin, w)
        assert refusal.value.code == "mua_required"
        assert "g1" in refusal.value.detail and "Request access" in refusal.value.detail
        assert AuditRecord.objects.count() == audits + 1
        assert Alert.objects.filter(kind="operation_refused").exists()


def test_elevation_never_unlocks_what_immutability_forbids(
    admin: Any, security_admin: Any, tmp_path: Path
) -> None:
    w = world(admin, security_admin, tmp_path, guarded=True)
    point = services.point_record(item=w["item"])
    elevate(admin, w["guard"], security_admin)
    with pytest.raises(DomainError) as refusal:
        services.point_delete(actor=admin, point=point)
    assert refusal.value.code == "immutable_vault"
    assert RecoveryPoint.objects.filter(pk=point.pk).exists()


def test_requester_can_never_approve_their_own_elevation(
    security_admin: Any, security_admin2: Any
) -> None:
    boss = make_user("boss", "backup_admin", is_superuser=True)
    guard = guard_services.guard_create(actor=security_admin, name="g2")
    request = guard_services.elevation_request(
        actor=boss, guard=guard, justification="x", duration_minutes=15
    )
    with pytest.raises(DomainError) as refusal:
        portal_services.approval_approve(actor=boss, approval=request)
    # Being a superuser grants no role's capability (SPEC 1): the role check refuses first.
    assert refusal.value.code == "permission_denied"


def test_without_an_eligible_approver_the_request_waits(
    admin: Any, security_admin: Any, clock: Any
) -> None:
    guard = guard_services.guard_create(actor=security_admin, name="g3")
    request = guard_services.elevation_request(
        actor=admin, guard=guard, justification="x", duration_minutes=60
    )
    clock.advance(timedelta(hours=23))
    request.refresh_from_db()
    assert request.effective_status(clock.now()) == "pending"
    assert request.active_until is None


def test_holder_gives_up_an_elevation(admin: Any, security_admin: Any, tmp_path: Path) -> None:
    w = world(admin, security_admin, tmp_path, guarded=True)
    grant = elevate(admin, w["guard"], security_admin)
    guard_services.elevation_release(actor=admin, approval=grant)
    with pytest.raises(DomainError) as refusal:
        stop_retain(admin, w)
    assert refusal.value.code == "mua_required"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"justification": "", "duration_minutes": 60}, "justification"),
        ({"justification": "x", "duration_minutes": 0}, "duration_minutes"),
        ({"justification": "x", "duration_minutes": 14}, "duration_minutes"),
        ({"justification": "x", "duration_minutes": 9 * 60}, "duration_minutes"),
    ],
)
def test_bad_elevation_requests(admin: Any, security_admin: Any, kwargs: dict, field: str) -> None:
    guard = guard_services.guard_create(actor=security_admin, name="g4")
    with pytest.raises(DomainError) as refusal:
        guard_services.elevation_request(actor=admin, guard=guard, **kwargs)
    assert (refusal.value.code, refusal.value.field) == ("validation_error", field)


def test_guard_created_without_choosing_protects_everything(security_admin: Any) -> None:
    guard = guard_services.guard_create(actor=security_admin, name="all")
    assert set(guard.protected_operations) == set(ResourceGuard.Operation.values)
    some = guard_services.guard_create(
        actor=security_admin, name="some", protected_operations=["delete_vault"]
    )
    assert set(some.protected_operations) == {"delete_vault", "disable_soft_delete", "disable_mua"}


def test_backup_admin_holds_no_rights_on_guards(admin: Any, security_admin: Any) -> None:
    with pytest.raises(DomainError) as refusal:
        guard_services.guard_create(actor=admin, name="mine")
    assert refusal.value.code == "permission_denied"
    guard = guard_services.guard_create(
        actor=security_admin, name="theirs", protected_operations=["delete_vault"]
    )
    with pytest.raises(DomainError):
        guard_services.guard_update(actor=admin, guard=guard, protected_operations=[])


def test_unprotected_operation_on_a_guarded_vault_needs_no_elevation(
    admin: Any, security_admin: Any, tmp_path: Path
) -> None:
    vault = make_vault(admin, name="partly")
    guard = guard_services.guard_create(
        actor=security_admin, name="narrow", protected_operations=["delete_vault"]
    )
    services.vault_guard_set(actor=admin, vault=vault, guard=guard)
    policy = policy_services.policy_create(actor=admin, vault=vault, name="p", daily_days=30)
    item = services.item_protect(
        actor=admin, vault=vault, name="i", source_path=str(tmp_path), policy=policy
    )
    services.protection_stop(actor=admin, item=item, delete_data=False)
    assert ProtectedItem.objects.get(pk=item.pk).protection_state == "protection_stopped"
