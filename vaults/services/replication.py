"""The Replication blade (SPEC 3.10): pair a vault with a replica vault in another region,
remove the pairing, keep the replica's immutability never weaker than its source's, and
record the points copy jobs bring to the replica.

Rules of a pairing (checked here, and again by PostgreSQL, ``vaults/triggers.py``):

- the replica is another vault of the same kind, in another region, on storage that does
  not overlap the source's;
- neither vault is already part of another pairing (a vault replicates to at most one
  vault, a replica has no replica of its own, a vault is the replica of at most one): no
  chain and no cycle;
- the replica's immutability is at least the source's (disabled < enabled < locked), and
  stays so: enabling or locking the source does the same to the replica in the same
  transaction, and the replica's immutability cannot be turned off while its source's is on;
- on a locked vault the pairing is for good (``immutability_locked``); removing it from an
  enabled vault is the Resource Guard operation ``stop_replication``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from policies.models import Policy
from portal import gate
from portal.gate import Check, DomainError

from .. import locations
from ..jobs.replication import backfill_on_commit
from ..jobs.requests import storage_lock_follow
from ..models import ProtectedItem, RecoveryPoint, Vault
from ..storage.s3_client import parse_location
from ..storage_notes import storage_note

RANK: dict[str, int] = {
    Vault.Immutability.DISABLED: 0,
    Vault.Immutability.ENABLED: 1,
    Vault.Immutability.LOCKED: 2,
}


def _refused(detail: str) -> DomainError:
    return DomainError("validation_error", f"vault: {detail}", field="vault")


def _storage_root(vault: Vault) -> str:
    """Where the vault's data lives, comparable between vaults: an S3 bucket/prefix, or the
    local store's directory."""
    if locations.is_s3(vault.storage_location):
        return f"{locations.S3_SCHEME}{parse_location(vault.storage_location)}/"
    return str(Path(settings.HOLDFAST_STORAGE_ROOT) / "vaults" / vault.name) + "/"


def storage_overlaps(a: Vault, b: Vault) -> bool:
    mine, theirs = _storage_root(a), _storage_root(b)
    return mine.startswith(theirs) or theirs.startswith(mine)


def pairing_refusal(source: Vault, replica: Vault) -> DomainError | None:
    """Why ``replica`` cannot be ``source``'s replica, or None (rows as locked by the caller)."""
    if replica.pk == source.pk:
        return _refused("a vault cannot be its own replica; choose a vault in another region.")
    if replica.kind != source.kind:
        return _refused(
            f"{replica.name} is a {replica.get_kind_display()}, {source.name} a "
            f"{source.get_kind_display()}: a replica is a vault of the same kind."
        )
    if replica.region == source.region:
        return _refused(
            f"{replica.name} is in region {replica.region}, like {source.name}: choose a vault "
            "in another region."
        )
    if storage_overlaps(source, replica):
        return _refused(
            f"the storage of {replica.name} overlaps the storage of {source.name}: a replica "
            "keeps its copies on other storage."
        )
    if source.replica_of is not None:
        return _refused(
            f"{source.name} is itself the replica of {source.replica_of.name}: replicas do not "
            "chain."
        )
    if replica.replica_id is not None:
        return _refused(
            f"{replica.name} already replicates to {replica.replica}: replicas do not chain."
        )
    other = replica.replica_of
    if other is not None and other.pk != source.pk:
        return _refused(f"{replica.name} is already the replica of {other.name}.")
    if RANK[replica.immutability] < RANK[source.immutability]:
        return DomainError(
            "immutable_vault",
            f"The immutability of {replica.name} ({replica.get_immutability_display()}) is "
            f"weaker than that of {source.name} ({source.get_immutability_display()}): a "
            "replica is locked at least as strongly as its source. Raise the replica's "
            "immutability first.",
        )
    return None


def _lock_replica(vault_pk: int | None) -> Vault | None:
    if vault_pk is None:
        return None
    return Vault.objects.select_for_update().filter(pk=vault_pk).first()


