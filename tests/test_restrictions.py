"""SPEC 3.2's restrictions table, one case per cell (operation x vault kind x state),
and the defence in depth inside PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError

from policies import services as policy_services
from policies.models import Policy
from portal import clock
from portal.gate import DomainError
from portal.models import AuditRecord
from tests.factories import make_vault
from vaults import services
from vaults.models import ProtectedItem, RecoveryPoint, Vault

pytestmark = pytest.mark.django_db

KINDS = ["recovery_services", "backup", "archive"]
STATES = ["disabled", "enabled", "locked"]


def ordinary_moment() -> Any:
    """A recent time that earns only a daily tag (not a Sunday, not the 1st), still unexpired
    on the database's own clock, which the triggers use."""
    moment = clock.now() - timedelta(hours=1)
    while moment.weekday() == 6 or moment.day == 1:
        moment -= timedelta(days=1)
    return moment


def setup(admin: Any, tmp_path: Path, kind: str, state: str) -> dict[str, Any]:
    vault = make_vault(admin, name=f"{kind[:4]}-{state}", kind=kind, immutability=state)
    policy = policy_services.policy_create(
        actor=admin, vault=vault, name="daily", daily_days=30, weekly_weeks=12
    )
    shorter = policy_services.policy_create(
        actor=admin, vault=vault, name="short", daily_days=7, weekly_weeks=4
    )
    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    item = services.item_protect(
        actor=admin, vault=vault, name="files", source_path=str(source), policy=policy
    )
    point = services.point_record(item=item, created_at=ordinary_moment())
    assert point.tags == ["daily"]
    return {"vault": vault, "policy": policy, "shorter": shorter, "item": item, "point": point}


def snapshot(world: dict[str, Any]) -> tuple:
    vault = Vault.objects.filter(pk=world["vault"].pk).values().first()
    points = list(RecoveryPoint.objects.filter(vault=world["vault"]).values("id", "expires_at"))
    items = list(
        ProtectedItem.objects.filter(vault=world["vault"]).values(
            "id", "policy_id", "protection_state"
        )
    )
    policies = list(Policy.objects.filter(vault=world["vault"]).values())
    return vault, points, items, policies


def stop_delete(admin: Any, w: dict[str, Any]) -> Any:
    return services.protection_stop(actor=admin, item=w["item"], delete_data=True)


def delete_point(admin: Any, w: dict[str, Any]) -> Any:
    return services.point_delete(actor=admin, point=w["point"])


def shorten_policy(admin: Any, w: dict[str, Any]) -> Any:
    return policy_services.policy_update(
        actor=admin, policy=w["policy"], changes={"daily_days": 14}
    )


def move_item_to_shorter(admin: Any, w: dict[str, Any]) -> Any:
    return policy_services.item_change_policy(actor=admin, item=w["item"], policy=w["shorter"])


def shorten_point_expiry(admin: Any, w: dict[str, Any]) -> Any:
    return services.point_retain_until(
        actor=admin, point=w["point"], retain_until=w["point"].expires_at - timedelta(days=10)
    )


def delete_vault(admin: Any, w: dict[str, Any]) -> Any:
    return services.vault_delete(actor=admin, vault=w["vault"])


OPERATIONS = {
    # operation: (function, audit operation name, kinds that allow it under immutability)
    "stop_protection_delete_data": (stop_delete, "protection_stop_delete", set()),
    "delete_recovery_point": (delete_point, "point_delete", set()),
    "modify_policy_shorter": (shorten_policy, "policy_update", {"backup"}),
    "change_item_policy_shorter": (move_item_to_shorter, "item_change_policy", {"backup"}),
    "shorten_point_expiry": (shorten_point_expiry, "point_retain_until", set()),
    "delete_vault_with_unexpired_points": (delete_vault, "vault_delete", set()),
}

CELLS = [(op, kind, state) for op in OPERATIONS for kind in KINDS for state in STATES]


