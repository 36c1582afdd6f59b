"""Thin Celery tasks of the portal: alert delivery, one task per channel so a failing
webhook never re-sends an e-mail (and the other way round); the audit chain's anchoring and
its daily full check."""

from __future__ import annotations

import logging
import smtplib
import urllib.error

from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import audit
from .alerts import deliver_email, deliver_webhook
from .models import Alert

logger = logging.getLogger(__name__)

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


@shared_task(
    name="holdfast.audit_anchor",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=3,
    soft_time_limit=600,
    time_limit=660,
    acks_late=True,  # a repeat finds the head anchored already
)
def audit_anchor() -> str:
    """Write the audit chain's head to the anchor stores (hourly; idempotent: the same head
    is one object per store, and a second run only extends its lock)."""
    result = audit.anchor()
    if result.refused:
        logger.error("Audit anchor not written: %s", result.refused)
        return "refused"
    for store, sentence in result.outcome.failed:
        logger.error("Audit anchor not written to %s: %s", store, sentence)
    return "ok" if result.ok else "partial"


@shared_task(
    name="holdfast.audit_verify",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    max_retries=3,
    soft_time_limit=3000,
    time_limit=3300,
    acks_late=True,  # read-only but for the alert, which counts repeats
)
def audit_verify() -> str:
    """The whole chain against every anchor (daily); a failure raises a security alert."""
    status = audit.verify_and_alert()
    for warning in status.warnings:
        logger.warning("Audit verification: %s", warning)
    return "ok" if status.ok else "broken"
