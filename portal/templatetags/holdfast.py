"""Template filters shared by every page: words for identifiers, durations a person reads."""

from __future__ import annotations

from datetime import timedelta

from django import template

from portal import labels

register = template.Library()


@register.filter
def label(identifier: str | None) -> str:
    """``operation_refused`` → "Operation refused" (or the name portal/labels.py gives it)."""
    return labels.label(identifier)


@register.filter
def duration(value: timedelta | float | int | None) -> str:
    """A duration as a person says it: "9 s", "4 min 12 s", "2 h 5 min", "3 d 4 h"."""
    if value is None or value == "":
        return "—"
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        seconds = 0
    if seconds < 10:
        return f"{seconds:.1f} s" if seconds % 1 else f"{int(seconds)} s"
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


@register.inclusion_tag("_mua_marker.html")
def mua_marker(vault: object, operation: str) -> dict[str, object]:
    """ "Protected by <guard>" beside an action the vault's Resource Guard protects (SPEC 3.4),
    so a person knows before the click that it needs a security admin's approval."""
    guard = getattr(vault, "resource_guard", None)
    protected = guard is not None and guard.protects(operation)
    return {"guard": guard if protected else None, "operation": operation}
