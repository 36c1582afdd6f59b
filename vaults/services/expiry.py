"""The sweeps' batches (issue 20): many points decided by the gate at once, under their rows'
locks, with one statement per step and one audit record per batch naming every point.

The caller (``vaults/jobs/sweeps.py``) reads what is due in keyset pages over an index and
hands each page here; this module locks the page's rows with ``FOR UPDATE SKIP LOCKED``,
re-checks them as they are now (the same rules as one point at a time: a retention raised a
moment ago wins, a soft-deleted point waits for the end of its period, a point a running job
reads is skipped), and changes the rows that pass. Data in storage is the caller's, after
commit: a row is gone before its data, so a worker killed in between leaves data no row names,
which the orphan sweep removes once the storage no longer keeps it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Now

from portal import gate
from portal.gate import Check

from ..models import Job, RecoveryPoint, Vault

IMMUTABLE = ("enabled", "locked")
# What a page's points are read with: what is judged, recorded, deleted (a page of model
# instances with every field took most of a batch's time at 100,000 points).
FIELDS = (
    "pk",
    "vault_id",
    "vault__name",
    "vault__storage_location",
    "item__name",
    "tier",
    "expires_at",
    "soft_deleted_until",
    "storage_key",
    "snapshot_expires_at",
    "rehydrated_until",
)


@dataclass(slots=True)
class DuePoint:
    """A point of a sweep's page as it was locked and judged; ``vault`` holds only the vault's
    id, name and storage location (enough to find its store; ``Vault.objects`` for the rest)."""

    pk: int
    vault_id: int
    vault: Vault
    item_name: str
    tier: str
    expires_at: datetime
    soft_deleted_until: datetime | None
    storage_key: str
    snapshot_expires_at: datetime | None
    rehydrated_until: datetime | None

    def is_expired(self, now: datetime) -> bool:  # as RecoveryPoint's
        return self.expires_at <= now

    def is_soft_deleted(self, now: datetime) -> bool:
        return self.soft_deleted_until is not None and self.soft_deleted_until > now


class _Nothing(Exception):
    """Every point of the page was skipped under lock: roll back, audit nothing."""


def _running_job() -> Exists:
    return Exists(Job.objects.filter(recovery_point=OuterRef("pk"), status=Job.Status.RUNNING))


def _of_ids(rows: QuerySet[Any], ids: Sequence[int]) -> QuerySet[Any]:
    if connection.vendor == "postgresql":  # one array parameter, not a thousand
        return rows.extra(where=["vaults_recoverypoint.id = ANY(%s)"], params=[list(ids)])
    return rows.filter(pk__in=list(ids))


def _locked(ids: Sequence[int], due: Q, *, running: bool = True) -> list[DuePoint]:
    """Lock the points of ``ids`` still ``due`` (re-evaluated by PostgreSQL on the newest row
    version if another transaction changed it meanwhile), without those a running job reads
    (``running``); rows another transaction holds are skipped, for the next sweep."""
    rows = _of_ids(
        RecoveryPoint.objects.select_for_update(skip_locked=True, of=("self",)).filter(due), ids
    )
    if running:
        rows = rows.exclude(_running_job())
    vaults: dict[int, Vault] = {}
    points = []
    for pk, vault_id, name, location, *rest in rows.order_by("pk").values_list(*FIELDS):
        vault = vaults.get(vault_id) or Vault(pk=vault_id, name=name, storage_location=location)
        vaults[vault_id] = vault
        points.append(DuePoint(pk, vault_id, vault, *rest))
    if not points:
        raise _Nothing
    return points


def _delete_rows(ids: list[int]) -> None:
    """The references first (a job keeps its history, without its point), then the rows: one
    statement each. The database's triggers still judge every row (an immutable vault's
    unexpired point is refused, whoever deletes it) and keep the vaults' totals."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "UPDATE vaults_job SET recovery_point_id = NULL WHERE recovery_point_id = ANY(%s)",
                [ids],
            )
            cursor.execute("DELETE FROM vaults_recoverypoint WHERE id = ANY(%s)", [ids])
        else:  # SQLite (the embedded quick start): no arrays; only placeholders are joined
            Job.objects.filter(recovery_point_id__in=ids).update(recovery_point=None)
            marks = ", ".join(["%s"] * len(ids))
            cursor.execute(f"DELETE FROM vaults_recoverypoint WHERE id IN ({marks})", ids)  # noqa: S608


