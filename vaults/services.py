"""Writes to vaults: every one goes through the operation gate (``portal.gate``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from policies import rules
from portal import clock, gate
from portal.gate import Check, DomainError
from portal.models import Approval
from portal.validators import check_storable

from . import stores
from .models import ProtectedItem, RecoveryPoint, Vault
from .storage import StorageError


def _validation_error(exc: ValidationError) -> DomainError:
    if hasattr(exc, "error_dict"):
        field, errors = next(iter(exc.error_dict.items()))
        return DomainError("validation_error", f"{field}: {errors[0].messages[0]}", field=field)
    return DomainError("validation_error", exc.messages[0])


def _vault_change(
    op: str,
    *,
    actor: Any,
    vault: Vault,
    fields: dict[str, Any] | Callable[[Check], dict[str, Any]],
    target: str = "",
    facts: dict[str, Any] | None = None,
    precheck: Callable[[Check], None] | None = None,
) -> Vault:
    """Set fields of the vault row the gate locked for ``op`` (the common shape of every
    security-setting change)."""

    def change(check: Check) -> Vault:
        locked = check.vault
        assert locked is not None
        values = fields(check) if callable(fields) else fields
        for name, value in values.items():
            setattr(locked, name, value)
        locked.save(update_fields=list(values))
        return locked

    return gate.execute(
        op,
        actor=actor,
        vault=vault,
        target=target or f"vault:{vault.name}",
        facts=facts,
        precheck=precheck,
        change=change,
    )


def vault_create(
    *,
    actor: Any,
    name: str,
    kind: str,
    region: str,
    tags: dict[str, str] | None = None,
    storage_location: str = "",
) -> Vault:
    """Create a vault; new vaults start with soft delete on for 14 days (SPEC 3.3)."""
    check_storable(name=name, region=region, tags=tags, storage_location=storage_location)
    vault = Vault(
        name=name,
        kind=kind,
        region=region,
        tags=tags or {},
        storage_location=storage_location or str(settings.HOLDFAST_STORAGE_ROOT / "vaults" / name),
        created_by=actor,
    )

    def precheck(check: Check) -> None:
        try:
            vault.full_clean()
        except ValidationError as exc:
            raise _validation_error(exc) from exc
        _check_storage_location(vault.storage_location)

    def change(check: Check) -> Vault:
        vault.save()
        return vault

    return gate.execute(
        "vault_create",
        actor=actor,
        vault_name=name[:50],
        target=f"vault:{name}",
        facts={"name": name},
        precheck=precheck,
        change=change,
        after=lambda v: v.audit_state(),
    )


def _check_storage_location(location: str) -> None:
    """An S3 location must be a bucket with versioning and Object Lock, used by no other
    vault; the storage is asked before the vault exists (docs/storage.md). Any other location
    overlaps no other vault's either, as the database also insists (vault_storage_apart)."""
    if not stores.is_s3(location):
        mine = location + "/"
        for other in Vault.objects.exclude(storage_location="").exclude(
            storage_location__startswith=stores.S3_SCHEME
        ):
            theirs = other.storage_location + "/"
            if mine.startswith(theirs) or theirs.startswith(mine):
                raise DomainError(
                    "validation_error",
                    f"storage_location: {location} overlaps the storage of vault {other.name}.",
                    field="storage_location",
                )
        return
    try:
        wanted = str(stores.parse_location(location)) + "/"
        for other in Vault.objects.filter(storage_location__startswith=stores.S3_SCHEME):
            taken = str(stores.parse_location(other.storage_location)) + "/"
            if wanted.startswith(taken) or taken.startswith(wanted):
                raise DomainError(
                    "validation_error",
                    f"storage_location: {location} overlaps the storage of vault {other.name}.",
                    field="storage_location",
                )
        stores.check_location(location)
    except StorageError as exc:
        raise DomainError(
            "validation_error", f"storage_location: {exc}", field="storage_location"
        ) from None


def vault_delete(*, actor: Any, vault: Vault) -> None:
    """Delete a vault; an immutable vault only once none of its points is unexpired."""

    def change(check: Check) -> None:
        assert check.vault is not None
        check.vault.delete()

    gate.execute(
        "vault_delete",
        actor=actor,
        vault=vault,
        target=f"vault:{vault.name}",
        change=change,
        after=lambda _: {"deleted": True},
    )


