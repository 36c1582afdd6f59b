"""The Backup items blade (SPEC 3.7): protect a directory, stop and resume protection.

Moving an item to another policy is ``policies.services.item_change_policy``, beside its
preview; it locks the item with :func:`item_lock`."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from portal import clock, gate
from portal.gate import Check, DomainError
from portal.validators import check_storable

from .. import rules
from ..hosts import known_host
from ..models import ProtectedItem, Vault
from ..storage_notes import storage_note
from ..workloads import postgres


def _validate_source(kind: str, path: str, host: str = "") -> None:
    if kind == ProtectedItem.SourceKind.POSTGRES:
        # The name alone: the server is reached from the worker's host (docs/workloads.md).
        refusal = postgres.name_refusal(path) if path else "name the database to back up."
        if refusal is None and rules.own_database(path):
            refusal = (
                f"{path} is Holdfast's own database: its dump would hand Holdfast's keys and "
                "password hashes to whoever may download from the vault. Back it up apart "
                "from the vaults it protects."
            )
        if refusal is not None:
            raise DomainError(
                "validation_error", f"source.database: {refusal}", field="source.database"
            )
        return
    if kind != ProtectedItem.SourceKind.DIRECTORY:
        raise DomainError(
            "validation_error",
            "source.kind: choose 'directory' or 'postgres'.",
            field="source.kind",
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
    if host:
        # Read on that host: the web cannot see its disks. Its worker judges the directory
        # it opens on every backup (rules.backup_source_refusal, readable, no symlink swap).
        return
    reason = rules.source_refusal(Path(path).resolve())
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
    source_host: str = "",
) -> ProtectedItem:
    """Put a directory, or a PostgreSQL database (``source_kind="postgres"``, its name in
    ``source_path``), under protection with a policy of the same vault, read on
    ``source_host`` (a host a worker announced; "" for any host)."""
    check_storable(name=name, **{"source.path": source_path, "source.host": source_host})
    item = ProtectedItem(
        vault=vault,
        name=name,
        source_kind=source_kind,
        source_path=source_path,
        source_host=source_host,
        policy=policy,
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
        known_host(source_host)
        _validate_source(source_kind, source_path, source_host)

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


def item_lock(item: ProtectedItem) -> Any:
    """Re-read the item under a row lock inside the gate's transaction (after the vault)."""

    def refresh(facts: dict[str, Any]) -> None:
        facts["item"] = ProtectedItem.objects.select_for_update().get(pk=item.pk)

    return refresh


def require_item_state(*states: str, verb: str) -> Any:
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
        return item_change(
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
            purge(locked, check)
        return locked

    unexpired = item.unexpired_point_count(clock.now())
    return gate.execute(
        "protection_stop_delete",
        actor=actor,
        vault=item.vault,
        target=f"item:{item.name}",
        before=item.audit_state(),
        facts={"item": item, "unexpired_points": unexpired},
        refresh=item_lock(item),
        precheck=require_item_state(*LIVE_STATES, verb="have its data deleted"),
        change=delete,
        after=lambda i: {"protection_state": i.protection_state, "deleted": i.pk is None},
    )


def protection_resume(*, actor: Any, item: ProtectedItem) -> ProtectedItem:
    """Resume backups of an item whose protection was stopped (undelete a soft-deleted one
    first)."""
    return item_change(
        "protection_resume",
        actor=actor,
        item=item,
        states=(ProtectedItem.State.PROTECTION_STOPPED,),
        verb="resume",
        fields={"protection_state": ProtectedItem.State.PROTECTED, "stopped_at": None},
    )


def item_change(
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
        refresh=item_lock(item),
        precheck=require_item_state(*states, verb=verb),
        change=change,
        after=lambda i: i.audit_state(),
    )


def purge(item: ProtectedItem, check: Check) -> None:
    points = list(item.recovery_points.all())
    item.recovery_points.all().delete()
    item.delete()
    storage_note(points, release=True, vault=check.vault)
