"""SPEC 3.3: soft delete on, always-on, undelete, purge on time, and disabling it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from policies import services as policy_services
from portal import services as portal_services
from portal.gate import DomainError
from portal.models import Alert, Approval
from tests.factories import make_vault
from vaults import services
from vaults.jobs import sweeps
from vaults.models import ProtectedItem, RecoveryPoint, Vault

pytestmark = pytest.mark.django_db


def vault_with_items(admin: Any, tmp_path: Path, count: int = 1, **vault_kwargs: Any) -> tuple:
    vault = make_vault(admin, name="soft", **vault_kwargs)
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
        items.append(item)
    return vault, items


def test_new_vaults_start_with_soft_delete_on_for_14_days(admin: Any) -> None:
    vault = make_vault(admin)
    assert (vault.soft_delete_state, vault.soft_delete_retention_days) == ("enabled", 14)


def test_stop_delete_soft_deletes_then_undelete_brings_it_back(
    admin: Any, tmp_path: Path, clock: Any
) -> None:
    _vault, (item,) = vault_with_items(admin, tmp_path)
    services.protection_stop(actor=admin, item=item, delete_data=True)
    item.refresh_from_db()
    assert item.protection_state == "soft_deleted"
    assert item.purge_at == clock.now() + timedelta(days=14)
    assert item.recovery_points.count() == 1, "points stay, restorable"
    clock.advance(timedelta(days=13))
    services.item_undelete(actor=admin, item=item)
    item.refresh_from_db()
    assert (item.protection_state, item.purge_at) == ("protection_stopped", None)
    services.protection_resume(actor=admin, item=item)


def test_the_retention_in_force_at_deletion_applies(admin: Any, tmp_path: Path, clock: Any) -> None:
    vault, (item,) = vault_with_items(admin, tmp_path)
    services.soft_delete_set(actor=admin, vault=vault, retention_days=30)
    services.protection_stop(actor=admin, item=item, delete_data=True)
    vault.refresh_from_db()
    services.soft_delete_set(actor=admin, vault=vault, retention_days=14)
    item.refresh_from_db()
    assert item.purge_at == clock.now() + timedelta(days=30)


def test_purge_warns_two_days_before_then_purges(admin: Any, tmp_path: Path, clock: Any) -> None:
    _vault, (item,) = vault_with_items(admin, tmp_path)
    services.protection_stop(actor=admin, item=item, delete_data=True)
    clock.advance(timedelta(days=11, hours=23))
    assert sweeps.soft_delete_sweep() == {"warned": 0, "purged": 0}
    clock.advance(timedelta(hours=2))
    assert sweeps.soft_delete_sweep() == {"warned": 1, "purged": 0}
    assert sweeps.soft_delete_sweep() == {"warned": 0, "purged": 0}, "warned once"
    assert Alert.objects.get(kind="upcoming_purge").count == 1
    clock.advance(timedelta(days=2))
    assert sweeps.soft_delete_sweep() == {"warned": 0, "purged": 1}
    assert not ProtectedItem.objects.filter(pk=item.pk).exists()
    assert not RecoveryPoint.objects.filter(item_id=item.pk).exists()
    assert Alert.objects.filter(kind="purge_complete").exists()


def test_undelete_after_purge_is_impossible(admin: Any, tmp_path: Path, clock: Any) -> None:
    _vault, (item,) = vault_with_items(admin, tmp_path)
    services.protection_stop(actor=admin, item=item, delete_data=True)
    clock.advance(timedelta(days=14))
    sweeps.soft_delete_sweep()
    assert not ProtectedItem.objects.filter(pk=item.pk).exists()


def test_disabling_purges_exactly_the_named_count(admin: Any, tmp_path: Path) -> None:
    vault, items = vault_with_items(admin, tmp_path, count=3)
    for item in items[:2]:
        services.protection_stop(actor=admin, item=item, delete_data=True)
    with pytest.raises(DomainError) as refusal:
        services.soft_delete_set(actor=admin, vault=vault, state="disabled", confirm_purge_count=3)
    assert refusal.value.code == "confirmation_mismatch"
    assert ProtectedItem.objects.filter(vault=vault).count() == 3
    services.soft_delete_set(actor=admin, vault=vault, state="disabled", confirm_purge_count=2)
    assert list(ProtectedItem.objects.filter(vault=vault).values_list("name", flat=True)) == [
        "item-2"
    ]
    assert Vault.objects.get(pk=vault.pk).soft_delete_state == "disabled"
    assert Alert.objects.filter(kind="soft_delete_disabled").exists()


def test_stop_delete_without_soft_delete_deletes_at_once(admin: Any, tmp_path: Path) -> None:
    vault, (item,) = vault_with_items(admin, tmp_path)
    services.soft_delete_set(actor=admin, vault=vault, state="disabled", confirm_purge_count=0)
    services.protection_stop(actor=admin, item=item, delete_data=True)
    assert not ProtectedItem.objects.filter(pk=item.pk).exists()


def test_always_on_is_a_lock_action_and_never_goes_back(
    admin: Any, security_admin: Any, tmp_path: Path
) -> None:
    vault, _ = vault_with_items(admin, tmp_path)
    with pytest.raises(DomainError) as mismatch:
        services.soft_delete_always_on_request(actor=admin, vault=vault, confirmation="nope")
    assert mismatch.value.code == "confirmation_mismatch"
    approval = services.soft_delete_always_on_request(
        actor=admin, vault=vault, confirmation=vault.name
    )
    assert approval.kind == Approval.Kind.ALWAYS_ON_SOFT_DELETE
    with pytest.raises(DomainError) as own:
        portal_services.approval_approve(actor=admin, approval=approval)
    assert own.value.code in {"permission_denied", "self_approval"}
    portal_services.approval_approve(actor=security_admin, approval=approval)
    vault.refresh_from_db()
    assert vault.soft_delete_state == "always_on"
    with pytest.raises(DomainError) as refusal:
        services.soft_delete_set(actor=admin, vault=vault, state="disabled", confirm_purge_count=0)
    assert refusal.value.code == "soft_delete_always_on"
    services.soft_delete_set(actor=admin, vault=vault, retention_days=60)
    vault.refresh_from_db()
    with pytest.raises(DomainError) as shorter:
        services.soft_delete_set(actor=admin, vault=vault, retention_days=30)
    assert shorter.value.code == "soft_delete_always_on"
    with pytest.raises(DomainError) as again:
        services.soft_delete_always_on_request(actor=admin, vault=vault, confirmation=vault.name)
    assert again.value.code == "soft_delete_always_on"


@pytest.mark.parametrize("days", [13, 181])
def test_retention_out_of_range(admin: Any, days: int) -> None:
    vault = make_vault(admin)
    with pytest.raises(DomainError) as refusal:
        services.soft_delete_set(actor=admin, vault=vault, retention_days=days)
    assert (refusal.value.code, refusal.value.field) == ("validation_error", "retention_days")


# --- API --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"retention_days": 13}, "retention_days"),
        ({"retention_days": 181}, "retention_days"),
        ({"state": "sometimes"}, "state"),
    ],
)
def test_soft_delete_api_bad_input(admin: Any, api: Any, body: dict, field: str) -> None:
    vault = make_vault(admin)
    response = api(admin).patch(f"/api/v1/vaults/{vault.name}/soft-delete/", body, format="json")
    assert response.status_code == 400
    assert (response.json()["code"], response.json()["field"]) == ("validation_error", field)


def test_soft_delete_api_flow(admin: Any, security_admin: Any, api: Any, tmp_path: Path) -> None:
    vault, items = vault_with_items(admin, tmp_path)
    services.protection_stop(actor=admin, item=items[0], delete_data=True)
    client = api(admin)
    url = f"/api/v1/vaults/{vault.name}/soft-delete/"
    assert client.patch(url, {"retention_days": 30}, format="json").json()["soft_delete"] == {
        "state": "enabled",
        "retention_days": 30,
    }
    wrong = client.patch(url, {"state": "disabled", "confirm_purge_count": 0}, format="json")
    assert (wrong.status_code, wrong.json()["code"]) == (409, "confirmation_mismatch")
    response = client.patch(url, {"state": "always_on", "confirmation": vault.name}, format="json")
    assert response.status_code == 202
    assert response.json()["kind"] == "always_on_soft_delete"
    api(security_admin).post(f"/api/v1/approvals/{response.json()['id']}/approve/")
    refused = client.patch(url, {"state": "disabled", "confirm_purge_count": 1}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (409, "soft_delete_always_on")


# --- recovery points soft-deleted by a retention reduction (SPEC 3.3, second bullet) ----------


def points_world(admin: Any, tmp_path: Path, clock: Any, **vault_kwargs: Any) -> dict[str, Any]:
    """One item on a 30-day policy with a point 20 days old (expiring in 10 days) and a new one."""
    vault = make_vault(admin, name="points", **vault_kwargs)
    policy = policy_services.policy_create(actor=admin, vault=vault, name="p30", daily_days=30)
    item = services.item_protect(
        actor=admin, vault=vault, name="web", source_path=str(tmp_path), policy=policy
    )
    old = services.point_record(item=item, created_at=clock.now() - timedelta(days=20))
    new = services.point_record(item=item, created_at=clock.now())
    return {"vault": vault, "policy": policy, "item": item, "old": old, "new": new}


def test_retention_reduction_soft_deletes_points_it_would_expire_at_once(
    admin: Any, tmp_path: Path, clock: Any
) -> None:
    w = points_world(admin, tmp_path, clock)
    services.soft_delete_set(actor=admin, vault=w["vault"], retention_days=21)
    policy_services.policy_update(actor=admin, policy=w["policy"], changes={"daily_days": 7})
    old, new = (RecoveryPoint.objects.get(pk=w[key].pk) for key in ("old", "new"))
    assert old.expires_at == clock.now() - timedelta(days=13), "its expiry still moves"
    assert old.soft_deleted_until == clock.now() + timedelta(days=21)
    assert old.is_soft_deleted(clock.now())
    # A point the reduction shortens but leaves unexpired is active now, and soft-deleted for
    # the period once its new expiry passes: soft delete covers every shortening (SPEC 3.2).
    assert new.state(clock.now()) == "active"
    assert new.soft_deleted_until == new.expires_at + timedelta(days=21)

    assert sweeps.points_expire() == 0, "the sweep keeps a soft-deleted point"
    with pytest.raises(DomainError) as refusal:
        services.point_expire(point=old)
    assert refusal.value.code == "point_not_expired"
    clock.advance(timedelta(days=21))
    assert sweeps.points_expire() == 1, "purged at the end of its soft-delete period"
    assert not RecoveryPoint.objects.filter(pk=old.pk).exists()
    clock.advance(timedelta(days=7))
    assert sweeps.points_expire() == 1, "the shortened new point too, a period after its expiry"


def test_raising_the_retention_again_brings_soft_deleted_points_back(
    admin: Any, tmp_path: Path, clock: Any
) -> None:
    w = points_world(admin, tmp_path, clock)
    policy_services.policy_update(actor=admin, policy=w["policy"], changes={"daily_days": 7})
    clock.advance(timedelta(days=3))
    # A further change that leaves it expired keeps its original soft-delete period.
    policy_services.policy_update(actor=admin, policy=w["policy"], changes={"daily_days": 8})
    old = RecoveryPoint.objects.get(pk=w["old"].pk)
    assert old.soft_deleted_until == clock.now() + timedelta(days=11)
    policy_services.policy_update(actor=admin, policy=w["policy"], changes={"daily_days": 60})
    old.refresh_from_db()
    assert old.soft_deleted_until is None
    assert old.expires_at == old.created_at + timedelta(days=60)
    clock.advance(timedelta(days=20))
    assert sweeps.points_expire() == 0
    assert RecoveryPoint.objects.filter(pk=old.pk).exists()


def test_without_soft_delete_a_retention_reduction_expires_points_at_once(
    admin: Any, tmp_path: Path, clock: Any
) -> None:
    w = points_world(admin, tmp_path, clock)
    services.soft_delete_set(actor=admin, vault=w["vault"], state="disabled", confirm_purge_count=0)
    policy_services.policy_update(actor=admin, policy=w["policy"], changes={"daily_days": 7})
    assert RecoveryPoint.objects.get(pk=w["old"].pk).soft_deleted_until is None
    assert sweeps.points_expire() == 1
    assert not RecoveryPoint.objects.filter(pk=w["old"].pk).exists()


def test_moving_an_item_to_a_shorter_policy_soft_deletes_its_expired_points(
    admin: Any, tmp_path: Path, clock: Any
) -> None:
    w = points_world(admin, tmp_path, clock)
    short = policy_services.policy_create(actor=admin, vault=w["vault"], name="p7", daily_days=7)
    preview = policy_services.policy_change_preview(actor=admin, item=w["item"], policy=short)
    move = next(m for m in preview.moves if m.point_id == w["old"].pk)
    assert move.soft_deleted_until == clock.now() + timedelta(days=14), "the preview says so"
    policy_services.item_change_policy(actor=admin, item=w["item"], policy=short)
    old = RecoveryPoint.objects.get(pk=w["old"].pk)
    assert old.soft_deleted_until == clock.now() + timedelta(days=14)
    policy_services.item_change_policy(actor=admin, item=w["item"], policy=w["policy"])
    old.refresh_from_db()
    # Back (active), and its soft delete still ends no sooner than it was promised: purged
    # once both its expiry and that date have passed (tests/test_redteam.py).
    assert old.state(clock.now()) == "active"
    assert (old.soft_deleted_until, old.expires_at) == (
        clock.now() + timedelta(days=14),
        clock.now() + timedelta(days=10),
    )


def test_an_already_expired_point_is_not_soft_deleted_by_a_reduction(
    admin: Any, tmp_path: Path, clock: Any
) -> None:
    w = points_world(admin, tmp_path, clock)
    clock.advance(timedelta(days=11))  # the old point expired on its own, awaiting the sweep
    policy_services.policy_update(actor=admin, policy=w["policy"], changes={"daily_days": 7})
    assert RecoveryPoint.objects.get(pk=w["old"].pk).soft_deleted_until is None


def test_immutable_backup_vault_keeps_expiries_so_nothing_is_soft_deleted(
    admin: Any, tmp_path: Path, clock: Any
) -> None:
    w = points_world(admin, tmp_path, clock, kind="backup", immutability="enabled")
    policy_services.policy_update(actor=admin, policy=w["policy"], changes={"daily_days": 7})
    old = RecoveryPoint.objects.get(pk=w["old"].pk)
    assert (old.soft_deleted_until, old.expires_at) == (None, clock.now() + timedelta(days=10))


def test_undelete_through_the_api(admin: Any, reader: Any, api: Any, tmp_path: Path) -> None:
    vault, (item,) = vault_with_items(admin, tmp_path)
    services.protection_stop(actor=admin, item=item, delete_data=True)
    url = f"/api/v1/vaults/{vault.name}/items/{item.name}/undelete/"
    assert api(reader).post(url).status_code == 403
    response = api(admin).post(url)
    assert response.status_code == 200
    assert response.json()["protection_state"] == "protection_stopped"
    again = api(admin).post(url)
    assert (again.status_code, again.json()["code"]) == (400, "validation_error")


def test_holdfasts_own_storage_cannot_be_protected(
    admin: Any, settings: Any, tmp_path: Path
) -> None:
    from policies import services as policy_services
    from portal.gate import DomainError
    from tests.factories import make_vault

    settings.HOLDFAST_STORAGE_ROOT = tmp_path / "storage"
    (tmp_path / "storage").mkdir()
    vault = make_vault(admin, name="self")
    policy = policy_services.policy_create(actor=admin, vault=vault, name="p", daily_days=7)
    for path in (tmp_path / "storage", tmp_path):
        with pytest.raises(DomainError) as refusal:
            services.item_protect(
                actor=admin, vault=vault, name="x", source_path=str(path), policy=policy
            )
        assert refusal.value.field == "source.path"
    settings.HOLDFAST_SOURCE_ROOTS = [tmp_path / "data"]
    (tmp_path / "data").mkdir()
    (tmp_path / "other").mkdir()
    with pytest.raises(DomainError):
        services.item_protect(
            actor=admin, vault=vault, name="x", source_path=str(tmp_path / "other"), policy=policy
        )
    services.item_protect(
        actor=admin, vault=vault, name="x", source_path=str(tmp_path / "data"), policy=policy
    )
