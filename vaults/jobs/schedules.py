"""What beat dispatches (portal/schedule.py): due backups, tier moves, weekly verifications
and storage lock checks. Each is safe to run any number of times, concurrently."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection
from django.db.models import OuterRef, Subquery

from policies import rules as policy_rules
from portal import clock, gate
from portal.gate import Check

from ..models import Job, ProtectedItem, RecoveryPoint, Vault
from .requests import (
    enqueue_on_commit,
    lock_verify_request,
    verifications_schedule_batch,
)
from .state import job_state, new_job

# A slot missed for up to this long (beat down, a deploy) still runs once; older ones don't.
DISPATCH_LOOKBACK = timedelta(hours=1)
VERIFY_EVERY = timedelta(days=7)
# SPEC 3.6 archive eligibility: monthly and yearly points, 90 days in the standard tier,
# at least 180 days of retention left.
ARCHIVE_MIN_AGE = timedelta(days=90)
ARCHIVE_MIN_REMAINING = timedelta(days=180)
ARCHIVE_TAGS = {"monthly", "yearly"}

Status = Job.Status
Kind = Job.Kind
Tier = RecoveryPoint.Tier


def _backup_tier(item: ProtectedItem, slot: datetime) -> str:
    """Enhanced intra-day runs are operational snapshots; the day's last run and every
    standard-policy run also land in the vault tier (SPEC 3.6)."""
    if policy_rules.is_vault_tier_run(item.policy.schedule(), slot):
        return Tier.SNAPSHOT_AND_VAULT
    return Tier.SNAPSHOT


def _backup_schedule(item: ProtectedItem, slot: datetime) -> Job | None:
    """Create the backup job of (item, slot) unless it exists; the unique constraint on
    (item, slot) and the vault row lock of the gate make racing dispatchers agree."""

    def change(check: Check) -> tuple[Job, bool]:
        job, created = Job.objects.get_or_create(
            kind=Kind.BACKUP,
            item=item,
            slot=slot,
            defaults={
                "vault": check.vault,
                "created_at": check.now,
                "heartbeat_at": check.now,
                "params": {"tier": _backup_tier(item, slot), "on_demand": False},
            },
        )
        if created:
            enqueue_on_commit(job)
        return job, created

    job, created = gate.execute(
        "backup_schedule",
        actor=None,
        vault=item.vault,
        target=f"item:{item.name}",
        change=change,
        after=lambda result: {**job_state(result[0]), "created": result[1]},
    )
    return job if created else None


def backups_dispatch(*, now: datetime | None = None) -> list[Job]:
    """Create (once) and enqueue the backup of every protected item's slots due in
    (now - lookback, now]. Safe to run any number of times, concurrently."""
    now = now or clock.now()
    start = now - DISPATCH_LOOKBACK + timedelta(microseconds=1)
    end = now + timedelta(microseconds=1)
    created: list[Job] = []
    # A replica item's points arrive by copy jobs (SPEC 3.10): it is never backed up.
    items = (
        ProtectedItem.objects.filter(protection_state=ProtectedItem.State.PROTECTED)
        .exclude(source_kind=ProtectedItem.SourceKind.REPLICA)
        .select_related("policy", "vault")
    )
    for item in items:
        slots = policy_rules.scheduled_slots(item.policy.schedule(), start, end)
        if not slots:
            continue
        existing = set(
            Job.objects.filter(kind=Kind.BACKUP, item=item, slot__in=slots).values_list(
                "slot", flat=True
            )
        )
        for slot in slots:
            if slot not in existing:
                job = _backup_schedule(item, slot)
                if job is not None:
                    created.append(job)
    return created


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


def verifications_schedule(*, now: datetime | None = None, batch: int = 1000) -> int:
    """Weekly: verify each item's newest point outside the archive tier, not corrupt, not
    verified lately. Items in pages of ``batch`` (keyset over their ids); per page, the newest
    point of every item in one query (``DISTINCT ON`` on PostgreSQL), then the due ones queued
    by one gate decision (``verifications_schedule_batch``). Returns how many were queued."""
    now = now or clock.now()
    since = now - VERIFY_EVERY
    queued, after = 0, 0
    while True:
        items = list(
            ProtectedItem.objects.filter(pk__gt=after)
            .order_by("pk")
            .values_list("pk", flat=True)[:batch]
        )
        if not items:
            return queued
        after = items[-1]
        ids = [
            pk
            for pk, verified_at in _newest_points(items)
            if verified_at is None or verified_at <= since
        ]
        if ids:
            queued += len(verifications_schedule_batch(ids, since=since))


def _newest_points(items: list[int]) -> list[tuple[int, datetime | None]]:
    """(id, verified_at) of the newest verifiable point of each of ``items``."""
    points = RecoveryPoint.objects.exclude(tier=Tier.VAULT_ARCHIVE).filter(
        corrupted_at__isnull=True
    )
    if connection.vendor == "postgresql":
        newest = (
            points.filter(item_id__in=items)
            .order_by("item_id", "-created_at", "-id")
            .distinct("item_id")
        )
    else:  # SQLite has no DISTINCT ON: the newest per item by a correlated subquery
        first = points.filter(item=OuterRef("item")).order_by("-created_at", "-id")
        newest = points.filter(item_id__in=items, pk=Subquery(first.values("pk")[:1]))
    return list(newest.values_list("pk", "verified_at"))


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