def replica_set(*, actor: Any, vault: Vault, replica: Vault | None, problem: str = "") -> Vault:
    """Pair ``vault`` with ``replica``: every recovery point is copied there from now on,
    the points made before back-filled newest first (queued once this commits)."""

    def refresh(facts: dict[str, Any]) -> None:
        # Locked after the source row (the gate's), so two pairings are decided in turn.
        facts["replica"] = _lock_replica(replica.pk if replica is not None else None)

    def precheck(check: Check) -> None:
        source, target = check.vault, check.facts.get("replica")
        assert source is not None
        if target is None:
            raise _refused(problem or "no vault has that name.")
        if source.replica_id is not None and source.replica_id != target.pk:
            if source.is_locked:
                raise DomainError(
                    "immutability_locked",
                    f"Vault {source.name} is locked: its replication to {source.replica} "
                    "cannot be changed by anyone.",
                )
            raise _refused(
                f"{source.name} already replicates to {source.replica}: remove that "
                "pairing first (it is protected like a deletion)."
            )
        if source.replica_id == target.pk:
            return  # already paired: nothing to change
        refusal = pairing_refusal(source, target)
        if refusal is not None:
            raise refusal

    def change(check: Check) -> Vault:
        source = check.vault
        assert source is not None
        if source.replica_id is None:
            source.replica = check.facts["replica"]
            source.replica_paired_at = check.now
            source.save(update_fields=["replica", "replica_paired_at"])
            backfill_on_commit(source)
        return source

    return gate.execute(
        "replica_set",
        actor=actor,
        vault=vault,
        target=f"vault:{vault.name}",
        facts={"replica_name": replica.name if replica is not None else None},
        refresh=refresh,
        precheck=precheck,
        change=change,
    )


def replica_remove(*, actor: Any, vault: Vault) -> Vault:
    """Stop replicating: copies already made stay in the replica, under its own rules."""

    def precheck(check: Check) -> None:
        assert check.vault is not None
        if check.vault.replica_id is None:
            raise _refused(f"{check.vault.name} has no replica.")

    def change(check: Check) -> Vault:
        source = check.vault
        assert source is not None
        source.replica = None
        source.replica_paired_at = None
        source.save(update_fields=["replica", "replica_paired_at"])
        return source

    return gate.execute(
        "replica_remove",
        actor=actor,
        vault=vault,
        target=f"vault:{vault.name}",
        precheck=precheck,
        change=change,
    )


# --- immutability follows -------------------------------------------------------------------


def immutability_precheck(vault: Vault | None, state: str) -> None:
    """A replica's immutability is never below its source's: refused with
    ``immutable_vault`` (inside the gate's transaction, ``vault`` the locked row)."""
    source = vault.replica_of if vault is not None else None
    if vault is not None and source is not None and RANK[state] < RANK[source.immutability]:
        raise DomainError(
            "immutable_vault",
            f"Vault {vault.name} is the replica of {source.name}, whose immutability is "
            f"{source.get_immutability_display().lower()}: a replica is never weaker than its "
            "source. Remove the pairing on the source first, where it is allowed.",
        )


def immutability_follow(vault: Vault, state: str, now: Any) -> Vault | None:
    """Raise the replica's immutability to ``state`` before the source's (PostgreSQL checks
    the order); the replica row, locked, or None without a replica or need."""
    replica = _lock_replica(vault.replica_id)
    if replica is None or RANK[replica.immutability] >= RANK[state]:
        return replica
    replica.immutability = state
    replica.immutability_changed_at = now
    replica.save(update_fields=["immutability", "immutability_changed_at"])
    if replica.is_locked:
        storage_note(vault=replica)
    return replica


# --- the replica's points -------------------------------------------------------------------


def _replica_policy(replica: Vault, source: Policy) -> Policy:
    """The policy a replica item is on: the replica vault's policy of the source policy's
    name, copied there once (retention decides expiries the same way; replica items are
    never backed up, their points arrive by copy)."""
    found = Policy.objects.filter(vault=replica, name=source.name).first()
    if found is not None:
        return found
    copy = Policy.objects.get(pk=source.pk)
    copy.pk = None
    copy.vault = replica
    copy.save()
    return copy


