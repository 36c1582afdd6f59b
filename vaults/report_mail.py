"""The weekly compliance report by e-mail (issue 18): last ISO week's PDF to
``HOLDFAST_REPORT_EMAILS`` (empty: off), sent once per week however many beat processes
run the task and however often.

The week is claimed in the audit log: inside one transaction, a PostgreSQL advisory lock
keyed for these e-mails makes a second sender wait; it then finds the week's
``report_email`` record (committed with the first send) and stops. The mail is sent inside
the claiming transaction, so a send that fails leaves the week unclaimed and the next run
tries again (the schedule runs daily, so a missed Monday is caught up the next day).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time, timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import connection, transaction
from django.db.models import Q

from portal import audit_link, clock, gate
from portal.models import AuditRecord

from . import report_files, reports

logger = logging.getLogger(__name__)

OPERATION = "report_email"
# A fixed 63-bit key for pg_advisory_xact_lock: "holdfast report e-mail".
LOCK_KEY = 0x486F6C645265706F & 0x7FFFFFFFFFFFFFFF


def last_week(now: datetime) -> tuple[str, datetime, datetime]:
    """The ISO week before ``now``'s (UTC): its key ("2026-W09") and ``[Monday, Monday)``."""
    today = now.astimezone(UTC).date()
    monday = today - timedelta(days=today.weekday())
    start = datetime.combine(monday - timedelta(days=7), time(), tzinfo=UTC)
    year, week, _ = start.isocalendar()
    return f"{year}-W{week:02d}", start, start + timedelta(days=7)


def send_weekly() -> str:
    """Send last week's report unless it went already: "sent", "sent already", "off" (no
    recipients) or "unavailable" (no PostgreSQL)."""
    recipients = list(settings.HOLDFAST_REPORT_EMAILS)
    if not recipients:
        return "off"
    key, start, end = last_week(clock.now())
    try:
        return _claim_and_send(key, start, end, recipients)
    except reports.ReportUnavailable as error:
        logger.warning("Compliance report not e-mailed: %s", error)
        return "unavailable"


def _claim_and_send(key: str, start: datetime, end: datetime, recipients: list[str]) -> str:
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])
        # Pending records too: a claim committed but not linked into the chain yet.
        if audit_link.exists(
            Q(operation=OPERATION, outcome=AuditRecord.Outcome.ALLOWED, target=key)
        ):
            return "sent already"
        report = reports.compliance(start=start, end=end)

        def send(check: gate.Check) -> int:
            message = EmailMessage(
                subject=f"Holdfast compliance report, week {key}",
                body=_body(report, key),
                to=recipients,
            )
            message.attach(
                f"holdfast-compliance-{key}.pdf",
                report_files.as_pdf(report, generated=clock.now()),
                "application/pdf",
            )
            return message.send()

        gate.execute(
            OPERATION,
            actor=None,
            target=key,
            change=send,
            before={},
            after=lambda _: {"week": key, "recipients": len(recipients)},
        )
    logger.info("Compliance report for %s e-mailed to %d recipients.", key, len(recipients))
    return "sent"


def _body(report: reports.ComplianceReport, key: str) -> str:
    totals = report.totals
    last_day = report.end - timedelta(days=1)
    return (
        f"Compliance report for week {key} ({report.start:%Y-%m-%d} to {last_day:%Y-%m-%d}, "
        f"UTC), attached as a PDF.\n\n"
        f"Vaults: {totals.vaults}; items: {totals.items}.\n"
        f"Backups succeeded: {totals.succeeded}; failed: {totals.failed}.\n"
        f"RPO met: {report_files.share(totals.rpo_met)} of the week.\n"
        f"Items with a good restore drill: {totals.items_drilled}.\n"
        f"Immutability changes: {totals.immutability_changes}; "
        f"soft delete changes: {totals.soft_delete_changes}.\n\n"
        "What each figure means: docs/reports.md.\n"
    )
