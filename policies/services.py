"""Policy writes and their effect preview (SPEC 3.6), all through the operation gate."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from portal import clock, gate
from portal.gate import Check, DomainError
from portal.validators import check_storable
from vaults.jobs.requests import storage_lock_follow
from vaults.models import ProtectedItem, RecoveryPoint, Vault
from vaults.services.items import LIVE_STATES, item_lock, require_item_state
from vaults.services.replication import copies_follow_expiry
from vaults.storage_notes import storage_note

from .models import Policy

POLICY_FIELDS = {
    "name",
    "kind",
    "frequency",
    "time",
    "weekdays",
    "interval_hours",
    "window_start",
    "window_hours",
    "timezone",
    "instant_restore_days",
    "daily_days",
    "weekly_weeks",
    "weekly_weekday",
    "monthly_months",
    "monthly_day",
    "yearly_years",
    "yearly_month",
    "tiering_mode",
    "tiering_after_days",
    "restore_drill_every_days",
}


def _validate(policy: Policy) -> None:
    errors = policy.validation_errors()
    if errors:
        name, message = next(iter(errors.items()))
        raise DomainError("validation_error", f"{name}: {message}", field=name)


def _check_kind_change(policy: Policy, edited: Policy) -> None:
    """Turning an enhanced policy in use into a standard one would move its items from
    enhanced back to standard, which SPEC 3.6 forbids."""
    downgrade = policy.kind == Policy.Kind.ENHANCED and edited.kind == Policy.Kind.STANDARD
    if downgrade and policy.pk and policy.items.exists():
        raise DomainError(
            "validation_error",
            "kind: items use this enhanced policy; they cannot move back to a standard one.",
            field="kind",
        )


def _apply(policy: Policy, changes: dict[str, Any]) -> Policy:
    unknown = set(changes) - POLICY_FIELDS
    if unknown:
        name = sorted(unknown)[0]
        raise DomainError("validation_error", f"{name}: unknown field.", field=name)
    edited = copy.copy(policy)
    for name, value in changes.items():
        setattr(edited, name, value)
    return edited


@dataclass
class PointMove:
    point_id: int
    item: str
    created_at: datetime
    old_expires_at: datetime
    new_expires_at: datetime
    # What the point's soft-delete mark becomes after the move (SPEC 3.3): set when the
    # move expires it at once under soft delete, cleared when its expiry is back ahead.
    soft_deleted_until: datetime | None = None

    @property
    def delta(self) -> timedelta:
        return self.new_expires_at - self.old_expires_at


@dataclass
class Preview:
    """What a policy change would do, before it is saved."""

    weaker: list[str] = field(default_factory=list)
    retention_shorter: list[str] = field(default_factory=list)
    retention_longer: bool = False
    moves: list[PointMove] = field(default_factory=list)
    refusal: DomainError | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "weaker": bool(self.weaker),
            "weaker_reasons": self.weaker,
            "retention_longer": self.retention_longer,
            "allowed": self.refusal is None,
            "refusal": (
                {"code": self.refusal.code, "detail": self.refusal.detail} if self.refusal else None
            ),
            "point_changes": [
                {
                    "id": move.point_id,
                    "item": move.item,
                    "created_at": move.created_at,
                    "old_expires_at": move.old_expires_at,
                    "new_expires_at": move.new_expires_at,
                    "delta_days": round(move.delta.total_seconds() / 86400, 2),
                    "soft_deleted_until": move.soft_deleted_until,
                }
                for move in self.moves
            ],
        }


def _moves(vault: Vault, points: Any, new_policy: Policy) -> list[PointMove]:
    """New expiries of the scheduled vault-tier points a policy change touches.

    Under immutability a point's expiry never moves earlier (Backup vaults accept a shorter
    policy, but it applies to new points only); elsewhere it follows the new retention. With
    soft delete on, a point whose expiry the change shortens is soft-deleted for the vault's
    soft-delete retention once its new expiry passes (at once, if it has passed already)
    instead of being purged by the next sweep (SPEC 3.2, 3.3): a shorter retention never
    removes data sooner than soft delete allows. A later change that moves its expiry back
    into the future brings it back.
    """
    now = clock.now()
    period = timedelta(days=vault.soft_delete_retention_days)
    moves = []
    for point in points:
        new_expiry = new_policy.expiry_for(point.created_at, point.tags)
        if vault.is_immutable:
            new_expiry = max(new_expiry, point.expires_at)
        if new_expiry == point.expires_at:
            continue
        soft_deleted_until = point.soft_deleted_until
        if new_expiry > point.expires_at and new_expiry > now:
            # Back; a soft delete it has still ends no sooner (RecoveryPoint.soft_delete_kept).
            soft_deleted_until = point.soft_delete_kept(new_expiry)
        elif new_expiry < point.expires_at and point.expires_at > now and vault.soft_delete_on:
            soft_deleted_until = max(
                max(new_expiry, now) + period, point.soft_deleted_until or new_expiry
            )
        moves.append(
            PointMove(
                point.pk,
                point.item.name,
                point.created_at,
                point.expires_at,
                new_expiry,
                soft_deleted_until,
            )
        )
    return moves


def apply_moves(moves: list[PointMove]) -> None:
    """Write the moves computed by :func:`_moves` (inside the gate's transaction)."""
    for move in moves:
        RecoveryPoint.objects.filter(pk=move.point_id).update(
            expires_at=move.new_expires_at, soft_deleted_until=move.soft_deleted_until
        )
    storage_note(RecoveryPoint.objects.filter(pk__in=[m.point_id for m in moves]))
    # On S3, objects of points whose expiry grew get the longer lock (never a shorter one).
    longer = [move.point_id for move in moves if move.new_expires_at > move.old_expires_at]
    if longer:
        for vault in Vault.objects.filter(recovery_points__pk__in=longer).distinct():
            storage_lock_follow(vault)
        # Copies in replica vaults keep at least the longer expiry (SPEC 3.10).
        copies_follow_expiry(RecoveryPoint.objects.filter(pk__in=longer).select_related("vault"))


def points_sooner(moves: list[PointMove], now: datetime) -> list[str]:
    """A sentence when ``moves`` bring any unexpired point's expiry earlier.

    A change can do that without a shorter tier: a point whose retain-until was raised (always
    allowed) is recomputed from the policy by any later edit, a retention increase included,
    and a time zone change moves local-calendar expiries. Such a change is judged as the
    shortening it is (MUA's ``modify_*_weaken``, the security alert), as a shorter
    retain-until would be; otherwise one backup admin cuts a guarded point's date for free."""
    sooner = [m for m in moves if m.new_expires_at < m.old_expires_at and m.old_expires_at > now]
    if not sooner:
        return []
    first = min(sooner, key=lambda m: m.delta)
    return [
        f"{len(sooner)} recovery point(s) would expire sooner (point {first.point_id}: "
        f"{first.old_expires_at:%Y-%m-%d %H:%M} to {first.new_expires_at:%Y-%m-%d %H:%M} UTC)."
    ]


def _with_moves(facts: dict[str, Any], moves: list[PointMove]) -> dict[str, Any]:
    """``facts`` of a policy change, judged also on the moves it makes (:func:`points_sooner`)."""
    facts["moves"] = moves
    if not facts["retention_shorter"]:
        sooner = points_sooner(moves, clock.now())
        facts["retention_shorter"] = sooner
        facts["weaker"] = [*facts["weaker"], *sooner]
    return facts


def _scheduled_points(**filters: Any) -> Any:
    return (
        RecoveryPoint.objects.filter(on_demand=False, **filters)
        .exclude(tier=RecoveryPoint.Tier.SNAPSHOT)
        .select_related("item")
        .order_by("created_at")
    )


def _policy_facts(policy: Policy, edited: Policy) -> dict[str, Any]:
    suspended = (
        policy.items.filter(protection_state=ProtectedItem.State.PROTECTION_STOPPED).count()
        if policy.pk
        else 0
    )
    return {
        "weaker": policy.weaker_reasons(edited),
        "retention_shorter": policy.retention_shorter(edited),
        "retention_longer": policy.retention_longer(edited),
        "suspended_items": suspended,
    }


def policy_preview(*, actor: Any, policy: Policy, changes: dict[str, Any]) -> Preview:
    """Dry run of :func:`policy_update`: validates, then says what would move and whether the
    gate would refuse (immutability, suspended items, MUA). Changes nothing."""
    edited = _apply(policy, changes)
    _validate(edited)
    _check_kind_change(policy, edited)
    moves = _moves(policy.vault, _scheduled_points(item__policy=policy), edited)
    facts = _with_moves(_policy_facts(policy, edited), moves)
    preview = Preview(
        weaker=facts["weaker"],
        retention_shorter=facts["retention_shorter"],
        retention_longer=facts["retention_longer"],
        moves=moves,
    )
    try:
        gate.decide("policy_update", actor=actor, vault=policy.vault, facts=facts)
    except DomainError as refusal:
        preview.refusal = refusal
    return preview


def policy_create(*, actor: Any, vault: Vault, **fields: Any) -> Policy:
    check_storable(**fields)
    policy = _apply(Policy(vault=vault), fields)

    def precheck(check: Check) -> None:
        if not policy.name:
            raise DomainError("validation_error", "name: this field is required.", field="name")
        if Policy.objects.filter(vault=vault, name=policy.name).exists():
            raise DomainError(
                "validation_error",
                f"name: vault {vault.name} already has a policy named {policy.name}.",
                field="name",
            )
        _validate(policy)

    def change(check: Check) -> Policy:
        policy.save()
        return policy

    return gate.execute(
        "policy_create",
        actor=actor,
        vault=vault,
        target=f"policy:{policy.name}",
        precheck=precheck,
        change=change,
        after=lambda p: p.audit_state(),
    )


def policy_update(*, actor: Any, policy: Policy, changes: dict[str, Any]) -> Policy:
    """Change a policy; existing scheduled points' expiries follow the new retention.

    The edit is judged against the policy row as it is under its lock, not the caller's copy:
    a copy read before someone else lengthened the retention would otherwise make a shorter
    retention look like no change."""
    check_storable(**changes)
    _apply(policy, changes)  # unknown fields are refused before anything else

    def refresh(facts: dict[str, Any]) -> None:
        locked = Policy.objects.select_for_update().get(pk=policy.pk)
        edited = _apply(locked, changes)
        facts.update(policy=locked, edited=edited)
        # An invalid edit (say, an unknown time zone) has no meaningful facts: the precheck
        # refuses it, after the role check.
        if not edited.validation_errors():
            # The vault row is locked already (the gate locks it before this runs).
            vault = Vault.objects.get(pk=locked.vault_id)
            points = _scheduled_points(item__policy=locked).select_for_update(of=("self",))
            facts.update(_with_moves(_policy_facts(locked, edited), _moves(vault, points, edited)))

    def precheck(check: Check) -> None:
        locked, edited = check.facts["policy"], check.facts["edited"]
        _validate(edited)
        _check_kind_change(locked, edited)
        renamed = "name" in changes and changes["name"] != locked.name
        if renamed and Policy.objects.filter(vault=locked.vault_id, name=changes["name"]).exists():
            raise DomainError("validation_error", "name: that name is taken.", field="name")

    def change(check: Check) -> Policy:
        edited: Policy = check.facts["edited"]
        apply_moves(check.facts["moves"])
        edited.save()
        return edited

    return gate.execute(
        "policy_update",
        actor=actor,
        vault=policy.vault,
        target=f"policy:{policy.name}",
        refresh=refresh,
        before=lambda facts: facts["policy"].audit_state(),
        precheck=precheck,
        change=change,
        after=lambda p: p.audit_state(),
    )


def policy_delete(*, actor: Any, policy: Policy) -> None:
    def change(check: Check) -> None:
        policy.delete()

    gate.execute(
        "policy_delete",
        actor=actor,
        vault=policy.vault,
        target=f"policy:{policy.name}",
        facts={"items_using": policy.items.count()},
        before=policy.audit_state(),
        change=change,
        after=lambda _: {"deleted": True},
    )


def policy_change_preview(*, actor: Any, item: ProtectedItem, policy: Policy) -> Preview:
    """Dry run of moving ``item`` to ``policy`` (the Backup items blade and the API)."""
    moves = _moves(item.vault, _scheduled_points(item=item), policy)
    facts = _with_moves(item_policy_facts(item, policy), moves)
    preview = Preview(
        weaker=facts["weaker"],
        retention_shorter=facts["retention_shorter"],
        retention_longer=facts["retention_longer"],
        moves=moves,
    )
    try:
        gate.decide("item_change_policy", actor=actor, vault=item.vault, facts=facts)
    except DomainError as refusal:
        preview.refusal = refusal
    return preview


def item_change_policy(*, actor: Any, item: ProtectedItem, policy: Policy | None) -> ProtectedItem:
    """Move an item to another policy of its vault; its scheduled points follow it (the
    change :func:`policy_change_preview` shows)."""
    if policy is None or policy.vault_id != item.vault_id:
        raise DomainError(
            "validation_error",
            f"policy: choose a policy of vault {item.vault.name}.",
            field="policy",
        )

    def refresh(facts: dict[str, Any]) -> None:
        # Judge the move from the item as it is now, under its row lock.
        item_lock(item)(facts)
        facts.update(item_policy_change_facts(facts["item"], policy))

    def change(check: Check) -> ProtectedItem:
        apply_moves(check.facts["moves"])
        locked: ProtectedItem = check.facts["item"]
        locked.policy = policy
        locked.save(update_fields=["policy"])
        return locked

    return gate.execute(
        "item_change_policy",
        actor=actor,
        vault=item.vault,
        target=f"item:{item.name}",
        before=item.audit_state(),
        refresh=refresh,
        precheck=require_item_state(*LIVE_STATES, verb="change policy"),
        change=change,
        after=lambda i: i.audit_state(),
    )


def item_policy_facts(item: ProtectedItem, policy: Policy) -> dict[str, Any]:
    return {
        "weaker": item.policy.weaker_reasons(policy),
        "retention_shorter": item.policy.retention_shorter(policy),
        "retention_longer": item.policy.retention_longer(policy),
        "old_kind": item.policy.kind,
        "new_kind": policy.kind,
    }


def item_policy_change_facts(item: ProtectedItem, policy: Policy) -> dict[str, Any]:
    """The facts of moving ``item`` (read under its row lock, after its vault's) to
    ``policy``, with the point moves it makes, their rows locked (applied by
    :func:`apply_moves` once the gate allows it)."""
    vault = Vault.objects.get(pk=item.vault_id)
    points = _scheduled_points(item=item).select_for_update(of=("self",))
    return _with_moves(item_policy_facts(item, policy), _moves(vault, points, policy))
