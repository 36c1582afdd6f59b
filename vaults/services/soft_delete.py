"""The Security settings blade: soft delete (SPEC 3.3), always-on soft delete (after an
approval), undelete, and purging soft-deleted items when their time comes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from portal import clock, gate
from portal.gate import Check, DomainError
from portal.models import Approval

from ..models import ProtectedItem, RecoveryPoint, Vault
from .common import lock_action_request, vault_change
from .items import item_change, item_lock, purge

SOFT_DELETE_RETENTION = (14, 180)


def _check_soft_delete_retention(days: int) -> None:
    if not SOFT_DELETE_RETENTION[0] <= days <= SOFT_DELETE_RETENTION[1]:
        raise DomainError(
            "validation_error",
            "retention_days: soft delete keeps items 14 to 180 days.",
            field="retention_days",
        )


def soft_delete_set(
    *,
    actor: Any,
    vault: Vault,
    state: str | None = None,
    retention_days: int | None = None,
    confirm_purge_count: int | None = None,
) -> Vault:
    """Turn soft delete on or off, or change its retention; ``always_on`` needs an approval
    (:func:`soft_delete_always_on_request`). Disabling purges the soft-deleted items, so the
    caller must confirm how many."""
    if state not in {None, Vault.SoftDelete.ENABLED, Vault.SoftDelete.DISABLED}:
        raise DomainError(
            "validation_error",
            "state: choose 'enabled' or 'disabled'; always-on needs a lock request.",
            field="state",
        )
    if retention_days is not None:
        _check_soft_delete_retention(retention_days)
    if state == Vault.SoftDelete.DISABLED:
        soft_deleted = vault.items.filter(protection_state=ProtectedItem.State.SOFT_DELETED)

        def disable(check: Check) -> Vault:
            locked = check.vault
            assert locked is not None
            for item in soft_deleted.select_related("vault"):
                purge(item, check)
            locked.soft_delete_state = Vault.SoftDelete.DISABLED
            locked.save(update_fields=["soft_delete_state"])
            return locked

        return gate.execute(
            "soft_delete_disable",
            actor=actor,
            vault=vault,
            target=f"vault:{vault.name}",
            facts={
                "purge_count": soft_deleted.count(),
                "confirm_purge_count": confirm_purge_count,
                # Purging must not take unexpired points of an immutable vault with it.
                "unexpired_points": RecoveryPoint.objects.filter(item__in=soft_deleted)
                .unexpired(clock.now())
                .count(),
            },
            change=disable,
        )
    if state == Vault.SoftDelete.ENABLED and vault.soft_delete_state != state:
        vault = _soft_delete_enable(actor, vault)
    if retention_days is not None and retention_days != vault.soft_delete_retention_days:
        vault = _soft_delete_retention(actor, vault, retention_days)
    return vault


def _soft_delete_enable(actor: Any, vault: Vault) -> Vault:
    return vault_change(
        "soft_delete_enable",
        actor=actor,
        vault=vault,
        fields={"soft_delete_state": Vault.SoftDelete.ENABLED},
    )


def _soft_delete_retention(actor: Any, vault: Vault, days: int) -> Vault:
    # Shorter or not is judged by the gate on the row it locked (soft_delete_shortens).
    return vault_change(
        "soft_delete_retention",
        actor=actor,
        vault=vault,
        facts={"retention_days": days},
        fields={"soft_delete_retention_days": days},
    )


def soft_delete_always_on_request(
    *,
    actor: Any,
    vault: Vault,
    confirmation: str,
    retention_days: int | None = None,
    otp: str = "",
) -> Approval:
    """Always-on soft delete is irreversible: typed confirmation plus a second approver.

    A retention given with the request travels in the approval and is applied with always-on,
    both or neither: a request refused (say, a mistyped name) changes nothing. Always-on
    retention only grows, so a shorter one is refused here."""

    def precheck(check: Check) -> None:
        if retention_days is None:
            return
        _check_soft_delete_retention(retention_days)
        assert check.vault is not None
        if retention_days < check.vault.soft_delete_retention_days:
            raise DomainError(
                "validation_error",
                f"retention_days: always-on retention can only grow; it is "
                f"{check.vault.soft_delete_retention_days} days now.",
                field="retention_days",
            )

    return lock_action_request(
        "soft_delete_always_on_request",
        Approval.Kind.ALWAYS_ON_SOFT_DELETE,
        actor=actor,
        vault=vault,
        confirmation=confirmation,
        payload={"retention_days": retention_days} if retention_days is not None else None,
        precheck=precheck,
        otp=otp,
    )


def soft_delete_always_on(*, actor: Any, vault: Vault, approval: Approval) -> Vault:
    """Make soft delete always-on (with the retention the request carried, if longer); run
    only by an approved request."""
    return vault_change(
        "soft_delete_always_on",
        actor=actor,
        vault=vault,
        facts={"approval": approval},
        fields=lambda check: {
            "soft_delete_state": Vault.SoftDelete.ALWAYS_ON,
            "soft_delete_retention_days": max(
                check.vault.soft_delete_retention_days if check.vault else 14,
                approval.payload.get("retention_days") or 0,
            ),
        },
    )


def item_undelete(*, actor: Any, item: ProtectedItem) -> ProtectedItem:
    """Bring a soft-deleted item back as protection stopped, data retained."""
    return item_change(
        "item_undelete",
        actor=actor,
        item=item,
        states=(ProtectedItem.State.SOFT_DELETED,),
        verb="be undeleted",
        fields=lambda check: {
            "protection_state": ProtectedItem.State.PROTECTION_STOPPED,
            "stopped_at": check.now,
            "soft_deleted_at": None,
            "purge_at": None,
        },
    )


def item_purge(*, item: ProtectedItem) -> None:
    """Purge a soft-deleted item whose retention has ended (the sweep)."""

    def precheck(check: Check) -> None:
        # Judged on the row locked now: an undelete since the sweep listed it wins.
        locked: ProtectedItem = check.facts["item"]
        if locked.protection_state != ProtectedItem.State.SOFT_DELETED or (
            locked.purge_at is None or locked.purge_at > check.now
        ):
            raise DomainError("validation_error", f"Item {item.name} is not due for purge.")

    unexpired = item.unexpired_point_count(clock.now())
    gate.execute(
        "item_purge",
        actor=None,
        vault=item.vault,
        target=f"item:{item.name}",
        facts={"item": item, "unexpired_points": unexpired},
        refresh=item_lock(item),
        before=item.audit_state(),
        precheck=precheck,
        change=lambda check: purge(check.facts["item"], check),
        after=lambda _: {"purged": True},
    )


UPCOMING_PURGE_WARNING = timedelta(days=2)


def item_purge_warn(*, item: ProtectedItem) -> None:
    """Raise the "upcoming purge" security alert for a soft-deleted item (audited)."""
    gate.execute(
        "item_purge_warn",
        actor=None,
        vault=item.vault,
        target=f"item:{item.name}",
        change=lambda check: None,
        after=lambda _: {"purge_at": item.purge_at.isoformat() if item.purge_at else None},
    )
