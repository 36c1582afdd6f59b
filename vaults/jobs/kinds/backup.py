"""A backup job: the item's source into a new point, its row recorded once the manifest is
published (``VaultStore.backup``)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils.dateparse import parse_datetime

from ... import rules, services
from ...locations import vault_store
from ...models import Job, ProtectedItem, RecoveryPoint, Vault
from ...storage import ConcurrentGcConflict
from ...storage_notes import point_retention, point_terms
from ..replication import copy_on_commit
from ..requests import storage_lock_follow
from ..state import Heartbeat, JobFailed, finish, with_database
from . import postgres

Tier = RecoveryPoint.Tier


def run(job: Job, beat: Heartbeat) -> None:
    item = job.item
    if item is None or job.vault is None:
        raise JobFailed("The protected item no longer exists.")
    on_demand = bool(job.params.get("on_demand"))
    if not on_demand and item.protection_state != ProtectedItem.State.PROTECTED:
        raise JobFailed(f"Protection of {item.name} is stopped: scheduled backups are suspended.")
    store = vault_store(job.vault)
    # The newest earlier point still in the store lets unchanged files skip the read
    # (size, mtime, ctime, inode and device match; see docs/storage.md). Archived points
    # have left the store; looking at the newest few is enough.
    parent = next(
        (
            key
            for key in RecoveryPoint.objects.filter(item=item, vault=job.vault)
            .exclude(storage_key="")
            .order_by("-created_at", "-id")
            .values_list("storage_key", flat=True)[:10]
            if store.has_point(key)
        ),
        None,
    )
    tier = job.params.get("tier", Tier.VAULT_STANDARD)
    retain_until = parse_datetime(job.params.get("retain_until") or "")
    # The expiry the point will get, known before a byte is written, so that on S3 every
    # object is locked until then as it is written (SPEC 6); point_record recomputes the
    # same value from the same inputs.
    assert job.started_at is not None
    _tags, expires_at = services.point_expiry(item, job.started_at, retain_until, tier)
    retention = point_retention(job.vault, expires_at, operational=tier == Tier.SNAPSHOT)
    # The manifest records the same expiry: no sweep deletes the point before it (SPEC 8.3).
    terms = point_terms(job.vault, expires_at, operational=tier == Tier.SNAPSHOT)
    result, workload = None, None
    for attempt in range(2):
        key = f"rp-{job.pk}-{uuid.uuid4().hex[:12]}"
        # Recorded first, so the orphan sweep never mistakes our manifest for garbage.
        with_database(
            partial(Job.objects.filter(pk=job.pk).update, params={**job.params, "storage_key": key})
        )
        try:
            if item.source_kind == ProtectedItem.SourceKind.POSTGRES:
                result, workload = postgres.dump_into(
                    store, item, key, beat, retention=retention, terms=terms
                )
                break
            result = store.backup(
                Path(item.source_path),
                key,
                progress=beat,
                file_progress=beat.files,
                parent=parent,
                retention=retention,
                terms=terms,
                # Judged again on what the backup opens: the directory protected may have
                # been swapped for a symlink into the store since (SPEC 8).
                check_source=rules.backup_source_refusal,
            )
            break
        except ConcurrentGcConflict:
            if attempt:
                raise
    assert result is not None
    vault_pk = job.vault.pk

    def record() -> None:
        with transaction.atomic():
            # A retry after a commit whose answer was lost finds the point recorded already.
            if Job.objects.filter(pk=job.pk, recovery_point__isnull=False).exists():
                return
            point = services.point_record(
                item=item,
                created_at=job.started_at,
                retain_until=retain_until,
                tier=tier,
                logical_bytes=result.logical_bytes,
                stored_bytes=result.stored_bytes,
                digest=result.manifest_digest,
            )
            extra: dict[str, Any] = {"storage_key": key}
            if workload is not None:  # a database's dump: its server version and size
                extra["workload"] = workload
            if retention is not None:  # as written; lock_verify confirms it from the storage
                extra["storage_locked_until"] = retention.until
                extra["storage_lock_mode"] = retention.mode
            if tier == Tier.SNAPSHOT_AND_VAULT:
                days = item.policy.instant_restore_days
                extra["snapshot_expires_at"] = point.created_at + timedelta(days=days)
            RecoveryPoint.objects.filter(pk=point.pk).update(**extra)
            Job.objects.filter(pk=job.pk).update(recovery_point=point)
            finish(
                job,
                done=result.logical_bytes,
                total=result.logical_bytes,
                files=result.file_count + result.dir_count + result.symlink_count,
            )
            # Immutability enabled or locked while this backup ran: the storage_lock job it
            # queued could not see this point yet; queue another now that the point exists.
            now_wanted = point_retention(
                Vault.objects.get(pk=vault_pk), expires_at, operational=tier == Tier.SNAPSHOT
            )
            if now_wanted is not None and (retention is None or retention.mode != now_wanted.mode):
                storage_lock_follow(point.vault)
            # A vault-tier point is copied to the vault's replica, if it has one (SPEC 3.10).
            if tier != Tier.SNAPSHOT:
                copy_on_commit(RecoveryPoint.objects.select_related("vault").get(pk=point.pk))

    # The manifest is durable: a database that restarted meanwhile must not lose the point.
    with_database(record)
