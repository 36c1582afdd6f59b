"""No one person (SPEC 8, issue 12): each finding of the review that tried to break the promise,
reproduced as it was made, through the API; then the table of actors and paths.

The database attacks (raw SQL as the application's role) live in tests/test_db_backstop.py,
the storage ones in tests/test_storage_backstop.py, the audit ones in tests/test_audit_*.py.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from guards import services as guard_services
from policies import services as policy_services
from portal import services as portal_services
from portal.models import Alert, Approval, AuditRecord
from tests.factories import make_vault
from vaults import jobs
from vaults import services as vault_services
from vaults.models import ProtectedItem, RecoveryPoint, Vault

pytestmark = pytest.mark.django_db

V = "/api/v1/vaults"


def protected_world(admin: Any, tmp_path: Path, name: str = "guarded") -> dict[str, Any]:
    vault = make_vault(admin, name=name)
    policy = policy_services.policy_create(actor=admin, vault=vault, name="daily", daily_days=30)
    source = tmp_path / name
    source.mkdir()
    item = vault_services.item_protect(
        actor=admin, vault=vault, name="files", source_path=str(source), policy=policy
    )
    point = vault_services.point_record(item=item)
    return {"vault": vault, "policy": policy, "item": item, "point": point}


def guard_everything(world: dict[str, Any], admin: Any, owner: Any) -> Any:
    guard = guard_services.guard_create(actor=owner, name=f"guard-{world['vault'].name}")
    vault_services.vault_guard_set(actor=admin, vault=world["vault"], guard=guard)
    world["vault"].refresh_from_db()
    return guard


def elevate(admin: Any, approver: Any, guard: Any) -> Approval:
    request = guard_services.elevation_request(
        actor=admin, guard=guard, justification="cleanup", duration_minutes=60
    )
    return portal_services.approval_approve(actor=approver, approval=request)


def point_url(world: dict[str, Any]) -> str:
    return f"{V}/{world['vault'].name}/items/files/recovery-points/{world['point'].pk}/"


# --- finding 2: a retain-until cut walked around MUA and soft delete -------------------------


def test_a_retain_until_cut_on_a_guarded_vault_needs_elevation(
    admin: Any, security_admin: Any, api: Any, clock: Any, tmp_path: Path
) -> None:
    world = protected_world(admin, tmp_path)
    guard_everything(world, admin, security_admin)
    expiry = world["point"].expires_at
    soon = (clock.now() + timedelta(seconds=3)).isoformat()
    response = api(admin).patch(point_url(world), {"retain_until": soon}, format="json")
    assert response.status_code == 409, response.content
    assert response.json()["code"] == "mua_required"
    assert RecoveryPoint.objects.get(pk=world["point"].pk).expires_at == expiry
    assert Alert.objects.filter(kind="operation_refused").exists()
    # The next sweep takes nothing.
    clock.set_now(clock.now() + timedelta(seconds=5))
    jobs.sweep_points()
    assert RecoveryPoint.objects.filter(pk=world["point"].pk).exists()


def test_an_elevated_cut_is_soft_deleted_for_the_vaults_period_and_alerts(
    admin: Any, security_admin: Any, api: Any, clock: Any, tmp_path: Path
) -> None:
    world = protected_world(admin, tmp_path)
    guard = guard_everything(world, admin, security_admin)
    elevate(admin, security_admin, guard)
    soon = clock.now() + timedelta(seconds=3)
    response = api(admin).patch(point_url(world), {"retain_until": soon.isoformat()}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["state"] == "active"
    assert body["soft_deleted_until"] == (soon + timedelta(days=14)).isoformat().replace(
        "+00:00", "Z"
    )
    alert = Alert.objects.get(kind="point_retention_reduced")
    assert alert.category == "security" and "alice" in alert.message
    record = AuditRecord.objects.filter(operation="point_retain_until").first()
    assert record.details["guard"] == guard.name
    # Past its new date it is soft-deleted, restorable, and the sweep keeps it ...
    clock.set_now(soon + timedelta(days=1))
    jobs.sweep_points()
    kept = api(admin).get(point_url(world)).json()
    assert kept["state"] == "soft_deleted"
    # ... until the soft-delete period has passed.
    clock.set_now(soon + timedelta(days=14, seconds=1))
    jobs.sweep_points()
    assert not RecoveryPoint.objects.filter(pk=world["point"].pk).exists()


def test_a_retain_until_beyond_99_years_is_refused(
    admin: Any, api: Any, clock: Any, tmp_path: Path
) -> None:
    world = protected_world(admin, tmp_path, name="locked-far")
    for url, method in (
        (point_url(world), "patch"),
        (f"{V}/locked-far/items/files/backup/", "post"),
    ):
        response = getattr(api(admin), method)(
            url, {"retain_until": "9999-12-31T00:00:00Z"}, format="json"
        )
        assert response.status_code == 400, response.content
        assert response.json()["field"] == "retain_until"
    assert not world["item"].jobs.exists()


# --- finding 3: deleting a vault skipped soft delete -------------------------------------------


def test_a_vault_with_a_live_item_is_not_deleted(
    admin: Any, api: Any, clock: Any, tmp_path: Path
) -> None:
    world = protected_world(admin, tmp_path, name="live")
    response = api(admin).delete(f"{V}/live/")
    assert response.status_code == 409
    assert response.json()["code"] == "vault_not_empty"
    assert RecoveryPoint.objects.filter(pk=world["point"].pk).exists()


def test_a_vault_with_a_soft_deleted_item_under_always_on_is_not_deleted(
    admin: Any, security_admin: Any, api: Any, clock: Any, tmp_path: Path
) -> None:
    world = protected_world(admin, tmp_path, name="always")
    approval = vault_services.soft_delete_always_on_request(
        actor=admin, vault=world["vault"], confirmation="always"
    )
    portal_services.approval_approve(actor=security_admin, approval=approval)
    vault_services.protection_stop(actor=admin, item=world["item"], delete_data=True)
    assert ProtectedItem.objects.get(pk=world["item"].pk).protection_state == "soft_deleted"
    response = api(admin).delete(f"{V}/always/")
    assert response.status_code == 409
    assert response.json()["code"] == "vault_not_empty"
    assert Vault.objects.filter(name="always").exists()


def test_an_empty_vault_is_deleted(admin: Any, api: Any) -> None:
    make_vault(admin, name="empty")
    assert api(admin).delete(f"{V}/empty/").status_code == 204


# --- always-on with a wrong confirmation changed the retention ---------------------------------


def test_always_on_with_a_wrong_confirmation_changes_nothing(admin: Any, api: Any) -> None:
    make_vault(admin, name="typo")
    response = api(admin).patch(
        f"{V}/typo/soft-delete/",
        {"state": "always_on", "retention_days": 90, "confirmation": "tpyo"},
        format="json",
    )
    assert response.status_code == 409
    assert response.json()["code"] == "confirmation_mismatch"
    vault = Vault.objects.get(name="typo")
    assert (vault.soft_delete_state, vault.soft_delete_retention_days) == ("enabled", 14)
    assert not Approval.objects.exists()


def test_always_on_carries_its_retention_to_the_approval(
    admin: Any, security_admin: Any, api: Any
) -> None:
    make_vault(admin, name="carry")
    response = api(admin).patch(
        f"{V}/carry/soft-delete/",
        {"state": "always_on", "retention_days": 90, "confirmation": "carry"},
        format="json",
    )
    assert response.status_code == 202
    assert Vault.objects.get(name="carry").soft_delete_retention_days == 14  # not before
    approval = Approval.objects.get(pk=response.json()["id"])
    portal_services.approval_approve(actor=security_admin, approval=approval)
    vault = Vault.objects.get(name="carry")
    assert (vault.soft_delete_state, vault.soft_delete_retention_days) == ("always_on", 90)


# --- finding 5: any security admin quietly weakened any guard -----------------------------------

G = "/api/v1/resource-guards"


def test_a_second_security_admin_cannot_quietly_clear_a_guard(
    admin: Any, security_admin: Any, security_admin2: Any, api: Any, tmp_path: Path
) -> None:
    world = protected_world(admin, tmp_path)
    guard = guard_everything(world, admin, security_admin)
    response = api(security_admin2).patch(
        f"{G}/{guard.name}/", {"protected_operations": []}, format="json"
    )
    assert response.status_code == 202, response.content
    pending = response.json()
    assert (pending["kind"], pending["status"]) == ("guard_weaken", "pending")
    guard.refresh_from_db()
    assert "delete_recovery_point" in guard.protected_operations, "nothing changes yet"
    alert = Alert.objects.get(kind="guard_weaken_requested")
    assert alert.category == "security"
    # The requester cannot approve it; another security admin can.
    mine = api(security_admin2).post(f"/api/v1/approvals/{pending['id']}/approve/")
    assert mine.json()["code"] == "self_approval"
    approved = api(security_admin).post(f"/api/v1/approvals/{pending['id']}/approve/")
    assert approved.status_code == 200, approved.content
    guard.refresh_from_db()
    assert sorted(guard.protected_operations) == ["disable_mua", "disable_soft_delete"]


def test_strengthening_a_guard_takes_effect_at_once(security_admin: Any, api: Any) -> None:
    guard = guard_services.guard_create(
        actor=security_admin, name="narrow", protected_operations=["delete_vault"]
    )
    response = api(security_admin).patch(
        f"{G}/narrow/",
        {"protected_operations": ["delete_vault", "delete_recovery_point"]},
        format="json",
    )
    assert response.status_code == 200, response.content
    guard.refresh_from_db()
    assert "delete_recovery_point" in guard.protected_operations
    assert not Approval.objects.filter(kind="guard_weaken").exists()


def test_a_guard_in_use_is_not_deleted_and_an_unused_one_waits_for_approval(
    admin: Any, security_admin: Any, security_admin2: Any, api: Any, tmp_path: Path
) -> None:
    world = protected_world(admin, tmp_path)
    guard = guard_everything(world, admin, security_admin)
    response = api(security_admin).delete(f"{G}/{guard.name}/")
    assert response.status_code == 409
    assert response.json()["code"] == "guard_in_use"
    spare = guard_services.guard_create(actor=security_admin, name="spare")
    response = api(security_admin).delete(f"{G}/spare/")
    assert response.status_code == 202
    assert api(security_admin).get(f"{G}/spare/").status_code == 200, "still there"
    api(security_admin2).post(f"/api/v1/approvals/{response.json()['id']}/approve/")
    assert not type(spare).objects.filter(name="spare").exists()


def test_a_guard_taken_into_use_while_its_deletion_waits_is_not_deleted(
    admin: Any, security_admin: Any, security_admin2: Any, api: Any, tmp_path: Path
) -> None:
    guard_services.guard_create(actor=security_admin, name="later")
    pending = api(security_admin).delete(f"{G}/later/").json()
    world = protected_world(admin, tmp_path)
    guard = type(world["vault"]).objects.get(pk=world["vault"].pk)
    vault_services.vault_guard_set(
        actor=admin, vault=guard, guard=guard_services.ResourceGuard.objects.get(name="later")
    )
    response = api(security_admin2).post(f"/api/v1/approvals/{pending['id']}/approve/")
    assert response.status_code == 409
    assert response.json()["code"] == "guard_in_use"


@pytest.mark.parametrize("name", ["a/b", "%00", "x", "1abc", "a b", "ä-guard", "a" * 51])
def test_guard_names_are_validated_like_vault_names(
    security_admin: Any, api: Any, client: Any, name: str
) -> None:
    response = api(security_admin).post(f"{G}/", {"name": name}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["field"] == "name"
    client.force_login(security_admin)
    assert client.get("/resource-guards/").status_code == 200


# --- one person, two accounts: a superuser who is also a security admin --------------------------


def test_a_superuser_security_admin_cannot_approve_a_puppet_accounts_request(
    admin: Any, api: Any, tmp_path: Path
) -> None:
    from tests.conftest import PASSWORD, make_user

    boss = make_user("boss", "security_admin", is_superuser=True)
    world = protected_world(admin, tmp_path)
    guard = guard_everything(world, admin, boss)
    # The superuser makes a backup admin at once (no power is granted) ...
    made = api(boss).post(
        "/api/v1/users/",
        {"username": "puppet", "password": PASSWORD, "role": "backup_admin"},
        format="json",
    )
    assert made.status_code == 201, made.content
    puppet = type(admin).objects.get(username="puppet")
    # ... asks for access as it, and tries to approve as themselves.
    request = api(puppet).post(
        f"/api/v1/resource-guards/{guard.name}/access-requests/",
        {"justification": "cleanup", "duration_minutes": 60},
        format="json",
    )
    assert request.status_code == 201
    answer = api(boss).post(f"/api/v1/approvals/{request.json()['id']}/approve/")
    assert (answer.status_code, answer.json()["code"]) == (409, "self_approval")
    assert "puppet" in answer.json()["detail"]
    # A security admin who never touched the account may decide it.
    other = make_user("sofia", "security_admin")
    assert api(other).post(f"/api/v1/approvals/{request.json()['id']}/approve/").status_code == 200
