"""PostgreSQL's own line of defence (SPEC 8.2), installed by django-pgtrigger.

The gate refuses first; these triggers refuse again for whoever holds a database connection
(the application's role included, which `manage.py db_roles` keeps from altering, disabling
or ignoring them). Each is judged on values an attacker cannot move:

- the keys of vaults, items, points and policies never change, and a point never moves to
  another vault or item, so no row can be renumbered or re-parented out of a rule's sight;
- a point is protected while it is unexpired on the database's own clock (``now()``), and a
  point whose vault cannot be found is treated as protected (fail closed);
- an item is deleted only after its points, and a vault only once it has no items, so the
  rows a rule reads cannot be removed first behind deferred foreign keys;
- a vault's data key never changes once set (only its wrapped copy, by rotation), and a
  vault whose objects are all encrypted never goes back;
- a vault's kind and storage location never change; a locked vault stays locked and keeps a
  guard (which may only be replaced by another); always-on soft delete never goes back and
  its retention never shrinks; a soft-deleted item's purge date never moves earlier;
- in an immutable Recovery Services or archive vault, a policy's retention never shrinks and
  an item never moves to a policy with a shorter retention (SPEC 3.2);
- a replica is never weaker than its source, a locked vault's pairing is never re-pointed
  or dropped, pairings never chain, and a replica vault is not deleted while paired
  (SPEC 3.10); a replica point's source never changes.
"""

# Trigger bodies are fixed SQL written here; no value from a request ever reaches them.
# ruff: noqa: S608

from __future__ import annotations

from typing import Any

import pgtrigger

from .statement_triggers import statement_triggers

PROTECTED_POINT = "OLD.tier <> 'snapshot' AND OLD.expires_at > now()"


def refuse(code: str, message: str, *args: str) -> str:
    """A ``RAISE EXCEPTION`` whose text starts with the gate's error code."""
    params = "".join(f", {arg}" for arg in args)
    return f"RAISE EXCEPTION '{code}: {message}'{params};"


def keys_fixed(name: str, *columns: str) -> pgtrigger.Protect:
    """Refuse an ``UPDATE`` that changes any of ``columns`` (keys and parents)."""
    changed = " OR ".join(f"OLD.{column} IS DISTINCT FROM NEW.{column}" for column in columns)
    return pgtrigger.Protect(
        name=name, operation=pgtrigger.Update, condition=pgtrigger.Condition(changed)
    )


# --- vaults ---------------------------------------------------------------------------------

VAULT_TRIGGERS = [
    keys_fixed("vault_keys_fixed", "id", "name", "kind", "storage_location"),
    # A vault's data key, once it has one, is that key for ever (SPEC 3.11): its wrapped copy
    # may be rewrapped (master key rotation), never swapped for another key or removed.
    pgtrigger.Protect(
        name="vault_data_key_fixed",
        operation=pgtrigger.Update,
        condition=pgtrigger.Condition(
            "OLD.data_key_id <> '' AND (NEW.data_key_id IS DISTINCT FROM OLD.data_key_id "
            "OR NEW.data_key = '')"
        ),
    ),
    # Plaintext objects are a leftover of the upgrade, never allowed back in.
    pgtrigger.Protect(
        name="vault_encrypted_stays",
        operation=pgtrigger.Update,
        condition=pgtrigger.Condition("NEW.plaintext_objects AND NOT OLD.plaintext_objects"),
    ),
    # A locked vault stays locked, whatever the caller (SPEC 3.2).
    pgtrigger.Protect(
        name="vault_locked_stays_locked",
        operation=pgtrigger.Update,
        condition=pgtrigger.Q(old__immutability="locked")
        & ~pgtrigger.Q(new__immutability="locked"),
    ),
    # ... and keeps a Resource Guard once it has one: replacing it is allowed, removing not.
    pgtrigger.Protect(
        name="vault_locked_keeps_guard",
        operation=pgtrigger.Update,
        condition=pgtrigger.Condition(
            "OLD.immutability = 'locked' AND OLD.resource_guard_id IS NOT NULL "
            "AND NEW.resource_guard_id IS NULL"
        ),
    ),
    pgtrigger.Protect(
        name="vault_always_on_stays",
        operation=pgtrigger.Update,
        condition=pgtrigger.Condition(
            "OLD.soft_delete_state = 'always_on' AND (NEW.soft_delete_state <> 'always_on' "
            "OR NEW.soft_delete_retention_days < OLD.soft_delete_retention_days)"
        ),
    ),
    pgtrigger.Trigger(
        name="vault_delete_only_empty",
        when=pgtrigger.Before,
        operation=pgtrigger.Delete,
        func=(
            "IF EXISTS (SELECT 1 FROM public.vaults_protecteditem i WHERE i.vault_id = OLD.id) "
            "OR EXISTS (SELECT 1 FROM public.vaults_recoverypoint p WHERE p.vault_id = OLD.id "
            "AND p.tier <> 'snapshot' AND p.expires_at > now()) THEN "
            + refuse("vault_not_empty", "vault % still holds items or unexpired points", "OLD.name")
            + " END IF; RETURN OLD;"
        ),
    ),
    # Two vaults never share storage: one vault's orphan sweep would take the other's data.
    pgtrigger.Trigger(
        name="vault_storage_apart",
        when=pgtrigger.Before,
        operation=pgtrigger.Insert,
        func=(
            "IF NEW.storage_location <> '' AND EXISTS (SELECT 1 FROM public.vaults_vault v "
            "WHERE v.storage_location <> '' AND (starts_with(NEW.storage_location || '/', "
            "v.storage_location || '/') OR starts_with(v.storage_location || '/', "
            "NEW.storage_location || '/'))) THEN "
            + refuse(
                "validation_error",
                "storage location % overlaps another vault''s",
                "NEW.storage_location",
            )
            + " END IF; RETURN NEW;"
        ),
    ),
]


