"""Raising alerts (SPEC 3.8). Security alerts cannot be switched off; job alerts can be muted
per vault (later). Called from inside the gate's transaction, so an alert exists exactly when
the decision that raised it does."""

from __future__ import annotations

from django.db.models import F

from . import clock
from .models import Alert

SECURITY_ALERTS = {
    "backup_data_deleted": ("critical", "Backup data deleted"),
    "upcoming_purge": ("warning", "Soft-deleted item will be purged soon"),
    "purge_complete": ("warning", "Soft-deleted item purged"),
    "soft_delete_disabled": ("critical", "Soft delete disabled"),
    "policy_retention_reduced": ("warning", "Policy modified to shorter retention"),
    "protection_retention_reduced": ("warning", "Protection modified to shorter retention"),
    "mua_removed": ("critical", "Multi-user authorization removed"),
    "immutability_disabled": ("critical", "Immutability disabled"),
    "operation_refused": ("warning", "Operation refused by immutability or MUA"),
    "corruption_found": ("critical", "Verification found corruption"),
}
JOB_ALERTS = {
    "backup_failed": ("warning", "Backup failed"),
    "restore_failed": ("warning", "Restore failed"),
}


def raise_alert(kind: str, *, vault_name: str = "", target: str = "", message: str) -> Alert:
    """Open an alert, or count a repeat of the same open one."""
    if kind in SECURITY_ALERTS:
        severity, _ = SECURITY_ALERTS[kind]
        category = Alert.Category.SECURITY
    else:
        severity, _ = JOB_ALERTS[kind]
        category = Alert.Category.JOB
    now = clock.now()
    existing = (
        Alert.objects.select_for_update()
        .filter(kind=kind, vault_name=vault_name, target=target)
        .exclude(status=Alert.Status.RESOLVED)
        .first()
    )
    if existing is not None:
        Alert.objects.filter(pk=existing.pk).update(
            count=F("count") + 1, last_at=now, message=message
        )
        existing.refresh_from_db()
        return existing
    return Alert.objects.create(
        kind=kind,
        category=category,
        severity=severity,
        vault_name=vault_name,
        target=target,
        message=message,
        first_at=now,
        last_at=now,
    )
