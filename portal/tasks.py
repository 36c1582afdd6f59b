"""Thin Celery tasks of the portal: alert delivery, one task per channel so a failing
webhook never re-sends an e-mail (and the other way round)."""

from __future__ import annotations

import smtplib
import urllib.error

from celery import shared_task

from .alerts import deliver_email, deliver_webhook
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