# Immutability as a rank: a replica's is never below its source's (SPEC 3.10).
def _rank(column: str) -> str:
    return f"(CASE {column} WHEN 'locked' THEN 2 WHEN 'enabled' THEN 1 ELSE 0 END)"


REPLICA_TRIGGERS = [
    # A locked vault's replication cannot be removed or re-pointed, by anyone (SPEC 3.10).
    pgtrigger.Protect(
        name="vault_locked_keeps_replica",
        operation=pgtrigger.Update,
        condition=pgtrigger.Condition(
            "OLD.immutability = 'locked' AND OLD.replica_id IS NOT NULL "
            "AND NEW.replica_id IS DISTINCT FROM OLD.replica_id"
        ),
    ),
    # The pairing's rules, judged on the rows as they are: the replica is another vault of
    # the same kind, in another region, not itself paired either way, and never weaker.
    pgtrigger.Trigger(
        name="vault_replica_rules",
        when=pgtrigger.Before,
        operation=pgtrigger.Insert | pgtrigger.Update,
        declare=[("target", "public.vaults_vault")],
        func=(
            "IF TG_OP = 'UPDATE' AND NEW.replica_id IS NOT DISTINCT FROM OLD.replica_id "
            "AND NEW.immutability = OLD.immutability THEN RETURN NEW; END IF; "
            "IF NEW.replica_id IS NOT NULL THEN "
            "SELECT * INTO target FROM public.vaults_vault WHERE id = NEW.replica_id; "
            "IF NOT FOUND OR target.id = NEW.id OR target.kind <> NEW.kind "
            "OR target.region = NEW.region OR target.replica_id IS NOT NULL "
            "OR EXISTS (SELECT 1 FROM public.vaults_vault s WHERE s.replica_id = NEW.id) THEN "
            + refuse("validation_error", "vault % cannot replicate to that vault", "NEW.name")
            + f" END IF; IF {_rank('target.immutability')} < {_rank('NEW.immutability')} THEN "
            + refuse(
                "immutable_vault", "the replica of vault % would be weaker than it", "NEW.name"
            )
            + " END IF; END IF; "
            "IF EXISTS (SELECT 1 FROM public.vaults_vault s WHERE s.replica_id = NEW.id "
            f"AND {_rank('s.immutability')} > {_rank('NEW.immutability')}) THEN "
            + refuse("immutable_vault", "vault % is a replica: it cannot be weaker", "NEW.name")
            + " END IF; RETURN NEW;"
        ),
    ),
    pgtrigger.Trigger(
        name="vault_replica_not_deleted",
        when=pgtrigger.Before,
        operation=pgtrigger.Delete,
        func=(
            "IF EXISTS (SELECT 1 FROM public.vaults_vault s WHERE s.replica_id = OLD.id) THEN "
            + refuse("vault_not_empty", "vault % is another vault''s replica", "OLD.name")
            + " END IF; RETURN OLD;"
        ),
    ),
]

VAULT_TRIGGERS += REPLICA_TRIGGERS


# --- protected items ------------------------------------------------------------------------

