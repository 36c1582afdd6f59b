"""The portfolio's row cells, worked out in Python once per row (issue 15).

The table is the page's main cost: a row through template tags (if-chains per badge, three
date filters, a loop of size filters, some forty nodes) cost about a millisecond, so a page
of 50 rows cost far more than a page of 5. Each row is built here as one string, every value
escaped where it is put in, and the template prints it: a small part of the cost per row.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

from django.template.defaultfilters import filesizeformat
from django.utils.safestring import SafeString, mark_safe

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


def e(value: Any) -> str:
    """Escape for HTML text and attribute values (``&<>"'``, as Django's ``escape``), without
    Django's lazy-string wrapper, which cost more than the escaping itself at 20 values a row."""
    return html.escape(str(value), quote=True)


def _when(at: datetime | None) -> str:
    if at is None:
        return ""
    return (
        f'<br><time datetime="{e(at.isoformat())}" title="{at:%Y-%m-%d %H:%M:%S} UTC">'
        f"{at:%Y-%m-%d %H:%M}</time>"
    )


def _badge(css: str, text: str, title: str = "") -> str:
    titled = f' title="{e(title)}"' if title else ""
    return f'<span class="badge {e(css)}"{titled}>{e(text)}</span>'


def _since(at: datetime, now: datetime) -> str:
    seconds = max(0, int((now - at).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _replication(vault: Any, vaults_url: str, now: datetime) -> str:
    """The Replication column (SPEC 3.10): the pair and its lag, in words."""
    if vault.replica_id:
        pair = (
            f'→ <a href="{e(vaults_url)}{e(vault.name)}/replication/" hx-boost="false">'
            f"{e(vault.replica.name)}</a> ({e(vault.replica.region)})<br>"
        )
        oldest = getattr(vault, "oldest_uncopied_at", None)
        if oldest is None:
            return pair + _badge("enabled", "Up to date")
        return (
            f'{pair}{_badge("warn", "Lag")} <time datetime="{e(oldest.isoformat())}" '
            f'title="oldest point not copied: {oldest:%Y-%m-%d %H:%M:%S} UTC">'
            f"{e(_since(oldest, now))}</time>"
        )
    source = getattr(vault, "replica_source", None)
    if source is not None:
        return (
            f'{_badge("disabled", "Replica")} of <a href="{e(vaults_url)}{e(source.name)}'
            f'/replication/" hx-boost="false">{e(source.name)}</a>'
        )
    return '<span class="muted">None</span>'


def portfolio_row(vault: Any, vaults_url: str, items_url: str, now: datetime) -> SafeString:
    """A vault from ``selectors.with_portfolio_columns`` as one table row (UTC times). Every
    value is escaped with :func:`e` where it is put in (tags and guard names are free text);
    the links are built from prefixes because a vault name is letters, digits and hyphens."""
    name = e(vault.name)
    tags = "".join(
        f' <span class="tag">{e(f"{k}={v}" if v else k)}</span>' for k, v in vault.tags.items()
    )
    if vault.resource_guard_id:
        guard = (
            '<span class="badge enabled">MUA on</span><br>'
            f'<span class="guard-name">{e(vault.resource_guard.name)}</span>'
        )
    else:
        guard = _badge("disabled", "Off")
    status = vault.last_backup_status or ""
    backup = (
        _badge(BACKUP_BADGES.get(status, "disabled"), status.capitalize())
        if status
        else '<span class="muted">None yet</span>'
    )
    storage = (
        "".join(
            f'<li><span class="muted" title="{e(TIER_TITLES[n])}">{e(TIER_SHORT[n])}</span> '
            f"{e(filesizeformat(size))}</li>"
            for n in STORAGE_TIERS
            if (size := getattr(vault, f"storage_{n}"))
        )
        or '<li class="muted">None</li>'
    )
    level = e(vault.level_db)
    return mark_safe(  # noqa: S308 (every value above is escaped by e())
        f'<tr>\n    <td class="col-name"><a href="{e(vaults_url)}{name}/" hx-boost="false">'
        f"{name}</a>{tags}</td>"
        f"\n    <td>{e(KIND_LABELS.get(vault.kind, vault.kind))}<br>"
        f'<span class="muted">{e(vault.region)}</span></td>'
        f"\n    <td>{_badge(*IMMUTABILITY.get(vault.immutability, IMMUTABILITY['disabled']))}</td>"
        f"\n    <td>{_badge(*SOFT_DELETE.get(vault.soft_delete_state, SOFT_DELETE['disabled']))}"
        f"</td>\n    <td>{guard}</td>"
        f'\n    <td><span class="badge level-{level}">{e(vault.level_db.capitalize())}</span></td>'
        f'\n    <td class="num"><a href="{e(items_url)}?vault={name}" hx-boost="false">'
        f"{e(vault.item_count)}</a></td>"
        f"\n    <td>{backup}{_when(vault.last_backup_at)}</td>"
        f'\n    <td><ul class="tiers">{storage}</ul></td>'
        f'\n    <td class="replication">{_replication(vault, vaults_url, now)}</td>'
        "\n  </tr>"
    )
