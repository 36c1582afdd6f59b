"""Raising alerts (SPEC 3.8). Security alerts cannot be switched off; a vault's job alerts can
be muted (the vaults app registers how to tell, :func:`register_mute`). Called from inside the
gate's transaction, so an alert exists exactly when the decision that raised it does; it is
delivered (e-mail, webhook) after that commits, by ``portal/delivery.py``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F

from . import clock
from .delivery import deliver_alert_email, deliver_alert_webhook
from .models import Alert

logger = logging.getLogger(__name__)

SECURITY_ALERTS = {
    "backup_data_deleted": ("critical", "Backup data deleted"),
    "upcoming_purge": ("warning", "Soft-deleted item will be purged soon"),
    "purge_complete": ("warning", "Soft-deleted item purged"),
    "soft_delete_disabled": ("critical", "Soft delete disabled"),
    "policy_retention_reduced": ("warning", "Policy modified to shorter retention"),
    "protection_retention_reduced": ("warning", "Protection modified to shorter retention"),
    "point_retention_reduced": ("warning", "Recovery point's retention shortened"),
    "mua_removed": ("critical", "Multi-user authorization removed"),
    "guard_weaken_requested": ("critical", "Weakening of a Resource Guard requested"),
    "immutability_disabled": ("critical", "Immutability disabled"),
    "operation_refused": ("warning", "Operation refused by immutability or MUA"),
    "corruption_found": ("critical", "Verification found corruption"),
    "storage_lock_missing": ("critical", "Storage lock missing or shorter than the expiry"),
    "audit_chain_broken": ("critical", "Audit log does not match its chain or anchors"),
    "audit_anchor_failed": ("warning", "Audit anchor could not be written"),
    "account_power_granted": ("warning", "Account granted security_admin or superuser"),
    "authenticator_removed": ("warning", "Account's two-factor authenticator removed"),
    # SPEC 8.3: the storage holds a point the database no longer names; the data is kept.
    "point_missing": ("critical", "Recovery point missing from the database"),
    "replication_stopped": ("warning", "Replication to a replica vault stopped"),
    # SPEC 3.12: a point did not restore intact in a drill; its backups may not restore.
    "drill_failed": ("critical", "Restore drill failed"),
}
JOB_ALERTS = {
    "backup_failed": ("warning", "Backup failed"),
    "restore_failed": ("warning", "Restore failed"),
    "copy_failed": ("warning", "Copy to the replica vault failed"),
    "replication_lag": ("warning", "Replication lag past the policy's RPO"),
    # SPEC 3.13: jobs for a host that stayed offline failed; target "host:<name>".
    "host_offline": ("warning", "Jobs failed waiting for an offline host"),
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
        _enqueue_delivery(existing)
        return existing
    alert = Alert.objects.create(
        kind=kind,
        category=category,
        severity=severity,
        vault_name=vault_name,
        target=target,
        message=message,
        first_at=now,
        last_at=now,
    )
    _enqueue_delivery(alert)
    return alert


# --- delivery after commit (the tasks are portal/delivery.py) -------------------------------

# Filled by apps' AppConfig.ready(): each says whether an alert of its own is muted (the vaults
# app: a job alert of a vault whose owners muted them). The kernel imports no app.
_mutes: list[Callable[[Alert], bool]] = []


def register_mute(muted: Callable[[Alert], bool]) -> None:
    """Called by an app's ``ready()``: ``muted(alert)`` says whether to skip its delivery (the
    alert is still listed)."""
    if muted not in _mutes:
        _mutes.append(muted)


def _enqueue_delivery(alert: Alert) -> None:
    if any(muted(alert) for muted in _mutes):
        return
    alert_id = alert.pk
    # After commit: an alert of a rolled-back decision is never delivered. The webhook hears
    # every occurrence (same id, growing count); e-mail only the first, so a repeating alert
    # does not flood inboxes.
    if settings.HOLDFAST_ALERT_WEBHOOK_URL:
        transaction.on_commit(lambda: _send(deliver_alert_webhook, alert_id))
    if settings.HOLDFAST_ALERT_EMAILS and alert.count == 1:
        transaction.on_commit(lambda: _send(deliver_alert_email, alert_id))


def _send(task: Any, alert_id: int) -> None:
    """Queue a delivery; with the broker down the alert stays listed in the dashboard and the
    request that raised it still succeeds (its decision is already committed)."""
    try:
        task.delay(alert_id)
    except Exception:  # kombu raises several kinds when the broker is unreachable
        logger.exception("alert %s: delivery could not be queued (broker unreachable?)", alert_id)
