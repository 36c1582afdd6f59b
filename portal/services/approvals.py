"""Approvals (SPEC 3.5): deciding a pending request, and what an approved one then runs.

Each kind of approval registers its action from the app that owns it, in its
``AppConfig.ready()`` (:func:`register_approved_action`): locking immutability and always-on
soft delete (vaults), weakening a guard (guards), granting an account power (portal). The
kernel imports no app; a new kind of approval is one registration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .. import clock, gate
from ..gate import Check, DomainError
from ..models import Approval


@dataclass(frozen=True)
class ApprovedAction:
    """What an approved request of one kind does: the gate operation whose rules are checked
    again before approving (``operation``), and the service that then runs it (``run``,
    called with ``actor``, ``vault`` and ``approval`` in the approval's transaction)."""

    operation: str
    run: Callable[..., Any]
    needs_vault: bool = False


# Filled by each app's AppConfig.ready(): the app that owns an action registers it, so the
# kernel never imports an app and a new kind of approval is one registration.
APPROVED_ACTIONS: dict[str, ApprovedAction] = {}


def register_approved_action(
    kind: str, *, operation: str, run: Callable[..., Any], needs_vault: bool = False
) -> None:
    APPROVED_ACTIONS[kind] = ApprovedAction(operation, run, needs_vault)


def _lock_approval(approval: Approval) -> Any:
    def refresh(facts: dict[str, Any]) -> None:
        facts["approval"] = Approval.objects.select_for_update().get(pk=approval.pk)

    return refresh


def _approval_target(approval: Approval) -> str:
    return f"approval:{approval.pk}:{approval.kind}"


def approval_approve(
    *, actor: Any, approval: Approval, otp: str = "", confirmation: str | None = None
) -> Approval:
    """Approve a pending request; the approved action runs in the same transaction.

    The approval row is locked before it is checked, so of two approvers racing on the same
    request exactly one wins; the other is refused with ``approval_not_pending``. With
    ``HOLDFAST_APPROVER_2FA=required``, ``otp`` must be a fresh code from the approver's
    authenticator (``otp_required`` / ``otp_invalid`` otherwise). ``confirmation`` is the
    name the approver typed on the approval's page: for a lock or a guard weakening it must
    be the vault's or the guard's name (``confirmation_mismatch``); None (the API) skips it.
    """

    def precheck(check: Check) -> None:
        locked: Approval = check.facts["approval"]
        # Re-check the approved action's own preconditions before approving it.
        action = APPROVED_ACTIONS.get(locked.kind)
        if action is not None and action.needs_vault and check.vault is None:
            raise DomainError(
                "validation_error", "The vault this request was for no longer exists."
            )
        if action is not None:
            gate.decide(
                action.operation, actor=actor, vault=check.vault, facts={"approval": locked}
            )

    def change(check: Check) -> Approval:
        locked: Approval = check.facts["approval"]
        locked.status = Approval.Status.APPROVED
        locked.decided_by = actor
        locked.decided_at = check.now
        if locked.kind == Approval.Kind.ELEVATION:
            locked.active_until = check.now + timedelta(minutes=locked.duration_minutes or 0)
        locked.save()
        action = APPROVED_ACTIONS.get(locked.kind)
        if action is not None:
            action.run(actor=actor, vault=check.vault, approval=locked)
        return locked

    return gate.execute(
        "approval_approve",
        actor=actor,
        vault=approval.vault,
        target=_approval_target(approval),
        facts={"approval": approval, "otp": otp, "confirmation": confirmation},
        refresh=_lock_approval(approval),
        precheck=precheck,
        change=change,
        after=lambda a: {"status": a.status, "kind": a.kind},
    )


def _close(
    op: str, status: str, *, actor: Any, approval: Approval, reason: str = "", otp: str = ""
) -> Approval:
    def change(check: Check) -> Approval:
        locked: Approval = check.facts["approval"]
        locked.status = status
        locked.reason = reason
        if status != Approval.Status.CANCELLED:
            locked.decided_by = actor
        locked.decided_at = check.now
        locked.save()
        return locked

    return gate.execute(
        op,
        actor=actor,
        vault=approval.vault,
        target=_approval_target(approval),
        facts={"approval": approval, "otp": otp},
        refresh=_lock_approval(approval),
        change=change,
        after=lambda a: {"status": a.status, "kind": a.kind},
    )


def approval_deny(*, actor: Any, approval: Approval, reason: str = "", otp: str = "") -> Approval:
    """A security admin other than the requester turns the request down (with a fresh
    second-factor code when ``HOLDFAST_APPROVER_2FA=required``)."""
    return _close(
        "approval_deny",
        Approval.Status.DENIED,
        actor=actor,
        approval=approval,
        reason=reason,
        otp=otp,
    )


def approval_cancel(*, actor: Any, approval: Approval) -> Approval:
    """The requester withdraws a pending request."""
    return _close("approval_cancel", Approval.Status.CANCELLED, actor=actor, approval=approval)


def approval_revoke(*, actor: Any, approval: Approval, reason: str = "") -> Approval:
    """A security admin ends an active elevation early."""
    return _close(
        "approval_revoke", Approval.Status.REVOKED, actor=actor, approval=approval, reason=reason
    )


def approvals_expire(*, now: datetime | None = None) -> int:
    """Close pending approvals past their expiry (their effective status already says so)."""
    now = now or clock.now()
    count = 0
    for approval in Approval.objects.filter(status=Approval.Status.PENDING, expires_at__lte=now):

        def refresh(facts: dict[str, Any], pk: int = approval.pk) -> None:
            facts["approval"] = Approval.objects.select_for_update().get(pk=pk)

        def change(check: Check) -> bool:
            locked: Approval = check.facts["approval"]
            if locked.effective_status(check.now) != Approval.Status.EXPIRED:
                return False
            locked.status = Approval.Status.EXPIRED
            locked.decided_at = check.now
            locked.save(update_fields=["status", "decided_at"])
            return True

        if gate.execute(
            "approval_expire",
            actor=None,
            vault=approval.vault,
            target=f"approval:{approval.pk}:{approval.kind}",
            facts={"approval": approval},
            refresh=refresh,
            change=change,
            after=lambda changed: {"status": "expired" if changed else "unchanged"},
        ):
            count += 1
    return count
