"""A rehydration: an archived point copied back to the standard tier for 10 to 30 days."""

from __future__ import annotations

from datetime import timedelta

from portal import clock

from ...locations import archive_store, vault_store
from ...models import Job, RecoveryPoint
from ...storage.errors import ObjectArchived
from ..requests import REHYDRATE_DEFAULT_DAYS
from ..state import Heartbeat, JobFailed, finish, point_of


def run(job: Job, beat: Heartbeat) -> None:
    point = point_of(job)
    if not point.is_archived:
        raise JobFailed(f"Recovery point {point.pk} is not in the archive tier.")
    archive = archive_store(point.vault)
    days = int(job.params.get("days", REHYDRATE_DEFAULT_DAYS))
    tier = "Expedited" if job.params.get("priority") == "high" else "Standard"
    pending = archive.request_restore(point.storage_key, days=days, tier=tier)
    if pending:
        raise JobFailed(
            f"The archive storage is restoring {pending} object(s) of recovery point "
            f"{point.pk} from its cold storage class; this takes hours. Request the "
            "rehydration again later."
        )
    try:
        result = archive.rehydrate(point.storage_key, vault_store(point.vault))
    except ObjectArchived as exc:
        raise JobFailed(f"{exc} Request the rehydration again once it is restored.") from None
    until = clock.now() + timedelta(days=int(job.params.get("days", REHYDRATE_DEFAULT_DAYS)))
    if point.rehydrated_until is None or point.rehydrated_until < until:
        RecoveryPoint.objects.filter(pk=point.pk).update(rehydrated_until=until)
    finish(job, done=result.stored_bytes, total=result.stored_bytes)
