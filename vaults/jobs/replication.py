"""Copy jobs of replica vaults (SPEC 3.10): asking for them, catching up, lag and its alert.

A copy is queued for a point when its backup is recorded, for every point made before a
pairing (newest first), and by the replication sweep for any point still without a copy
(after a failure, with a backoff that doubles per failure up to an hour). One copy job per
source point is queued or running at a time: the request is decided under the source
vault's row lock, so two callers never queue two.

Lag is the age of the oldest unexpired vault- or archive-tier point of the source that has
no copy yet; past the RPO of that point's policy it raises the ``replication_lag`` job alert
naming the pair.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from portal import clock, gate
from portal.alerts import raise_alert
from portal.gate import Check, DomainError

from ..models import Job, RecoveryPoint, Vault
from .requests import enqueue_on_commit
from .state import job_state, new_job

logger = logging.getLogger(__name__)

Status = Job.Status
Kind = Job.Kind
Tier = RecoveryPoint.Tier

BACKOFF_FIRST = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=1)
RPO_GRACE = timedelta(minutes=30)


def copied_refs(source: Vault, replica: Vault) -> QuerySet[RecoveryPoint, Any]:
    return RecoveryPoint.objects.filter(vault=replica, source_vault=source.name).values(
        "source_point_ref"
    )


def uncopied_points(source: Vault, now: datetime) -> QuerySet[RecoveryPoint]:
    """The source's unexpired vault- and archive-tier points its replica has no copy of."""
    if source.replica_id is None:
        return RecoveryPoint.objects.none()
    assert source.replica is not None
    return (
        source.recovery_points.unexpired(now)
        .exclude(storage_key="")
        .exclude(pk__in=copied_refs(source, source.replica))
    )


def copy_in_flight(point: RecoveryPoint) -> bool:
    return Job.objects.filter(
        kind=Kind.COPY, recovery_point=point, status__in=[Status.QUEUED, Status.RUNNING]
    ).exists()


def copy_request(point: RecoveryPoint, *, actor: Any = None) -> Job | None:
    """Queue the copy of ``point`` to its vault's replica; None when there is no replica,
    the copy exists, or one is queued or running already."""

    def change(check: Check) -> Job | None:
        source = check.vault
        assert source is not None
        if source.replica_id is None or not point.storage_key:
            return None
        replica = source.replica
        assert replica is not None
        if copied_refs(source, replica).filter(source_point_ref=point.pk).exists():
            return None
        if copy_in_flight(point):
            return None
        job = new_job(
            Kind.COPY,
            now=check.now,
            vault=source,
            item=point.item,
            recovery_point=point,
            requested_by=actor,
            params={"replica": replica.name, "storage_key": point.storage_key},
        )
        enqueue_on_commit(job)
        return job

    return gate.execute(
        "copy_start" if actor is not None else "copy_schedule",
        actor=actor,
        vault=point.vault,
        target=f"point:{point.pk}",
        change=change,
        after=lambda job: job_state(job) if job is not None else {"queued": False},
    )


def copy_on_commit(point: RecoveryPoint) -> None:
    """After the transaction that recorded ``point`` commits: queue its copy, if paired."""
    if point.vault.replica_id is None:
        return

    def send() -> None:
        try:
            copy_request(point)
        except DomainError as exc:  # the replication sweep tries again
            logger.warning("copy of point %s not queued: %s", point.pk, exc.detail)

    transaction.on_commit(send)


def backfill(vault_pk: int, *, now: datetime | None = None) -> list[Job]:
    """Queue copies of every point of the vault its replica lacks, newest first."""
    now = now or clock.now()
    source = Vault.objects.select_related("replica").get(pk=vault_pk)
    queued = []
    for point in (
        uncopied_points(source, now).select_related("vault", "item").order_by("-created_at", "-id")
    ):
        if copy_in_flight(point):
            continue
        job = copy_request(point)
        if job is not None:
            queued.append(job)
    return queued


def backfill_on_commit(source: Vault) -> None:
    transaction.on_commit(lambda: backfill(source.pk))


def _backoff(point: RecoveryPoint, now: datetime) -> bool:
    """Whether the last failed copy of ``point`` is too recent to try again."""
    failed = Job.objects.filter(kind=Kind.COPY, recovery_point=point, status=Status.FAILED)
    count = failed.count()
    if not count:
        return False
    last = failed.order_by("-ended_at").values_list("ended_at", flat=True).first()
    wait = min(BACKOFF_FIRST * 2 ** (count - 1), BACKOFF_MAX)
    return last is not None and last + wait > now


def rpo_of(point: RecoveryPoint) -> timedelta:
    """The RPO of the point's policy: the time between two of its backups."""
    policy = point.item.policy
    if policy.frequency == "hourly":
        return timedelta(hours=policy.interval_hours or 4)
    if policy.frequency == "weekly":
        return timedelta(days=7)
    return timedelta(days=1)


def lag_of(source: Vault, now: datetime) -> tuple[timedelta, RecoveryPoint | None]:
    """The age of the oldest point the replica lacks (zero when it has them all)."""
    oldest = uncopied_points(source, now).select_related("item__policy").order_by("created_at")
    point = oldest.first()
    if point is None:
        return timedelta(0), None
    return max(timedelta(0), now - point.created_at), point


def replication_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Queue the copies still missing (past their backoff) and raise the lag alerts."""
    now = now or clock.now()
    report = {"copies_queued": 0, "lagging_vaults": 0}
    for source in Vault.objects.filter(replica__isnull=False).select_related("replica"):
        points = uncopied_points(source, now).select_related("vault", "item")
        for point in points.order_by("-created_at", "-id"):
            if copy_in_flight(point) or _backoff(point, now):
                continue
            try:
                if copy_request(point) is not None:
                    report["copies_queued"] += 1
            except DomainError as exc:
                logger.warning("copy of point %s not queued: %s", point.pk, exc.detail)
        lag, oldest = lag_of(source, now)
        if oldest is not None and lag > rpo_of(oldest) + RPO_GRACE:
            report["lagging_vaults"] += 1
            assert source.replica is not None
            last_error = (
                Job.objects.filter(kind=Kind.COPY, recovery_point=oldest, status=Status.FAILED)
                .order_by("-ended_at")
                .values_list("error", flat=True)
                .first()
            )
            raise_alert(
                "replication_lag",
                vault_name=source.name,
                target=f"replica:{source.name}->{source.replica.name}",
                message=f"Replication from {source.name} to {source.replica.name} lags "
                f"{int(lag.total_seconds() // 60)} min, past the {rpo_of(oldest)} RPO of "
                f"item {oldest.item.name}"
                + (f"; last copy failure: {last_error}" if last_error else "."),
            )
    return report
