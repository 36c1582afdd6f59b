"""Recovery points (SPEC 3.7): recorded after a backup, deleted, retained longer or shorter,
expired by the sweep, flagged by the jobs that verify and move them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from policies import rules as policy_rules
from portal import gate
from portal.alerts import raise_alert
from portal.gate import Check, DomainError
from portal.validators import check_storable

from .. import rules
from ..jobs.requests import storage_lock_follow
from ..models import ProtectedItem, RecoveryPoint, Vault
from ..storage_notes import storage_note
from .replication import copies_follow_expiry


def point_expiry(
    item: ProtectedItem, at: datetime, retain_until: datetime | None, tier: str
) -> tuple[list[str], datetime]:
    """A point's GFS tags and expiry: from the item's policy, or the retain-until date of an
    on-demand backup; an operational snapshot keeps its instant-restore days."""
    policy = item.policy
    if tier == RecoveryPoint.Tier.SNAPSHOT:
        return [], at + timedelta(days=policy.instant_restore_days)
    tags = sorted(policy_rules.gfs_tags(at, policy.retention(), policy.schedule()))
    if retain_until is not None:
        return [], retain_until
    return tags, policy.expiry_for(at, tags)


def point_record(
    *,
    item: ProtectedItem,
    created_at: datetime | None = None,
    retain_until: datetime | None = None,
    tier: str = "vault_standard",
    logical_bytes: int = 0,
    stored_bytes: int = 0,
    digest: str = "",
) -> RecoveryPoint:
    """Record a finished backup's point: GFS tags and expiry from the item's policy, or the
    retain-until date of an on-demand backup."""

    def change(check: Check) -> RecoveryPoint:
        at = created_at or check.now
        tags, expires_at = point_expiry(item, at, retain_until, tier)
        point = RecoveryPoint.objects.create(
            vault=item.vault,
            item=item,
            tier=tier,
            created_at=at,
            expires_at=expires_at,
            tags=tags,
            on_demand=retain_until is not None,
            logical_bytes=logical_bytes,
            stored_bytes=stored_bytes,
            digest=digest,
        )
        ProtectedItem.objects.filter(pk=item.pk).update(last_backup_at=at)
        return point

    return gate.execute(
        "point_record",
        actor=None,
        vault=item.vault,
        target=f"item:{item.name}",
        change=change,
        after=lambda p: p.audit_state(),
    )


def _lock_point(point: RecoveryPoint) -> Callable[[dict[str, Any]], None]:
    """Re-read the point under a row lock inside the gate's transaction (after the vault)."""

    def refresh(facts: dict[str, Any]) -> None:
        facts["point"] = (
            RecoveryPoint.objects.select_for_update(of=("self",))
            .select_related("item")
            .get(pk=point.pk)
        )

    return refresh


def _soft_delete_point(vault: Vault, point: RecoveryPoint, expires_at: datetime) -> dict[str, Any]:
    """The fields that end ``point`` at ``expires_at``: with soft delete on, a vault-tier
    point is then kept, restorable, for the vault's soft-delete retention (SPEC 3.2, 3.3); a
    soft delete it already has is never cut short."""
    kept = point.soft_delete_kept(expires_at)
    fields: dict[str, Any] = {"expires_at": expires_at, "soft_deleted_until": kept}
    if vault.soft_delete_on and not point.is_operational_only:
        end = expires_at + timedelta(days=vault.soft_delete_retention_days)
        fields["soft_deleted_until"] = max(end, kept) if kept is not None else end
    return fields


def point_delete(*, actor: Any, point: RecoveryPoint) -> RecoveryPoint | None:
    """Delete one recovery point; an immutable vault refuses it before the point's expiry.

    With soft delete on, a vault-tier point is soft-deleted instead (returned): restorable
    until the vault's soft-delete retention has passed, brought back by a later retain-until,
    purged by the sweep after. Returns ``None`` once the point is gone."""

    def precheck(check: Check) -> None:
        locked: RecoveryPoint = check.facts["point"]
        if locked.is_expired(check.now) and locked.is_soft_deleted(check.now):
            raise DomainError(
                "validation_error",
                f"Recovery point {locked.pk} is already soft-deleted: it is purged on "
                f"{locked.soft_deleted_until:%Y-%m-%d %H:%M} UTC, not sooner.",
            )

    def change(check: Check) -> RecoveryPoint | None:
        assert check.vault is not None
        locked: RecoveryPoint = check.facts["point"]
        fields = _soft_delete_point(check.vault, locked, min(check.now, locked.expires_at))
        if fields["soft_deleted_until"] is None:
            RecoveryPoint.objects.filter(pk=locked.pk).delete()
            storage_note([locked], release=True, vault=check.vault)
            return None
        RecoveryPoint.objects.filter(pk=locked.pk).update(**fields)
        locked.refresh_from_db()
        storage_note([locked], vault=check.vault)
        return locked

    return gate.execute(
        "point_delete",
        actor=actor,
        vault=point.vault,
        target=f"point:{point.pk}",
        facts={"point": point},
        refresh=_lock_point(point),
        before=lambda facts: facts["point"].audit_state(),
        precheck=precheck,
        change=change,
        after=lambda p: p.audit_state() if p is not None else {"deleted": True},
    )


