"""Approvals (SPEC 3.5) and user administration (SPEC 3.9), through the operation gate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

from . import gate
from .gate import Check, DomainError
from .models import Alert, Approval
from .roles import ROLES


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


def approval_approve(*, actor: Any, approval: Approval, otp: str = "") -> Approval:
    """Approve a pending request; the approved action runs in the same transaction.

    The approval row is locked before it is checked, so of two approvers racing on the same
    request exactly one wins; the other is refused with ``approval_not_pending``. With
    ``HOLDFAST_APPROVER_2FA=required``, ``otp`` must be a fresh code from the approver's
    authenticator (``otp_required`` / ``otp_invalid`` otherwise).
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
        facts={"approval": approval, "otp": otp},
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


def authenticator_enrol(*, actor: Any, key: str, otp: str, password_ok: bool) -> Any:
    """Confirm a TOTP authenticator (hex ``key``) for ``actor`` with a code it produced.

    ``password_ok`` says the caller re-checked the account's password (through
    ``authenticate``, so login throttling counts wrong ones). The code is spent on enrolment.
    """
    from django_otp.plugins.otp_totp.models import TOTPDevice

    def change(check: Check) -> TOTPDevice:
        TOTPDevice.objects.filter(user=actor, confirmed=False).delete()
        return TOTPDevice.objects.create(
            user=actor,
            name="authenticator",
            key=key,
            confirmed=True,
            last_t=check.facts["last_t"],
        )

    return gate.execute(
        "authenticator_enrol",
        actor=actor,
        target=f"user:{actor.get_username()}",
        facts={"key": key, "otp": otp, "password_ok": password_ok},
        before={},
        change=change,
        after=lambda device: {"device": device.pk, "confirmed": True},
    )


def user_create(
    *,
    actor: Any,
    username: str,
    role: str,
    password: str,
    email: str = "",
    is_superuser: bool = False,
) -> AbstractBaseUser:
    """Create a user with one role (``manage.py adduser`` and the Users page)."""
    user_model = get_user_model()

    def precheck(check: Check) -> None:
        if role not in ROLES:
            raise DomainError(
                "validation_error", f"role must be one of {', '.join(ROLES)}.", field="role"
            )
        if not username or user_model.objects.filter(username=username).exists():
            raise DomainError(
                "validation_error",
                f"username: a user named {username!r} already exists."
                if username
                else "username: this field is required.",
                field="username",
            )
        candidate = user_model(username=username, email=email)
        try:
            validate_password(password, candidate)
        except ValidationError as exc:
            raise DomainError(
                "validation_error", "password: " + " ".join(exc.messages), field="password"
            ) from exc

    def change(check: Check) -> Any:
        user = user_model.objects.create_user(username=username, email=email, password=password)
        user.is_superuser = is_superuser
        user.is_staff = is_superuser
        user.save(update_fields=["is_superuser", "is_staff"])
        user.groups.set([Group.objects.get(name=role)])
        return user

    return gate.execute(
        "user_create",
        actor=actor,
        target=f"user:{username}",
        precheck=precheck,
        change=change,
        after=lambda u: {"username": u.username, "role": role, "superuser": is_superuser},
    )


def user_update(*, actor: Any, user: Any, role: str, is_active: bool) -> Any:
    """Change a user's role or switch the account on or off (users are never deleted)."""

    def precheck(check: Check) -> None:
        if role not in ROLES:
            raise DomainError(
                "validation_error", f"role must be one of {', '.join(ROLES)}.", field="role"
            )
        if user.pk == getattr(actor, "pk", None) and not is_active:
            raise DomainError("validation_error", "You cannot deactivate your own account.")

    def change(check: Check) -> Any:
        user.is_active = is_active
        user.save(update_fields=["is_active"])
        user.groups.set([Group.objects.get(name=role)])
        return user

    before = {"role": next((g.name for g in user.groups.all()), ""), "active": user.is_active}
    return gate.execute(
        "user_update",
        actor=actor,
        target=f"user:{user.username}",
        before=before,
        precheck=precheck,
        change=change,
        after=lambda u: {"role": role, "active": u.is_active},
    )


def _alert_set(op: str, *, actor: Any, alert: Alert, status: str) -> Alert:
    def change(check: Check) -> Alert:
        locked = Alert.objects.select_for_update().get(pk=alert.pk)
        locked.status = status
        if status == Alert.Status.ACKNOWLEDGED:
            locked.acknowledged_by = actor
        if status == Alert.Status.RESOLVED:
            locked.resolved_at = check.now
        locked.save()
        return locked

    return gate.execute(
        op,
        actor=actor,
        vault_name=alert.vault_name,
        target=f"alert:{alert.pk}:{alert.kind}",
        before={"status": alert.status},
        change=change,
        after=lambda a: {"status": a.status},
    )


def alert_acknowledge(*, actor: Any, alert: Alert) -> Alert:
    return _alert_set(
        "alert_acknowledge", actor=actor, alert=alert, status=Alert.Status.ACKNOWLEDGED
    )


def alert_resolve(*, actor: Any, alert: Alert) -> Alert:
    """Resolve an alert; a later repeat opens a new one."""
    return _alert_set("alert_resolve", actor=actor, alert=alert, status=Alert.Status.RESOLVED)
