"""Raising alerts (SPEC 3.8). Security alerts cannot be switched off; job alerts can be muted
per vault (later). Called from inside the gate's transaction, so an alert exists exactly when
the decision that raised it does."""

from __future__ import annotations

import logging
from typing import Any

from django.db.models import F

from . import clock
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


# --- delivery (e-mail and webhook, retried by Celery) -----------------------------------------


def _muted(alert: Alert) -> bool:
    """Job alerts of a vault whose owners muted them are not delivered (still listed)."""
    if alert.category != Alert.Category.JOB or not alert.vault_name:
        return False
    from vaults.models import Vault

    return Vault.objects.filter(name=alert.vault_name, mute_job_alerts=True).exists()


def _enqueue_delivery(alert: Alert) -> None:
    from django.conf import settings
    from django.db import transaction

    if _muted(alert):
        return

    from .tasks import deliver_alert_email, deliver_alert_webhook

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


def alert_payload(alert: Alert) -> dict[str, object]:
    return {
        "id": alert.pk,
        "kind": alert.kind,
        "category": alert.category,
        "severity": alert.severity,
        "status": alert.status,
        "vault": alert.vault_name,
        "target": alert.target,
        "message": alert.message,
        "count": alert.count,
        "first_at": alert.first_at.isoformat(),
        "last_at": alert.last_at.isoformat(),
    }


def sign(body: bytes, secret: str) -> str:
    """The ``X-Holdfast-Signature`` header: HMAC-SHA256 of the exact body, hex encoded."""
    import hashlib
    import hmac

    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver_webhook(alert: Alert) -> int:
    """POST the alert as JSON, signed; raises on a non-2xx answer so the task retries."""
    import json
    import urllib.request

    from django.conf import settings

    body = json.dumps(alert_payload(alert), sort_keys=True).encode()
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's configuration
        settings.HOLDFAST_ALERT_WEBHOOK_URL,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "Holdfast-Alerts/1",
            "X-Holdfast-Event": alert.kind,
            "X-Holdfast-Signature": sign(body, settings.HOLDFAST_ALERT_WEBHOOK_SECRET),
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return int(response.status)


def deliver_email(alert: Alert) -> int:
    from django.conf import settings
    from django.core.mail import send_mail

    subject = f"[Holdfast] {alert.get_severity_display()}: {alert.kind.replace('_', ' ')}"
    if alert.vault_name:
        subject += f" on {alert.vault_name}"
    return send_mail(
        subject,
        f"{alert.message}\n\nFirst seen {alert.first_at:%Y-%m-%d %H:%M} UTC.",
        None,
        settings.HOLDFAST_ALERT_EMAILS,
    )
