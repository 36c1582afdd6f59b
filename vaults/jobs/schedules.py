"""What beat dispatches (portal/schedule.py): due backups, tier moves, weekly verifications
and storage lock checks. Each is safe to run any number of times, concurrently."""

from __future__ import annotations

from datetime import datetime, timedelta

from portal import clock

from ..models import Job, ProtectedItem, RecoveryPoint, Vault
from .dispatch import DISPATCH_LOOKBACK, backups_dispatch
from .requests import enqueue_on_commit, lock_verify_request, verify_request
from .state import new_job

# The backup dispatcher is vaults/jobs/dispatch.py (set-based); named here as before.
__all__ = [
    "DISPATCH_LOOKBACK",
    "backups_dispatch",
    "lock_verifications_schedule",
    "tier_moves_schedule",
    "verifications_schedule",
]

VERIFY_EVERY = timedelta(days=7)
# SPEC 3.6 archive eligibility: monthly and yearly points, 90 days in the standard tier,
# at least 180 days of retention left.
ARCHIVE_MIN_AGE = timedelta(days=90)
ARCHIVE_MIN_REMAINING = timedelta(days=180)
ARCHIVE_TAGS = {"monthly", "yearly"}

Status = Job.Status
Kind = Job.Kind
Tier = RecoveryPoint.Tier


def tier_moves_schedule(*, now: datetime | None = None) -> list[Job]:
    """Queue tier moves for points the policy's tiering rule makes eligible (SPEC 3.6).

    ``after``: N days (at least 90) after creation. ``recommended``: as soon as a point is
    eligible, since archive storage costs a fraction of standard and an eligible point is
    certain to stay the 180 days archive bills at minimum (docs/jobs.md has the model).
    """
    now = now or clock.now()
    jobs: list[Job] = []
    candidates = (
        RecoveryPoint.objects.filter(
            tier__in=[Tier.VAULT_STANDARD, Tier.SNAPSHOT_AND_VAULT],
            corrupted_at__isnull=True,
            expires_at__gte=now + ARCHIVE_MIN_REMAINING,
            created_at__lte=now - ARCHIVE_MIN_AGE,
        )
        .exclude(item__policy__tiering_mode="off")
        .select_related("item__policy", "vault")
    )
    for point in candidates:
        policy = point.item.policy
        if not ARCHIVE_TAGS & set(point.tags):
            continue
        if point.jobs.filter(
            kind=Kind.TIER_MOVE, status__in=[Status.QUEUED, Status.RUNNING]
        ).exists():
            continue
        if policy.tiering_mode == "after" and point.created_at > now - timedelta(
            days=max(90, policy.tiering_after_days or 90)
        ):
            continue
        job = new_job(
            Kind.TIER_MOVE, now=now, vault=point.vault, item=point.item, recovery_point=point
        )
        enqueue_on_commit(job)
        jobs.append(job)
    return jobs


def verifications_schedule(*, now: datetime | None = None) -> list[Job]:
    """Weekly per vault: verify each item's newest standard-tier point not verified lately."""
    now = now or clock.now()
    jobs = []
    for item in ProtectedItem.objects.select_related("vault"):
        point = (
            item.recovery_points.exclude(tier=Tier.VAULT_ARCHIVE)
            .filter(corrupted_at__isnull=True)
            .order_by("-created_at")
            .first()
        )
        if point is None or (point.verified_at and point.verified_at > now - VERIFY_EVERY):
            continue
        if point.jobs.filter(kind=Kind.VERIFY, status__in=[Status.QUEUED, Status.RUNNING]).exists():
            continue
        jobs.append(verify_request(actor=None, point=point))
    return jobs


def lock_verifications_schedule(*, now: datetime | None = None) -> list[Job]:
    """Weekly per S3 vault: read every storage lock back."""
    now = now or clock.now()
    jobs = []
    for vault in Vault.objects.filter(storage_location__startswith="s3://"):
        recent = Job.objects.filter(
            vault=vault, kind=Kind.LOCK_VERIFY, created_at__gt=now - VERIFY_EVERY
        )
        if not recent.exists():
            jobs.append(lock_verify_request(actor=None, vault=vault))
    return jobs