@pytest.mark.parametrize(("operation", "kind", "state"), CELLS)
def test_restriction_cell(
    admin: Any, tmp_path: Path, operation: str, kind: str, state: str
) -> None:
    world = setup(admin, tmp_path, kind, state)
    function, audit_operation, allowed_kinds = OPERATIONS[operation]
    code = "immutable_vault"
    refused = state != "disabled" and kind not in allowed_kinds
    if operation == "delete_vault_with_unexpired_points" and not refused:
        # Independently of immutability, only an empty vault is deleted (SPEC 3.2).
        refused, code = True, "vault_not_empty"
    before = snapshot(world)
    audits = AuditRecord.objects.count()
    if refused:
        with pytest.raises(DomainError) as refusal:
            function(admin, world)
        assert refusal.value.code == code
        assert refusal.value.http_status == 409
        assert snapshot(world) == before, "a refusal changes nothing"
        record = AuditRecord.objects.first()
        assert (record.operation, record.outcome, record.code) == (
            audit_operation,
            "refused",
            code,
        )
    else:
        function(admin, world)
        assert snapshot(world) != before
        record = AuditRecord.objects.first()
        assert (record.operation, record.outcome) == (audit_operation, "allowed")
    assert AuditRecord.objects.count() == audits + 1


@pytest.mark.parametrize("kind", KINDS)
def test_backup_vault_policy_reduction_keeps_existing_expiries(
    admin: Any, tmp_path: Path, kind: str
) -> None:
    world = setup(admin, tmp_path, "backup", "locked")
    expiry = world["point"].expires_at
    shorten_policy(admin, world)
    world["point"].refresh_from_db()
    assert world["point"].expires_at == expiry, "immutability never shortens a point"


def test_policy_reduction_moves_expiries_earlier_without_immutability(
    admin: Any, tmp_path: Path
) -> None:
    world = setup(admin, tmp_path, "recovery_services", "disabled")
    expiry = world["point"].expires_at
    shorten_policy(admin, world)
    world["point"].refresh_from_db()
    assert world["point"].expires_at == expiry - timedelta(days=16)


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("kind", KINDS)
def test_always_allowed_under_immutability(
    admin: Any, tmp_path: Path, kind: str, state: str
) -> None:
    world = setup(admin, tmp_path, kind, state)
    # Retention increase; the point's expiry grows with it.
    old_expiry = world["point"].expires_at
    policy_services.policy_update(actor=admin, policy=world["policy"], changes={"daily_days": 60})
    world["point"].refresh_from_db()
    assert world["point"].expires_at == old_expiry + timedelta(days=30)
    # Schedule change, a new backup, and a longer retain-until.
    policy_services.policy_update(
        actor=admin, policy=world["policy"], changes={"timezone": "Europe/London"}
    )
    services.point_record(item=world["item"])
    services.point_retain_until(
        actor=admin,
        point=world["point"],
        retain_until=world["point"].expires_at + timedelta(days=1),
    )
    # Stop protection and keep the data.
    services.protection_stop(actor=admin, item=world["item"], delete_data=False)
    assert ProtectedItem.objects.get(pk=world["item"].pk).protection_state == ("protection_stopped")


@pytest.mark.parametrize("state", STATES)
def test_expiry_is_always_allowed(admin: Any, tmp_path: Path, state: str) -> None:
    world = setup(admin, tmp_path, "recovery_services", state)
    expired = services.point_record(item=world["item"], created_at=clock.now() - timedelta(days=40))
    assert expired.expires_at < clock.now()
    services.point_expire(point=expired)
    assert not RecoveryPoint.objects.filter(pk=expired.pk).exists()
    with pytest.raises(DomainError) as refusal:
        services.point_expire(point=world["point"])
    assert refusal.value.code == "point_not_expired"


def test_locked_vault_with_only_expired_points_can_be_deleted(admin: Any, tmp_path: Path) -> None:
    vault = make_vault(admin, name="old-locked", immutability="locked")
    policy = policy_services.policy_create(actor=admin, vault=vault, name="p", daily_days=7)
    item = services.item_protect(
        actor=admin, vault=vault, name="i", source_path=str(tmp_path), policy=policy
    )
    old = services.point_record(item=item, created_at=clock.now() - timedelta(days=45))
    assert old.expires_at < clock.now()
    # An item, even one holding only expired points, keeps the vault (SPEC 3.2) ...
    with pytest.raises(DomainError) as refusal:
        services.vault_delete(actor=admin, vault=vault)
    assert refusal.value.code == "vault_not_empty"
    # ... until it is gone: no soft delete here, so stopping with delete data purges it.
    services.soft_delete_set(actor=admin, vault=vault, state="disabled", confirm_purge_count=0)
    services.protection_stop(actor=admin, item=item, delete_data=True)
    services.vault_delete(actor=admin, vault=vault)
    assert not Vault.objects.filter(pk=vault.pk).exists()
    assert not RecoveryPoint.objects.filter(pk=old.pk).exists()


