"""The portfolio's row cells, worked out in Python once per row (issue 15).

The table is the page's main cost: a row through template tags (if-chains per badge, three
date filters, a loop of size filters, some forty nodes) cost about a millisecond, so a page
of 50 rows cost far more than a page of 5. Each row is built here with ``format_html``
(which escapes every value) and the template prints it: a tenth of the cost per row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

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


def _when(at: datetime | None) -> SafeString:
    if at is None:
        return SafeString("")
    return format_html(
        '<br><time datetime="{}" title="{} UTC">{}</time>',
        at.isoformat(), f"{at:%Y-%m-%d %H:%M:%S}", f"{at:%Y-%m-%d %H:%M}",
    )  # fmt: skip


def _badge(css: str, text: str, title: str = "") -> SafeString:
    if title:
        return format_html('<span class="badge {}" title="{}">{}</span>', css, title, text)
    return format_html('<span class="badge {}">{}</span>', css, text)


def portfolio_row(vault: Any, vaults_url: str, items_url: str) -> SafeString:
    """A vault from ``selectors.with_portfolio_columns`` as one table row (UTC times). Every
    value goes through ``format_html``, which escapes it (tags and guard names are free
    text); the links are built from prefixes because a vault name is letters, digits and
    hyphens."""
    tags = format_html_join("", ' <span class="tag">{}</span>', (
        (f"{k}={v}" if v else k,) for k, v in vault.tags.items()
    ))  # fmt: skip
    if vault.resource_guard_id:
        guard = format_html(
            '<span class="badge enabled">MUA on</span><br><span class="guard-name">{}</span>',
            vault.resource_guard.name,
        )
    else:
        guard = _badge("disabled", "Off")
    status = vault.last_backup_status or ""
    backup = (
        _badge(BACKUP_BADGES.get(status, "disabled"), status.capitalize())
        if status
        else SafeString('<span class="muted">None yet</span>')
    )
    sizes = [(TIER_TITLES[n], TIER_SHORT[n], filesizeformat(getattr(vault, f"storage_{n}")))
             for n in STORAGE_TIERS if getattr(vault, f"storage_{n}")]  # fmt: skip
    storage = format_html_join(
        "", '<li><span class="muted" title="{}">{}</span> {}</li>', sizes
    ) or SafeString('<li class="muted">None</li>')
    return format_html(
        '<tr>\n    <td class="col-name"><a href="{}{}/" hx-boost="false">{}</a>{}</td>'
        '\n    <td>{}<br><span class="muted">{}</span></td>'
        "\n    <td>{}</td>\n    <td>{}</td>\n    <td>{}</td>"
        '\n    <td><span class="badge level-{}">{}</span></td>'
        '\n    <td class="num"><a href="{}?vault={}" hx-boost="false">{}</a></td>'
        '\n    <td>{}{}</td>\n    <td><ul class="tiers">{}</ul></td>\n  </tr>',
        vaults_url, vault.name, vault.name, tags,
        KIND_LABELS.get(vault.kind, vault.kind), vault.region,
        _badge(*IMMUTABILITY.get(vault.immutability, IMMUTABILITY["disabled"])),
        _badge(*SOFT_DELETE.get(vault.soft_delete_state, SOFT_DELETE["disabled"])),
        guard,
        vault.level_db, vault.level_db.capitalize(),
        items_url, vault.name, vault.item_count,
        backup, _when(vault.last_backup_at),
        storage,
    )  # fmt: skip
