"""Delivering alerts: a signed JSON webhook and an e-mail, each by its own Celery task (so a
failing webhook never re-sends an e-mail, and the other way round), retried with backoff.

The tasks live here, beside what they run, rather than in ``portal/tasks.py``: raising an
alert (``portal/alerts.py``) queues them, and the tasks module also holds the audit chain's
tasks, which raise alerts; importing it from the alerts would be an import circle.
``portal/tasks.py`` re-exports them for the worker's task discovery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import urllib.error
import urllib.request

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail

from .models import Alert

RETRY = {
    "retry_backoff": 5,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 8,
    "soft_time_limit": 30,
    "time_limit": 60,
    # Repeating a delivery is harmless: receivers see the same alert id and count.
    "acks_late": True,
}


@shared_task(
    name="holdfast.deliver_alert_webhook",
    autoretry_for=(urllib.error.URLError, OSError, ConnectionError),
    **RETRY,
)
def deliver_alert_webhook(alert_id: int) -> None:
    alert = Alert.objects.filter(pk=alert_id).first()
    if alert is not None:
        deliver_webhook(alert)


@shared_task(
    name="holdfast.deliver_alert_email",
    autoretry_for=(smtplib.SMTPException, OSError, ConnectionError),
    **RETRY,
)
def deliver_alert_email(alert_id: int) -> None:
    alert = Alert.objects.filter(pk=alert_id).first()
    if alert is not None:
        deliver_email(alert)


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
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver_webhook(alert: Alert) -> int:
    """POST the alert as JSON, signed; raises on a non-2xx answer so the task retries."""
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
    subject = f"[Holdfast] {alert.get_severity_display()}: {alert.kind.replace('_', ' ')}"
    if alert.vault_name:
        subject += f" on {alert.vault_name}"
    return send_mail(
        subject,
        f"{alert.message}\n\nFirst seen {alert.first_at:%Y-%m-%d %H:%M} UTC.",
        None,
        settings.HOLDFAST_ALERT_EMAILS,
    )