def job_alerts_mute(*, actor: Any, vault: Vault, muted: bool) -> Vault:
    """Mute (or unmute) the delivery of this vault's job alerts; security alerts stay on."""
    return _vault_change(
        "job_alerts_mute", actor=actor, vault=vault, fields={"mute_job_alerts": muted}
    )


def immutability_set(*, actor: Any, vault: Vault, state: str) -> Vault:
    """Enable or disable immutability; locking goes through :func:`immutability_lock_request`."""
    if state not in {Vault.Immutability.ENABLED, Vault.Immutability.DISABLED}:
        raise DomainError(
            "validation_error",
            "state must be 'enabled' or 'disabled'; locking needs a lock request.",
            field="state",
        )
    op = "immutability_enable" if state == Vault.Immutability.ENABLED else "immutability_disable"
    if vault.immutability == state:
        # Nothing to change, but the attempt still goes through the gate and is audited.
        return _vault_change(op, actor=actor, vault=vault, fields={})
    changed = _vault_change(
        op,
        actor=actor,
        vault=vault,
        fields=lambda check: {"immutability": state, "immutability_changed_at": check.now},
    )
    if state == Vault.Immutability.ENABLED:
        _storage_lock_follow(changed)
    return changed


def _storage_lock_follow(vault: Vault) -> None:
    """On S3, existing objects get the lock that immutability now asks for (by a job)."""
    from . import jobs

    jobs.storage_lock_follow(vault)


def lock_action_request(
    op: str,
    kind: str,
    *,
    actor: Any,
    vault: Vault,
    confirmation: str,
    payload: dict[str, Any] | None = None,
    precheck: Callable[[Check], None] | None = None,
    otp: str = "",
) -> Approval:
    """An irreversible action (SPEC 3.5): the vault's exact name typed, then a pending approval
    valid 24 hours, carrying ``payload`` for the action; asking again while one is pending
    returns that one."""

    def change(check: Check) -> Approval:
        pending = Approval.objects.filter(
            kind=kind, vault=check.vault, status=Approval.Status.PENDING, expires_at__gt=check.now
        ).first()
        return pending or Approval.objects.create(
            kind=kind,
            requested_by=actor,
            vault=check.vault,
            payload=payload or {},
            created_at=check.now,
            expires_at=check.now + settings.HOLDFAST_APPROVAL_TTL,
        )

    return gate.execute(
        op,
        actor=actor,
        vault=vault,
        target=f"vault:{vault.name}",
        facts={"confirmation": confirmation, "otp": otp},
        precheck=precheck,
        change=change,
        after=lambda a: {"approval": a.pk, "status": a.status, **a.payload},
    )


def immutability_lock_request(
    *, actor: Any, vault: Vault, confirmation: str, otp: str = ""
) -> Approval:
    """Ask for the irreversible lock of immutability (with a fresh second-factor code when
    ``HOLDFAST_APPROVER_2FA=required``)."""
    return lock_action_request(
        "immutability_lock_request",
        Approval.Kind.LOCK_IMMUTABILITY,
        actor=actor,
        vault=vault,
        confirmation=confirmation,
        otp=otp,
    )


def immutability_lock(*, actor: Any, vault: Vault, approval: Approval) -> Vault:
    """Lock immutability for good; run only by an approved lock approval."""
    locked = _vault_change(
        "immutability_lock",
        actor=actor,
        vault=vault,
        facts={"approval": approval},
        fields=lambda check: {
            "immutability": Vault.Immutability.LOCKED,
            "immutability_changed_at": check.now,
        },
    )
    stores.storage_note(vault=locked)
    _storage_lock_follow(locked)
    return locked


# --- protected items and recovery points (SPEC 3.7) -----------------------------------------


def source_refusal(resolved: Path) -> str | None:
    """Why the directory at ``resolved`` (a path with every symlink already followed) may not
    be backed up, as a clause ("holds Holdfast's own storage or data"), or None.

    The one rule for sources, judged where an item is protected and again by every backup on
    the directory it actually opened (``VaultStore.backup(check_source=...)``): a source
    swapped for a symlink after protection is judged by where it now leads."""
    # The store, the database and the server's own files are never a backup source (a backup
    # admin could otherwise read them back through a restore); HOLDFAST_SOURCE_ROOTS, when
    # set, narrows sources further.
    forbidden = [Path(settings.HOLDFAST_STORAGE_ROOT).resolve(), Path(settings.VAR_DIR).resolve()]
    if any(resolved.is_relative_to(root) or root.is_relative_to(resolved) for root in forbidden):
        return "holds Holdfast's own storage or data"
    allowed = [Path(root).resolve() for root in settings.HOLDFAST_SOURCE_ROOTS]
    if allowed and not any(resolved.is_relative_to(root) for root in allowed):
        return (
            "is outside the directories this installation backs up "
            f"({', '.join(str(root) for root in allowed)})"
        )
    return None


