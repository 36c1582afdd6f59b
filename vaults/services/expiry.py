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
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Now

from portal import gate
from portal.gate import Check

from ..models import Job, RecoveryPoint

IMMUTABLE = ("enabled", "locked")


class _Nothing(Exception):
    """Every point of the page was skipped under lock: roll back, audit nothing."""


def _running_job() -> Exists:
    return Exists(Job.objects.filter(recovery_point=OuterRef("pk"), status=Job.Status.RUNNING))


def _locked(ids: Sequence[int], due: Q) -> list[RecoveryPoint]:
    """Lock the points of ``ids`` still ``due`` (re-evaluated by PostgreSQL on the newest row
    version if another transaction changed it meanwhile); rows another transaction holds are
    skipped, for the next sweep."""
    rows: QuerySet[RecoveryPoint] = (
        RecoveryPoint.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(due, pk__in=list(ids))
        .exclude(_running_job())
        .select_related("vault", "item")
        .order_by("pk")
    )
    points = list(rows)
    if not points:
        raise _Nothing
    return points


def _delete_rows(ids: list[int]) -> None:
    """The references first (a job keeps its history, without its point), then the rows: one
    statement each. The database's triggers still judge every row (an immutable vault's
    unexpired point is refused, whoever deletes it) and keep the vaults' totals."""
    Job.objects.filter(recovery_point_id__in=ids).update(recovery_point=None)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("DELETE FROM vaults_recoverypoint WHERE id = ANY(%s)", [ids])
        else:  # SQLite (the embedded quick start): no arrays; only placeholders are joined
            marks = ", ".join(["%s"] * len(ids))
            cursor.execute(f"DELETE FROM vaults_recoverypoint WHERE id IN ({marks})", ids)  # noqa: S608


def _named(points: list[RecoveryPoint], shown: Sequence[str]) -> dict[str, Any]:
    return {
        "count": len(points),
        "points": [
            {
                "point": p.pk,
                "vault": p.vault.name,
                "item": p.item.name,
                "tier": p.tier,
                "expires_at": p.expires_at.isoformat(),
                **{key: str(getattr(p, key)) for key in shown},
            }
            for p in points
        ],
    }


def _batch(
    op: str, points_due: Any, change: Any, *, now: datetime, shown: Sequence[str] = ()
) -> list[RecoveryPoint]:
    """One gate decision for a page: ``points_due()`` locks its rows, ``change`` changes them;
    the record names each point as judged (and its fields ``shown``). Returns the points
    changed ([] when all were skipped, and then nothing is audited)."""

    def refresh(facts: dict[str, Any]) -> None:
        facts["points"] = points_due()

    def run(check: Check) -> list[RecoveryPoint]:
        points: list[RecoveryPoint] = check.facts["points"]
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


def points_expire_batch(ids: Sequence[int], *, now: datetime) -> list[RecoveryPoint]:
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
