"""Thin Celery tasks of the portal: the audit chain's anchoring and its daily full check.

Alert delivery's tasks are ``portal/delivery.py`` (why: its docstring); they are imported
here so the worker, which discovers each app's ``tasks`` module, registers them too."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import audit
from .delivery import deliver_alert_email, deliver_alert_webhook

__all__ = ["audit_anchor", "audit_verify", "deliver_alert_email", "deliver_alert_webhook"]

logger = logging.getLogger(__name__)


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
