"""Red team after issue 12: one-person paths found by attacking main once its fixes landed.

Each test is named for the attack and makes it as one person would, through the API where a
person would, and asserts that nothing protected (a point of an immutable vault, guarded by
MUA, or kept by soft delete) was deleted or shortened, and no setting weakened.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from guards import services as guard_services
from policies import services as policy_services
from portal import services as portal_services
from portal.models import Alert
from tests.factories import make_vault
from vaults import services as vault_services
from vaults.jobs import requests, runner, sweeps
from vaults.models import RecoveryPoint

pytestmark = pytest.mark.django_db

V = "/api/v1/vaults"


def world_of(admin: Any, tmp_path: Path, name: str = "target", **policy: Any) -> dict[str, Any]:
    vault = make_vault(admin, name=name)
    policy.setdefault("daily_days", 30)
    made = policy_services.policy_create(actor=admin, vault=vault, name="daily", **policy)
    source = tmp_path / name
    source.mkdir()
    item = vault_services.item_protect(
        actor=admin, vault=vault, name="files", source_path=str(source), policy=made
    )
    point = vault_services.point_record(item=item)
    return {"vault": vault, "policy": made, "item": item, "point": point}


def guard_all(world: dict[str, Any], admin: Any, owner: Any) -> Any:
    guard = guard_services.guard_create(actor=owner, name=f"g-{world['vault'].name}")
    vault_services.vault_guard_set(actor=admin, vault=world["vault"], guard=guard)
    world["vault"].refresh_from_db()
    return guard


def elevate(admin: Any, approver: Any, guard: Any) -> Any:
    request = guard_services.elevation_request(
        actor=admin, guard=guard, justification="legitimate", duration_minutes=15
    )
    return portal_services.approval_approve(actor=approver, approval=request)


def point_url(world: dict[str, Any], point: Any = None) -> str:
    pk = (point or world["point"]).pk
    return f"{V}/{world['vault'].name}/items/files/recovery-points/{pk}/"


def keep_of(point: Any) -> datetime:
    """Until when the database keeps a point: its expiry or the end of its soft delete."""
    point = RecoveryPoint.objects.get(pk=point.pk)
    return max(point.expires_at, point.soft_deleted_until or point.expires_at)


# --- a soft-deleted point brought back with a date just ahead loses its soft delete ---------


def test_soft_deleted_point_redated_a_minute_ahead_skips_its_soft_delete_on_a_guarded_vault(
    admin: Any, security_admin: Any, api: Any, clock: Any, tmp_path: Path
) -> None:
    """A point deleted with the guard's blessing (two people) is soft-deleted for 14 days.
    Then one backup admin, with no elevation, "brings it back" with a retain-until one minute
    ahead: a later date than its (past) expiry, so not a shortening, and the soft-delete mark
    was cleared, so the next sweep purged it a minute later instead of in 14 days."""
    world = world_of(admin, tmp_path)
    guard = guard_all(world, admin, security_admin)
    elevation = elevate(admin, security_admin, guard)
    vault_services.point_delete(actor=admin, point=world["point"])
    guard_services.elevation_release(actor=admin, approval=elevation)
    kept_until = keep_of(world["point"])
    assert kept_until >= clock.now() + timedelta(days=14)

    soon = clock.now() + timedelta(minutes=1)
    api(admin).patch(point_url(world), {"retain_until": soon.isoformat()}, format="json")
    clock.set_now(clock.now() + timedelta(minutes=2))
    sweeps.points_sweep()
    assert RecoveryPoint.objects.filter(pk=world["point"].pk).exists(), "purged 14 days early"
    assert keep_of(world["point"]) >= kept_until


def test_soft_deleted_point_redated_a_minute_ahead_skips_always_on_soft_delete(
    admin: Any, security_admin: Any, api: Any, clock: Any, tmp_path: Path
) -> None:
    """Always-on soft delete, no guard: one backup admin deletes a point (soft-deleted for the
    vault's 30 days, as always-on promises) and re-dates it a minute ahead: gone a minute later."""
    world = world_of(admin, tmp_path, name="always")
    approval = vault_services.soft_delete_always_on_request(
        actor=admin, vault=world["vault"], confirmation="always", retention_days=30
    )
    portal_services.approval_approve(actor=security_admin, approval=approval)
    assert api(admin).delete(point_url(world)).status_code == 204
    kept_until = keep_of(world["point"])
    assert kept_until >= clock.now() + timedelta(days=30)

    soon = clock.now() + timedelta(minutes=1)
    api(admin).patch(point_url(world), {"retain_until": soon.isoformat()}, format="json")
    clock.set_now(clock.now() + timedelta(minutes=2))
    sweeps.points_sweep()
    assert RecoveryPoint.objects.filter(pk=world["point"].pk).exists(), "purged 30 days early"
    assert keep_of(world["point"]) >= kept_until


def test_retention_increase_that_brings_a_soft_deleted_point_back_briefly_skips_its_soft_delete(
    admin: Any, security_admin: Any, api: Any, clock: Any, tmp_path: Path
) -> None:
    """A guarded vault whose policy was cut (with elevation, two people) from 30 to 7 days: a
    10-day-old point is soft-deleted for 14 days. One backup admin then *raises* the retention
    to 11 days (an increase: no MUA, no alert). The point comes back with an expiry a day
    ahead and no soft-delete mark, and the sweep purges it the next day, 13 days early."""
    world = world_of(admin, tmp_path)
    guard = guard_all(world, admin, security_admin)
    clock.set_now(clock.now() + timedelta(days=10))
    elevate(admin, security_admin, guard)
    policy_services.policy_update(actor=admin, policy=world["policy"], changes={"daily_days": 7})
    kept_until = keep_of(world["point"])
    assert kept_until >= clock.now() + timedelta(days=14)
    clock.set_now(clock.now() + timedelta(minutes=20))  # the elevation has run out

    url = f"{V}/target/policies/daily/"
    response = api(admin).patch(url, {"retention": {"daily_days": 11}}, format="json")
    assert response.status_code == 200, response.content
    clock.set_now(clock.now() + timedelta(days=1, hours=1))
    sweeps.points_sweep()
    assert RecoveryPoint.objects.filter(pk=world["point"].pk).exists(), "purged 13 days early"
    assert keep_of(world["point"]) >= kept_until


# --- a policy edit that is not "weaker" still moves points' expiries earlier ----------------


def test_retention_increase_cuts_a_points_extended_retain_until_without_elevation(
    admin: Any, security_admin: Any, api: Any, clock: Any, tmp_path: Path
) -> None:
    """A scheduled point kept five years by a retain-until (growing is always allowed) on a
    vault whose guard protects everything. Shortening that date needs elevation on
    delete_recovery_point; raising the policy's daily retention from 30 to 31 days needs
    nothing, and recomputes the point's expiry from the policy: five years become 31 days."""
    world = world_of(admin, tmp_path)
    far = clock.now() + timedelta(days=5 * 365)
    vault_services.point_retain_until(actor=admin, point=world["point"], retain_until=far)
    guard_all(world, admin, security_admin)

    url = f"{V}/target/policies/daily/"
    preview = api(admin).patch(
        f"{url}?dry_run=true", {"retention": {"daily_days": 31}}, format="json"
    )
    assert preview.json()["refusal"]["code"] == "mua_required", "the preview says so"
    response = api(admin).patch(url, {"retention": {"daily_days": 31}}, format="json")
    assert (response.status_code, response.json()["code"]) == (409, "mua_required")
    assert keep_of(world["point"]) >= far
    # With elevation it goes through, as a shorter retain-until would: alerted, and soft
    # delete keeps the point its period after the new date.
    elevate(admin, security_admin, world["vault"].resource_guard)
    response = api(admin).patch(url, {"retention": {"daily_days": 31}}, format="json")
    assert response.status_code == 200, response.content
    assert Alert.objects.filter(kind="policy_retention_reduced").exists()
    point = RecoveryPoint.objects.get(pk=world["point"].pk)
    assert point.soft_deleted_until == point.expires_at + timedelta(days=14)


def test_moving_an_item_to_a_longer_policy_cuts_a_points_extended_retain_until(
    admin: Any, security_admin: Any, api: Any, clock: Any, tmp_path: Path
) -> None:
    """The same through the item: a move to a policy with *longer* retention (not a weakening,
    so no modify_protection_weaken) recomputes the extended point's expiry from that policy."""
    world = world_of(admin, tmp_path)
    policy_services.policy_create(actor=admin, vault=world["vault"], name="longer", daily_days=60)
    far = clock.now() + timedelta(days=5 * 365)
    vault_services.point_retain_until(actor=admin, point=world["point"], retain_until=far)
    guard_all(world, admin, security_admin)

    url = f"{V}/target/items/files/"
    response = api(admin).patch(url, {"policy": "longer"}, format="json")
    assert (response.status_code, response.json()["code"]) == (409, "mua_required")
    assert keep_of(world["point"]) >= far


def test_a_policy_time_zone_change_moves_monthly_points_expiry_earlier_without_elevation(
    admin: Any, security_admin: Any, api: Any, clock: Any, tmp_path: Path
) -> None:
    """Expiries are computed on the policy's local calendar, so a time zone change alone (no
    tier shorter, no fewer backups: not "weaker") moves them. A monthly point taken on
    2026-01-28 12:00 UTC expires on 28 February 12:00 in UTC, but a day earlier on Kiritimati's
    calendar (29 January + 1 month, clamped to 28 February, 14 hours ahead of UTC)."""
    clock.set_now(datetime(2026, 1, 28, 12, 0, tzinfo=UTC))
    world = world_of(admin, tmp_path, daily_days=7, monthly_months=1, monthly_day=28)
    point = world["point"]
    assert "monthly" in point.tags
    before = keep_of(point)
    vault_services.soft_delete_set(
        actor=admin, vault=world["vault"], state="disabled", confirm_purge_count=0
    )
    guard_all(world, admin, security_admin)
    clock.set_now(datetime(2026, 2, 1, tzinfo=UTC))

    url = f"{V}/target/policies/daily/"
    kiritimati = {"schedule": {"timezone": "Pacific/Kiritimati"}}
    response = api(admin).patch(url, kiritimati, format="json")
    assert (response.status_code, response.json()["code"]) == (409, "mua_required")
    assert RecoveryPoint.objects.get(pk=point.pk).expires_at == before


# --- a restore root that holds Holdfast's own storage --------------------------------------


@pytest.fixture
def wide_restore_root(settings: Any, tmp_path: Path) -> Path:
    """An installation whose restore root is a parent of its storage (``/data`` for both
    ``/data/storage`` and ``/data/restores``, say): plausible, and nothing refuses it."""
    settings.HOLDFAST_STORAGE_ROOT = tmp_path / "storage"
    settings.HOLDFAST_AUDIT_ANCHOR_DIR = tmp_path / "storage" / "audit-anchors"
    settings.HOLDFAST_RESTORE_ROOTS = [tmp_path]
    return tmp_path


def _locked_point(admin: Any, operator: Any, root: Path) -> tuple[Any, Any]:
    from tests.test_jobs import protect, write_tree

    vault = make_vault(admin, name="fortress", immutability="locked")
    item = protect(admin, vault, write_tree(root / "source"))
    job = runner.job_run(job_id=requests.backup_request(actor=operator, item=item).pk)
    assert job is not None and job.status == "completed", job and job.error
    return vault, job.recovery_point


def _stored(root: Path) -> dict[str, bytes]:
    store = root / "storage"
    return {str(p.relative_to(store)): p.read_bytes() for p in store.rglob("*") if p.is_file()}


@pytest.mark.parametrize("where", ["the vault's store", "the storage root's parent"])
def test_an_operator_restore_with_overwrite_into_holdfasts_own_storage_is_refused(
    admin: Any, operator: Any, api: Any, wide_restore_root: Path, where: str
) -> None:
    """One operator (not even a backup admin) restores a point with ``overwrite`` into the
    locked vault's own store: its manifests and hold notes are replaced by whatever the point
    held. Or into the root above the storage, with a point whose tree mirrors it."""
    vault, point = _locked_point(admin, operator, wide_restore_root)
    before = _stored(wide_restore_root)
    target = (
        wide_restore_root / "storage" / "vaults" / vault.name
        if where == "the vault's store"
        else wide_restore_root
    )
    url = f"{V}/fortress/items/docs/recovery-points/{point.pk}/restore/"
    response = api(operator).post(
        url, {"target_path": str(target), "overwrite": True}, format="json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["field"] == "target_path"
    assert _stored(wide_restore_root) == before


def test_a_restore_target_swapped_for_a_symlink_into_the_storage_fails_at_run_time(
    admin: Any, operator: Any, wide_restore_root: Path
) -> None:
    """Judged again when the job runs: a target that was an ordinary directory when asked may
    lead into the storage by then."""
    vault, point = _locked_point(admin, operator, wide_restore_root)
    target = wide_restore_root / "restores" / "here"
    target.mkdir(parents=True)
    job = requests.restore_request(
        actor=operator, point=point, target_path=str(target), overwrite=True
    )
    target.rmdir()
    target.symlink_to(wide_restore_root / "storage" / "vaults" / vault.name)
    before = _stored(wide_restore_root)
    done = runner.job_run(job_id=job.pk)
    assert done is not None and done.status == "failed"
    assert "storage" in done.error
    assert _stored(wide_restore_root) == before


# --- the application's database role against always-on soft delete ---------------------------


@pytest.mark.xfail(
    strict=True,
    reason="Triggers guard points only in immutable vaults: in an always-on (unlocked) vault the "
    "app role undeletes a soft-deleted item (item_purge_not_sooner only looks at rows that "
    "stay soft-deleted), then deletes its points and the item. Fix: a point trigger that, in "
    "an always-on vault, refuses DELETE of a vault-tier point unless its expiry and "
    "soft_deleted_until have passed or its item is soft-deleted with purge_at passed (and an "
    "item trigger refusing soft_deleted -> other states while purge_at is ahead unless no "
    "points are deleted with it); or document that always-on, like enabled immutability, "
    "holds against forged rows only in a locked vault.",
)
def test_app_role_undeletes_then_purges_a_soft_deleted_item_of_an_always_on_vault(
    app_role: str, as_app: Any, admin: Any, security_admin: Any, tmp_path: Path
) -> None:
    import psycopg

    world = world_of(admin, tmp_path, name="always")
    approval = vault_services.soft_delete_always_on_request(
        actor=admin, vault=world["vault"], confirmation="always"
    )
    portal_services.approval_approve(actor=security_admin, approval=approval)
    vault_services.protection_stop(actor=admin, item=world["item"], delete_data=True)
    item = world["item"]
    refused = (psycopg.errors.RaiseException, psycopg.errors.IntegrityError)
    with pytest.raises(refused), as_app.transaction():
        as_app.execute(
            "UPDATE vaults_protecteditem SET protection_state = 'protection_stopped', "
            "purge_at = NULL WHERE id = %s",
            [item.pk],
        )
        as_app.execute("DELETE FROM vaults_recoverypoint WHERE item_id = %s", [item.pk])
        as_app.execute("DELETE FROM vaults_protecteditem WHERE id = %s", [item.pk])
    assert RecoveryPoint.objects.filter(pk=world["point"].pk).exists()


# --- judged on the caller's copy of the vault, not the row the gate locked -------------------
#
# An API call reads the vault, then the gate locks its row: a change committed in between (a
# colleague's, or the attacker's own second request) is what the rules must see. Replayed
# here deterministically: the service is handed the copy as it was read.


def test_a_guard_replaced_from_a_stale_copy_of_the_vault_still_needs_elevation(
    admin: Any, admin2: Any, security_admin: Any, tmp_path: Path
) -> None:
    from portal.gate import DomainError

    world = world_of(admin, tmp_path)
    strong = guard_services.guard_create(actor=security_admin, name="strong")
    weak = guard_services.guard_create(
        actor=security_admin, name="weak", protected_operations=["delete_vault"]
    )
    read_before = type(world["vault"]).objects.get(pk=world["vault"].pk)  # no guard yet
    vault_services.vault_guard_set(actor=admin2, vault=world["vault"], guard=strong)
    with pytest.raises(DomainError) as refusal:
        vault_services.vault_guard_set(actor=admin, vault=read_before, guard=weak)
    assert refusal.value.code == "mua_required"
    world["vault"].refresh_from_db()
    assert world["vault"].resource_guard_id == strong.pk


def test_a_soft_delete_retention_cut_from_a_stale_copy_of_the_vault_still_needs_elevation(
    admin: Any, admin2: Any, security_admin: Any, tmp_path: Path
) -> None:
    from portal.gate import DomainError

    world = world_of(admin, tmp_path)
    guard_all(world, admin, security_admin)
    read_before = type(world["vault"]).objects.get(pk=world["vault"].pk)  # 14 days
    vault_services.soft_delete_set(actor=admin2, vault=world["vault"], retention_days=180)
    with pytest.raises(DomainError) as refusal:
        vault_services.soft_delete_set(actor=admin, vault=read_before, retention_days=15)
    assert refusal.value.code == "mua_required"
    world["vault"].refresh_from_db()
    assert world["vault"].soft_delete_retention_days == 180


# --- the approver's account was made by the requester ----------------------------------------


def test_a_superuser_approves_their_own_elevation_as_a_security_admin_they_created(
    superuser: Any, security_admin: Any, api: Any, tmp_path: Path
) -> None:
    """A superuser who is also a backup admin creates a colleague's security-admin account:
    the grant is four-eyes (another security admin approves it, rightly: the colleague is
    real). But the superuser chose its password, and nothing in Holdfast lets its owner change
    it, so the superuser signs in as the new security admin and approves their own elevation:
    one person, two accounts. The rule that keeps a superuser from approving a puppet's
    request must also keep the puppet from approving the superuser's."""
    from tests.conftest import PASSWORD

    world = world_of(superuser, tmp_path)
    guard = guard_all(world, superuser, security_admin)
    made = api(superuser).post(
        "/api/v1/users/",
        {"username": "newsec", "password": PASSWORD, "role": "security_admin"},
        format="json",
    )
    assert made.status_code == 202, made.content
    granted = api(security_admin).post(f"/api/v1/approvals/{made.json()['id']}/approve/")
    assert granted.status_code == 200, granted.content

    from rest_framework.test import APIClient

    signed_in = APIClient().post(  # the superuser, with the password they chose
        "/api/v1/auth/token/", {"username": "newsec", "password": PASSWORD}, format="json"
    )
    assert signed_in.status_code == 200, signed_in.content
    as_newsec = APIClient()
    as_newsec.credentials(HTTP_AUTHORIZATION=f"Token {signed_in.json()['token']}")
    asked = api(superuser).post(
        f"/api/v1/resource-guards/{guard.name}/access-requests/",
        {"justification": "cleanup", "duration_minutes": 60},
        format="json",
    )
    assert asked.status_code == 201, asked.content
    answer = as_newsec.post(f"/api/v1/approvals/{asked.json()['id']}/approve/")
    assert (answer.status_code, answer.json()["code"]) == (409, "self_approval")
    assert api(superuser).delete(point_url(world)).json()["code"] == "mua_required"
    assert RecoveryPoint.objects.filter(pk=world["point"].pk).exists()


def test_a_superuser_makes_a_backup_admin_and_a_security_admin_and_uses_both(
    superuser: Any, security_admin: Any, api: Any, tmp_path: Path
) -> None:
    from rest_framework.test import APIClient

    from tests.conftest import PASSWORD

    world = world_of(superuser, tmp_path)
    guard = guard_all(world, superuser, security_admin)
    for name, role in (("puppet", "backup_admin"), ("newsec", "security_admin")):
        made = api(superuser).post(
            "/api/v1/users/", {"username": name, "password": PASSWORD, "role": role}, format="json"
        )
        if made.status_code == 202:  # the grant of power: rightly approved by a colleague
            api(security_admin).post(f"/api/v1/approvals/{made.json()['id']}/approve/")
    clients = {}
    for name in ("puppet", "newsec"):
        token = APIClient().post(
            "/api/v1/auth/token/", {"username": name, "password": PASSWORD}, format="json"
        )
        clients[name] = APIClient()
        clients[name].credentials(HTTP_AUTHORIZATION=f"Token {token.json()['token']}")
    asked = clients["puppet"].post(
        f"/api/v1/resource-guards/{guard.name}/access-requests/",
        {"justification": "cleanup", "duration_minutes": 60},
        format="json",
    )
    answer = clients["newsec"].post(f"/api/v1/approvals/{asked.json()['id']}/approve/")
    assert (answer.status_code, answer.json().get("code")) == (409, "self_approval")
    assert "the same person" in answer.json()["detail"]
    # Once each owner has set their own password, they are two people again.
    for name in ("puppet", "newsec"):
        fresh = APIClient()
        fresh.force_authenticate(type(superuser).objects.get(username=name))
        changed = fresh.post(
            "/api/v1/auth/password/",
            {"current_password": PASSWORD, "new_password": f"{name}-own-secret-2026"},
            format="json",
        )
        assert changed.status_code == 204, changed.content
    newsec = APIClient()
    newsec.force_authenticate(type(superuser).objects.get(username="newsec"))
    answer = newsec.post(f"/api/v1/approvals/{asked.json()['id']}/approve/")
    assert answer.status_code == 200, answer.content


def test_removing_a_locked_vaults_guard_with_elevation_is_refused_by_the_gate_not_a_500(
    admin: Any, security_admin: Any, api: Any, tmp_path: Path
) -> None:
    """The database keeps a locked vault's guard (replaceable, never removed); the gate let
    an elevated removal through to that trigger, which answered a 500 instead of a refusal."""
    world = world_of(admin, tmp_path)
    guard = guard_all(world, admin, security_admin)
    from tests.factories import lock_vault

    lock_vault(world["vault"], requester=admin)
    elevate(admin, security_admin, guard)
    response = api(admin).delete(f"{V}/target/resource-guard/")
    assert response.status_code == 409, response.content
    assert response.json()["code"] == "immutability_locked"
    world["vault"].refresh_from_db()
    assert world["vault"].resource_guard_id == guard.pk


def test_a_vault_whose_local_storage_location_overlaps_anothers_is_a_validation_error(
    admin: Any, api: Any, settings: Any
) -> None:
    """The database keeps two vaults' storage apart (vault_storage_apart); the gate checked
    only S3 locations, so a local one overlapping another vault's reached the trigger."""
    first = make_vault(admin, name="first")
    for location in (first.storage_location, first.storage_location + "/inner"):
        response = api(admin).post(
            f"{V}/",
            {"name": "second", "kind": "backup", "region": "x", "storage_location": location},
            format="json",
        )
        assert response.status_code == 400, response.content
        assert response.json()["field"] == "storage_location"
