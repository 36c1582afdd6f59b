"""The sweeps: stale jobs, expired points (rows, then data), lapsed snapshots, ended
rehydrations, soft-delete purges, orphan manifests and the storage's garbage collection.

Run by the periodic tasks as sweep jobs (``runner.sweep_run``), or now by ``manage.py sweep``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet

from portal import clock
from portal.alerts import raise_alert
from portal.gate import DomainError
from portal.models import Alert
from portal.services import approvals_expire

from .. import services
from ..hosts import offline_hosts, wait_limit, waiting_sentence
from ..locations import archive_store, has_store, vault_store
from ..models import Job, ProtectedItem, RecoveryPoint, Vault
from ..services.expiry import DuePoint
from ..storage import ArchiveStore, PointNotFound, VaultStore
from ..storage.errors import ObjectLocked, PointRetained
from .drills import scratch_sweep
from .requests import enqueue_on_commit
from .state import alert_failure

# The storage sweep has its own module; its entry points are still reached from here.
from .storage_sweep import orphans_remove as orphans_remove
from .storage_sweep import storage_sweep as storage_sweep
from .storage_sweep import stores_without_vault as stores_without_vault

logger = logging.getLogger(__name__)

# Points per transaction (and per audit record) of the expiry and tier sweeps (issue 20).
BATCH = 1000

# A queued job whose message seems lost is sent again after this long (the claim is a CAS).
REQUEUE_AFTER = timedelta(minutes=10)

Status = Job.Status
Tier = RecoveryPoint.Tier
_Stores = tuple[VaultStore | ArchiveStore, ...]


def _stale_after() -> timedelta:
    return timedelta(seconds=float(getattr(settings, "HOLDFAST_JOB_STALE_SECONDS", 300)))


def jobs_fail_stale(*, now: datetime | None = None) -> int:
    """Fail running jobs whose heartbeat stopped (their worker died), and re-send queued
    jobs whose message seems lost or could not be sent (the broker was down: their error
    says so). Nothing a dead backup wrote is visible: its point has no manifest, and GC
    reclaims its chunks once its store lease expires. Last, the scratch copies of drills
    whose job no longer runs are removed (a worker killed mid-drill)."""
    now = now or clock.now()
    cutoff = now - _stale_after()
    failed = host_waits_expire(now=now)
    running = Job.objects.filter(status=Status.RUNNING, heartbeat_at__lt=cutoff)
    for job in running.select_related("vault", "item"):
        error = (
            f"The worker running this job stopped responding (last heartbeat "
            f"{job.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC); it was probably killed. Nothing "
            "it wrote is visible; the next run starts afresh."
        )
        with transaction.atomic():
            if Job.objects.filter(
                pk=job.pk, status=Status.RUNNING, heartbeat_at=job.heartbeat_at
            ).update(status=Status.FAILED, ended_at=now, error=error):
                alert_failure(job, error)
                failed += 1
    lost = Job.objects.filter(status=Status.QUEUED).filter(
        Q(heartbeat_at__lt=now - REQUEUE_AFTER) | ~Q(error="")
    )
    for job in lost.select_related("vault", "item"):
        if Job.objects.filter(pk=job.pk, heartbeat_at=job.heartbeat_at).update(heartbeat_at=now):
            enqueue_on_commit(job)
    # What a drill killed mid-way left in the drill root (its job is failed above).
    removed = scratch_sweep()
    if removed:
        logger.info("removed %d leftover drill scratch director(ies)", removed)
    return failed


def host_waits_expire(*, now: datetime) -> int:
    """Fail the queued jobs that waited for their offline host (SPEC 3.13) longer than
    ``HOLDFAST_HOST_WAIT_MINUTES``, counted from when they were queued or their host was last
    seen, whichever is later. Never handed to another host: each fails, saying which host it
    waited for, with its job alert, and the host gets one ``host_offline`` alert."""
    limit = wait_limit()
    queued = Job.objects.filter(status=Status.QUEUED, created_at__lte=now - limit).exclude(host="")
    offline = offline_hosts(set(queued.values_list("host", flat=True).distinct()), now)
    failed = 0
    for host, last_seen in sorted(offline.items()):
        given_up = 0
        for job in queued.filter(host=host).select_related("vault", "item"):
            if now - max(job.created_at, last_seen or job.created_at) < limit:
                continue
            error = (
                f"Gave up after {limit.total_seconds() / 60:g} minutes "
                f"{waiting_sentence(host, last_seen)}: no worker on {host} took the job, and no "
                f"other host may run it. Start a worker on {host} (docs/hosts.md), then run "
                "the job again."
            )
            with transaction.atomic():
                if Job.objects.filter(pk=job.pk, status=Status.QUEUED).update(
                    status=Status.FAILED, ended_at=now, error=error
                ):
                    alert_failure(job, error)
                    given_up += 1
        if given_up:
            with transaction.atomic():
                raise_alert(
                    "host_offline",
                    target=f"host:{host}",
                    message=f"{given_up} job(s) failed {waiting_sentence(host, last_seen)} for "
                    f"longer than {limit.total_seconds() / 60:g} minutes. Start a worker on {host} "
                    "(docs/hosts.md) or move its items to another host.",
                )
        failed += given_up
    return failed


def _delete_point_data(
    vault: Vault, key: str, now: datetime, stores: _Stores | None = None
) -> None:
    """Remove a point's data from both tiers. An object the storage still locks (its clock
    is behind ours, or a legal hold) is left and logged; the orphan sweep retries it once
    its lock has ended. A point the storage itself was told to keep longer than the row
    says (the row was changed outside Holdfast) stays too: the orphan sweep reports it."""
    if not key:
        return
    for store in stores or (vault_store(vault), archive_store(vault)):
        try:
            store.delete_point(key, now=now)
        except PointNotFound:
            pass
        except (ObjectLocked, PointRetained) as exc:
            logger.warning("point data %s of vault %s kept: %s", key, vault.name, exc)


def due_pages(due: QuerySet[RecoveryPoint], field: str, *, size: int) -> Iterator[list[int]]:
    """The ids of the points ``due``, ``size`` at a time in (``field``, id) order: keyset pages
    over the index on ``field``, so each page is one indexed read and memory stays flat."""
    after: tuple[Any, int] | None = None
    while True:
        page = due
        if after is not None:
            value, pk = after
            page = page.filter(Q(**{f"{field}__gt": value}) | Q(**{field: value, "pk__gt": pk}))
            page = page.filter(**{f"{field}__gte": value})  # the index's range
        rows = list(page.order_by(field, "pk").values_list(field, "pk")[:size])
        if rows:
            yield [pk for _, pk in rows]
        if len(rows) < size:
            return
        after = rows[-1]


def _data_delete(points: list[DuePoint], now: datetime, *, archive: bool = True) -> None:
    """After the batch's commit: the deleted points' data, each vault's stores opened once
    (its row read in full, one query for the page). A vault with no store holds no data, and
    none is created just to look."""
    stored = {p.vault_id for p in points if p.storage_key and has_store(p.vault)}
    vaults = Vault.objects.in_bulk(stored) if stored else {}
    stores: dict[int, _Stores] = {}
    for point in points:
        vault = vaults.get(point.vault_id)
        if vault is None or not point.storage_key:
            continue
        if vault.pk not in stores:
            stores[vault.pk] = (vault_store(vault), archive_store(vault))[: 2 if archive else 1]
        _delete_point_data(vault, point.storage_key, now, stores[vault.pk])


def points_expire(*, now: datetime | None = None, batch: int = BATCH) -> int:
    """Remove points past their expiry, ``batch`` at a time: each page of what is due is
    decided by the gate under its rows' locks and deleted in one transaction with one audit
    record (``services.points_expire_batch``: always allowed, even in an immutable vault), then
    its data goes, after the commit; GC then frees the unreferenced chunks."""
    now = now or clock.now()
    count = 0
    # Soft-deleted points (SPEC 3.3) wait for the end of their soft-delete period.
    due = RecoveryPoint.objects.filter(expires_at__lte=now).exclude(soft_deleted_until__gt=now)
    for ids in due_pages(due, "expires_at", size=batch):
        try:
            points = services.points_expire_batch(ids, now=now)
        except DomainError as exc:  # refused and audited: the page waits for the next sweep
            logger.warning("%d point(s) not expired: %s", len(ids), exc.detail)
            continue
        _data_delete(points, now)
        count += len(points)
    return count


def snapshots_lapse(*, now: datetime | None = None, batch: int = BATCH) -> int:
    """A snapshot_and_vault point whose instant-restore days are over is vault-standard:
    ``batch`` at a time, one transaction and audit record each."""
    now = now or clock.now()
    count = 0
    due = RecoveryPoint.objects.filter(tier=Tier.SNAPSHOT_AND_VAULT, snapshot_expires_at__lte=now)
    for ids in due_pages(due, "snapshot_expires_at", size=batch):
        count += len(services.snapshots_lapse_batch(ids, now=now))
    return count


def rehydrations_end(*, now: datetime | None = None, batch: int = BATCH) -> int:
    """Drop standard-tier copies of archived points whose rehydration period is over: the
    rows ``batch`` at a time (skipping points a running job reads), then, after each commit,
    the copies."""
    now = now or clock.now()
    count = 0
    due = RecoveryPoint.objects.filter(tier=Tier.VAULT_ARCHIVE, rehydrated_until__lte=now)
    for ids in due_pages(due, "rehydrated_until", size=batch):
        points = services.rehydrations_end_batch(ids, now=now)
        vaults = Vault.objects.in_bulk({p.vault_id for p in points if has_store(p.vault)})
        for point in points:
            vault = vaults.get(point.vault_id)
            # Only while the archive holds its copy: the storage keeps the point otherwise.
            with contextlib.suppress(PointNotFound, ObjectLocked, PointRetained):
                if vault is not None and point.storage_key:
                    vault_store(vault).delete_point(
                        point.storage_key, now=now, copy_in=archive_store(vault)
                    )
        count += len(points)
    return count


def soft_delete_sweep() -> dict[str, int]:
    """Warn two days before each soft-deleted item's purge, then purge it when its time comes.

    Run by the periodic sweep; each item is decided through the gate on its own, so one
    failure never blocks the others.
    """
    now = clock.now()
    warning = services.UPCOMING_PURGE_WARNING
    counts = {"warned": 0, "purged": 0}
    due = ProtectedItem.objects.filter(
        protection_state=ProtectedItem.State.SOFT_DELETED, purge_at__isnull=False
    ).select_related("vault", "policy")
    for item in due.filter(purge_at__lte=now + warning, purge_at__gt=now):
        warned = Alert.objects.filter(
            kind="upcoming_purge",
            vault_name=item.vault.name,
            target=f"item:{item.name}",
            first_at__gte=item.soft_deleted_at or (item.purge_at or now) - warning,
        ).exists()
        if not warned:
            services.item_purge_warn(item=item)
            counts["warned"] += 1
    for item in due.filter(purge_at__lte=now):
        try:
            services.item_purge(item=item)
        except DomainError:
            continue  # refused and audited (e.g. immutability enabled since): retried later
        counts["purged"] += 1
    return counts


def points_sweep(*, now: datetime | None = None) -> dict[str, int]:
    now = now or clock.now()
    return {
        "expired_points": points_expire(now=now),
        "lapsed_snapshots": snapshots_lapse(now=now),
        "ended_rehydrations": rehydrations_end(now=now),
        "expired_approvals": approvals_expire(now=now),
        **{f"soft_delete_{key}": n for key, n in soft_delete_sweep().items()},
    }
