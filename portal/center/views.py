"""Backup center (SPEC 7): the portfolio of every vault, protected items across vaults, and the
dashboard's cards and charts. Read-only pages: every role with ``view`` sees them, and none of
them carries an action control. Routes: ``portal/center/urls.py``.

Each page's query count is fixed, whatever the number of rows: the rows' columns are
annotations from ``vaults.selectors`` and lists are paginated.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import django_filters
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse

from policies.models import Policy
from portal import clock
from portal.http import HtmxHttpRequest, csv_lines, require_capability
from vaults import selectors
from vaults.filters import ItemDrillFilter, PortfolioFilter
from vaults.models import ProtectedItem
from vaults.replicas import with_replication_columns

from .rows import portfolio_row
from .tiles import center_tiles

PAGE_SIZE = 50
# The columns a portfolio row reads (portal/center/rows.py; the rest are annotations).
ROW_FIELDS = ["name", "kind", "region", "tags", "immutability", "soft_delete_state",
              "resource_guard__name", "last_backup_status", "last_backup_at",
              "replica__name", "replica__region", "replica_source__name"]  # fmt: skip


CSV_COLUMNS = [
    "name",
    "kind",
    "region",
    "tags",
    "immutability",
    "data_lock",
    "soft_delete",
    "mua_guard",
    "security_level",
    "protected_items",
    "last_backup_status",
    "last_backup_at",
    *[f"storage_{name}_bytes" for name in selectors.STORAGE_TIERS],
]


def _query_without(request: HttpRequest, *names: str) -> str:
    query = request.GET.copy()
    for name in names:
        query.pop(name, None)
    return query.urlencode()


def _page(queryset: QuerySet[Any], number: str | None) -> Page[Any]:
    """Paginate on primary keys, then fetch only the page's rows with their annotations.

    A deep page (OFFSET 7,450) would otherwise evaluate every correlated subquery for every
    row it skips; this way the columns cost the same on page 1 and page 150.
    """
    page = Paginator(queryset.values_list("pk", flat=True), PAGE_SIZE).get_page(number)
    pks = list(page.object_list)
    rows = {row.pk: row for row in queryset.order_by().filter(pk__in=pks)}
    page.object_list = [rows[pk] for pk in pks]
    return page


def portfolio(request: HtmxHttpRequest) -> HttpResponse:
    """The landing page: one row per vault, filtered, sorted, paginated; htmx swaps #results."""
    require_capability(request, "view")
    vaults = selectors.portfolio_vaults(request.user)
    now = clock.now()
    vaults = with_replication_columns(vaults, now)  # the Replication column
    vault_filter = PortfolioFilter(request.GET, queryset=vaults)
    page = _page(vault_filter.qs.only(*ROW_FIELDS), request.GET.get("page"))
    vaults_url, items_url = reverse("vaults:list"), reverse("items")
    context = {
        "filter": vault_filter,
        "page": page,
        # Links reversed once, not once per row (a vault name needs no escaping in a URL).
        "rows": [portfolio_row(vault, vaults_url, items_url, now) for vault in page],
        "sort": request.GET.get("sort", "name"),
        "query": _query_without(request, "page"),
        "sort_query": _query_without(request, "page", "sort"),
        "export_query": _query_without(request, "page"),
    }
    template = "center/portfolio.html#results" if request.htmx else "center/portfolio.html"
    return render(request, template, context)


def tiles(request: HtmxHttpRequest) -> HttpResponse:
    """The summary tiles (a fragment the portfolio page loads once it is shown, and every
    minute after: sorting and filtering the table never waits for them). Without JavaScript
    the page links here; the fragment is then a page of its own."""
    require_capability(request, "view")
    context = {"tiles": center_tiles(request.user, clock.now())}
    template = "center/_tiles.html" if request.htmx else "center/tiles.html"
    return render(request, template, context)


def _csv_rows(vaults: Any) -> Iterator[list[Any]]:
    yield CSV_COLUMNS
    for vault in vaults:
        tags = ";".join(f"{k}={v}" if v else k for k, v in sorted(vault.tags.items()))
        yield [
            vault.name,
            vault.kind,
            vault.region,
            tags,
            vault.immutability,
            vault.data_lock,
            vault.soft_delete_state,
            vault.resource_guard.name if vault.resource_guard_id else "",
            vault.level_db,
            vault.item_count,
            vault.last_backup_status or "",
            vault.last_backup_at.isoformat() if vault.last_backup_at else "",
            *[getattr(vault, f"storage_{name}") for name in selectors.STORAGE_TIERS],
        ]


