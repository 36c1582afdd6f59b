"""The periodic schedule, in one place: ``portal/settings.py`` imports it as
``CELERY_BEAT_SCHEDULE``, and django-celery-beat's DatabaseScheduler copies these entries
into its tables when beat starts (``setup_schedule`` -> ``update_from_dict``).

Every task here is idempotent (vaults/tasks.py), so a second beat or a late message does
no harm; ``expires`` drops a message that waited longer than its period.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # Enqueue each due (item, slot) once; a minute's lateness is what a slot may wait.
    "holdfast-dispatch-backups": {
        "task": "holdfast.dispatch_backups",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # Fail jobs whose worker died (stale heartbeat); re-send queued jobs whose message is lost.
    "holdfast-sweep-jobs": {
        "task": "holdfast.sweep_jobs",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    # Expired points (rows and data), lapsed snapshots and rehydrations, expired approvals.
    "holdfast-sweep-points": {
        "task": "holdfast.sweep_points",
        "schedule": crontab(minute="*/15"),
        "options": {"expires": 600},
    },
    # Orphan manifests and chunk garbage collection, every vault.
    "holdfast-sweep-storage": {
        "task": "holdfast.sweep_storage",
        "schedule": crontab(minute=30, hour="*/6"),
        "options": {"expires": 3 * 3600},
    },
    # Replica vaults (SPEC 3.10): copies still missing, retried with a backoff; lag alerts.
    "holdfast-replicate": {
        "task": "holdfast.replicate",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "holdfast-schedule-tier-moves": {
        "task": "holdfast.schedule_tier_moves",
        "schedule": crontab(minute=10, hour=1),
        "options": {"expires": 3600},
    },
    # Weekly per item: its newest point is re-read and re-hashed (checked daily); weekly per
    # S3 vault: every object lock is read back.
    "holdfast-schedule-verifications": {
        "task": "holdfast.schedule_verifications",
        "schedule": crontab(minute=40, hour=2),
        "options": {"expires": 3600},
    },
    # The audit chain's head to local disk and S3 under Object Lock (docs/security.md, "Audit
    # anchors"). Records newer than the latest anchor are the ones a database superuser could
    # still rewrite or drop unnoticed: the hour bounds that window.
    "holdfast-audit-anchor": {
        "task": "holdfast.audit_anchor",
        "schedule": crontab(minute=5),
        "options": {"expires": 3000},
    },
    # The whole chain against every anchor; a failure raises the audit_chain_broken alert.
    "holdfast-audit-verify": {
        "task": "holdfast.audit_verify",
        "schedule": crontab(minute=20, hour=3),
        "options": {"expires": 3 * 3600},
    },
    # Last ISO week's compliance report by e-mail (HOLDFAST_REPORT_EMAILS): daily, so a
    # missed Monday is caught up; the week is claimed in the audit log, sent once.
    "holdfast-report-email": {
        "task": "holdfast.report_email",
        "schedule": crontab(minute=15, hour=6),
        "options": {"expires": 3600},
    },
}