# Whether policy ``new`` keeps any vault-tier tier shorter than policy ``old`` (or drops one),
# each tier compared in its own unit, as policies.rules.retention_shorter does.
_SHORTER = (
    "(new_policy.daily_days < old_policy.daily_days"
    " OR (old_policy.weekly_weeks IS NOT NULL AND (new_policy.weekly_weeks IS NULL"
    " OR new_policy.weekly_weeks < old_policy.weekly_weeks))"
    " OR (old_policy.monthly_months IS NOT NULL AND (new_policy.monthly_months IS NULL"
    " OR new_policy.monthly_months < old_policy.monthly_months))"
    " OR (old_policy.yearly_years IS NOT NULL AND (new_policy.yearly_years IS NULL"
    " OR new_policy.yearly_years < old_policy.yearly_years)))"
)
_RETENTION_FROZEN = (
    "EXISTS (SELECT 1 FROM public.vaults_vault v WHERE v.id = {vault} "
    "AND v.immutability IN ('enabled', 'locked') AND v.kind IN ('recovery_services', 'archive'))"
)

ITEM_TRIGGERS = [
    keys_fixed("item_keys_fixed", "id", "vault_id"),
    pgtrigger.Trigger(
        name="item_delete_after_points",
        when=pgtrigger.Before,
        operation=pgtrigger.Delete,
        func=(
            "IF EXISTS (SELECT 1 FROM public.vaults_recoverypoint p WHERE p.item_id = OLD.id) "
            "THEN "
            + refuse("vault_not_empty", "item % still has recovery points", "OLD.name")
            + " END IF; RETURN OLD;"
        ),
    ),
    pgtrigger.Protect(
        name="item_purge_not_sooner",
        operation=pgtrigger.Update,
        condition=pgtrigger.Condition(
            "OLD.protection_state = 'soft_deleted' AND NEW.protection_state = 'soft_deleted' "
            "AND (NEW.purge_at IS NULL OR NEW.purge_at < OLD.purge_at)"
        ),
    ),
    pgtrigger.Trigger(
        name="item_policy_not_shorter",
        when=pgtrigger.Before,
        operation=pgtrigger.Update,
        condition=pgtrigger.Condition("OLD.policy_id IS DISTINCT FROM NEW.policy_id"),
        declare=[
            ("old_policy", "public.policies_policy"),
            ("new_policy", "public.policies_policy"),
        ],
        func=(
            "SELECT * INTO old_policy FROM public.policies_policy WHERE id = OLD.policy_id; "
            "SELECT * INTO new_policy FROM public.policies_policy WHERE id = NEW.policy_id; "
            f"IF {_RETENTION_FROZEN.format(vault='OLD.vault_id')} AND {_SHORTER} THEN "
            + refuse(
                "immutable_vault",
                "item % cannot move to a policy with shorter retention",
                "OLD.name",
            )
            + " END IF; RETURN NEW;"
        ),
    ),
]

POLICY_TRIGGERS = [
    keys_fixed("policy_keys_fixed", "id", "vault_id"),
    pgtrigger.Trigger(
        name="policy_retention_only_grows",
        when=pgtrigger.Before,
        operation=pgtrigger.Update,
        declare=[
            ("old_policy", "public.policies_policy"),
            ("new_policy", "public.policies_policy"),
        ],
        func=(
            "old_policy := OLD; new_policy := NEW; "
            f"IF {_RETENTION_FROZEN.format(vault='OLD.vault_id')} AND {_SHORTER} THEN "
            + refuse("immutable_vault", "the retention of policy % can only grow", "OLD.name")
            + " END IF; RETURN NEW;"
        ),
    ),
]


# --- recovery points ------------------------------------------------------------------------


def _point_guard(check: str, ret: str) -> str:
    # The vault is looked up by the point's own vault_id, which no one can change; if the
    # vault row cannot be found the point counts as protected.
    return (
        f"IF {PROTECTED_POINT} THEN "
        "SELECT v.immutability INTO vault_immutability FROM public.vaults_vault v "
        "WHERE v.id = OLD.vault_id; "
        "IF NOT FOUND OR vault_immutability IN ('enabled', 'locked') THEN "
        f"{check} END IF; END IF; RETURN {ret};"
    )