def test_operational_snapshots_are_not_covered(admin: Any, tmp_path: Path) -> None:
    world = setup(admin, tmp_path, "recovery_services", "locked")
    snapshot_point = services.point_record(item=world["item"], tier="snapshot")
    services.point_delete(actor=admin, point=snapshot_point)
    assert not RecoveryPoint.objects.filter(pk=snapshot_point.pk).exists()


def test_retention_increase_refused_while_an_item_is_suspended(admin: Any, tmp_path: Path) -> None:
    world = setup(admin, tmp_path, "backup", "disabled")
    services.protection_stop(actor=admin, item=world["item"], delete_data=False)
    with pytest.raises(DomainError) as refusal:
        policy_services.policy_update(
            actor=admin, policy=world["policy"], changes={"daily_days": 90}
        )
    assert refusal.value.code == "retention_suspended_items"
    # A schedule-only change is no retention increase and goes through.
    policy_services.policy_update(actor=admin, policy=world["policy"], changes={"time": "03:00"})
    services.protection_resume(actor=admin, item=world["item"])
    policy_services.policy_update(actor=admin, policy=world["policy"], changes={"daily_days": 90})


def test_enhanced_to_standard_move_is_refused(admin: Any, tmp_path: Path) -> None:
    world = setup(admin, tmp_path, "recovery_services", "disabled")
    enhanced = policy_services.policy_create(
        actor=admin,
        vault=world["vault"],
        name="hourly",
        kind="enhanced",
        frequency="hourly",
        interval_hours=4,
        daily_days=30,
        weekly_weeks=12,
        instant_restore_days=7,
    )
    policy_services.item_change_policy(actor=admin, item=world["item"], policy=enhanced)
    with pytest.raises(DomainError) as refusal:
        policy_services.item_change_policy(actor=admin, item=world["item"], policy=world["policy"])
    assert (refusal.value.code, refusal.value.field) == ("validation_error", "policy")


# --- inside PostgreSQL ----------------------------------------------------------------------


def raw(sql: str, *params: Any) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_sql_delete_of_a_protected_point_fails(admin: Any, tmp_path: Path) -> None:
    assert connection.vendor == "postgresql"
    world = setup(admin, tmp_path, "recovery_services", "enabled")
    with pytest.raises(DatabaseError, match="immutable_vault"):
        raw("DELETE FROM vaults_recoverypoint WHERE id = %s", world["point"].pk)
    assert RecoveryPoint.objects.filter(pk=world["point"].pk).exists()


def test_sql_update_shortening_a_protected_point_fails(admin: Any, tmp_path: Path) -> None:
    world = setup(admin, tmp_path, "backup", "locked")
    with pytest.raises(DatabaseError, match="immutable_vault"):
        raw(
            "UPDATE vaults_recoverypoint SET expires_at = expires_at - interval '1 day' "
            "WHERE id = %s",
            world["point"].pk,
        )
    raw(
        "UPDATE vaults_recoverypoint SET expires_at = expires_at + interval '1 day' WHERE id = %s",
        world["point"].pk,
    )


def test_sql_on_unprotected_or_expired_points_succeeds(admin: Any, tmp_path: Path) -> None:
    open_world = setup(admin, tmp_path, "recovery_services", "disabled")
    raw(
        "UPDATE vaults_recoverypoint SET expires_at = expires_at - interval '1 day' WHERE id = %s",
        open_world["point"].pk,
    )
    raw("DELETE FROM vaults_recoverypoint WHERE id = %s", open_world["point"].pk)
    locked = setup(admin, tmp_path, "archive", "locked")
    expired = services.point_record(
        item=locked["item"], created_at=clock.now() - timedelta(days=45)
    )
    raw("DELETE FROM vaults_recoverypoint WHERE id = %s", expired.pk)
    snapshot_point = services.point_record(item=locked["item"], tier="snapshot")
    raw("UPDATE vaults_recoverypoint SET expires_at = now() WHERE id = %s", snapshot_point.pk)
    raw("DELETE FROM vaults_recoverypoint WHERE id = %s", snapshot_point.pk)


def test_sql_cannot_move_a_vault_out_of_locked(admin: Any) -> None:
    vault = make_vault(admin, name="sql-locked", immutability="locked")
    for state in ("enabled", "disabled"):
        with pytest.raises(DatabaseError):
            raw("UPDATE vaults_vault SET immutability = %s WHERE id = %s", state, vault.pk)
    vault.refresh_from_db()
    assert vault.is_locked
    raw("UPDATE vaults_vault SET region = 'moved' WHERE id = %s", vault.pk)
