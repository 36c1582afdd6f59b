"""What the services of vaults share: setting fields of the locked vault row, turning a
model's ValidationError into a refusal, and asking for an irreversible lock action."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from portal import gate
from portal.gate import Check, DomainError
from portal.models import Approval

from ..models import Vault


def validation_error(exc: ValidationError) -> DomainError:
    if hasattr(exc, "error_dict"):
        field, errors = next(iter(exc.error_dict.items()))
        return DomainError("validation_error", f"{field}: {errors[0].messages[0]}", field=field)
    return DomainError("validation_error", exc.messages[0])


def vault_change(
    op: str,
    *,
    actor: Any,
    vault: Vault,
    fields: dict[str, Any] | Callable[[Check], dict[str, Any]],
    target: str = "",
    facts: dict[str, Any] | None = None,
    precheck: Callable[[Check], None] | None = None,
    also: Callable[[Check], None] | None = None,
) -> Vault:
    """Set fields of the vault row the gate locked for ``op`` (the common shape of every
    security-setting change); ``also`` runs first in the same transaction (e.g. the
    replica's immutability follows before the source's changes)."""

    def change(check: Check) -> Vault:
        locked = check.vault
        assert locked is not None
        if also is not None:
            also(check)
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
        pending = Approval.objects.pending(check.now).filter(kind=kind, vault=check.vault).first()
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