POINT_TRIGGERS = [
    keys_fixed("point_keys_fixed", "id", "vault_id", "item_id", "source_vault", "source_point_ref"),
    # Defence in depth (SPEC 3.2): whatever the caller, PostgreSQL refuses to delete a vault-
    # or archive-tier point of an immutable vault before its expiry, or to shorten its expiry.
    pgtrigger.Trigger(
        name="point_immutable_delete",
        when=pgtrigger.Before,
        operation=pgtrigger.Delete,
        declare=[("vault_immutability", "text")],
        func=_point_guard(
            refuse(
                "immutable_vault",
                "recovery point % is protected until %",
                "OLD.id",
                "OLD.expires_at",
            ),
            "OLD",
        ),
    ),
    pgtrigger.Trigger(
        name="point_immutable_expiry",
        when=pgtrigger.Before,
        operation=pgtrigger.Update,
        declare=[("vault_immutability", "text")],
        func=_point_guard(
            # Moving a protected point into the operational tier would take it out of
            # immutability's cover (and out of this trigger's): refused too.
            "IF NEW.expires_at < OLD.expires_at OR NEW.tier = 'snapshot' THEN "
            + refuse(
                "immutable_vault",
                "the expiry of recovery point % cannot be shortened, nor the point moved "
                "out of its tier",
                "OLD.id",
            )
            + " END IF;",
            "NEW",
        ),
    ),
]


# --- a vault's storage totals ---------------------------------------------------------------

# The portfolio sorts 10,000 vaults by storage used (issue 15): summing a million points per
# request cannot be fast, so each vault keeps its stored bytes per tier group, kept by the
# database itself whatever writes the points (services, sweeps, bulk loads, cascades). One
# statement-level trigger per event reads the statement's transition table, so a bulk insert
# of a million points updates each vault once. SQLite (the embedded quick start) gets the
# same totals from row-level triggers that vaults/migrations/0010 creates there.
# Tier groups as vaults.selectors.STORAGE_TIERS reads them.
STORAGE_GROUPS = {
    "snapshot": ("snapshot",),
    "standard": ("snapshot_and_vault", "vault_standard"),
    "archive": ("vault_archive",),
}


def _bytes_of(alias: str, group: str) -> str:
    tiers = ", ".join(f"'{tier}'" for tier in STORAGE_GROUPS[group])
    return f"CASE WHEN {alias}.tier IN ({tiers}) THEN {alias}.stored_bytes ELSE 0 END"


def _add_totals(delta_rows: str) -> str:
    """Add the per-vault sums of ``delta_rows`` (vault_id and one column per group)."""
    sets = ", ".join(
        f"stored_{group}_bytes = v.stored_{group}_bytes + d.{group}" for group in STORAGE_GROUPS
    )
    sums = ", ".join(f"SUM({group}) AS {group}" for group in STORAGE_GROUPS)
    return (
        f"UPDATE public.vaults_vault v SET {sets} FROM (SELECT vault_id, {sums} FROM "
        f"({delta_rows}) AS delta GROUP BY vault_id) AS d WHERE v.id = d.vault_id; RETURN NULL;"
    )


def _signed(alias: str, sign: str) -> str:
    return ", ".join(f"{sign}({_bytes_of(alias, group)}) AS {group}" for group in STORAGE_GROUPS)


def _point_rows(alias: str, table: str, sign: str) -> str:
    return f"SELECT {alias}.vault_id, {_signed(alias, sign)} FROM {table} {alias}"


# Only rows whose tier or size changed touch their vault on update (a verification does not).
STORAGE_TOTAL_TRIGGERS = statement_triggers(
    "point_storage",
    "points",
    _add_totals,
    _point_rows,
    "SELECT n.vault_id, "
    + ", ".join(
        f"({_bytes_of('n', group)}) - ({_bytes_of('o', group)}) AS {group}"
        for group in STORAGE_GROUPS
    )
    + " FROM new_points n JOIN old_points o ON o.id = n.id"
    " WHERE o.tier IS DISTINCT FROM n.tier"
    " OR o.stored_bytes IS DISTINCT FROM n.stored_bytes",
)
POINT_TRIGGERS += STORAGE_TOTAL_TRIGGERS


def _add_item_counts(rows: str, sign: str) -> str:
    return (
        f"UPDATE public.vaults_vault v SET stored_item_count = v.stored_item_count {sign} d.n "
        f"FROM (SELECT vault_id, COUNT(*) AS n FROM {rows} GROUP BY vault_id) AS d "
        "WHERE v.id = d.vault_id; RETURN NULL;"
    )


# The portfolio's "Items" column and sort: each vault's item count, kept the same way.
ITEM_COUNT_TRIGGERS = [
    pgtrigger.Trigger(
        name="item_count_insert",
        when=pgtrigger.After,
        operation=pgtrigger.Insert,
        level=pgtrigger.Statement,
        referencing=pgtrigger.Referencing(new="new_items"),
        func=_add_item_counts("new_items", "+"),
    ),
    pgtrigger.Trigger(
        name="item_count_delete",
        when=pgtrigger.After,
        operation=pgtrigger.Delete,
        level=pgtrigger.Statement,
        referencing=pgtrigger.Referencing(old="old_items"),
        func=_add_item_counts("old_items", "-"),
    ),
]
ITEM_TRIGGERS += ITEM_COUNT_TRIGGERS


