"""The operation gate (SPEC section 4): the one way any state in Holdfast changes.

Every state-changing service calls :func:`execute` with an operation name from
:data:`OPERATIONS`. In one transaction the gate locks the vault row, checks, in order, the
actor's role (``permission_denied``), the absolute rules of the operation (immutability, lock,
always-on soft delete, ...) and multi-user authorization (``mua_required``); then it performs
the change and writes the audit record. A refusal writes only the audit record and raises
:class:`DomainError` once that record is committed.

The table (``portal/operations.py``) is the single place to read which checks an operation
needs; the rules it names are ``portal/gate_rules.py``. This module runs them.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import transaction

from . import audit_link, clock
from .alerts import raise_alert
from .audit import seal
from .errors import HTTP_STATUS, DomainError
from .gate_rules import Check, Rule
from .models import Approval, AuditRecord
from .operations import OPERATIONS, Operation
from .roles import has_capability

if TYPE_CHECKING:
    from vaults.models import Vault

__all__ = [
    "HTTP_STATUS",
    "OPERATIONS",
    "Check",
    "DomainError",
    "Operation",
    "Rule",
    "current_entry_point",
    "decide",
    "entry_point",
    "execute",
]

T = TypeVar("T")

# Refusals that raise the "operation refused by immutability or MUA" security alert.
# A wrong second-factor code on an approval may be a stolen session guessing: alert on it too.
ALERTING_REFUSALS = {"immutable_vault", "immutability_locked", "mua_required", "otp_invalid"}


# --- where the call came from, for the audit record ------------------------------------------

_entry_point: contextvars.ContextVar[str] = contextvars.ContextVar("entry_point", default="shell")


@contextmanager
def entry_point(name: str) -> Iterator[None]:
    token = _entry_point.set(name)
    try:
        yield
    finally:
        _entry_point.reset(token)


def current_entry_point() -> str:
    return _entry_point.get()


# --- the gate -------------------------------------------------------------------------------


def _role_check(op: Operation, actor: Any) -> DomainError | None:
    if op.capability == "installation" and actor is None and current_entry_point() == "command":
        return None
    if op.capability == "installation":
        op = Operation(op.name, "superuser", label=op.label)
    if op.capability == "system":
        return (
            None
            if actor is None
            else DomainError(
                "permission_denied", f"{op.label} is done by Holdfast itself, not by a person."
            )
        )
    if actor is None or not has_capability(actor, op.capability):
        return DomainError(
            "permission_denied",
            f"Your role does not allow this operation ({op.label or op.name}).",
        )
    return None


def _mua_check(op: Operation, check: Check) -> tuple[DomainError | None, Approval | None]:
    """Refuse a guarded operation unless the actor holds an active elevation on the guard."""
    vault = check.vault
    if op.mua is None or vault is None or vault.resource_guard_id is None:
        return None, None
    if op.mua_when is not None and not op.mua_when(check):
        return None, None
    guard = vault.resource_guard
    if guard is None or not guard.protects(op.mua):
        return None, None
    elevations = (
        Approval.objects.active_elevations(check.now)
        .filter(guard=guard, requested_by=check.actor)
        .order_by("-active_until")
    )
    elevation = elevations.first()
    if elevation is None:
        return (
            DomainError(
                "mua_required",
                "Unlock privilege access is needed for this operation: it is protected by "
                f"Resource Guard {guard.name}. Request access on that guard and ask a security "
                "admin to approve it.",
            ),
            None,
        )
    return None, elevation


def decide(op_name: str, *, actor: Any, vault: Vault | None, facts: dict[str, Any]) -> Check:
    """Run every check of ``op_name`` without changing anything (for previews and dry runs)."""
    op = OPERATIONS[op_name]
    check = Check(op_name, actor, vault, facts, clock.now(), label=op.label)
    error = _role_check(op, actor)
    for rule in op.rules:
        if error is not None:
            break
        error = rule(check)
    if error is None:
        error, elevation = _mua_check(op, check)
        facts["_elevation"] = elevation
    if error is not None:
        raise error
    return check


def _audit(
    op_name: str,
    *,
    actor: Any,
    vault: Vault | None,
    vault_name: str,
    target: str,
    now: datetime,
    error: DomainError | None,
    before: dict[str, Any],
    after: dict[str, Any],
    details: dict[str, Any],
) -> AuditRecord:
    """Write the record in this transaction: on PostgreSQL pending, linked into the audit hash
    chain right after the commit (``portal/audit_link.py``); elsewhere sealed and saved."""
    record = AuditRecord(
        at=now,
        actor=actor,
        actor_name=getattr(actor, "username", "") or "holdfast",
        operation=op_name,
        outcome=AuditRecord.Outcome.REFUSED if error else AuditRecord.Outcome.ALLOWED,
        code=error.code if error else "",
        reason=error.detail if error else "",
        vault_name=vault.name if vault is not None else vault_name,
        target=target[:255],
        source=current_entry_point(),
        before=before,
        after=after,
        details=details,
    )
    if audit_link.deferred():
        audit_link.pending(record).save(force_insert=True)
        audit_link.link_after_commit()
    else:
        seal(record)
        record.save(force_insert=True)
    return record


def execute(
    op_name: str,
    *,
    actor: Any,
    change: Callable[[Check], T],
    vault: Vault | None = None,
    vault_name: str = "",
    target: str = "",
    facts: dict[str, Any] | None = None,
    before: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    after: Callable[[T], dict[str, Any]] | None = None,
    precheck: Callable[[Check], None] | None = None,
    refresh: Callable[[dict[str, Any]], None] | None = None,
    audit_when: Callable[[T], bool] | None = None,
) -> T:
    """Check ``op_name`` for ``actor`` on ``vault``, then run ``change`` and audit it.

    ``change`` receives the :class:`Check`, whose ``vault`` is the row locked for this
    transaction. ``precheck`` may raise a ``validation_error`` that depends on locked state.
    ``refresh`` re-reads (and locks) the facts inside the transaction, after the vault row, so
    two callers racing on the same row are decided one after the other; ``before`` may then be
    a function of those refreshed facts, so the audit record shows the row as it was judged.
    ``audit_when`` lets an allowed batch that turned out to change nothing (a dispatch tick
    that found every due job already there) leave no record: the log says what was done.
    """
    facts = dict(facts or {})
    error: DomainError | None = None
    with transaction.atomic():
        if vault is not None and vault.pk is not None:
            vault = type(vault).objects.select_for_update().get(pk=vault.pk)
        if refresh is not None:
            refresh(facts)
        if callable(before):
            before_state = before(facts)
        elif before is not None:
            before_state = before
        else:
            before_state = vault.audit_state() if vault else {}
        try:
            check = decide(op_name, actor=actor, vault=vault, facts=facts)
            if precheck is not None:
                precheck(check)
        except DomainError as refusal:
            error = refusal
            if refusal.code in ALERTING_REFUSALS:
                raise_alert(
                    "operation_refused",
                    vault_name=vault.name if vault is not None else vault_name,
                    target=target,
                    message=f"{OPERATIONS[op_name].label or op_name} refused: {refusal.detail}",
                )
            _audit(
                op_name,
                actor=actor,
                vault=vault,
                vault_name=vault_name,
                target=target,
                now=clock.now(),
                error=error,
                before=before_state,
                after={},
                details={},
            )
        else:
            result = change(check)
            elevation = facts.get("_elevation")
            details: dict[str, Any] = {}
            if elevation is not None:
                details["elevation"] = elevation.pk
                details["guard"] = elevation.guard.name if elevation.guard else None
            op = OPERATIONS[op_name]
            if op.alert and (op.alert_when is None or op.alert_when(check)):
                who = getattr(actor, "username", "") or "Holdfast"
                raise_alert(
                    op.alert,
                    vault_name=check.vault.name if check.vault is not None else vault_name,
                    target=target,
                    message=f"{op.label} by {who} ({target}).",
                )
            if audit_when is not None and not audit_when(result):
                return result
            if after is not None:
                after_state = after(result)
            elif check.vault is not None and check.vault.pk is not None:
                after_state = check.vault.audit_state()
            else:
                after_state = {}
            _audit(
                op_name,
                actor=actor,
                vault=check.vault,
                vault_name=vault_name,
                target=target,
                now=check.now,
                error=None,
                before=before_state,
                after=after_state,
                details=details,
            )
            return result
    # Raised outside the atomic block so the refusal's audit record is committed.
    assert error is not None
    raise error
