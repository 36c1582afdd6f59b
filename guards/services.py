"""Resource Guards and PIM-style elevation (SPEC 3.4), through the operation gate."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings

from portal import gate
from portal.gate import Check, DomainError
from portal.models import Approval

from .models import ResourceGuard

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


def guard_create(
    *, actor: Any, name: str, protected_operations: list[str] | None = None, description: str = ""
) -> ResourceGuard:
    guard = ResourceGuard(name=name, description=description, owner=actor)

    def precheck(check: Check) -> None:
        if not name:
            raise DomainError("validation_error", "name: this field is required.", field="name")
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
        target=f"guard:{name}",
        precheck=precheck,
        change=change,
        after=lambda g: {"name": g.name, "protected_operations": g.protected_operations},
    )


def guard_update(
    *,
    actor: Any,
    guard: ResourceGuard,
    protected_operations: list[str] | None = None,
    description: str | None = None,
) -> ResourceGuard:
    before = {"protected_operations": guard.protected_operations}

    def precheck(check: Check) -> None:
        if protected_operations is not None:
            guard.protected_operations = _operations(protected_operations)

    def change(check: Check) -> ResourceGuard:
        if description is not None:
            guard.description = description
        guard.save()
        return guard

    return gate.execute(
        "guard_update",
        actor=actor,
        target=f"guard:{guard.name}",
        before=before,
        precheck=precheck,
        change=change,
        after=lambda g: {"protected_operations": g.protected_operations},
    )


def elevation_request(
    *, actor: Any, guard: ResourceGuard, justification: str, duration_minutes: int
) -> Approval:
    """Ask for time-bound access on a guard; a security admin other than you decides."""

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
