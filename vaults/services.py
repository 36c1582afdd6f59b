"""Writes to vaults: every one goes through the operation gate (``portal.gate``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from portal import gate
from portal.gate import Check, DomainError
from portal.models import Approval

from .models import Vault


def _validation_error(exc: ValidationError) -> DomainError:
    if hasattr(exc, "error_dict"):
        field, errors = next(iter(exc.error_dict.items()))
        return DomainError("validation_error", f"{field}: {errors[0].messages[0]}", field=field)
    return DomainError("validation_error", exc.messages[0])


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


def immutability_set(*, actor: Any, vault: Vault, state: str) -> Vault:
    """Enable or disable immutability; locking goes through :func:`immutability_lock_request`."""
    if state not in {Vault.Immutability.ENABLED, Vault.Immutability.DISABLED}:
        raise DomainError(
            "validation_error",
            "state must be 'enabled' or 'disabled'; locking needs a lock request.",
            field="state",
        )
    op = "immutability_enable" if state == Vault.Immutability.ENABLED else "immutability_disable"

    def change(check: Check) -> Vault:
        locked = check.vault
        assert locked is not None
        if locked.immutability != state:
            locked.immutability = state
            locked.immutability_changed_at = check.now
            locked.save(update_fields=["immutability", "immutability_changed_at"])
        return locked

    return gate.execute(op, actor=actor, vault=vault, target=f"vault:{vault.name}", change=change)


def immutability_lock_request(*, actor: Any, vault: Vault, confirmation: str) -> Approval:
    """Ask for the irreversible lock: typed confirmation, then a pending approval (SPEC 3.5)."""

    def change(check: Check) -> Approval:
        existing = Approval.objects.filter(
            kind=Approval.Kind.LOCK_IMMUTABILITY,
            vault=check.vault,
            status=Approval.Status.PENDING,
            expires_at__gt=check.now,
        ).first()
        if existing is not None:
            return existing
        return Approval.objects.create(
            kind=Approval.Kind.LOCK_IMMUTABILITY,
            requested_by=actor,
            vault=check.vault,
            created_at=check.now,
            expires_at=check.now + settings.HOLDFAST_APPROVAL_TTL,
        )

    return gate.execute(
        "immutability_lock_request",
        actor=actor,
        vault=vault,
        target=f"vault:{vault.name}",
        facts={"confirmation": confirmation},
        change=change,
        after=lambda a: {"approval": a.pk, "status": a.status},
    )


def immutability_lock(*, actor: Any, vault: Vault, approval: Approval) -> Vault:
    """Lock immutability for good; run only by an approved lock approval."""

    def change(check: Check) -> Vault:
        locked = check.vault
        assert locked is not None
        locked.immutability = Vault.Immutability.LOCKED
        locked.immutability_changed_at = check.now
        locked.save(update_fields=["immutability", "immutability_changed_at"])
        return locked

    return gate.execute(
        "immutability_lock",
        actor=actor,
        vault=vault,
        target=f"vault:{vault.name}",
        facts={"approval": approval},
        change=change,
    )
