"""The Multi-user authorization blade (SPEC 3.4): protect a vault with a Resource Guard, or
remove it (itself protected by that guard)."""

from __future__ import annotations

from typing import Any

from portal.gate import Check, DomainError

from ..models import Vault
from .common import vault_change


def vault_guard_set(*, actor: Any, vault: Vault, guard: Any) -> Vault:
    """Protect a vault with a Resource Guard; replacing another guard counts as removing it
    (judged by the gate on the vault row it locked, operations._replaces_guard)."""
    return vault_change(
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

    return vault_change(
        "vault_guard_remove",
        actor=actor,
        vault=vault,
        precheck=precheck,
        fields={"resource_guard": None},
    )