def restore_forbidden_roots() -> list[Path]:
    """Where no restore writes, whatever ``HOLDFAST_RESTORE_ROOTS`` allows: the vault storage
    and the audit anchors (a restore root such as ``/data`` holding ``/data/storage`` would
    otherwise let one operator write into a locked vault's store with ``overwrite``)."""
    return [Path(settings.HOLDFAST_STORAGE_ROOT), Path(settings.HOLDFAST_AUDIT_ANCHOR_DIR)]


def backup_source_refusal(source: str, opened: str) -> str | None:
    """The sentence failing a backup whose source ``source`` opened as ``opened``, or None."""
    reason = source_refusal(Path(opened))
    if reason is None:
        return None
    where = f"{source} now leads to {opened}, which" if opened != source else source
    return (
        f"Backup source {where} {reason}: nothing was read. If the directory was replaced "
        "by a symlink, put the real directory back or protect another one."
    )


def _validate_source(kind: str, path: str) -> None:
    if kind != ProtectedItem.SourceKind.DIRECTORY:
        raise DomainError(
            "validation_error", "source.kind: only 'directory' is supported.", field="source.kind"
        )
    if not path:
        raise DomainError(
            "validation_error", "source.path: this field is required.", field="source.path"
        )
    if not os.path.isabs(path):
        raise DomainError(
            "validation_error",
            f"source.path: {path!r} is relative; give an absolute path.",
            field="source.path",
        )
    reason = source_refusal(Path(path).resolve())
    if reason is not None:
        raise DomainError(
            "validation_error",
            f"source.path: {path} {reason}; choose another directory.",
            field="source.path",
        )
    if not os.path.isdir(path) or not os.access(path, os.R_OK | os.X_OK):
        raise DomainError(
            "validation_error",
            f"source.path: {path} is not a readable directory on this server.",
            field="source.path",
        )


def item_protect(
    *,
    actor: Any,
    vault: Vault,
    name: str,
    source_path: str,
    policy: Any,
    source_kind: str = "directory",
) -> ProtectedItem:
    """Put a directory under protection with a policy of the same vault."""
    check_storable(name=name, **{"source.path": source_path})
    item = ProtectedItem(
        vault=vault, name=name, source_kind=source_kind, source_path=source_path, policy=policy
    )

    def precheck(check: Check) -> None:
        if not name:
            raise DomainError("validation_error", "name: this field is required.", field="name")
        if ProtectedItem.objects.filter(vault=vault, name=name).exists():
            raise DomainError(
                "validation_error",
                f"name: vault {vault.name} already protects an item named {name}.",
                field="name",
            )
        if policy is None or policy.vault_id != vault.pk:
            raise DomainError(
                "validation_error",
                f"policy: choose a policy of vault {vault.name}.",
                field="policy",
            )
        _validate_source(source_kind, source_path)

    def change(check: Check) -> ProtectedItem:
        item.save()
        return item

    return gate.execute(
        "item_protect",
        actor=actor,
        vault=vault,
        target=f"item:{name}",
        precheck=precheck,
        change=change,
        after=lambda i: i.audit_state(),
    )


def item_change_policy(*, actor: Any, item: ProtectedItem, policy: Any) -> ProtectedItem:
    """Move an item to another policy of its vault; its scheduled points follow it."""
    from policies import services as policy_services

    if policy is None or policy.vault_id != item.vault_id:
        raise DomainError(
            "validation_error",
            f"policy: choose a policy of vault {item.vault.name}.",
            field="policy",
        )

    def refresh(facts: dict[str, Any]) -> None:
        # Judge the move from the item as it is now, under its row lock.
        _lock_item(item)(facts)
        facts.update(policy_services.item_policy_change_facts(facts["item"], policy))

    def change(check: Check) -> ProtectedItem:
        policy_services.apply_moves(check.facts["moves"])
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
        precheck=_require_state(*LIVE_STATES, verb="change policy"),
        change=change,
        after=lambda i: i.audit_state(),
    )


