"""What beat dispatches (portal/schedule.py): due backups, tier moves, weekly verifications
and storage lock checks. Each is safe to run any number of times, concurrently."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery

from portal import clock, gate
from portal.gate import Check

from ..models import Job, ProtectedItem, RecoveryPoint, Vault
from .dispatch import DISPATCH_LOOKBACK, backups_dispatch, values_by_id
from .requests import enqueue_on_commit, lock_verify_request
from .sending import enqueue_many
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


NOT_VERIFYING = (
    "NOT EXISTS (SELECT 1 FROM vaults_job j WHERE j.recovery_point_id = vaults_recoverypoint.id "
    "AND j.kind = 'verify' AND j.status IN ('queued', 'running') OFFSET 0)"
)


def verifications_schedule_batch(ids: Sequence[int], *, since: datetime) -> list[Job]:
    """Queue a verification of each point of ``ids`` still due under its lock (not verified
    after ``since``, no verification queued or running; a point locked by another
    scheduler is skipped): one INSERT of the jobs, one ``verifications_schedule`` record naming
    every point, each job sent on commit. Returns the jobs ([] and no record when none)."""
    verifying = Job.objects.filter(
        recovery_point=OuterRef("pk"), kind=Kind.VERIFY, status__in=[Status.QUEUED, Status.RUNNING]
    )

    def refresh(facts: dict[str, Any]) -> None:
        points: QuerySet[RecoveryPoint] = RecoveryPoint.objects.select_for_update(
            skip_locked=True, of=("self",)
        )
        if connection.vendor == "postgresql":  # one array parameter, not a thousand
            # OFFSET 0 keeps the check a probe of each point's jobs (job recovery_point
            # index): as an anti-join, statistics that lag the 100,000 jobs this schedule
            # queues made PostgreSQL compare every page's points with every queued job.
            points = points.extra(  # noqa: S610 (constant SQL, the ids a parameter)
                where=["vaults_recoverypoint.id = ANY(%s)", NOT_VERIFYING], params=[list(ids)]
            )
        else:
            points = points.filter(pk__in=list(ids)).exclude(Exists(verifying))
        rows = (
            points.filter(Q(verified_at__isnull=True) | Q(verified_at__lte=since))
            .order_by("pk")
            .values_list("pk", "vault_id", "item_id")
        )
        locked = list(rows)
        if not locked:
            raise _NoneDue
        # Names and hosts by id, apart: joined to the locked points, the planner would hash
        # every item and vault of the fleet for each page of 1,000 points.
        vaults = values_by_id(Vault, {vault for _, vault, _ in locked}, "name")
        items = values_by_id(ProtectedItem, {item for _, _, item in locked}, "name", "source_host")
        facts["points"] = [
            (pk, vault, item, vaults[vault][0], *items[item]) for pk, vault, item in locked
        ]

    def change(check: Check) -> list[Job]:
        # Each job names its item's host (SPEC 3.13), so sending it updates nothing.
        jobs = _insert_verifications(check.facts["points"], check.now)
        for job in jobs:
            job.route_known = True  # its host is its item's: routing reads nothing
        enqueue_many(jobs)
        return jobs

    try:
        return gate.execute(
            "verifications_schedule",
            actor=None,
            target="verifications_schedule",
            refresh=refresh,
            before=lambda facts: {
                "points": [
                    {"point": pk, "vault": vault, "item": item}
                    for pk, _, _, vault, item, _ in facts["points"]
                ]
            },
            change=change,
            after=lambda jobs: {"jobs": [job.pk for job in jobs]},
        )
    except _NoneDue:
        return []


# PostgreSQL: a page's jobs in one INSERT from arrays (bulk_create spends more time in the
# ORM than the database does), built back from what it returns.
_PG_INSERT = (
    "INSERT INTO vaults_job (kind, status, vault_id, item_id, recovery_point_id, params, "
    "created_at, heartbeat_at, bytes_done, bytes_total, files_done, files_total, error, worker, "
    "host) SELECT 'verify', 'queued', d.vault_id, d.item_id, d.point_id, '{}'::jsonb, %s, %s, "
    "0, 0, 0, 0, '', '', d.host FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], "
    "%s::text[]) AS d(point_id, vault_id, item_id, host) ORDER BY d.point_id "
    "RETURNING id, vault_id, item_id, recovery_point_id, host"
)


def _insert_verifications(points: list[tuple[Any, ...]], now: datetime) -> list[Job]:
    if connection.vendor != "postgresql":
        return Job.objects.bulk_create(
            Job(kind=Kind.VERIFY, created_at=now, heartbeat_at=now, vault_id=vault,
                item_id=item, recovery_point_id=pk, host=host)
            for pk, vault, item, _, _, host in points
        )  # fmt: skip
    columns = [[p[n] for p in points] for n in (0, 1, 2, 5)]  # point, vault, item, host
    with connection.cursor() as cursor:
        cursor.execute(_PG_INSERT, [now, now, *columns])
        created = cursor.fetchall()
    return [
        Job(id=pk, kind=Kind.VERIFY, status=Status.QUEUED, vault_id=vault, item_id=item,
            recovery_point_id=point, host=host, created_at=now, heartbeat_at=now)
        for pk, vault, item, point, host in created
    ]  # fmt: skip


class _NoneDue(Exception):
    """Every point of the page was skipped under lock: nothing to queue, nothing to audit."""
