"""``GET /reports/``: the compliance report (docs/reports.md) for a period, a vault and a
tag, as tiles, two charts (vendored Chart.js, drawn by static/js/reports.js from a
``json_script`` block) and tables, with the same report's CSV and PDF a link away."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from portal import clock
from portal.http import require_capability
from vaults import report_files, reports
from vaults.api.reports import report_for
from vaults.models import Vault

ITEMS_PER_PAGE = 100
VAULTS_PER_PAGE = 100
PERIOD_CHOICES = [("7", "Last 7 days"), ("30", "Last 30 days"), ("90", "Last 90 days"),
                  ("custom", "Custom: from and to")]  # fmt: skip


def _params(request: HttpRequest) -> dict[str, str]:
    """The form's values; with "custom" the from and to dates count, else they do not."""
    chosen = request.GET.get("period", "30")
    return {
        "period": chosen if chosen in {*report_files.PERIODS, "custom"} else "30",
        "from": request.GET.get("from", "").strip(),
        "to": request.GET.get("to", "").strip(),
        "vault": request.GET.get("vault", "").strip(),
        "tag": request.GET.get("tag", "").strip(),
    }


def _chart_data(report: reports.ComplianceReport) -> dict[str, Any]:
    return {
        "days": [day.isoformat() for day in report.days],
        "backups": report.daily_backups,
        "growth": {
            "series": [
                {"key": tier, "label": reports.TIER_LABELS[tier], "values": values}
                for tier, values in report.daily_growth.items()
            ]
        },
    }


def _page_number(asked: str | None) -> int:
    try:
        return max(1, int(asked or 1))
    except ValueError:
        return 1


def _window(number: int) -> slice:
    return slice((number - 1) * ITEMS_PER_PAGE, number * ITEMS_PER_PAGE)


def reports_page(request: HttpRequest) -> HttpResponse:
    require_capability(request, "view")
    params = _params(request)
    custom = params["period"] == "custom"
    asked = {key: params[key] for key in ("vault", "tag") if params[key]}
    if custom:
        asked.update({"period": "custom", "from": params["from"], "to": params["to"]})
    else:
        asked["period"] = params["period"]
    query = {"period": params["period"], **asked}
    asked = {key: value for key, value in asked.items() if value}
    context: dict[str, Any] = {
        "params": params,
        "periods": PERIOD_CHOICES,
        "vault_names": list(Vault.objects.order_by("name").values_list("name", flat=True)[:500]),
        "error": "",
        "report": None,
    }
    # The page lists one page of items: the report sums the rest in PostgreSQL. A page
    # number past the end shows the last page, as Paginator.get_page does.
    number = _page_number(request.GET.get("page"))
    try:
        report = report_for(asked, window=_window(number))
        count = report.totals.items
        last = max(1, -(-count // ITEMS_PER_PAGE))
        if number > last:
            number = last
            report = report_for(asked, window=_window(number))
    except report_files.PeriodError as error:
        context["error"] = f"{error.field}: {error.sentence}"
    except Vault.DoesNotExist as error:
        context["error"] = str(error)
    except reports.ReportUnavailable as error:
        context["error"] = str(error)
    else:
        items = Paginator(range(count), ITEMS_PER_PAGE).get_page(number)
        vaults = Paginator(report.vaults, VAULTS_PER_PAGE).get_page(request.GET.get("vaults"))
        context.update(
            report=report,
            totals=report.totals,
            items=items,
            item_rows=report.items(),
            vaults=vaults,
            last_day=report.end - timedelta(microseconds=1),
            query=urlencode(query),
            items_query=urlencode({**query, "vaults": vaults.number}),
            vaults_query=urlencode({**query, "page": items.number}),
            download=urlencode(asked),
            chart_data=_chart_data(report),
            tiers=[(tier, reports.TIER_LABELS[tier]) for tier in reports.TIERS],
            now=clock.now(),
        )
    return render(request, "center/reports.html", context)
