"""No one person (SPEC 8, issue 12): each finding of the review that tried to break the promise,
reproduced as it was made, through the API; then the table of actors and paths.

The database attacks (raw SQL as the application's role) live in tests/test_db_backstop.py,
the storage ones in tests/test_storage_backstop.py, the audit ones in tests/test_audit_*.py.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from guards import services as guard_services
from policies import services as policy_services
from portal import clock
from portal import services as portal_services
from portal.models import Alert, Approval, AuditRecord
from tests.factories import make_vault
from vaults import services as vault_services
from vaults.jobs import sweeps
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
    sweeps.points_sweep()
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
    sweeps.points_sweep()
    kept = api(admin).get(point_url(world)).json()
    assert kept["state"] == "soft_deleted"
    # ... until the soft-delete period has passed.
    clock.set_now(soon + timedelta(days=14, seconds=1))
    sweeps.points_sweep()
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


# === the table: every actor, alone, down every path it has ====================================
#
# Two vaults hold what must survive one person: ``fortress`` (a Recovery Services vault,
# immutability locked, soft delete always-on, a Resource Guard on everything) and ``guarded``
# (a Backup vault, immutability enabled, soft delete on, the same guard; a Backup vault lets
# a policy shorten under immutability, so there only MUA stands in the way). The guard is
# owned by ``gwen``, whom no actor is. Each actor tries everything its credential reaches,
# asking for approvals and trying to decide them itself, through a second account where it
# can make one; afterwards nothing protected is gone, shorter or weaker, no approval was
# granted, and no answer was a 500.
#
# Infrastructure credentials (the application's database role, a shell on a worker host)
# reach below the gate: there the promise is the locked vault's, held by PostgreSQL and by the
# storage (tests/test_db_backstop.py, tests/test_storage_backstop.py, and the last cells here).
# An enabled (not locked) vault can be disabled by whoever can forge database rows; locking is
# what protects against that (docs/security.md).

PEOPLE = {
    "reader": ("reader", False),
    "operator": ("operator", False),
    "backup admin (or a stolen token)": ("backup_admin", False),
    "security admin (not the guard's owner)": ("security_admin", False),
    "superuser with role reader": ("reader", True),
    "superuser with role backup admin": ("backup_admin", True),
    "superuser with role security admin": ("security_admin", True),
}


@pytest.fixture
def table_world(admin: Any, tmp_path: Path, settings: Any) -> dict[str, Any]:
    from tests.conftest import make_user

    # Its own storage: a store left by an earlier run's vault of the same name keeps that
    # vault's data key, and no new vault writes beside it.
    settings.HOLDFAST_STORAGE_ROOT = tmp_path / "storage"

    owner = make_user("gwen", "security_admin")
    keeper = guard_services.guard_create(actor=owner, name="keeper")
    world: dict[str, Any] = {"guard": keeper, "owner": owner}
    for name, kind, state in (
        ("fortress", "recovery_services", "locked"),
        ("guarded", "backup", "enabled"),
    ):
        vault = make_vault(admin, name=name, kind=kind, immutability=state)
        policy = policy_services.policy_create(
            actor=admin, vault=vault, name="daily", daily_days=30
        )
        source = tmp_path / name
        source.mkdir()
        item = vault_services.item_protect(
            actor=admin, vault=vault, name="files", source_path=str(source), policy=policy
        )
        point = vault_services.point_record(item=item)
        vault_services.vault_guard_set(actor=admin, vault=vault, guard=keeper)
        # Each has a replica in another region holding a copy of its point (SPEC 3.10).
        replica = make_vault(
            admin, name=f"{name}-copy", kind=kind, region="northeurope", immutability=state
        )
        vault = vault_services.replica_set(actor=admin, vault=vault, replica=replica)
        copy = vault_services.replica_point_record(
            replica=replica, source_point=point, stored_bytes=0, digest=""
        )
        world[name] = {"vault": vault, "policy": policy, "item": item, "point": point}
        world[f"{name}-copy"] = {"vault": replica, "point": copy}
    make_vault(admin, name="spare-region", region="eastus")  # where a re-pointing would go
    approval = vault_services.soft_delete_always_on_request(
        actor=admin, vault=world["fortress"]["vault"], confirmation="fortress", retention_days=30
    )
    portal_services.approval_approve(actor=owner, approval=approval)
    return world


def fingerprint(world: dict[str, Any]) -> dict[str, Any]:
    """Everything one person must not be able to destroy, shorten or weaken."""
    from guards.models import ResourceGuard

    state: dict[str, Any] = {
        "guard": list(
            ResourceGuard.objects.filter(pk=world["guard"].pk).values_list(
                "name", "protected_operations"
            )
        ),
        "approved": sorted(
            Approval.objects.filter(status="approved")
            .exclude(pk__in=world.get("baseline_approvals", []))
            .values_list("kind", flat=True)
        ),
    }
    for name in ("fortress", "guarded"):
        vault = world[name]["vault"]
        state[name] = {
            "vault": list(
                Vault.objects.filter(pk=vault.pk).values_list(
                    "name",
                    "kind",
                    "storage_location",
                    "immutability",
                    "soft_delete_state",
                    "soft_delete_retention_days",
                    "resource_guard_id",
                    "replica_id",
                )
            ),
            "copies": list(
                RecoveryPoint.objects.filter(vault=world[f"{name}-copy"]["vault"])
                .order_by("pk")
                .values_list("pk", "expires_at", "soft_deleted_until", "source_point_ref")
            ),
            "points": list(
                RecoveryPoint.objects.filter(vault=vault)
                .order_by("pk")
                .values_list("pk", "expires_at", "soft_deleted_until", "tier")
            ),
            "items": list(
                ProtectedItem.objects.filter(vault=vault).values_list(
                    "name", "protection_state", "policy_id", "purge_at"
                )
            ),
            "policies": list(
                vault.policies.order_by("pk").values_list(
                    "daily_days", "weekly_weeks", "monthly_months", "yearly_years", "frequency"
                )
            ),
        }
    return state


def person(label: str) -> Any:
    from tests.conftest import make_user

    role, superuser = PEOPLE[label]
    return make_user("mallory", role, is_superuser=superuser)


def no_server_error(response: Any) -> Any:
    assert response.status_code < 500, (response.status_code, response.content[:300])
    return response


def api_attempts(actor: Any, world: dict[str, Any]) -> None:
    """Everything the API lets ``actor`` try alone, second accounts included."""
    from tests.conftest import PASSWORD, api_client_for

    me = api_client_for(actor)
    clients = [me]
    guard = world["guard"].name
    # A second account, where the credential can make one (superusers), asked to grant power.
    made = no_server_error(
        me.post(
            "/api/v1/users/",
            {"username": "puppet", "password": PASSWORD, "role": "backup_admin"},
            format="json",
        )
    )
    if made.status_code == 201:
        puppet = type(actor).objects.get(username="puppet")
        clients.append(api_client_for(puppet))
        for username in ("puppet", actor.username):
            no_server_error(
                me.patch(f"/api/v1/users/{username}/", {"role": "security_admin"}, format="json")
            )
    # Ask for what needs a second person, then try to be that person.
    for client in clients:
        no_server_error(
            client.post(
                f"/api/v1/resource-guards/{guard}/access-requests/",
                {"justification": "alone", "duration_minutes": 60},
                format="json",
            )
        )
        no_server_error(
            client.patch(
                f"/api/v1/resource-guards/{guard}/", {"protected_operations": []}, format="json"
            )
        )
        no_server_error(client.delete(f"/api/v1/resource-guards/{guard}/"))
        no_server_error(
            client.post(
                "/api/v1/vaults/guarded/immutability/lock/",
                {"confirmation": "guarded"},
                format="json",
            )
        )
    for approval in Approval.objects.filter(status="pending"):
        for client in clients:
            no_server_error(client.post(f"/api/v1/approvals/{approval.pk}/approve/"))
    # Then everything destructive, by every account the person holds.
    soon = (clock.now() + timedelta(hours=1)).isoformat()
    for client in clients:
        for name in ("fortress", "guarded"):
            base = f"{V}/{name}"
            point = world[name]["point"].pk
            requests = [
                ("delete", f"{base}/items/files/recovery-points/{point}/", None),
                ("patch", f"{base}/items/files/recovery-points/{point}/", {"retain_until": soon}),
                ("post", f"{base}/items/files/stop-protection/", {"delete_data": True}),
                ("post", f"{base}/immutability/", {"state": "disabled"}),
                ("patch", f"{base}/soft-delete/", {"state": "disabled", "confirm_purge_count": 0}),
                ("patch", f"{base}/soft-delete/", {"retention_days": 14}),
                ("delete", f"{base}/resource-guard/", None),
                ("patch", f"{base}/policies/daily/", {"retention": {"daily_days": 7}}),
                ("delete", f"{base}/", None),
                # Replication: stopped, re-pointed to orphan the copies, the copy deleted.
                ("delete", f"{base}/replica/", None),
                ("put", f"{base}/replica/", {"vault": "spare-region"}),
                ("delete", f"{V}/{name}-copy/", None),
                (
                    "delete",
                    f"{V}/{name}-copy/items/files/recovery-points/"
                    f"{world[name + '-copy']['point'].pk}/",
                    None,
                ),
            ]
            for method, url, body in requests:
                no_server_error(getattr(client, method)(url, body, format="json"))


def page_attempts(actor: Any, world: dict[str, Any]) -> None:
    from django.test import Client

    browser = Client()
    browser.force_login(actor)
    guard = world["guard"].name
    no_server_error(
        browser.post(
            f"/resource-guards/{guard}/access/", {"justification": "x", "duration_minutes": "60"}
        )
    )
    no_server_error(browser.post(f"/resource-guards/{guard}/operations/", {}))
    no_server_error(browser.post(f"/resource-guards/{guard}/delete/"))
    for approval in Approval.objects.filter(status="pending"):
        no_server_error(browser.post(f"/approvals/{approval.pk}/approve/"))
    for name in ("fortress", "guarded"):
        item, point = world[name]["item"].pk, world[name]["point"].pk
        for url, body in (
            (f"/vaults/{name}/items/{item}/points/{point}/delete/", {}),
            (
                f"/vaults/{name}/items/{item}/points/{point}/retain/",
                {"retain_until": f"{clock.now() + timedelta(hours=1):%Y-%m-%dT%H:%M}"},
            ),
            (f"/vaults/{name}/items/{item}/stop/", {"delete_data": "on", "confirmation": "files"}),
            (f"/vaults/{name}/immutability/change/", {"state": "disabled"}),
            (f"/vaults/{name}/soft-delete/", {"state": "disabled", "confirm_purge_count": "0"}),
            (f"/vaults/{name}/soft-delete/", {"retention_days": "14"}),
            (f"/vaults/{name}/resource-guard/remove/", {}),
            (f"/vaults/{name}/delete/", {"confirmation": name}),
            (f"/vaults/{name}/replication/remove/", {"confirmation": name}),
            (f"/vaults/{name}-copy/delete/", {"confirmation": f"{name}-copy"}),
        ):
            no_server_error(browser.post(url, body))


def admin_attempts(actor: Any, world: dict[str, Any]) -> None:
    from django.test import Client

    browser = Client()
    browser.force_login(actor)
    vault = world["fortress"]["vault"]
    guard = world["guard"]
    for url, body in (
        (f"/admin/vaults/vault/{vault.pk}/delete/", {"post": "yes"}),
        (f"/admin/vaults/vault/{vault.pk}/change/", {"immutability": "disabled", "name": "x"}),
        (f"/admin/guards/resourceguard/{guard.pk}/change/", {"protected_operations": "[]"}),
        (f"/admin/guards/resourceguard/{guard.pk}/delete/", {"post": "yes"}),
        ("/admin/portal/approval/", {"action": "approve_selected", "_selected_action": "1"}),
        (
            f"/admin/auth/user/{world['owner'].pk}/password/",
            {"password1": "x" * 20, "password2": "x" * 20},
        ),
    ):
        no_server_error(browser.post(url, body))


def shell_attempts(actor: Any, world: dict[str, Any]) -> None:
    """The services themselves, as a shell session calls them with the person as actor."""
    from portal.gate import DomainError

    tries = []
    for name in ("fortress", "guarded"):
        w = world[name]
        tries += [
            lambda w=w: vault_services.point_delete(actor=actor, point=w["point"]),
            lambda w=w: vault_services.protection_stop(
                actor=actor, item=w["item"], delete_data=True
            ),
            lambda w=w: vault_services.immutability_set(
                actor=actor, vault=w["vault"], state="disabled"
            ),
            lambda w=w: vault_services.vault_guard_remove(actor=actor, vault=w["vault"]),
            lambda w=w: vault_services.vault_delete(actor=actor, vault=w["vault"]),
            lambda w=w: vault_services.replica_remove(actor=actor, vault=w["vault"]),
        ]
    tries.append(
        lambda: guard_services.guard_update(
            actor=actor, guard=world["guard"], protected_operations=[]
        )
    )
    for attempt in tries:
        with contextlib.suppress(DomainError):
            attempt()


PATHS = {
    "api": api_attempts,
    "pages": page_attempts,
    "admin": admin_attempts,
    "shell": shell_attempts,
}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("who", list(PEOPLE))
def test_no_person_alone_destroys_shortens_or_weakens(
    table_world: dict[str, Any], who: str, path: str
) -> None:
    table_world["baseline_approvals"] = list(
        Approval.objects.filter(status="approved").values_list("pk", flat=True)
    )
    before = fingerprint(table_world)
    PATHS[path](person(who), table_world)
    after = fingerprint(table_world)
    changed = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
    assert not changed, repr(changed)[:3000]


# --- infrastructure credentials: what holds is the locked vault --------------------------------

SQL_ATTACKS = [
    "DELETE FROM vaults_recoverypoint WHERE vault_id = {vault}",
    "UPDATE vaults_recoverypoint SET expires_at = now() WHERE vault_id = {vault}",
    "UPDATE vaults_recoverypoint SET tier = 'snapshot' WHERE vault_id = {vault}",
    "UPDATE vaults_recoverypoint SET vault_id = {other} WHERE vault_id = {vault}",
    "UPDATE vaults_vault SET id = -1 WHERE id = {vault}",
    "UPDATE vaults_vault SET immutability = 'disabled' WHERE id = {vault}",
    "UPDATE vaults_vault SET soft_delete_state = 'disabled' WHERE id = {vault}",
    "UPDATE vaults_vault SET soft_delete_retention_days = 14 WHERE id = {vault}",
    "UPDATE vaults_vault SET resource_guard_id = NULL WHERE id = {vault}",
    "UPDATE vaults_vault SET kind = 'backup' WHERE id = {vault}",
    "UPDATE vaults_vault SET storage_location = '/tmp/x' WHERE id = {vault}",
    "UPDATE vaults_vault SET replica_id = NULL WHERE id = {vault}",
    "UPDATE vaults_vault SET replica_id = {other} WHERE id = {vault}",
    "UPDATE policies_policy SET daily_days = 7 WHERE vault_id = {vault}",
    "DELETE FROM vaults_protecteditem WHERE vault_id = {vault}",
    "DELETE FROM vaults_vault WHERE id = {vault}",
    "UPDATE portal_auditrecord SET reason = 'nothing happened'",
    "DELETE FROM portal_auditrecord",
]


def fortress_fingerprint(world: dict[str, Any]) -> Any:
    return fingerprint(world)["fortress"]


@pytest.mark.django_db(transaction=True)
def test_the_applications_database_role_alone_cannot_touch_the_locked_vault(
    table_world: dict[str, Any], as_app: Any
) -> None:
    import psycopg

    before = fortress_fingerprint(table_world)
    ids = {
        "vault": table_world["fortress"]["vault"].pk,
        "other": table_world["guarded"]["vault"].pk,
    }
    for statement in SQL_ATTACKS:
        with pytest.raises(psycopg.Error), as_app.transaction():
            as_app.execute(statement.format(**ids))
            pytest.fail(f"the application's role was allowed: {statement}")
    assert fortress_fingerprint(table_world) == before


@pytest.mark.django_db(transaction=True)
def test_a_worker_hosts_shell_alone_cannot_touch_the_locked_vault(
    table_world: dict[str, Any], capsys: Any
) -> None:
    """What a shell with the application's environment runs: the system's own operations,
    which the gate still judges, and every sweep."""
    from django.core.management import call_command

    from portal.gate import DomainError, entry_point

    before = fortress_fingerprint(table_world)
    fortress = table_world["fortress"]
    with entry_point("shell"):
        for attempt in (
            lambda: vault_services.point_expire(point=fortress["point"]),
            lambda: vault_services.item_purge(item=fortress["item"]),
            lambda: vault_services.point_delete(actor=None, point=fortress["point"]),
            lambda: vault_services.immutability_set(
                actor=None, vault=fortress["vault"], state="disabled"
            ),
        ):
            with pytest.raises(DomainError):
                attempt()
    call_command("sweep", "all")
    assert fortress_fingerprint(table_world) == before
