"""Attacks on replica vaults (SPEC 3.10 and 8): one person, any one credential, trying to
lose the second copy. Each path is refused by the gate and, where a database session could
try it, by PostgreSQL for the application's own role (``vaults/triggers.py``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from policies import services as policy_services
from portal import clock
from portal.gate import DomainError
from tests.conftest import api_client_for, make_user
from tests.dbroles import postgres_only
from tests.factories import make_vault
from vaults import services as vault_services
from vaults.models import RecoveryPoint, Vault

pytestmark = postgres_only

Refused = (psycopg.errors.RaiseException, psycopg.errors.IntegrityError)


def _with_point(admin: Any, vault: Vault, source: Path) -> RecoveryPoint:
    policy = policy_services.policy_create(actor=admin, vault=vault, name="daily", daily_days=30)
    source.mkdir(parents=True, exist_ok=True)
    item = vault_services.item_protect(
        actor=admin, vault=vault, name="files", source_path=str(source), policy=policy
    )
    return vault_services.point_record(item=item, created_at=clock.now())


@pytest.fixture
def pairs(app_role: str, admin: Any, tmp_path: Path) -> dict[str, Any]:
    """Committed rows: a locked vault paired with its (locked) replica holding a copy; an
    enabled pair; a spare open vault in a third region."""
    locked = make_vault(admin, name="locked-src", region="westeurope")
    locked_rep = make_vault(admin, name="locked-rep", region="northeurope")
    vault_services.replica_set(actor=admin, vault=locked, replica=locked_rep)
    from tests.factories import lock_vault

    locked = lock_vault(Vault.objects.get(pk=locked.pk), requester=admin)
    locked_rep.refresh_from_db()
    assert locked_rep.immutability == "locked"
    point = _with_point(admin, locked, tmp_path / "locked")
    copy = vault_services.replica_point_record(
        replica=locked_rep, source_point=point, stored_bytes=0, digest=""
    )
    enabled = make_vault(admin, name="enabled-src", region="westeurope", immutability="enabled")
    enabled_rep = make_vault(admin, name="enabled-rep", region="eastus", immutability="enabled")
    vault_services.replica_set(actor=admin, vault=enabled, replica=enabled_rep)
    spare = make_vault(admin, name="spare", region="eastus2")
    return {
        "locked": Vault.objects.get(pk=locked.pk),
        "locked_rep": locked_rep,
        "point": point,
        "copy": copy,
        "enabled": Vault.objects.get(pk=enabled.pk),
        "enabled_rep": enabled_rep,
        "spare": spare,
    }


def attempt(app: psycopg.Connection, *statements: tuple[str, list[Any]]) -> None:
    with pytest.raises(Refused), app.transaction():
        for statement, params in statements:
            app.execute(statement, params)


def test_the_copy_is_what_the_source_point_was(pairs: dict[str, Any]) -> None:
    point, copy = pairs["point"], pairs["copy"]
    assert (copy.created_at, copy.expires_at, copy.vault) == (
        point.created_at,
        point.expires_at,
        pairs["locked_rep"],
    )
    assert (copy.source_vault, copy.source_point_ref) == ("locked-src", point.pk)


def test_the_app_role_cannot_drop_or_repoint_a_locked_pairing(
    pairs: dict[str, Any], as_app: psycopg.Connection
) -> None:
    locked, spare = pairs["locked"], pairs["spare"]
    attempt(as_app, ("UPDATE vaults_vault SET replica_id = NULL WHERE id = %s", [locked.pk]))
    attempt(
        as_app, ("UPDATE vaults_vault SET replica_id = %s WHERE id = %s", [spare.pk, locked.pk])
    )
    # Nor by renumbering the replica, or deleting it behind deferred keys.
    attempt(
        as_app,
        ("UPDATE vaults_vault SET id = -5 WHERE id = %s", [pairs["locked_rep"].pk]),
    )
    attempt(as_app, ("DELETE FROM vaults_vault WHERE id = %s", [pairs["locked_rep"].pk]))
    assert Vault.objects.get(pk=locked.pk).replica_id == pairs["locked_rep"].pk


def test_the_app_role_cannot_delete_or_shorten_the_copy(
    pairs: dict[str, Any], as_app: psycopg.Connection
) -> None:
    copy = pairs["copy"]
    attempt(as_app, ("DELETE FROM vaults_recoverypoint WHERE id = %s", [copy.pk]))
    attempt(
        as_app,
        (
            "UPDATE vaults_recoverypoint SET expires_at = now() WHERE id = %s",
            [copy.pk],
        ),
    )
    # Its source link is a key: it cannot be made to look like someone else's copy.
    attempt(
        as_app,
        ("UPDATE vaults_recoverypoint SET source_point_ref = -1 WHERE id = %s", [copy.pk]),
    )
    fresh = RecoveryPoint.objects.get(pk=copy.pk)
    assert (fresh.expires_at, fresh.source_point_ref) == (copy.expires_at, copy.source_point_ref)


def test_the_app_role_cannot_weaken_a_replica_below_its_source(
    pairs: dict[str, Any], as_app: psycopg.Connection
) -> None:
    rep = pairs["enabled_rep"]
    attempt(as_app, ("UPDATE vaults_vault SET immutability = 'disabled' WHERE id = %s", [rep.pk]))
    # Nor pair an immutable vault to a weak one, in one statement or behind an unpairing.
    enabled, spare = pairs["enabled"], pairs["spare"]
    attempt(
        as_app,
        ("UPDATE vaults_vault SET replica_id = NULL WHERE id = %s", [enabled.pk]),
        ("UPDATE vaults_vault SET replica_id = %s WHERE id = %s", [spare.pk, enabled.pk]),
    )
    assert Vault.objects.get(pk=rep.pk).immutability == "enabled"


def test_the_app_role_cannot_chain_or_cycle_pairings(
    pairs: dict[str, Any], as_app: psycopg.Connection
) -> None:
    rep, enabled, spare = pairs["enabled_rep"], pairs["enabled"], pairs["spare"]
    attempt(as_app, ("UPDATE vaults_vault SET replica_id = %s WHERE id = %s", [enabled.pk, rep.pk]))
    attempt(as_app, ("UPDATE vaults_vault SET replica_id = %s WHERE id = %s", [spare.pk, rep.pk]))
    attempt(as_app, ("UPDATE vaults_vault SET replica_id = %s WHERE id = %s", [rep.pk, spare.pk]))
    attempt(as_app, ("UPDATE vaults_vault SET replica_id = id WHERE id = %s", [spare.pk]))


def test_every_entry_point_refuses_to_unpair_a_locked_vault(
    pairs: dict[str, Any], admin: Any, client: Any
) -> None:
    locked = pairs["locked"]
    api = api_client_for(admin).delete("/api/v1/vaults/locked-src/replica/")
    assert api.status_code == 409 and api.json()["code"] == "immutability_locked"
    # Re-pointing through PUT to orphan the copies: the same refusal.
    put = api_client_for(admin).put(
        "/api/v1/vaults/locked-src/replica/", {"vault": "spare"}, format="json"
    )
    assert put.status_code == 409 and put.json()["code"] == "immutability_locked"
    # A superuser is not a bypass, nor a second backup admin.
    boss = make_user("root-user", "backup_admin", is_superuser=True)
    with pytest.raises(DomainError) as refused:
        vault_services.replica_remove(actor=boss, vault=locked)
    assert refused.value.code == "immutability_locked"
    # The Django admin is read-only.
    client.force_login(boss)
    change = client.post(
        f"/admin/vaults/vault/{locked.pk}/change/", {"name": locked.name, "replica": ""}
    )
    assert change.status_code in {403, 405}
    assert Vault.objects.get(pk=locked.pk).replica_id == pairs["locked_rep"].pk


def test_deleting_the_replica_or_its_copy_through_the_gate_is_refused(
    pairs: dict[str, Any], admin: Any
) -> None:
    with pytest.raises(DomainError) as refused:
        vault_services.vault_delete(actor=admin, vault=pairs["locked_rep"])
    assert refused.value.code in {"immutable_vault", "vault_not_empty"}
    with pytest.raises(DomainError) as refused:
        vault_services.point_delete(actor=admin, point=pairs["copy"])
    assert refused.value.code == "immutable_vault"
    with pytest.raises(DomainError) as refused:
        vault_services.point_retain_until(
            actor=admin, point=pairs["copy"], retain_until=clock.now() + timedelta(days=1)
        )
    assert refused.value.code == "immutable_vault"
    # Deleting the source point (were it allowed) never takes the copy: nothing links them.
    assert RecoveryPoint.objects.filter(pk=pairs["copy"].pk).exists()


def test_a_locked_vault_paired_to_a_weak_replica_is_refused(admin: Any) -> None:
    locked = make_vault(admin, name="lock-a", region="westeurope", immutability="locked")
    weak = make_vault(admin, name="weak-b", region="northeurope")
    with pytest.raises(DomainError) as refused:
        vault_services.replica_set(actor=admin, vault=locked, replica=weak)
    assert refused.value.code == "immutable_vault"
    enabled = make_vault(admin, name="half-c", region="eastus", immutability="enabled")
    with pytest.raises(DomainError) as refused:
        vault_services.replica_set(actor=admin, vault=locked, replica=enabled)
    assert refused.value.code == "immutable_vault"
    assert Vault.objects.get(pk=locked.pk).replica_id is None
