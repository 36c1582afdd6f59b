"""Responding to alerts: acknowledge, resolve (SPEC 3.8)."""

from __future__ import annotations

from typing import Any

from .. import gate
from ..gate import Check
from ..models import Alert


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