def portfolio_export(request: HttpRequest) -> StreamingHttpResponse:
    """The filtered portfolio as CSV, streamed row by row (server-side cursor on PostgreSQL)."""
    require_capability(request, "view")
    vault_filter = PortfolioFilter(request.GET, queryset=selectors.portfolio_vaults(request.user))
    rows = _csv_rows(vault_filter.qs.iterator(chunk_size=2000))
    response = StreamingHttpResponse(csv_lines(rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="holdfast-portfolio.csv"'
    return response


# --- protected items ---------------------------------------------------------------------


class ItemFilter(ItemDrillFilter):
    vault = django_filters.CharFilter(field_name="vault__name", label="Vault")
    policy = django_filters.CharFilter(field_name="policy__name", label="Policy")
    protection_state = django_filters.ChoiceFilter(
        choices=ProtectedItem.State.choices, empty_label="Any", label="Protection state"
    )
    last_backup = django_filters.ChoiceFilter(
        choices=selectors.LAST_BACKUP_CHOICES,
        empty_label="Any",
        label="Last backup",
        method="filter_last_backup",
    )
    rpo = django_filters.ChoiceFilter(
        choices=[("met", "Met"), ("missed", "Missed")],
        empty_label="Any",
        label="RPO",
        method="filter_rpo",
    )
    sort = django_filters.OrderingFilter(
        fields=(
            ("vault__name", "vault"),
            ("name", "name"),
            ("policy__name", "policy"),
            ("protection_state", "state"),
            ("last_backup_at", "last_backup"),
        ),
    )

    class Meta:
        model = ProtectedItem
        fields = ["vault", "policy", "protection_state", "last_backup", "rpo", "drill"]

    def filter_last_backup(self, queryset: Any, name: str, value: str) -> Any:
        return selectors.filter_last_backup(queryset, value)

    def filter_rpo(self, queryset: Any, name: str, value: str) -> Any:
        return queryset.filter(rpo_state=value)


def item_list(request: HtmxHttpRequest) -> HttpResponse:
    """Protected items across every vault the user sees, with last backup and RPO state."""
    require_capability(request, "view")
    queryset = selectors.items_for_user(request.user, clock.now())
    item_filter = ItemFilter(request.GET, queryset=queryset)
    items = item_filter.qs
    if not items.query.order_by:
        items = items.order_by("vault__name", "name")
    page = _page(items.order_by(*items.query.order_by, "pk"), request.GET.get("page"))
    context = {
        "filter": item_filter,
        "page": page,
        "sort": request.GET.get("sort", ""),
        "query": _query_without(request, "page"),
        "sort_query": _query_without(request, "page", "sort"),
        "frequencies": Policy.Frequency,
    }
    template = (
        "center/protected_items.html#results" if request.htmx else "center/protected_items.html"
    )
    return render(request, template, context)


# --- dashboard ---------------------------------------------------------------------------


def dashboard(request: HttpRequest) -> HttpResponse:
    """Cards and charts; the numbers are in the HTML, the charts draw from a JSON script tag."""
    require_capability(request, "view")
    figures = selectors.dashboard_figures(request.user, clock.now())
    chart_data = {
        "jobs": {"labels": [r[0] for r in figures["jobs_by_status"]],
                 "values": [r[1] for r in figures["jobs_by_status"]]},
        "rpo": {"labels": ["Met", "Missed"],
                "values": [figures["rpo_met"], figures["rpo_missed"]]},
        "storage_now": {"labels": [r[0] for r in figures["storage_now"]],
                        "values": [r[1] for r in figures["storage_now"]]},
        "storage_daily": {
            "labels": figures["storage_days"],
            "series": [
                {"label": selectors.STORAGE_LABELS[name], "values": values}
                for name, values in figures["storage_daily"].items()
            ],
        },
        "levels": {"labels": [r[0] for r in figures["levels"]],
                   "values": [r[1] for r in figures["levels"]]},
        "alerts": {"labels": [r[0] for r in figures["alerts"]],
                   "values": [r[1] for r in figures["alerts"]]},
    }  # fmt: skip
    return render(request, "center/dashboard.html", {"figures": figures, "chart_data": chart_data})
