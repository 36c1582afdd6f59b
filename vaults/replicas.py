"""Reading replica vaults (SPEC 3.10): a vault's pairing, its lag and its last copy, for the
API, the Replication blade and the portfolio, annotated so a list costs no query per row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Case, Exists, OuterRef, Q, QuerySet, Subquery, When

from .models import Job, RecoveryPoint, Vault


def oldest_uncopied(now: datetime) -> Subquery:
    """Per vault row: the creation of the oldest unexpired vault- or archive-tier point its
    replica has no copy of (NULL when there is none, or no replica)."""
    copied = RecoveryPoint.objects.filter(
        vault_id=OuterRef(OuterRef("replica_id")),
        source_vault=OuterRef(OuterRef("name")),
        source_point_ref=OuterRef("pk"),
    )
    uncopied = (
        RecoveryPoint.objects.filter(vault=OuterRef("pk"), expires_at__gt=now)
        .exclude(tier=RecoveryPoint.Tier.SNAPSHOT)
        .exclude(storage_key="")
        .exclude(Exists(copied))
        .order_by("created_at")
        .values("created_at")[:1]
    )
    return Subquery(uncopied)


def with_replication_columns(queryset: QuerySet[Vault], now: datetime) -> QuerySet[Vault]:
    """``oldest_uncopied_at`` (:func:`oldest_uncopied`) and ``last_copied_at`` (the end of
    the last completed copy job), per vault."""
    last_copy = (
        Job.objects.filter(vault=OuterRef("pk"), kind=Job.Kind.COPY, status=Job.Status.COMPLETED)
        .order_by("-ended_at")
        .values("ended_at")[:1]
    )
    # Only a vault with a replica has a lag or copies: the subqueries run for those alone
    # (PostgreSQL evaluates a CASE branch only when it is taken), so an unpaired fleet costs
    # nothing and a sort by lag does not read every vault's points.
    paired = Q(replica_id__isnull=False)
    return queryset.select_related("replica", "replica_source").annotate(
        oldest_uncopied_at=Case(When(paired, then=oldest_uncopied(now)), default=None),
        last_copied_at=Case(When(paired, then=Subquery(last_copy)), default=None),
    )


REPLICATION_CHOICES = [
    ("replicated", "Replicated"),
    ("up_to_date", "Replicated, up to date"),
    ("lagging", "Replicated, lagging"),
    ("replica", "Is a replica"),
    ("none", "Not replicated"),
]


def filter_replication(queryset: QuerySet[Vault], value: str, now: datetime) -> QuerySet[Vault]:
    """The portfolio's and the API's ``replication`` filter."""
    paired = queryset.filter(replica__isnull=False)
    if value == "replicated":
        return paired
    if value in {"up_to_date", "lagging"}:
        lagging = value == "lagging"
        alias = paired.alias(replication_oldest=oldest_uncopied(now))
        return alias.filter(replication_oldest__isnull=not lagging)
    if value == "replica":
        return queryset.filter(replica_source__isnull=False)
    if value == "none":
        # NOT EXISTS on the unique replica_id index: an anti-join PostgreSQL stops early in
        # name order, where the reverse LEFT JOIN read every vault.
        is_replica = Vault.objects.filter(replica_id=OuterRef("pk"))
        return queryset.filter(replica__isnull=True).exclude(Exists(is_replica))
    return queryset


def annotated(vault: Vault, now: datetime) -> Vault:
    if not hasattr(vault, "oldest_uncopied_at"):
        return with_replication_columns(Vault.objects.filter(pk=vault.pk), now).get()
    return vault


def lag_seconds(vault: Vault, now: datetime) -> int:
    oldest = getattr(annotated(vault, now), "oldest_uncopied_at", None)
    return 0 if oldest is None else max(0, int((now - oldest).total_seconds()))


def replica_state(vault: Vault, now: datetime) -> dict[str, Any] | None:
    """The API's ``replica``: ``{vault, lag_seconds, last_copied_at}`` or None."""
    if vault.replica_id is None:
        return None
    row = annotated(vault, now)
    assert row.replica is not None
    return {
        "vault": row.replica.name,
        "region": row.replica.region,
        "paired_at": row.replica_paired_at,
        "lag_seconds": lag_seconds(row, now),
        "last_copied_at": getattr(row, "last_copied_at", None),
    }


def copies_in_flight(vault: Vault) -> QuerySet[Job]:
    return Job.objects.filter(
        vault=vault, kind=Job.Kind.COPY, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]
    ).select_related("recovery_point")


def other_copy(point: RecoveryPoint) -> RecoveryPoint | None:
    """The same backup in the other vault of a pairing: the replica's copy of a source
    point, or the source point of a replica's copy (still there)."""
    if point.source_point_ref is not None:
        return (
            RecoveryPoint.objects.filter(pk=point.source_point_ref, vault__name=point.source_vault)
            .select_related("vault", "item")
            .first()
        )
    return (
        RecoveryPoint.objects.filter(source_vault=point.vault.name, source_point_ref=point.pk)
        .select_related("vault", "item")
        .first()
    )
