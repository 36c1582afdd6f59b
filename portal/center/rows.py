"""The portfolio's row cells, worked out in Python once per row (issue 15).

The table is the page's main cost: a row through template tags (if-chains per badge, three
date filters, a loop of size filters) cost about a millisecond, so a page of 50 rows cost
far more than a page of 5. Each cell's text and badge class are plain values here; the
template only prints them (and escapes them: nothing here is marked safe).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.template.defaultfilters import filesizeformat

from vaults.models import Vault
from vaults.selectors import STORAGE_TIERS

KIND_LABELS = dict(Vault.Kind.choices)
IMMUTABILITY = {
    "locked": ("locked", "Locked", "Immutability enabled and locked"),
    "enabled": ("enabled", "Enabled", ""),
    "disabled": ("disabled", "Disabled", ""),
}
SOFT_DELETE = {
    "always_on": ("locked", "Always-on"),
    "enabled": ("enabled", "Soft delete on"),
    "disabled": ("disabled", "Off"),
}
BACKUP_BADGES = {"completed": "enabled", "failed": "refused"}
TIER_SHORT = {"snapshot": "Snapshot", "standard": "Standard", "archive": "Archive"}
TIER_TITLES = {"snapshot": "Snapshot tier", "standard": "Vault-standard tier",
               "archive": "Vault-archive tier"}  # fmt: skip


@dataclass(slots=True)
class Row:
    name: str
    tags: list[str]
    kind: str
    region: str
    immutability: tuple[str, str, str]
    soft_delete: tuple[str, str]
    guard: str | None
    level: str
    level_label: str
    item_count: int
    backup_badge: str
    backup_label: str
    backup_iso: str
    backup_title: str
    backup_short: str
    storage: list[tuple[str, str, str]]


def _when(at: datetime | None) -> tuple[str, str, str]:
    if at is None:
        return "", "", ""
    return at.isoformat(), f"{at:%Y-%m-%d %H:%M:%S} UTC", f"{at:%Y-%m-%d %H:%M}"


def portfolio_row(vault: Any) -> Row:
    """A vault from ``selectors.with_portfolio_columns`` as the table shows it (UTC times)."""
    status = vault.last_backup_status or ""
    iso, title, short = _when(vault.last_backup_at)
    sizes = [(name, getattr(vault, f"storage_{name}")) for name in STORAGE_TIERS]
    return Row(
        name=vault.name,
        tags=[f"{k}={v}" if v else k for k, v in vault.tags.items()],
        kind=KIND_LABELS.get(vault.kind, vault.kind),
        region=vault.region,
        immutability=IMMUTABILITY.get(vault.immutability, IMMUTABILITY["disabled"]),
        soft_delete=SOFT_DELETE.get(vault.soft_delete_state, SOFT_DELETE["disabled"]),
        guard=vault.resource_guard.name if vault.resource_guard_id else None,
        level=vault.level_db,
        level_label=vault.level_db.capitalize(),
        item_count=vault.item_count,
        backup_badge=BACKUP_BADGES.get(status, "disabled"),
        backup_label=status.capitalize(),
        backup_iso=iso,
        backup_title=title,
        backup_short=short,
        storage=[
            (TIER_TITLES[n], TIER_SHORT[n], filesizeformat(size)) for n, size in sizes if size
        ],
    )
