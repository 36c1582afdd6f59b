"""The Immutable vault blade (SPEC 3.2, 3.5): enable, disable, and lock for good (after an
approval)."""

from __future__ import annotations

from typing import Any

from portal.gate import DomainError
from portal.models import Approval

from ..jobs.requests import storage_lock_follow
from ..models import Vault
from ..storage_notes import storage_note
from .common import lock_action_request, vault_change
from .replication import immutability_follow, immutability_precheck


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
        return vault_change(op, actor=actor, vault=vault, fields={})
    replicas: list[Vault] = []

    def follow(check: Any) -> None:
        # The replica first: it is never weaker than its source (SPEC 3.10).
        if state == Vault.Immutability.ENABLED:
            replica = immutability_follow(check.vault, state, check.now)
            if replica is not None:
                replicas.append(replica)

    changed = vault_change(
        op,
        actor=actor,
        vault=vault,
        fields=lambda check: {"immutability": state, "immutability_changed_at": check.now},
        precheck=lambda check: immutability_precheck(check.vault, state),
        also=follow,
    )
    if state == Vault.Immutability.ENABLED:
        storage_lock_follow(changed)
        for replica in replicas:
            storage_lock_follow(replica)
    return changed


def immutability_lock_request(
    *, actor: Any, vault: Vault, confirmation: str, otp: str = ""
) -> Approval:
    """Ask for the irreversible lock of immutability (with a fresh second-factor code when
    ``HOLDFAST_APPROVER_2FA=required``)."""
    # The approval says what it will lock: the vault and, with it, its replica (SPEC 3.10).
    replica = Vault.objects.filter(pk=vault.pk).values_list("replica__name", flat=True).first()
    return lock_action_request(
        "immutability_lock_request",
        Approval.Kind.LOCK_IMMUTABILITY,
        actor=actor,
        vault=vault,
        confirmation=confirmation,
        otp=otp,
        payload={"also_locks": replica} if replica else None,
    )


def immutability_lock(*, actor: Any, vault: Vault, approval: Approval) -> Vault:
    """Lock immutability for good; run only by an approved lock approval. A vault with a
    replica locks both, in this one transaction (SPEC 3.10)."""
    replicas: list[Vault] = []

    def follow(check: Any) -> None:
        replica = immutability_follow(check.vault, Vault.Immutability.LOCKED, check.now)
        if replica is not None:
            replicas.append(replica)

    locked = vault_change(
        "immutability_lock",
        actor=actor,
        vault=vault,
        facts={"approval": approval},
        fields=lambda check: {
            "immutability": Vault.Immutability.LOCKED,
            "immutability_changed_at": check.now,
        },
        also=follow,
    )
    storage_note(vault=locked)
    storage_lock_follow(locked)
    for replica in replicas:
        storage_lock_follow(replica)
    return locked