def sqlite_storage_total_triggers() -> list[str]:
    """The same totals (and item counts) on SQLite, row by row (no transition tables)."""

    def change(alias: str, sign: str) -> str:
        return ", ".join(
            f"stored_{group}_bytes = stored_{group}_bytes {sign} ({_bytes_of(alias, group)})"
            for group in STORAGE_GROUPS
        )

    both = ", ".join(
        f"stored_{group}_bytes = stored_{group}_bytes + ({_bytes_of('NEW', group)})"
        f" - ({_bytes_of('OLD', group)})"
        for group in STORAGE_GROUPS
    )
    table, vault, items = "vaults_recoverypoint", "vaults_vault", "vaults_protecteditem"
    return [
        f"CREATE TRIGGER IF NOT EXISTS item_count_insert AFTER INSERT ON {items} BEGIN "
        f"UPDATE {vault} SET stored_item_count = stored_item_count + 1 WHERE id = NEW.vault_id; "
        "END",
        f"CREATE TRIGGER IF NOT EXISTS item_count_delete AFTER DELETE ON {items} BEGIN "
        f"UPDATE {vault} SET stored_item_count = stored_item_count - 1 WHERE id = OLD.vault_id; "
        "END",
        f"CREATE TRIGGER IF NOT EXISTS point_storage_insert AFTER INSERT ON {table} BEGIN "
        f"UPDATE {vault} SET {change('NEW', '+')} WHERE id = NEW.vault_id; END",
        f"CREATE TRIGGER IF NOT EXISTS point_storage_delete AFTER DELETE ON {table} BEGIN "
        f"UPDATE {vault} SET {change('OLD', '-')} WHERE id = OLD.vault_id; END",
        f"CREATE TRIGGER IF NOT EXISTS point_storage_update AFTER UPDATE OF tier, stored_bytes "
        f"ON {table} WHEN OLD.tier IS NOT NEW.tier OR OLD.stored_bytes IS NOT NEW.stored_bytes "
        f"BEGIN UPDATE {vault} SET {both} WHERE id = NEW.vault_id; END",
    ]


def backfill_storage_totals_sql() -> str:
    """Set every vault's totals from its points and items (the migration that adds them)."""
    sets = ", ".join(
        f"stored_{group}_bytes = COALESCE((SELECT SUM({_bytes_of('p', group)}) FROM "
        f"vaults_recoverypoint p WHERE p.vault_id = vaults_vault.id), 0)"
        for group in STORAGE_GROUPS
    )
    sets += (
        ", stored_item_count = (SELECT COUNT(*) FROM vaults_protecteditem i "
        "WHERE i.vault_id = vaults_vault.id)"
    )
    return f"UPDATE vaults_vault SET {sets}"


SQLITE_STORAGE_TOTAL_TRIGGERS = (
    "item_count_insert",
    "item_count_delete",
    "point_storage_insert",
    "point_storage_delete",
    "point_storage_update",
    # vaults/tallies.py: each vault's newest backup.
    "job_last_backup_insert",
    "job_last_backup_update",
    "job_last_backup_delete",
)


def sqlite_totals_paused(operations: list[Any]) -> list[Any]:
    """Wrap a migration's operations that rebuild the vault, item, point or job table on SQLite.

    SQLite alters a table by building a new one and renaming it: a trigger on a rebuilt table
    is dropped with it, and a trigger naming the vault table from another table stops the
    rename ("no such table: main.vaults_vault"). So the storage-total triggers go first and
    come back last. On PostgreSQL both steps do nothing. Every later migration that changes
    one of those tables' columns wraps its operations in this.
    """

    def drop(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == "sqlite":
            for name in SQLITE_STORAGE_TOTAL_TRIGGERS:
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {name}")

    def create(apps: Any, schema_editor: Any) -> None:
        from vaults.tallies import sqlite_tally_triggers

        if schema_editor.connection.vendor == "sqlite":
            for sql in [*sqlite_storage_total_triggers(), *sqlite_tally_triggers()]:
                schema_editor.execute(sql)

    from django.db import migrations

    return [
        migrations.RunPython(drop, create),
        *operations,
        migrations.RunPython(create, drop),
    ]
