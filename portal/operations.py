"""The gate's table: every operation, the capability it needs, its absolute rules, the
Resource Guard operation that protects it and the security alert it raises.

The single place to read which checks an operation needs (``portal/gate.py`` runs them;
``portal/gate_rules.py`` holds the rules). Operation names appear in audit records: never
rename one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .gate_rules import (
    Check,
    Rule,
    account_power_unchanged_by_shell,
    active_elevation,
    approval_name_typed,
    approval_pending,
    authenticator_enrolment_valid,
    confirmation_matches,
    current_password_given,
    elevation_is_own_and_active,
    expiry_not_shortened,
    grant_not_for_own_account,
    grant_requester_still_installation_admin,
    guard_kept_while_locked,
    guard_not_in_use,
    item_data_deletable,
    item_is_soft_deleted,
    no_enhanced_to_standard,
    no_suspended_items_for_retention_increase,
    no_unexpired_points_in_immutable_vault,
    not_own_request,
    own_request,
    password_set_by_owner_of_power,
    point_has_expired,
    point_not_protected,
    policy_not_in_use,
    purge_count_confirmed,
    replica_kept_while_locked,
    retention_not_shortened,
    schedule_kept_by_managers,
    second_factor,
    soft_delete_not_always_on,
    soft_delete_shortens,
    vault_is_empty,
    vault_not_a_replica,
    vault_not_locked,
)

# When an operation's guard or alert applies only to some calls.


def _weakens(check: Check) -> bool:
    return bool(check.facts.get("weaker"))


def _replaces_guard(check: Check) -> bool:
    """Judged on the vault row locked for this decision, not the caller's copy: a copy read
    before a guard was put on the vault would make a replacement look like a first guard."""
    vault, guard = check.vault, check.facts.get("guard")
    return (
        vault is not None
        and vault.resource_guard_id is not None
        and (guard is None or vault.resource_guard_id != guard.pk)
    )


def _shortens(check: Check) -> bool:
    return bool(check.facts.get("retention_shorter"))


def _cancels_schedule(check: Check) -> bool:
    return bool(check.facts.get("scheduled_backup"))


def _grants_power_directly(check: Check) -> bool:
    return bool(check.facts.get("direct_power"))


# --- the table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    name: str
    capability: str
    rules: tuple[Rule, ...] = ()
    # The Resource Guard operation (SPEC 3.4) that protects this one, if any, and when it
    # applies only to some calls (e.g. a policy edit that weakens), the condition.
    mua: str | None = None
    mua_when: Callable[[Check], bool] | None = None
    label: str = ""
    # The security alert (SPEC 3.8) an allowed call raises, and when, if only sometimes.
    alert: str | None = None
    alert_when: Callable[[Check], bool] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("vault_create", "manage", label="Create a vault"),
        Operation("vault_update", "manage", label="Change a vault's properties"),
        Operation(
            "vault_delete",
            "manage",
            rules=(no_unexpired_points_in_immutable_vault, vault_is_empty, vault_not_a_replica),
            mua="delete_vault",
            label="Delete a vault",
        ),
        Operation(
            "immutability_enable",
            "manage",
            rules=(vault_not_locked,),
            label="Enable immutability",
        ),
        Operation(
            "immutability_disable",
            "manage",
            rules=(vault_not_locked,),
            mua="disable_immutability",
            label="Disable immutability",
            alert="immutability_disabled",
        ),
        Operation(
            "immutability_lock_request",
            "manage",
            rules=(vault_not_locked, confirmation_matches, second_factor),
            label="Ask to lock immutability",
        ),
        Operation(
            "immutability_lock",
            "approve",
            rules=(vault_not_locked,),
            label="Lock immutability",
        ),
        Operation("policy_create", "manage", label="Create a backup policy"),
        Operation(
            "policy_update",
            "manage",
            rules=(retention_not_shortened, no_suspended_items_for_retention_increase),
            mua="modify_policy_weaken",
            mua_when=_weakens,
            label="Change a backup policy",
            alert="policy_retention_reduced",
            alert_when=_shortens,
        ),
        Operation("policy_delete", "manage", rules=(policy_not_in_use,), label="Delete a policy"),
        Operation("item_protect", "manage", label="Protect an item"),
        Operation(
            "item_change_policy",
            "manage",
            rules=(no_enhanced_to_standard, retention_not_shortened),
            mua="modify_protection_weaken",
            mua_when=_weakens,
            label="Change an item's policy",
            alert="protection_retention_reduced",
            alert_when=_shortens,
        ),
        Operation(
            "protection_stop_retain",
            "manage",
            mua="stop_protection_retain_data",
            label="Stop protection, retain data",
        ),
        Operation(
            "protection_stop_delete",
            "manage",
            rules=(item_data_deletable,),
            mua="stop_protection_delete_data",
            label="Stop protection, delete data",
            alert="backup_data_deleted",
        ),
        Operation("protection_resume", "manage", label="Resume protection"),
        # Hosts (SPEC 3.13): the host an item is read on; a worker's first announcement.
        Operation("item_host_change", "manage", label="Change the host an item is read on"),
        Operation("host_announce", "system", label="Announce a new worker host"),
        Operation(
            "point_delete",
            "manage",
            rules=(point_not_protected,),
            mua="delete_recovery_point",
            label="Delete a recovery point",
            alert="backup_data_deleted",
        ),
        Operation(
            "point_retain_until",
            "manage",
            rules=(expiry_not_shortened,),
            # A shorter date is a delete that takes longer: the same guard operation.
            mua="delete_recovery_point",
            mua_when=_shortens,
            label="Change a recovery point's retain-until date",
            alert="point_retention_reduced",
            alert_when=_shortens,
        ),
        Operation("point_record", "system", label="Record a recovery point"),
        # Expiry is always allowed: immutability never keeps data past its expiry.
        Operation("point_expire", "system", rules=(point_has_expired,), label="Expire a point"),
        # The expiry sweep's batch (issue 20): one decision and one record for many points.
        Operation("points_expire", "system", rules=(point_has_expired,), label="Expire points"),
        Operation(
            "soft_delete_enable",
            "manage",
            rules=(soft_delete_not_always_on,),
            label="Enable soft delete",
        ),
        Operation(
            "soft_delete_disable",
            "manage",
            rules=(soft_delete_not_always_on, item_data_deletable, purge_count_confirmed),
            mua="disable_soft_delete",
            label="Disable soft delete",
            alert="soft_delete_disabled",
        ),
        Operation(
            "soft_delete_retention",
            "manage",
            rules=(soft_delete_not_always_on,),
            mua="disable_soft_delete",
            mua_when=soft_delete_shortens,
            label="Change soft delete retention",
        ),
        Operation(
            "soft_delete_always_on_request",
            "manage",
            rules=(soft_delete_not_always_on, confirmation_matches, second_factor),
            label="Ask to make soft delete always-on",
        ),
        Operation(
            "soft_delete_always_on",
            "approve",
            rules=(soft_delete_not_always_on,),
            label="Make soft delete always-on",
        ),
        Operation(
            "item_purge_warn",
            "system",
            label="Warn of an upcoming purge",
            alert="upcoming_purge",
        ),
        Operation("item_undelete", "manage", rules=(item_is_soft_deleted,), label="Undelete"),
        Operation(
            "item_purge",
            "system",
            rules=(item_data_deletable,),
            label="Purge a soft-deleted item",
            alert="purge_complete",
        ),
        Operation(
            "vault_guard_set",
            "manage",
            mua="disable_mua",
            mua_when=_replaces_guard,
            label="Protect a vault with a Resource Guard",
        ),
        Operation(
            "vault_guard_remove",
            "manage",
            rules=(guard_kept_while_locked,),
            mua="disable_mua",
            label="Remove the Resource Guard from a vault",
            alert="mua_removed",
        ),
        Operation("guard_create", "manage_guards", label="Create a Resource Guard"),
        # Strengthening only: adding protected operations or a description.
        Operation("guard_update", "manage_guards", label="Change a Resource Guard"),
        # Removing protected operations or deleting a guard is a lock action (SPEC 3.4).
        Operation(
            "guard_weaken_request",
            "manage_guards",
            rules=(guard_not_in_use, second_factor),
            label="Ask to weaken or delete a Resource Guard",
            alert="guard_weaken_requested",
        ),
        Operation(
            "guard_weaken",
            "approve",
            rules=(guard_not_in_use,),
            label="Weaken or delete a Resource Guard",
        ),
        Operation(
            "elevation_request",
            "manage",
            rules=(second_factor,),
            label="Request access on a Resource Guard",
        ),
        Operation(
            "elevation_release",
            "view",
            rules=(elevation_is_own_and_active,),
            label="Give up an elevation",
        ),
        Operation(
            "approval_approve",
            "approve",
            rules=(approval_pending, not_own_request, approval_name_typed, second_factor),
            label="Approve a request",
        ),
        Operation(
            "approval_deny",
            "approve",
            rules=(approval_pending, not_own_request, second_factor),
            label="Deny a request",
        ),
        Operation(
            "authenticator_enrol",
            "view",
            rules=(authenticator_enrolment_valid,),
            label="Enrol a two-factor authenticator",
        ),
        Operation("approval_cancel", "view", rules=(own_request, approval_pending), label="Cancel"),
        Operation("approval_expire", "system", label="Expire a pending request"),
        # The weekly compliance report; its record is the week's claim (vaults/report_mail.py).
        Operation("report_email", "system", label="E-mail the weekly compliance report"),
        Operation(
            "approval_revoke", "approve", rules=(active_elevation,), label="Revoke an elevation"
        ),
        # Jobs (SPEC 3.8): backups, restores, verification, tier moves and rehydration.
        # Backups and restores are always allowed under immutability (SPEC 3.2).
        Operation("backup_run", "operate", label="Run an on-demand backup"),
        # Records before the set-based dispatcher: one per (item, slot). Now one per tick,
        # naming every job it created (vaults/jobs/dispatch.py).
        Operation("backup_schedule", "system", label="Schedule a backup"),
        Operation("backup_dispatch", "system", label="Schedule the due backups"),
        Operation("restore_start", "operate", label="Start a restore"),
        # Reading a point's files out through the browser is a restore by another road.
        Operation("point_download", "operate", label="Download files from a recovery point"),
        Operation(
            "job_cancel",
            "operate",
            rules=(schedule_kept_by_managers,),
            # A scheduled backup skipped is protection stopped for its slot.
            mua="stop_protection_retain_data",
            mua_when=_cancels_schedule,
            label="Cancel a job",
        ),
        Operation("verify_start", "operate", label="Verify a recovery point"),
        Operation("verify_schedule", "system", label="Schedule a verification"),
        Operation("verifications_schedule", "system", label="Schedule verifications"),
        # Restore drills (SPEC 3.12): a point restored to scratch and re-hashed, then removed.
        Operation("drill_start", "operate", label="Run a restore drill of a recovery point"),
        Operation("drill_schedule", "system", label="Schedule a restore drill"),
        Operation("point_drill_record", "system", label="Record a restore drill's outcome"),
        Operation("point_rehydrate", "operate", label="Rehydrate a point from archive"),
        # A tier move keeps the point's expiry, so immutability allows it (SPEC 3.2).
        Operation("point_tier_move", "system", label="Move a point to the archive tier"),
        Operation("point_snapshot_lapse", "system", label="End a point's instant restore"),
        Operation("point_rehydration_end", "system", label="End a point's rehydration"),
        Operation("points_snapshot_lapse", "system", label="End points' instant restore"),
        Operation("points_rehydration_end", "system", label="End points' rehydration"),
        Operation("point_mark_corrupt", "system", label="Mark a point corrupt"),
        Operation("point_mark_verified", "system", label="Record a point's verification"),
        Operation("storage_lock_apply", "system", label="Lock a vault's objects in storage"),
        Operation("lock_verify_start", "operate", label="Verify a vault's storage locks"),
        Operation("lock_verify_schedule", "system", label="Schedule a storage lock check"),
        Operation(
            "point_lock_verified", "system", label="Record a point's storage lock as read back"
        ),
        Operation("point_missing_found", "system", label="Keep point data whose row is missing"),
        # Encryption at rest (SPEC 3.11): a vault from before it gets its data key on first use.
        Operation("vault_data_key_create", "system", label="Give a vault its data key"),
        # Replica vaults (SPEC 3.10): pairing, stopping it, the copy jobs and their points.
        Operation("replica_set", "manage", label="Pair a vault with a replica vault"),
        Operation(
            "replica_remove",
            "manage",
            rules=(replica_kept_while_locked,),
            mua="stop_replication",
            label="Stop replication to the replica vault",
            alert="replication_stopped",
        ),
        Operation("copy_schedule", "system", label="Queue a copy to the replica vault"),
        Operation("copy_start", "operate", label="Copy a recovery point to the replica now"),
        Operation("replica_point_record", "system", label="Record a replica's copy of a point"),
        Operation("job_alerts_mute", "manage", label="Mute or unmute a vault's job alerts"),
        Operation("alert_acknowledge", "respond", label="Acknowledge an alert"),
        Operation("alert_resolve", "respond", label="Resolve an alert"),
        # Installation administration: superusers, or the server's own shell commands. A grant
        # of power by a person is a pending user_role_grant (SPEC 3.9); from the shell
        # (``adduser``, the bootstrap) a new account gets it at once, with a security alert.
        Operation(
            "user_create",
            "installation",
            label="Create a user",
            alert="account_power_granted",
            alert_when=_grants_power_directly,
        ),
        Operation(
            "user_update",
            "installation",
            rules=(account_power_unchanged_by_shell, password_set_by_owner_of_power),
            label="Change a user's role or status",
        ),
        Operation(
            "user_role_grant",
            "approve",
            rules=(grant_not_for_own_account, grant_requester_still_installation_admin),
            label="Grant an account power",
            alert="account_power_granted",
        ),
        # Encryption at rest (SPEC 3.11), from the server's shell (``manage.py keys``): the
        # master key rewrapping every data key, and a vault's objects from before encryption
        # sealed. Their audit records carry key ids and counts, never key material.
        Operation("master_key_rotate", "installation", label="Rotate the master key"),
        Operation(
            "vault_encrypt",
            "installation",
            label="Encrypt a vault's objects from before encryption",
        ),
        Operation(
            "authenticator_reset",
            "installation",
            label="Remove an account's authenticator",
            alert="authenticator_removed",
        ),
        # Every account's own API tokens; the key is never written anywhere but the answer.
        Operation(
            "password_change",
            "account",
            rules=(current_password_given,),
            label="Change your own password",
        ),
        Operation("api_token_issue", "account", label="Issue an API token"),
        Operation("api_token_revoke", "account", label="Revoke an API token"),
    )
}