def _lock_item(item: ProtectedItem) -> Any:
    """Re-read the item under a row lock inside the gate's transaction (after the vault)."""

    def refresh(facts: dict[str, Any]) -> None:
        facts["item"] = ProtectedItem.objects.select_for_update().get(pk=item.pk)

    return refresh


def _require_state(*states: str, verb: str) -> Any:
    def precheck(check: Check) -> None:
        locked: ProtectedItem = check.facts["item"]
        if locked.protection_state not in states:
            raise DomainError(
                "validation_error",
                f"Item {locked.name} is {locked.get_protection_state_display().lower()}: it "
                f"cannot {verb} now.",
                field="protection_state",
            )

    return precheck


LIVE_STATES = (ProtectedItem.State.PROTECTED, ProtectedItem.State.PROTECTION_STOPPED)


def protection_stop(*, actor: Any, item: ProtectedItem, delete_data: bool) -> ProtectedItem:
    """Stop protection, retaining the data or deleting it (soft-deleted while soft delete is on).

    With soft delete on, the item is kept for the retention in force now and can be undeleted.
    """
    if not delete_data:
        return _item_change(
            "protection_stop_retain",
            actor=actor,
            item=item,
            states=(ProtectedItem.State.PROTECTED,),
            verb="stop protection",
            fields=lambda check: {
                "protection_state": ProtectedItem.State.PROTECTION_STOPPED,
                "stopped_at": check.now,
            },
        )

    def delete(check: Check) -> ProtectedItem:
        vault = check.vault
        locked: ProtectedItem = check.facts["item"]
        assert vault is not None
        if vault.soft_delete_on:
            locked.protection_state = ProtectedItem.State.SOFT_DELETED
            locked.soft_deleted_at = check.now
            locked.purge_at = check.now + timedelta(days=vault.soft_delete_retention_days)
            locked.save(update_fields=["protection_state", "soft_deleted_at", "purge_at"])
        else:
            _purge(locked, check)
        return locked

    unexpired = item.unexpired_point_count(clock.now())
    return gate.execute(
        "protection_stop_delete",
        actor=actor,
        vault=item.vault,
        target=f"item:{item.name}",
        before=item.audit_state(),
        facts={"item": item, "unexpired_points": unexpired},
        refresh=_lock_item(item),
        precheck=_require_state(*LIVE_STATES, verb="have its data deleted"),
        change=delete,
        after=lambda i: {"protection_state": i.protection_state, "deleted": i.pk is None},
    )


def protection_resume(*, actor: Any, item: ProtectedItem) -> ProtectedItem:
    """Resume backups of an item whose protection was stopped (undelete a soft-deleted one
    first)."""
    return _item_change(
        "protection_resume",
        actor=actor,
        item=item,
        states=(ProtectedItem.State.PROTECTION_STOPPED,),
        verb="resume",
        fields={"protection_state": ProtectedItem.State.PROTECTED, "stopped_at": None},
    )


def _item_change(
    op: str,
    *,
    actor: Any,
    item: ProtectedItem,
    states: tuple[str, ...],
    verb: str,
    fields: dict[str, Any] | Callable[[Check], dict[str, Any]],
) -> ProtectedItem:
    """Set fields of the item row locked for ``op``, allowed only from ``states``."""

    def change(check: Check) -> ProtectedItem:
        locked: ProtectedItem = check.facts["item"]
        values = fields(check) if callable(fields) else fields
        for name, value in values.items():
            setattr(locked, name, value)
        locked.save(update_fields=list(values))
        return locked

    return gate.execute(
        op,
        actor=actor,
        vault=item.vault,
        target=f"item:{item.name}",
        before=item.audit_state(),
        facts={"item": item},
        refresh=_lock_item(item),
        precheck=_require_state(*states, verb=verb),
        change=change,
        after=lambda i: i.audit_state(),
    )


def point_expiry(
    item: ProtectedItem, at: datetime, retain_until: datetime | None, tier: str
) -> tuple[list[str], datetime]:
    """A point's GFS tags and expiry: from the item's policy, or the retain-until date of an
    on-demand backup; an operational snapshot keeps its instant-restore days."""
    policy = item.policy
    if tier == RecoveryPoint.Tier.SNAPSHOT:
        return [], at + timedelta(days=policy.instant_restore_days)
    tags = sorted(rules.gfs_tags(at, policy.retention(), policy.schedule()))
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


