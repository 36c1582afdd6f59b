"""PostgreSQL's own line of defence (SPEC 8.2, issue 12 item 2), attacked as the application's
database role: raw SQL from its own connection, as a compromised web or worker host has it.

Each attack is written as it was made (or as it would be made next): renumber a row, re-parent
it, delete the rows a rule reads first behind the deferred foreign keys, or write a shorter
date instead of a delete. The gate is not involved: this layer must hold on its own.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from guards import services as guard_services
from policies import services as policy_services
from policies.models import Policy
from portal import clock
from tests.conftest import make_user
from tests.dbroles import postgres_only
from tests.factories import make_vault
from vaults import keyring, locations
from vaults import services as vault_services
from vaults.models import ProtectedItem, RecoveryPoint, Vault
from vaults.storage.crypto import KeyUnavailable

pytestmark = postgres_only

Refused = (psycopg.errors.RaiseException, psycopg.errors.IntegrityError)


def protect(admin: Any, vault: Vault, source: Path, *, daily_days: int = 30) -> dict[str, Any]:
    policy = policy_services.policy_create(
        actor=admin, vault=vault, name="daily", daily_days=daily_days, weekly_weeks=12
    )
    source.mkdir(parents=True, exist_ok=True)
    item = vault_services.item_protect(
        actor=admin, vault=vault, name="files", source_path=str(source), policy=policy
    )
    point = vault_services.point_record(item=item, created_at=clock.now())
    return {"vault": vault, "policy": policy, "item": item, "point": point}


@pytest.fixture
def world(app_role: str, admin: Any, tmp_path: Path) -> dict[str, Any]:
    """Committed rows (the app role's own connection sees them): a locked vault with a guard
    and an unexpired point, an enabled one, and an open one."""
    owner = make_user("gwen", "security_admin")
    guard = guard_services.guard_create(actor=owner, name="guard-one")
    spare = guard_services.guard_create(actor=owner, name="guard-two")
    locked = make_vault(admin, name="locked-vault", immutability="locked")
    vault_services.vault_guard_set(actor=admin, vault=locked, guard=guard)
    enabled = make_vault(admin, name="enabled-vault", immutability="enabled")
    open_vault = make_vault(admin, name="open-vault")
    return {
        "guard": guard,
        "spare": spare,
        "locked": protect(admin, locked, tmp_path / "locked"),
        "enabled": protect(admin, enabled, tmp_path / "enabled"),
        "open": protect(admin, open_vault, tmp_path / "open"),
    }


def attempt(app: psycopg.Connection, *statements: tuple[str, list[Any]]) -> None:
    """Run ``statements`` as one transaction of the application's role; expect a refusal."""
    with pytest.raises(Refused), app.transaction():
        for statement, params in statements:
            app.execute(statement, params)


def point_survives(point: RecoveryPoint) -> None:
    fresh = RecoveryPoint.objects.get(pk=point.pk)
    assert (fresh.vault_id, fresh.item_id, fresh.expires_at) == (
        point.vault_id,
        point.item_id,
        point.expires_at,
    )


# --- the walk-around of the review: renumber the vault, then delete its points ----------------


def test_renumbering_a_locked_vault_to_delete_its_points_is_refused(
    world: dict[str, Any], as_app: psycopg.Connection
) -> None:
    vault, point = world["locked"]["vault"], world["locked"]["point"]
    attempt(
        as_app,
        ("UPDATE vaults_vault SET id = -10 WHERE id = %s", [vault.pk]),
        ("DELETE FROM vaults_recoverypoint WHERE vault_id = %s", [vault.pk]),
        ("UPDATE vaults_vault SET id = %s WHERE id = -10", [vault.pk]),
    )
    point_survives(point)


def test_deleting_items_and_vault_first_behind_deferred_keys_is_refused(
    world: dict[str, Any], as_app: psycopg.Connection
) -> None:
    locked = world["locked"]
    vault, item, point = locked["vault"], locked["item"], locked["point"]
    # Item first (its points' foreign key is checked only at commit) ...
    attempt(
        as_app,
        ("DELETE FROM vaults_protecteditem WHERE id = %s", [item.pk]),
        ("DELETE FROM vaults_vault WHERE id = %s", [vault.pk]),
        ("DELETE FROM vaults_recoverypoint WHERE id = %s", [point.pk]),
    )
    # ... or the vault first.
    attempt(
        as_app,
        ("DELETE FROM vaults_vault WHERE id = %s", [vault.pk]),
        ("DELETE FROM vaults_recoverypoint WHERE id = %s", [point.pk]),
    )
    point_survives(point)


@pytest.mark.parametrize(
    ("column", "value"),
    [("id", -1), ("vault_id", "other_vault"), ("item_id", "other_item")],
)
def test_a_point_is_never_renumbered_or_re_parented(
    world: dict[str, Any], as_app: psycopg.Connection, column: str, value: Any
) -> None:
    point = world["locked"]["point"]
    target = {
        "other_vault": world["open"]["vault"].pk,
        "other_item": world["open"]["item"].pk,
    }.get(value, value)
    attempt(
        as_app, (f"UPDATE vaults_recoverypoint SET {column} = %s WHERE id = %s", [target, point.pk])
    )
    point_survives(point)


@pytest.mark.parametrize("column", ["id", "vault_id"])
def test_an_item_is_never_renumbered_or_moved_to_another_vault(
    world: dict[str, Any], as_app: psycopg.Connection, column: str
) -> None:
    item = world["locked"]["item"]
    value = -1 if column == "id" else world["open"]["vault"].pk
    attempt(
        as_app, (f"UPDATE vaults_protecteditem SET {column} = %s WHERE id = %s", [value, item.pk])
    )
    assert ProtectedItem.objects.get(pk=item.pk).vault_id == item.vault_id


# --- a vault's settings ----------------------------------------------------------------------

VAULT_WEAKENINGS = {
    "renumber": ("id", -5),
    "rename": ("name", "renamed"),
    "change kind": ("kind", "backup"),
    "re-point storage": ("storage_location", "/tmp/elsewhere"),
}


# --- a vault's data key (SPEC 3.11) ----------------------------------------------------------


@pytest.mark.parametrize("which", ["locked", "open"])
def test_a_vaults_data_key_is_never_swapped_dropped_or_let_back_to_plaintext(
    world: dict[str, Any], as_app: psycopg.Connection, which: str
) -> None:
    """The app's role alone cannot make a vault unreadable or weaken its encryption: another
    vault's key, an empty one, a new key id, or the plaintext flag set again are refused."""
    vault = Vault.objects.get(pk=world[which]["vault"].pk)
    other = Vault.objects.get(pk=world["enabled"]["vault"].pk)
    assert vault.data_key_id and not vault.plaintext_objects
    for column, value in (
        ("data_key_id", other.data_key_id),
        ("data_key_id", ""),
        ("data_key", ""),
        ("plaintext_objects", True),
    ):
        attempt(as_app, (f"UPDATE vaults_vault SET {column} = %s WHERE id = %s", [value, vault.pk]))
    # Another vault's wrapped key under this vault's id passes the trigger (rotation rewraps
    # in place) but never opens: the key it unwraps to is not the one the row is fixed to.
    as_app.execute(
        "UPDATE vaults_vault SET data_key = %s WHERE id = %s", [other.data_key, vault.pk]
    )
    forged = Vault.objects.get(pk=vault.pk)
    with pytest.raises(KeyUnavailable, match="the wrapped copy was replaced"):
        keyring.data_key(forged)
    with pytest.raises(KeyUnavailable):
        locations.vault_store(forged)


@pytest.mark.parametrize("which", ["locked", "open"])
@pytest.mark.parametrize("case", list(VAULT_WEAKENINGS))
def test_a_vaults_keys_kind_and_storage_never_change(
    world: dict[str, Any], as_app: psycopg.Connection, case: str, which: str
) -> None:
    vault = world[which]["vault"]
    column, value = VAULT_WEAKENINGS[case]
    attempt(as_app, (f"UPDATE vaults_vault SET {column} = %s WHERE id = %s", [value, vault.pk]))
    fresh = Vault.objects.get(pk=vault.pk)
    assert (fresh.name, fresh.kind, fresh.storage_location) == (
        vault.name,
        vault.kind,
        vault.storage_location,
    )


def test_a_locked_vault_keeps_its_guard_which_may_only_be_replaced(
    world: dict[str, Any], as_app: psycopg.Connection
) -> None:
    vault = world["locked"]["vault"]
    attempt(as_app, ("UPDATE vaults_vault SET resource_guard_id = NULL WHERE id = %s", [vault.pk]))
    as_app.execute(
        "UPDATE vaults_vault SET resource_guard_id = %s WHERE id = %s",
        [world["spare"].pk, vault.pk],
    )
    assert Vault.objects.get(pk=vault.pk).resource_guard_id == world["spare"].pk


def test_always_on_soft_delete_never_goes_back_nor_shrinks(
    world: dict[str, Any], as_app: psycopg.Connection
) -> None:
    vault = world["open"]["vault"]
    as_app.execute(
        "UPDATE vaults_vault SET soft_delete_state = 'always_on', "
        "soft_delete_retention_days = 30 WHERE id = %s",
        [vault.pk],
    )
    for state in ("disabled", "enabled"):
        attempt(
            as_app,
            ("UPDATE vaults_vault SET soft_delete_state = %s WHERE id = %s", [state, vault.pk]),
        )
    attempt(
        as_app,
        ("UPDATE vaults_vault SET soft_delete_retention_days = 14 WHERE id = %s", [vault.pk]),
    )
    # Growing is fine.
    as_app.execute(
        "UPDATE vaults_vault SET soft_delete_retention_days = 60 WHERE id = %s", [vault.pk]
    )
    fresh = Vault.objects.get(pk=vault.pk)
    assert (fresh.soft_delete_state, fresh.soft_delete_retention_days) == ("always_on", 60)


def test_a_vault_row_with_items_is_never_deleted(
    world: dict[str, Any], as_app: psycopg.Connection
) -> None:
    # Even an open vault: the rows a rule reads must not vanish first.
    vault = world["open"]["vault"]
    attempt(as_app, ("DELETE FROM vaults_vault WHERE id = %s", [vault.pk]))
    assert Vault.objects.filter(pk=vault.pk).exists()


def test_a_second_vault_cannot_share_anothers_storage(
    world: dict[str, Any], as_app: psycopg.Connection
) -> None:
    locked = world["locked"]["vault"]
    for location in (locked.storage_location, locked.storage_location + "/inner"):
        attempt(
            as_app,
            (
                "INSERT INTO vaults_vault (name, kind, region, tags, storage_location, "
                "immutability, soft_delete_state, soft_delete_retention_days, "
                "mute_job_alerts, created_at) VALUES ('thief', 'backup', 'r', '{}', %s, "
                "'disabled', 'disabled', 14, false, now())",
                [location],
            ),
        )
    assert not Vault.objects.filter(name="thief").exists()


# --- shorter dates instead of deletes ---------------------------------------------------------


@pytest.mark.parametrize("which", ["locked", "enabled"])
def test_a_protected_points_expiry_never_shrinks(
    world: dict[str, Any], as_app: psycopg.Connection, which: str
) -> None:
    point = world[which]["point"]
    attempt(
        as_app,
        ("UPDATE vaults_recoverypoint SET expires_at = now() WHERE id = %s", [point.pk]),
    )
    attempt(as_app, ("DELETE FROM vaults_recoverypoint WHERE id = %s", [point.pk]))
    point_survives(point)


@pytest.mark.parametrize("which", ["locked", "enabled"])
def test_an_immutable_recovery_services_policy_never_shrinks(
    world: dict[str, Any], as_app: psycopg.Connection, which: str
) -> None:
    policy = world[which]["policy"]
    for column, value in (
        ("daily_days", 7),
        ("weekly_weeks", None),
        ("weekly_weeks", 4),
    ):
        attempt(
            as_app,
            (f"UPDATE policies_policy SET {column} = %s WHERE id = %s", [value, policy.pk]),
        )
    attempt(as_app, ("UPDATE policies_policy SET id = -3 WHERE id = %s", [policy.pk]))
    # Growing, and other columns, are fine.
    as_app.execute(
        "UPDATE policies_policy SET daily_days = 60, timezone = 'Europe/Paris' WHERE id = %s",
        [policy.pk],
    )
    fresh = Policy.objects.get(pk=policy.pk)
    assert (fresh.daily_days, fresh.weekly_weeks) == (60, 12)


def test_an_open_or_backup_kind_vault_may_shorten_retention(
    world: dict[str, Any], admin: Any, tmp_path: Path, as_app: psycopg.Connection
) -> None:
    # SPEC 3.2: a Backup vault allows shorter retention even when immutable.
    backup = protect(
        admin,
        make_vault(admin, name="backup-vault", kind="backup", immutability="locked"),
        tmp_path / "backup",
    )
    for policy in (world["open"]["policy"], backup["policy"]):
        as_app.execute("UPDATE policies_policy SET daily_days = 7 WHERE id = %s", [policy.pk])
        assert Policy.objects.get(pk=policy.pk).daily_days == 7


def test_an_item_never_moves_to_a_shorter_policy_in_an_immutable_vault(
    world: dict[str, Any], admin: Any, as_app: psycopg.Connection
) -> None:
    locked = world["locked"]
    short = policy_services.policy_create(
        actor=admin, vault=locked["vault"], name="short", daily_days=7
    )
    attempt(
        as_app,
        (
            "UPDATE vaults_protecteditem SET policy_id = %s WHERE id = %s",
            [short.pk, locked["item"].pk],
        ),
    )
    assert ProtectedItem.objects.get(pk=locked["item"].pk).policy_id == locked["policy"].pk


def test_a_soft_deleted_items_purge_never_comes_sooner(
    world: dict[str, Any], admin: Any, as_app: psycopg.Connection
) -> None:
    item = vault_services.protection_stop(actor=admin, item=world["open"]["item"], delete_data=True)
    assert item.protection_state == "soft_deleted"
    for value in (None, item.purge_at - timedelta(days=13)):
        attempt(
            as_app,
            ("UPDATE vaults_protecteditem SET purge_at = %s WHERE id = %s", [value, item.pk]),
        )
    assert ProtectedItem.objects.get(pk=item.pk).purge_at == item.purge_at
