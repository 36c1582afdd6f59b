"""The compliance report's inputs and outputs: the period a request asks for, and the report
as JSON, CSV rows and a PDF (ReportLab, with its charts), all made from the one
:class:`vaults.reports.ComplianceReport`, so the page, the API and the e-mail agree."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from typing import Any
from xml.sax.saxutils import escape

from django.utils.dateparse import parse_date, parse_datetime
from django.utils.formats import date_format
from django.utils.text import Truncator
from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import (
    LongTable,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from .reports import (
    TIER_LABELS,
    TIERS,
    ComplianceReport,
    Drill,
    ItemRow,
    VaultRow,
    check_period,
)

PERIODS = {"7": 7, "30": 30, "90": 90}
DEFAULT_DAYS = 30
# The PDF lists this many items at most (the CSV and JSON have them all): a fleet's PDF
# stays a document a person reads, and made in seconds.
PDF_ITEM_ROWS = 2000


class PeriodError(ValueError):
    """A period, or a tag, a person typed that the report cannot use: which field, and why."""

    def __init__(self, field: str, sentence: str) -> None:
        super().__init__(f"{field}: {sentence}")
        self.field, self.sentence = field, sentence


# --- the period --------------------------------------------------------------------------


def _moment(text: str, name: str, *, upper: bool) -> datetime:
    """``YYYY-MM-DD`` (a whole UTC day: the upper end takes the day in) or an ISO time."""
    try:
        day = parse_date(text) if len(text) == 10 else None
        if day is not None:
            return datetime.combine(day + timedelta(days=1 if upper else 0), time(), tzinfo=UTC)
        moment = parse_datetime(text)
    except (ValueError, OverflowError):  # "2026-02-30", "9999-12-31" + 1 day
        moment = None
    if moment is None:
        raise PeriodError(name, f"{text!r} is not a date (YYYY-MM-DD) or an ISO 8601 time.")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def period(
    now: datetime, *, days: str = "", start: str = "", end: str = ""
) -> tuple[datetime, datetime]:
    """``[start, end)`` from a request: ``from``/``to`` when given (``to`` a day includes
    it) or ``days`` is "custom", else the last ``days`` (7, 30 or 90) up to ``now``.
    PeriodError says what is wrong."""
    if start or end or days == "custom":
        if not (start and end):
            raise PeriodError("from" if not start else "to", "give both from and to, or neither.")
        chosen = _moment(start, "from", upper=False), _moment(end, "to", upper=True)
    else:
        if days and days not in PERIODS:
            raise PeriodError("period", f"choose one of {', '.join(PERIODS)} days, or from and to.")
        chosen = now - timedelta(days=PERIODS.get(days, DEFAULT_DAYS)), now
    try:
        check_period(*chosen)
    except ValueError as error:
        raise PeriodError("from", str(error)) from error
    return chosen


def parse_tag(text: str) -> dict[str, str] | None:
    """``key=value`` as the tags filter; empty text is no filter."""
    if not text.strip():
        return None
    key, has_value, value = text.partition("=")
    if not key.strip() or not has_value:
        raise PeriodError("tag", f"{text!r} is not key=value.")
    return {key.strip(): value.strip()}


# --- figures as people read them ----------------------------------------------------------


def share(value: Fraction | None) -> str:
    """An RPO share as a percentage with two decimals ("95.83%"), or "none"."""
    return "none" if value is None else f"{float(value) * 100:.2f}%"


def share_number(value: Fraction | None) -> float | None:
    return None if value is None else round(float(value), 6)


def seconds(value: float) -> str:
    return f"{value:g} s"


def drill_text(drill: Drill | None) -> str:
    if drill is None:
        return "none"
    return f"{drill.at:%Y-%m-%d %H:%M} UTC, {seconds(drill.seconds)}"


def size(value: int) -> str:
    units = ["B", "KB", "MB", "GB", "TB", "PB"]
    amount, unit = float(value), 0
    while amount >= 1024 and unit < len(units) - 1:
        amount /= 1024
        unit += 1
    return f"{int(amount)} B" if unit == 0 else f"{amount:.1f} {units[unit]}"


# --- JSON ------------------------------------------------------------------------------------


def _drill_json(drill: Drill | None) -> dict[str, Any] | None:
    return None if drill is None else {"at": drill.at.isoformat(), "seconds": drill.seconds}


def _rpo_json(met: Fraction | None, covered: Fraction, judged: Fraction) -> dict[str, Any]:
    return {
        "met": share_number(met),
        "covered_seconds": float(covered),
        "judged_seconds": float(judged),
    }


def _item_json(item: ItemRow) -> dict[str, Any]:
    return {
        "name": item.name,
        "policy": item.policy,
        "protection_state": item.protection_state,
        "backups": {"succeeded": item.succeeded, "failed": item.failed},
        "rpo": _rpo_json(item.rpo_met, item.rpo_covered_seconds, item.rpo_judged_seconds),
        "last_drill": _drill_json(item.last_drill),
        "growth_bytes": item.growth,
    }


def _changes_json(changes: list[Any]) -> list[dict[str, Any]]:
    return [
        {"at": c.at.isoformat(), "operation": c.operation, "actor": c.actor,
         "before": c.before, "after": c.after}
        for c in changes
    ]  # fmt: skip


def _vault_json(vault: VaultRow) -> dict[str, Any]:
    items = vault.items
    return {
        "name": vault.name,
        "kind": vault.kind,
        "region": vault.region,
        "tags": vault.tags,
        "immutability": {
            "state": vault.immutability,
            "changes": _changes_json(vault.immutability_changes),
        },
        "soft_delete": {
            "state": vault.soft_delete_state,
            "retention_days": vault.soft_delete_retention_days,
            "changes": _changes_json(vault.soft_delete_changes),
        },
        "backups": {"succeeded": vault.succeeded, "failed": vault.failed},
        "rpo": _rpo_json(
            vault.rpo_met,
            sum((i.rpo_covered_seconds for i in items), Fraction(0)),
            sum((i.rpo_judged_seconds for i in items), Fraction(0)),
        ),
        "last_drill": _drill_json(vault.last_drill),
        "items_drilled": vault.items_drilled,
        "growth_bytes": vault.growth,
        "stored_bytes": vault.stored,
        "items": [_item_json(item) for item in items],
    }


def as_json(report: ComplianceReport) -> dict[str, Any]:
    totals = report.totals
    return {
        "from": report.start.isoformat(),
        "to": report.end.isoformat(),
        "vault": report.vault,
        "totals": {
            "vaults": totals.vaults,
            "items": totals.items,
            "backups": {"succeeded": totals.succeeded, "failed": totals.failed},
            "rpo_met": share_number(totals.rpo_met),
            "items_drilled": totals.items_drilled,
            "immutability_changes": totals.immutability_changes,
            "soft_delete_changes": totals.soft_delete_changes,
            "growth_bytes": totals.growth,
            "stored_bytes": totals.stored,
        },
        "daily": {
            "days": [day.isoformat() for day in report.days],
            "backups": report.daily_backups,
            "growth_bytes": report.daily_growth,
        },
        "vaults": [_vault_json(vault) for vault in report.vaults],
    }


# --- CSV -------------------------------------------------------------------------------------

CSV_HEADER = [
    "vault", "vault_kind", "vault_region", "vault_immutability", "vault_immutability_changes",
    "vault_soft_delete", "vault_soft_delete_changes",
    *[f"vault_stored_{tier}_bytes" for tier in TIERS],
    "item", "policy", "protection_state", "backups_succeeded", "backups_failed",
    "rpo_met", "rpo_covered_seconds", "rpo_judged_seconds", "last_drill_at",
    "last_drill_seconds", *[f"growth_{tier}_bytes" for tier in TIERS],
]  # fmt: skip


def csv_rows(report: ComplianceReport) -> list[list[Any]]:
    """One row per item with its vault's columns (a vault without items: one row, the item
    columns empty); the header first. RPO met is the exact share as a decimal."""
    rows: list[list[Any]] = [CSV_HEADER]
    for vault in report.vaults:
        head = [
            vault.name, vault.kind, vault.region, vault.immutability,
            len(vault.immutability_changes), vault.soft_delete_state,
            len(vault.soft_delete_changes), *[vault.stored[tier] for tier in TIERS],
        ]  # fmt: skip
        if not vault.items:
            rows.append(head + [""] * (len(CSV_HEADER) - len(head)))
        for item in vault.items:
            drill = item.last_drill
            rows.append([
                *head, item.name, item.policy, item.protection_state, item.succeeded,
                item.failed, "" if item.rpo_met is None else f"{float(item.rpo_met):.6f}",
                f"{float(item.rpo_covered_seconds):g}", f"{float(item.rpo_judged_seconds):g}",
                drill.at.isoformat() if drill else "", f"{drill.seconds:g}" if drill else "",
                *[item.growth[tier] for tier in TIERS],
            ])  # fmt: skip
    return rows


# --- PDF -------------------------------------------------------------------------------------

GREEN, RED = colors.HexColor("#1a7f37"), colors.HexColor("#a40e26")
TIER_COLOURS = {
    "snapshot": colors.HexColor("#8c959f"),
    "standard": colors.HexColor("#0b5cad"),
    "archive": colors.HexColor("#3b1f86"),
}
GRID = TableStyle([
    ("FONT", (0, 0), (-1, -1), "Helvetica", 8),
    ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8),
    ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eaeef2")),
    ("VALIGN", (0, 0), (-1, -1), "TOP"),
])  # fmt: skip


def _day_labels(days: list[date]) -> list[str]:
    # At most about 15 labels under the bars: every n-th day, the others blank.
    step = max(1, len(days) // 15)
    return [f"{d:%d %b}" if n % step == 0 else "" for n, d in enumerate(days)]


def _bar_chart(
    title: str, days: list[date], series: list[tuple[str, list[int], Any]], *, stacked: bool
) -> Drawing:
    width, height = 250 * mm, 62 * mm
    drawing = Drawing(width, height)
    drawing.add(String(0, height - 10, title, fontName="Helvetica-Bold", fontSize=10))
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 30, 22, width - 150, height - 45
    chart.data = [values or [0] for _, values, _ in series]
    chart.categoryAxis.categoryNames = _day_labels(days) or [""]
    chart.categoryAxis.labels.fontSize = 6
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.valueMin = 0
    chart.barSpacing = 0
    if stacked:
        chart.categoryAxis.style = "stacked"
    for n, (_, _, colour) in enumerate(series):
        chart.bars[n].fillColor = colour
        chart.bars[n].strokeColor = None
    drawing.add(chart)
    legend = Legend()
    legend.x, legend.y = width - 105, height - 25
    legend.fontSize = 8
    legend.colorNamePairs = [(colour, label) for label, _, colour in series]
    drawing.add(legend)
    return drawing


def _para(text: str, style: Any) -> Paragraph:
    return Paragraph(escape(text), style)


def as_pdf(report: ComplianceReport, *, generated: datetime) -> bytes:
    """The report as an A4 landscape PDF: totals, two charts, the vaults, then the items."""
    styles = getSampleStyleSheet()
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=landscape(A4),
        leftMargin=12 * mm,
        rightMargin=12 * mm,
        topMargin=12 * mm,
        bottomMargin=12 * mm,
        title="Holdfast compliance report",
        author="Holdfast",
    )
    totals = report.totals
    last_day = report.end - timedelta(microseconds=1)
    scope = f"vault {report.vault}" if report.vault else "every vault"
    if report.tags:
        scope += ", tags " + ", ".join(f"{k}={v}" for k, v in report.tags.items())
    story: list[Any] = [
        _para("Holdfast compliance report", styles["Title"]),
        _para(
            f"Period {report.start:%Y-%m-%d %H:%M} to {last_day:%Y-%m-%d %H:%M} UTC, {scope}. "
            f"Generated {date_format(generated, 'Y-m-d H:i')} UTC.",
            styles["Normal"],
        ),
        Spacer(1, 4 * mm),
    ]
    summary = [
        ["Vaults", "Items", "Backups succeeded", "Backups failed", "RPO met",
         "Items with a good drill", "Immutability changes", "Soft delete changes",
         *[f"Growth {TIER_LABELS[t]}" for t in TIERS]],
        [totals.vaults, totals.items, totals.succeeded, totals.failed, share(totals.rpo_met),
         totals.items_drilled, totals.immutability_changes, totals.soft_delete_changes,
         *[size(totals.growth[t]) for t in TIERS]],
    ]  # fmt: skip
    story += [Table(summary, style=GRID, hAlign="LEFT"), Spacer(1, 4 * mm)]
    story.append(
        _bar_chart(
            "Backups per day",
            report.days,
            [
                ("Succeeded", report.daily_backups["succeeded"], GREEN),
                ("Failed", report.daily_backups["failed"], RED),
            ],
            stacked=True,
        )
    )
    story.append(
        _bar_chart(
            "Stored bytes written per day, by tier",
            report.days,
            [(TIER_LABELS[t], report.daily_growth[t], TIER_COLOURS[t]) for t in TIERS],
            stacked=True,
        )
    )
    story += [PageBreak(), _para("Vaults", styles["Heading2"])]
    vault_rows: list[list[Any]] = [
        ["Vault", "Backups ok", "Failed", "RPO met", "Last good drill", "Immutability",
         "Soft delete", "Changes in the period", "Growth", "Stored now"],
    ]  # fmt: skip
    small = styles["BodyText"].clone("small", fontSize=7, leading=8.5)
    for vault in report.vaults:
        changes = "; ".join(
            f"{c.at:%Y-%m-%d %H:%M} {c.operation} by {c.actor or 'Holdfast'}" for c in vault.changes
        )
        vault_rows.append([
            _para(vault.name, small), vault.succeeded, vault.failed, share(vault.rpo_met),
            _para(drill_text(vault.last_drill), small), vault.immutability,
            f"{vault.soft_delete_state} ({vault.soft_delete_retention_days} d)",
            _para(changes or "none", small),
            _para(", ".join(f"{TIER_LABELS[t]} {size(vault.growth[t])}" for t in TIERS), small),
            _para(", ".join(f"{TIER_LABELS[t]} {size(vault.stored[t])}" for t in TIERS), small),
        ])  # fmt: skip
    widths = [38 * mm, 16 * mm, 13 * mm, 17 * mm, 34 * mm, 20 * mm, 24 * mm, 45 * mm,
              32 * mm, 32 * mm]  # fmt: skip
    story.append(LongTable(vault_rows, colWidths=widths, style=GRID, repeatRows=1))
    story += [Spacer(1, 6 * mm), _para("Items", styles["Heading2"])]
    item_rows: list[list[Any]] = [
        ["Vault", "Item", "Policy", "State", "Backups ok", "Failed", "RPO met",
         "Last good drill", "Growth"],
    ]  # fmt: skip
    listed = report.items()
    for vault, item in listed[:PDF_ITEM_ROWS]:
        item_rows.append([
            _para(vault.name, small), _para(item.name, small),
            _para(Truncator(item.policy).chars(30), small), item.protection_state,
            item.succeeded, item.failed, share(item.rpo_met),
            _para(drill_text(item.last_drill), small),
            _para(", ".join(f"{TIER_LABELS[t]} {size(item.growth[t])}" for t in TIERS), small),
        ])  # fmt: skip
    widths = [38 * mm, 38 * mm, 30 * mm, 26 * mm, 16 * mm, 13 * mm, 17 * mm, 40 * mm, 55 * mm]
    story.append(LongTable(item_rows, colWidths=widths, style=GRID, repeatRows=1))
    if len(listed) > PDF_ITEM_ROWS:
        story.append(
            _para(
                f"{len(listed) - PDF_ITEM_ROWS} more items are in the CSV "
                "(/api/v1/reports/compliance/?format=csv).",
                styles["Normal"],
            )
        )
    doc.build(story)
    return out.getvalue()
