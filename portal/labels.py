"""Words for identifiers: alert kinds, audit operations, job kinds and states.

Pages never show a raw identifier such as ``operation_refused``: the ``label`` filter
(portal/templatetags/holdfast.py) looks it up here, and an identifier nobody has named yet
reads as a sentence made from its words, so a new kind is never shown raw.
``tests/test_site_frame.py`` checks that every alert kind, gate operation, guard operation and
job kind the code knows has a hand-written entry below.
"""

from __future__ import annotations

from .operations import OPERATIONS

# Alert kinds (portal/alerts.py SECURITY_ALERTS and JOB_ALERTS).
ALERT_LABELS: dict[str, str] = {
    "backup_data_deleted": "Backup data deleted",
    "upcoming_purge": "Soft-deleted item will be purged soon",
    "purge_complete": "Soft-deleted item purged",
    "soft_delete_disabled": "Soft delete disabled",
    "policy_retention_reduced": "Policy changed to a shorter retention",
    "protection_retention_reduced": "Item moved to a shorter retention",
    "point_retention_reduced": "Recovery point's retention shortened",
    "mua_removed": "Multi-user authorization removed",
    "guard_weaken_requested": "Weakening of a Resource Guard requested",
    "immutability_disabled": "Immutability disabled",
    "operation_refused": "Operation refused by immutability or MUA",
    "corruption_found": "Verification found corruption",
    "storage_lock_missing": "Storage lock missing or shorter than the expiry",
    "audit_chain_broken": "Audit log does not match its chain",
    "audit_anchor_failed": "Audit anchor could not be written",
    "account_power_granted": "Account granted security admin or superuser",
    "authenticator_removed": "Two-factor authenticator removed",
    "point_missing": "Recovery point missing from the database",
    "backup_failed": "Backup failed",
    "restore_failed": "Restore failed",
    "copy_failed": "Copy to the replica failed",
    "replication_lag": "Replica behind its RPO",
    "replication_stopped": "Replication stopped",
    "drill_failed": "Restore drill failed",
    "host_offline": "Jobs failed waiting for an offline host",
}

# Gate operations: the label each has in the gate's table (portal/operations.py), but where
# the audit log says it shorter, as here.
OPERATION_LABELS: dict[str, str] = {
    "approval_cancel": "Cancel a request",
    "approval_expire": "Expire a request",
    "backup_run": "Back up now",
    "backup_dispatch": "Scheduled backups",
    "backup_schedule": "Scheduled backup",
    "guard_update": "Add protection to a Resource Guard",
    "item_undelete": "Undelete an item",
    "job_alerts_mute": "Mute or unmute job alerts",
    "lock_verify_schedule": "Scheduled storage lock check",
    "lock_verify_start": "Verify storage locks",
    "password_change": "Change own password",
    "point_expire": "Expire a recovery point",
    "point_lock_verified": "Storage lock read back",
    "point_mark_verified": "Record a verification",
    "point_missing_found": "Keep data of a missing point",
    "point_rehydrate": "Rehydrate from archive",
    "point_rehydration_end": "End a rehydration",
    "point_retain_until": "Change retain-until date",
    "point_snapshot_lapse": "End instant restore",
    "point_tier_move": "Move to the archive tier",
    "policy_delete": "Delete a backup policy",
    "storage_lock_apply": "Lock objects in storage",
    "user_update": "Change a user",
    "vault_guard_remove": "Remove the Resource Guard",
    "vault_guard_set": "Set the Resource Guard",
    "vault_update": "Change a vault",
    "verify_schedule": "Scheduled verification",
    "replica_set": "Pair with a replica vault",
    "replica_remove": "Stop replication",
    "copy_schedule": "Queue a copy to the replica",
    "copy_start": "Copy a recovery point to the replica",
    "replica_point_record": "Record a replica's recovery point",
    "drill_schedule": "Scheduled restore drill",
    "point_drill_record": "Record a restore drill",
}

# What a Resource Guard can protect (guards/models.py ResourceGuard.Operation).
GUARD_OPERATION_LABELS: dict[str, str] = {
    "disable_soft_delete": "Disable soft delete or shorten its retention",
    "disable_mua": "Remove the Resource Guard from a vault",
    "disable_immutability": "Disable immutability",
    "modify_policy_weaken": "Weaken a backup policy",
    "modify_protection_weaken": "Move an item to a weaker policy",
    "stop_protection_delete_data": "Stop protection, delete data",
    "stop_protection_retain_data": "Stop protection, retain data",
    "delete_recovery_point": "Delete a recovery point",
    "delete_vault": "Delete the vault",
    "stop_replication": "Stop replication to the replica vault",
}

# Job kinds and states (vaults/models.py Job.Kind, Job.Status).
JOB_LABELS: dict[str, str] = {
    "backup": "Backup",
    "restore": "Restore",
    "verify": "Verification",
    "tier_move": "Move to archive",
    "rehydrate": "Rehydration",
    "sweep": "Sweep",
    "storage_lock": "Storage lock",
    "lock_verify": "Storage lock check",
    "queued": "Queued",
    "running": "Running",
    "completed": "Completed",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "copy": "Copy to replica",
    "drill": "Restore drill",
}

# States a page shows: immutability, soft delete, approvals, audit outcomes and sources.
STATE_LABELS: dict[str, str] = {
    "enabled": "Enabled",
    "disabled": "Disabled",
    "locked": "Enabled and locked",
    "always_on": "Always-on",
    "pending": "Pending",
    "approved": "Approved",
    "denied": "Denied",
    "expired": "Expired",
    "revoked": "Revoked",
    "allowed": "Allowed",
    "refused": "Refused",
    "web": "Web page",
    "api": "API",
    "admin": "Django admin",
    "shell": "Shell",
    "command": "Command",
    "task": "Holdfast (task)",
    "lock_immutability": "Lock immutability",
    "always_on_soft_delete": "Make soft delete always-on",
    "elevation": "Elevation on a Resource Guard",
    "reader": "Reader",
    "operator": "Operator",
    "backup_admin": "Backup admin",
    "security_admin": "Security admin",
}

# Refusal codes (SPEC 4), as the audit log's Outcome column shows them.
CODE_LABELS: dict[str, str] = {
    "permission_denied": "role does not allow it",
    "validation_error": "invalid input",
    "not_found": "not found",
    "storage_unavailable": "storage unavailable",
    "immutable_vault": "vault is immutable",
    "immutability_locked": "immutability is locked",
    "mua_required": "needs an elevation (MUA)",
    "confirmation_mismatch": "typed name did not match",
    "self_approval": "own request",
    "self_grant": "grant for own account",
    "soft_delete_always_on": "soft delete is always-on",
    "retention_suspended_items": "items with suspended protection",
    "approval_not_pending": "request no longer pending",
    "vault_not_empty": "vault not empty",
    "guard_in_use": "guard still in use",
    "policy_in_use": "policy still in use",
    "point_not_expired": "point not expired",
    "point_archived": "point is archived",
    "otp_required": "needs a two-factor code",
    "otp_invalid": "wrong two-factor code",
    "requester_not_superuser": "requester no longer an installation admin",
}

LABELS: dict[str, str] = {
    **CODE_LABELS,
    **STATE_LABELS,
    **JOB_LABELS,
    **GUARD_OPERATION_LABELS,
    **{name: operation.label for name, operation in OPERATIONS.items()},
    **OPERATION_LABELS,
    **ALERT_LABELS,
}


def label(identifier: str | None) -> str:
    if not identifier:
        return ""
    text = str(identifier)
    if text in LABELS:
        return LABELS[text]
    words = text.replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:]