def replica_item(replica: Vault, source_item: ProtectedItem) -> ProtectedItem:
    """The item of the same name in the replica, source ``{kind: replica, vault}``."""
    item = ProtectedItem.objects.filter(vault=replica, name=source_item.name).first()
    if item is not None:
        if (
            item.source_kind != ProtectedItem.SourceKind.REPLICA
            or item.source_path != source_item.vault.name
        ):
            raise DomainError(
                "validation_error",
                f"Vault {replica.name} already has an item named {item.name} that is not the "
                f"replica of {source_item.vault.name}'s: rename one of them.",
            )
        return item
    return ProtectedItem.objects.create(
        vault=replica,
        name=source_item.name,
        source_kind=ProtectedItem.SourceKind.REPLICA,
        source_path=source_item.vault.name,
        policy=_replica_policy(replica, source_item.policy),
    )


def replica_point_record(
    *,
    replica: Vault,
    source_point: RecoveryPoint,
    stored_bytes: int,
    digest: str,
) -> RecoveryPoint:
    """Record a verified copy of ``source_point`` in ``replica`` (idempotent): same created
    time, tier, tags, expiry, soft-delete end and digest, and its source."""
    source_vault = source_point.vault

    def change(check: Check) -> RecoveryPoint:
        existing = RecoveryPoint.objects.filter(
            vault=replica, source_vault=source_vault.name, source_point_ref=source_point.pk
        ).first()
        if existing is not None:
            return existing
        tier = source_point.tier
        if tier in {RecoveryPoint.Tier.SNAPSHOT_AND_VAULT, RecoveryPoint.Tier.SNAPSHOT}:
            tier = RecoveryPoint.Tier.VAULT_STANDARD
        try:
            with transaction.atomic():
                point = RecoveryPoint.objects.create(
                    vault=replica,
                    item=replica_item(replica, source_point.item),
                    tier=tier,
                    created_at=source_point.created_at,
                    expires_at=source_point.expires_at,
                    tags=list(source_point.tags),
                    on_demand=source_point.on_demand,
                    logical_bytes=source_point.logical_bytes,
                    stored_bytes=stored_bytes,
                    digest=digest,
                    storage_key=source_point.storage_key,
                    archived_at=source_point.archived_at,
                    soft_deleted_until=source_point.soft_deleted_until,
                    verified_at=check.now,
                    source_vault=source_vault.name,
                    source_point_ref=source_point.pk,
                    workload=source_point.workload,  # a database dump restores as one
                )
        except IntegrityError:  # a copy recorded by a racing attempt
            return RecoveryPoint.objects.get(
                vault=replica, source_vault=source_vault.name, source_point_ref=source_point.pk
            )
        ProtectedItem.objects.filter(pk=point.item_id).update(last_backup_at=point.created_at)
        # The replica's storage learns how long to keep the copy, as for its own backups.
        storage_note([point], vault=check.vault)
        return point

    return gate.execute(
        "replica_point_record",
        actor=None,
        vault=replica,
        target=f"point:{source_vault.name}/{source_point.pk}",
        change=change,
        after=lambda p: {**p.audit_state(), "source_point": [source_vault.name, source_point.pk]},
    )


def copies_follow_expiry(points: Any) -> None:
    """Inside the gate's transaction that raised the expiry of ``points``: their copies in
    a replica keep at least the same expiry (never shortened here)."""
    for point in points:
        later = RecoveryPoint.objects.filter(
            source_vault=point.vault.name,
            source_point_ref=point.pk,
            expires_at__lt=point.expires_at,
        )
        copies = list(later.select_related("vault"))
        if copies:
            later.update(expires_at=point.expires_at)
            for copy in copies:
                copy.expires_at = point.expires_at
            storage_note(copies)
            for vault in {copy.vault for copy in copies}:
                storage_lock_follow(vault)
