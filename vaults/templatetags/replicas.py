"""``{% replica_copies point %}``: on a restore or browse page, both copies of a recovery
point of a replicated vault (SPEC 3.10), each with its vault and region, so a person can
restore from the other region (cross-region restore)."""

from __future__ import annotations

from typing import Any

from django import template

from ..models import RecoveryPoint
from ..replicas import other_copy

register = template.Library()


@register.inclusion_tag("vaults/_replica_copies.html")
def replica_copies(point: RecoveryPoint) -> dict[str, Any]:
    other = other_copy(point)
    copies = [point, other] if other is not None else []
    return {"point": point, "copies": copies}