def point_retain_until(
    *, actor: Any, point: RecoveryPoint, retain_until: datetime
) -> RecoveryPoint:
    """Move a point's expiry. Growing is always allowed (and brings a soft-deleted point back).

    Shortening is a weakening, judged on the point as it is under its lock (SPEC 3.2): an
    immutable vault refuses it; a guarded vault needs elevation on ``delete_recovery_point``
    (a shorter date is a delete that takes longer); it raises a security alert; and with soft
    delete on, the point is soft-deleted for the vault's retention once its new date passes.
    """
    check_storable(retain_until=retain_until)

    def refresh(facts: dict[str, Any]) -> None:
        _lock_point(point)(facts)
        current = facts["point"].expires_at
        facts["retention_shorter"] = (
            [f"{current:%Y-%m-%d %H:%M} to {retain_until:%Y-%m-%d %H:%M} UTC"]
            if retain_until < current
            else []
        )

    def precheck(check: Check) -> None:
        rules.retain_until_check(retain_until, check.now)

    def change(check: Check) -> RecoveryPoint:
        assert check.vault is not None
        locked: RecoveryPoint = check.facts["point"]
        if check.facts["retention_shorter"]:
            fields = _soft_delete_point(check.vault, locked, retain_until)
        else:
            fields = {
                "expires_at": retain_until,
                "soft_deleted_until": locked.soft_delete_kept(retain_until),
            }
        RecoveryPoint.objects.filter(pk=locked.pk).update(**fields)
        locked.refresh_from_db()
        storage_note([locked], vault=check.vault)
        if not check.facts["retention_shorter"]:
            storage_lock_follow(check.vault)
            copies_follow_expiry([locked])  # the replica's copy keeps it (SPEC 3.10)
        return locked

    return gate.execute(
        "point_retain_until",
        actor=actor,
        vault=point.vault,
        target=f"point:{point.pk}",
        facts={"point": point, "new_expiry": retain_until},
        refresh=refresh,
        before=lambda facts: facts["point"].audit_state(),
        precheck=precheck,
        change=change,
        after=lambda p: p.audit_state(),
    )


def point_expire(*, point: RecoveryPoint) -> None:
    """Remove a point whose expiry has passed: always allowed, immutable vault or not."""

    def change(check: Check) -> None:
        RecoveryPoint.objects.filter(pk=point.pk).delete()

    def refresh(facts: dict[str, Any]) -> None:
        # Judge the expiry on the row as it is now: a retention increase a moment ago wins.
        facts["point"] = (
            RecoveryPoint.objects.select_for_update().filter(pk=point.pk).first() or point
        )

    gate.execute(
        "point_expire",
        actor=None,
        vault=point.vault,
        target=f"point:{point.pk}",
        facts={"point": point},
        refresh=refresh,
        before=point.audit_state(),
        change=change,
        after=lambda _: {"deleted": True},
    )


def point_flag(op: str, point: RecoveryPoint, **fields: Any) -> None:
    """Set fields of a point as Holdfast itself (``op`` a system operation: verified, marked
    corrupt, snapshot lapsed, rehydration ended); marking it corrupt raises the alert."""

    def change(check: Check) -> None:
        RecoveryPoint.objects.filter(pk=point.pk).update(**fields)
        if op == "point_mark_corrupt":
            raise_alert(
                "corruption_found",
                vault_name=point.vault.name,
                target=f"point:{point.pk}",
                message=f"Recovery point {point.pk} of {point.item.name}: {fields['corruption']}.",
            )

    gate.execute(
        op,
        actor=None,
        vault=point.vault,
        target=f"point:{point.pk}",
        before=point.audit_state(),
        change=change,
        after=lambda _: {k: str(v) for k, v in fields.items()},
    )


def point_drill_record(point: RecoveryPoint, drill: dict[str, Any]) -> None:
    """Record a restore drill's outcome on its point (SPEC 3.12); a failed drill raises the
    ``drill_failed`` security alert naming the first bad file."""

    def change(check: Check) -> None:
        RecoveryPoint.objects.filter(pk=point.pk).update(drill=drill)
        if drill["status"] == "failed":
            first = drill.get("first_bad")
            raise_alert(
                "drill_failed",
                vault_name=point.vault.name,
                target=f"point:{point.pk}",
                message=f"The restore drill of recovery point {point.pk} of {point.item.name} "
                f"failed{f' at {first}' if first else ''}: {drill.get('error', '')}",
            )

    gate.execute(
        "point_drill_record",
        actor=None,
        vault=point.vault,
        target=f"point:{point.pk}",
        before={**point.audit_state(), "drill": point.drill},
        change=change,
        after=lambda _: {"drill": drill},
    )
