"""Resource Guards and PIM-style elevation (SPEC 3.4), through the operation gate."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from portal import gate
from portal.gate import Check, DomainError
from portal.models import Approval
from portal.validators import check_storable

from .models import GUARD_NAME_VALIDATOR, ResourceGuard

ELEVATION_MINUTES = (15, 8 * 60)


def _operations(chosen: list[str] | None) -> list[str]:
    """A guard created without choosing protects everything; mandatory ones always."""
    valid = set(ResourceGuard.Operation.values)
    if chosen is None:
        return sorted(valid)
    unknown = [op for op in chosen if op not in valid]
    if unknown:
        raise DomainError(
            "validation_error",
            f"protected_operations: unknown operation {unknown[0]!r}; choose from "
            f"{', '.join(sorted(valid))}.",
            field="protected_operations",
        )
    return sorted(set(chosen) | set(ResourceGuard.MANDATORY))


def _check_name(name: str) -> None:
    if not name:
        raise DomainError("validation_error", "name: this field is required.", field="name")
    try:
        GUARD_NAME_VALIDATOR(name)
    except ValidationError as exc:
        raise DomainError("validation_error", f"name: {exc.messages[0]}", field="name") from None


def guard_create(
    *, actor: Any, name: str, protected_operations: list[str] | None = None, description: str = ""
) -> ResourceGuard:
    check_storable(name=name, description=description, protected_operations=protected_operations)
    guard = ResourceGuard(name=name, description=description, owner=actor)

    def precheck(check: Check) -> None:
        _check_name(name)
        if ResourceGuard.objects.filter(name=name).exists():
            raise DomainError(
                "validation_error", f"name: a guard named {name} already exists.", field="name"
            )
        guard.protected_operations = _operations(protected_operations)

    def change(check: Check) -> ResourceGuard:
        guard.save()
        return guard

    return gate.execute(
        "guard_create",
        actor=actor,
        target=f"guard:{name[:60]}",
        precheck=precheck,
        change=change,
        after=lambda g: g.audit_state(),
    )


def _lock_guard(guard: ResourceGuard) -> Callable[[dict[str, Any]], None]:
    def refresh(facts: dict[str, Any]) -> None:
        facts["guard"] = ResourceGuard.objects.select_for_update().get(pk=guard.pk)

    return refresh


def guard_update(
    *,
    actor: Any,
    guard: ResourceGuard,
    protected_operations: list[str] | None = None,
    description: str | None = None,
    otp: str = "",
) -> ResourceGuard | Approval:
    """Change a guard. Adding protected operations (or a description) takes effect at once;
    removing any is a weakening (SPEC 3.4): it answers with a pending ``guard_weaken`` approval
    that another security admin decides, and raises a security alert."""
    check_storable(protected_operations=protected_operations, description=description)
    wanted = _operations(protected_operations) if protected_operations is not None else None
    current = set(guard.protected_operations)
    removed = sorted(current - set(wanted)) if wanted is not None else []
    if removed:
        added = sorted(set(wanted or []) - current)
        return _guard_weaken_request(
            actor=actor,
            guard=guard,
            payload={"remove": removed, "add": added, "description": description},
            otp=otp,
        )

    def change(check: Check) -> ResourceGuard:
        locked: ResourceGuard = check.facts["guard"]
        if wanted is not None:
            # Only ever adds: what the locked row has now stays protected.
            locked.protected_operations = sorted(set(locked.protected_operations) | set(wanted))
        if description is not None:
            locked.description = description
        locked.save()
        return locked

    return gate.execute(
        "guard_update",
        actor=actor,
        target=f"guard:{guard.name}",
        refresh=_lock_guard(guard),
        before=lambda facts: facts["guard"].audit_state(),
        change=change,
        after=lambda g: g.audit_state(),
    )


def guard_delete(*, actor: Any, guard: ResourceGuard, otp: str = "") -> Approval:
    """Deleting a guard is a weakening: a pending ``guard_weaken`` approval, refused with
    ``guard_in_use`` while any vault is protected by it."""
    return _guard_weaken_request(actor=actor, guard=guard, payload={"delete": True}, otp=otp)


def _guard_weaken_request(
    *, actor: Any, guard: ResourceGuard, payload: dict[str, Any], otp: str = ""
) -> Approval:
    def change(check: Check) -> Approval:
        return Approval.objects.create(
            kind=Approval.Kind.GUARD_WEAKEN,
            requested_by=actor,
            guard=check.facts["guard"],
            payload=payload,
            justification=_weakening(payload),
            created_at=check.now,
            expires_at=check.now + settings.HOLDFAST_APPROVAL_TTL,
        )

    return gate.execute(
        "guard_weaken_request",
        actor=actor,
        target=f"guard:{guard.name}",
        facts={"guard": guard, "delete": bool(payload.get("delete")), "otp": otp},
        refresh=_lock_guard(guard),
        before=lambda facts: facts["guard"].audit_state(),
        change=change,
        after=lambda a: {"approval": a.pk, **payload},
    )


def _weakening(payload: dict[str, Any]) -> str:
    if payload.get("delete"):
        return "Delete this Resource Guard."
    return "Stop protecting: " + ", ".join(payload.get("remove", [])) + "."


def guard_weaken(*, actor: Any, vault: Any, approval: Approval) -> ResourceGuard | None:
    """Apply an approved ``guard_weaken`` request (run inside its approval)."""
    payload = approval.payload

    def change(check: Check) -> ResourceGuard | None:
        locked: ResourceGuard = check.facts["guard"]
        if payload.get("delete"):
            locked.delete()
            return None
        operations = set(locked.protected_operations) | set(payload.get("add", []))
        locked.protected_operations = sorted(
            (operations - set(payload.get("remove", []))) | set(ResourceGuard.MANDATORY)
        )
        if payload.get("description") is not None:
            locked.description = payload["description"]
        locked.save()
        return locked

    def refresh(facts: dict[str, Any]) -> None:
        if approval.guard is None:
            raise DomainError("validation_error", "The guard of this request no longer exists.")
        _lock_guard(approval.guard)(facts)

    return gate.execute(
        "guard_weaken",
        actor=actor,
        target=f"guard:{approval.guard.name if approval.guard else '?'}",
        facts={"approval": approval, "delete": bool(payload.get("delete"))},
        refresh=refresh,
        before=lambda facts: facts["guard"].audit_state(),
        change=change,
        after=lambda g: g.audit_state() if g is not None else {"deleted": True},
    )


def elevation_request(
    *,
    actor: Any,
    guard: ResourceGuard,
    justification: str,
    duration_minutes: int,
    otp: str = "",
) -> Approval:
    """Ask for time-bound access on a guard; a security admin other than you decides. With
    ``HOLDFAST_APPROVER_2FA=required`` the request needs a fresh code from your authenticator."""

    check_storable(justification=justification)

    def precheck(check: Check) -> None:
        if not justification or not justification.strip():
            raise DomainError(
                "validation_error",
                "justification: say why you need access.",
                field="justification",
            )
        low, high = ELEVATION_MINUTES
        if not isinstance(duration_minutes, int) or not low <= duration_minutes <= high:
            raise DomainError(
                "validation_error",
                "duration_minutes: ask for 15 minutes to 8 hours (480 minutes).",
                field="duration_minutes",
            )

    def change(check: Check) -> Approval:
        return Approval.objects.create(
            kind=Approval.Kind.ELEVATION,
            requested_by=actor,
            guard=guard,
            justification=justification.strip(),
            duration_minutes=duration_minutes,
            created_at=check.now,
            expires_at=check.now + settings.HOLDFAST_APPROVAL_TTL,
        )

    return gate.execute(
        "elevation_request",
        actor=actor,
        target=f"guard:{guard.name}",
        facts={"otp": otp},
        precheck=precheck,
        change=change,
        after=lambda a: {"approval": a.pk, "minutes": a.duration_minutes},
    )


def elevation_release(*, actor: Any, approval: Approval) -> Approval:
    """The holder gives an active elevation up before it expires."""

    def refresh(facts: dict[str, Any]) -> None:
        facts["approval"] = Approval.objects.select_for_update().get(pk=approval.pk)

    def change(check: Check) -> Approval:
        locked: Approval = check.facts["approval"]
        locked.status = Approval.Status.CANCELLED
        locked.active_until = check.now
        locked.save(update_fields=["status", "active_until"])
        return locked

    return gate.execute(
        "elevation_release",
        actor=actor,
        target=f"approval:{approval.pk}:elevation",
        facts={"approval": approval},
        refresh=refresh,
        change=change,
        after=lambda a: {"status": a.status},
    )


def elevation_remaining(approval: Approval, now: Any) -> timedelta:
    if approval.active_until is None or not approval.is_active_elevation(now):
        return timedelta(0)
    return approval.active_until - now
