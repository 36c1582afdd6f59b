"""What an approval will change, for the approver: the facts of one request in words.

The approvals inbox and the approval's own page show, before anyone decides, who asked and
when, why, and exactly what changes (the state now → the state once approved). The kernel
imports no app: the vault, guard and account are read through the approval's own relations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .labels import GUARD_OPERATION_LABELS, label
from .models import Approval
from .roles import ROLE_LABELS, role_of

# The session key under which the guards' access form keeps, per elevation request, the page
# the person was refused on (their "Retry" link once approved).
RETRY_SESSION_KEY = "holdfast_elevation_next"

# Kinds whose approval asks the approver to type the vault's or the guard's name
# (portal/gate_rules.py ``approval_name_typed``).
NAME_TYPED_KINDS = frozenset({Approval.Kind.LOCK_IMMUTABILITY, Approval.Kind.GUARD_WEAKEN})


@dataclass
class Change:
    """One row of "what will change": the setting, its value now and once approved."""

    what: str
    before: str
    after: str


@dataclass
class ApprovalFacts:
    approval: Approval
    status: str
    summary: str
    changes: list[Change] = field(default_factory=list)
    removed_operations: list[str] = field(default_factory=list)
    allowed_operations: list[str] = field(default_factory=list)
    duration: timedelta | None = None
    irreversible: str = ""
    typed_name: str = ""  # what the approver types to approve, when the kind asks for it
    typed_name_of: str = ""  # "vault" or "guard"


def _guard_operations(values: Any) -> list[str]:
    return [GUARD_OPERATION_LABELS.get(v, label(v)) for v in sorted(values)]


def _role_words(role: str, superuser: bool) -> str:
    words = ROLE_LABELS.get(role, "Installation admin" if role == "superuser" else "No role")
    return f"{words}, superuser" if superuser and role != "superuser" else words


def _unchanged(vault: Any, *settings: str) -> list[Change]:
    """The vault's other protections, as they are and stay: the approver sees the whole
    state the vault will be in, not only the line that moves."""
    values = {
        "immutability": ("Immutability", label(vault.immutability)),
        "soft_delete": (
            "Soft delete",
            f"{label(vault.soft_delete_state)} ({vault.soft_delete_retention_days} days)",
        ),
        "guard": (
            "Resource Guard",
            vault.resource_guard.name if vault.resource_guard_id else "None (MUA off)",
        ),
    }
    return [Change(values[s][0], values[s][1], "Unchanged") for s in settings]


def facts_for(approval: Approval, now: datetime) -> ApprovalFacts:
    """The facts of ``approval`` as of ``now``: the vault's or guard's current state is read
    now, so the "before" is what the approver's decision would change today."""
    facts = ApprovalFacts(approval, approval.effective_status(now), "")
    kind, vault, guard = approval.kind, approval.vault, approval.guard
    if kind == Approval.Kind.LOCK_IMMUTABILITY and vault is not None:
        facts.summary = f"Lock immutability of vault {vault.name}"
        facts.changes = [
            Change("Immutability", label(vault.immutability), label("locked")),
            *_unchanged(vault, "soft_delete", "guard"),
        ]
        facts.irreversible = (
            "A lock cannot be undone: nobody, not even an installation admin, can disable "
            "immutability on this vault again, and its recovery points live until their expiry."
        )
        facts.typed_name, facts.typed_name_of = vault.name, "vault"
    elif kind == Approval.Kind.ALWAYS_ON_SOFT_DELETE and vault is not None:
        facts.summary = f"Make soft delete always-on for vault {vault.name}"
        facts.changes = [
            Change("Soft delete", label(vault.soft_delete_state), label("always_on")),
            Change(
                "Retention",
                f"{vault.soft_delete_retention_days} days",
                f"{vault.soft_delete_retention_days} days, can only grow",
            ),
            *_unchanged(vault, "immutability", "guard"),
        ]
        facts.irreversible = "Always-on soft delete cannot be turned off again."
    elif kind == Approval.Kind.GUARD_WEAKEN and guard is not None:
        payload = approval.payload or {}
        current = set(guard.protected_operations) | set(guard.MANDATORY)
        facts.typed_name, facts.typed_name_of = guard.name, "guard"
        if payload.get("delete"):
            facts.summary = f"Delete Resource Guard {guard.name}"
            facts.changes = [Change("Resource Guard", "Exists", "Deleted")]
            facts.removed_operations = _guard_operations(current)
        else:
            after = (current | set(payload.get("add", []))) - set(payload.get("remove", []))
            after |= set(guard.MANDATORY)
            facts.summary = f"Weaken Resource Guard {guard.name}"
            facts.changes = [
                Change(
                    "Protected operations",
                    f"{len(current)} operations",
                    f"{len(after)} operations",
                )
            ]
            facts.removed_operations = _guard_operations(current - after)
        facts.irreversible = (
            "The operations removed can then run on the guard's vaults without anyone's approval."
        )
    elif kind == Approval.Kind.ELEVATION and guard is not None:
        minutes = approval.duration_minutes or 0
        facts.summary = f"Access on Resource Guard {guard.name} for {approval.requested_by}"
        facts.duration = timedelta(minutes=minutes)
        facts.allowed_operations = _guard_operations(
            set(guard.protected_operations) | set(guard.MANDATORY)
        )
        if approval.active_until is not None:
            facts.changes = [
                Change("Elevation", "None", f"Until {approval.active_until:%H:%M} UTC")
            ]
        else:
            facts.changes = [Change("Elevation", "None", f"Active for {minutes} minutes")]
    elif kind == Approval.Kind.USER_ROLE_GRANT and approval.account is not None:
        account = approval.account
        payload = approval.payload or {}
        role_now = role_of(account)
        role_after = payload.get("role") or role_now
        superuser_after = bool(payload.get("is_superuser")) or account.is_superuser
        facts.summary = f"Grant account {account.get_username()} power"
        facts.changes = [
            Change(
                "Role",
                _role_words(role_now, account.is_superuser),
                _role_words(role_after, superuser_after),
            )
        ]
    else:
        facts.summary = approval.get_kind_display()
    return facts