# The longest anything is kept (99 years of yearly points, SPEC 3.6): no date beyond it.
RETAIN_UNTIL_LIMIT = timedelta(days=99 * 366)


def retain_until_check(retain_until: datetime, now: datetime) -> None:
    """A retain-until date lies ahead, and no further than the longest retention a policy
    allows (a date in year 9999 on a locked vault would hold its storage for ever)."""
    if retain_until <= now:
        raise DomainError(
            "validation_error", "retain_until: choose a time in the future.", field="retain_until"
        )
    if retain_until > now + RETAIN_UNTIL_LIMIT:
        raise DomainError(
            "validation_error",
            "retain_until: choose a date at most 99 years ahead, the longest retention a policy "
            "allows.",
            field="retain_until",
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
            stores.storage_note([locked], release=True, vault=check.vault)
            return None
        RecoveryPoint.objects.filter(pk=locked.pk).update(**fields)
        locked.refresh_from_db()
        stores.storage_note([locked], vault=check.vault)
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
        retain_until_check(retain_until, check.now)

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
        stores.storage_note([locked], vault=check.vault)
        if not check.facts["retention_shorter"]:
            _storage_lock_follow(check.vault)
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


# --- soft delete (SPEC 3.3) -------------------------------------------------------------------

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
                _purge(item, check)
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
    return _vault_change(
        "soft_delete_enable",
        actor=actor,
        vault=vault,
        fields={"soft_delete_state": Vault.SoftDelete.ENABLED},
    )


def _soft_delete_retention(actor: Any, vault: Vault, days: int) -> Vault:
    # Shorter or not is judged by the gate on the row it locked (gate._soft_delete_shortens).
    return _vault_change(
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
    return _vault_change(
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
    return _item_change(
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


def _purge(item: ProtectedItem, check: Check) -> None:
    points = list(item.recovery_points.all())
    item.recovery_points.all().delete()
    item.delete()
    stores.storage_note(points, release=True, vault=check.vault)


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
        refresh=_lock_item(item),
        before=item.audit_state(),
        precheck=precheck,
        change=lambda check: _purge(check.facts["item"], check),
        after=lambda _: {"purged": True},
    )


# --- multi-user authorization (SPEC 3.4) ------------------------------------------------------


def vault_guard_set(*, actor: Any, vault: Vault, guard: Any) -> Vault:
    """Protect a vault with a Resource Guard; replacing another guard counts as removing it
    (judged by the gate on the vault row it locked, gate._replaces_guard)."""
    return _vault_change(
        "vault_guard_set",
        actor=actor,
        vault=vault,
        target=f"guard:{guard.name}",
        facts={"guard": guard},
        fields={"resource_guard": guard},
    )


def vault_guard_remove(*, actor: Any, vault: Vault) -> Vault:
    """Remove the vault's Resource Guard: itself protected by that guard (``disable_mua``)."""

    def precheck(check: Check) -> None:
        if check.vault is None or check.vault.resource_guard_id is None:
            raise DomainError(
                "validation_error", f"Vault {vault.name} has no Resource Guard to remove."
            )

    return _vault_change(
        "vault_guard_remove",
        actor=actor,
        vault=vault,
        precheck=precheck,
        fields={"resource_guard": None},
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


def soft_delete_sweep() -> dict[str, int]:
    """Warn two days before each soft-deleted item's purge, then purge it when its time comes.

    Run by the periodic sweep; each item is decided through the gate on its own, so one
    failure never blocks the others.
    """
    from portal.models import Alert

    now = clock.now()
    counts = {"warned": 0, "purged": 0}
    due = ProtectedItem.objects.filter(
        protection_state=ProtectedItem.State.SOFT_DELETED, purge_at__isnull=False
    ).select_related("vault", "policy")
    for item in due.filter(purge_at__lte=now + UPCOMING_PURGE_WARNING, purge_at__gt=now):
        warned = Alert.objects.filter(
            kind="upcoming_purge",
            vault_name=item.vault.name,
            target=f"item:{item.name}",
            first_at__gte=item.soft_deleted_at or (item.purge_at or now) - UPCOMING_PURGE_WARNING,
        ).exists()
        if not warned:
            item_purge_warn(item=item)
            counts["warned"] += 1
    for item in due.filter(purge_at__lte=now):
        try:
            item_purge(item=item)
        except DomainError:
            continue  # refused and audited (e.g. immutability enabled since): retried later
        counts["purged"] += 1
    return counts