def _named(points: list[DuePoint], shown: Sequence[str]) -> dict[str, Any]:
    return {
        "count": len(points),
        "points": [
            {
                "point": p.pk,
                "vault": p.vault.name,
                "item": p.item_name,
                "tier": p.tier,
                "expires_at": p.expires_at.isoformat(),
                **{key: str(getattr(p, key)) for key in shown},
            }
            for p in points
        ],
    }


def _batch(
    op: str, points_due: Any, change: Any, *, now: datetime, shown: Sequence[str] = ()
) -> list[DuePoint]:
    """One gate decision for a page: ``points_due()`` locks its rows, ``change`` changes them;
    the record names each point as judged (and its fields ``shown``). Returns the points
    changed ([] when all were skipped, and then nothing is audited)."""

    def refresh(facts: dict[str, Any]) -> None:
        facts["points"] = points_due()

    def run(check: Check) -> list[DuePoint]:
        points: list[DuePoint] = check.facts["points"]
        change(points)
        return points

    def before(facts: dict[str, Any]) -> dict[str, Any]:
        return _named(facts["points"], shown)

    try:
        return gate.execute(
            op,
            actor=None,
            target=op,
            refresh=refresh,
            before=before,
            change=run,
            after=lambda points: {
                "changed": len(points),
                "vaults": sorted({p.vault.name for p in points}),
                "as_of": now.isoformat(),
            },
        )
    except _Nothing:
        return []


def points_expire_batch(ids: Sequence[int], *, now: datetime) -> list[DuePoint]:
    """Delete the points of ``ids`` that are past their expiry at ``now``, as they are under
    their locks: one ``points_expire`` record lists every point deleted, with its vault, item
    and expiry. Not soft-deleted ones (until their period ends), nor those a running job reads.
    In an immutable vault a point goes only once the database's clock too says it expired (the
    trigger that protects it until then would refuse the whole batch); it waits for the next
    sweep otherwise. Returns the deleted points (their data is the caller's, after commit)."""
    due = (
        Q(expires_at__lte=now)
        & ~Q(soft_deleted_until__gt=now)
        & (
            Q(tier=RecoveryPoint.Tier.SNAPSHOT)
            | Q(expires_at__lte=Now())
            | ~Q(vault__immutability__in=IMMUTABLE)
        )
    )
    return _batch(
        "points_expire",
        lambda: _locked(ids, due),
        lambda points: _delete_rows([p.pk for p in points]),
        now=now,
    )


def snapshots_lapse_batch(ids: Sequence[int], *, now: datetime) -> list[DuePoint]:
    """The ``snapshot_and_vault`` points of ``ids`` whose instant-restore days are over (as they
    are under their locks) become vault-standard: one UPDATE, one ``points_snapshot_lapse``
    record naming each point and its lapse."""
    due = Q(tier=RecoveryPoint.Tier.SNAPSHOT_AND_VAULT, snapshot_expires_at__lte=now)
    return _batch(
        "points_snapshot_lapse",
        lambda: _locked(ids, due, running=False),
        lambda points: _of_ids(RecoveryPoint.objects.all(), [p.pk for p in points]).update(
            tier=RecoveryPoint.Tier.VAULT_STANDARD
        ),
        now=now,
        shown=("snapshot_expires_at",),
    )


def rehydrations_end_batch(ids: Sequence[int], *, now: datetime) -> list[DuePoint]:
    """The archived points of ``ids`` whose rehydration period is over, that no running job
    reads, lose their rehydration: one UPDATE, one ``points_rehydration_end`` record. The
    caller drops their standard-tier copies after commit."""
    due = Q(tier=RecoveryPoint.Tier.VAULT_ARCHIVE, rehydrated_until__lte=now)
    return _batch(
        "points_rehydration_end",
        lambda: _locked(ids, due),
        lambda points: _of_ids(RecoveryPoint.objects.all(), [p.pk for p in points]).update(
            rehydrated_until=None
        ),
        now=now,
        shown=("rehydrated_until",),
    )
