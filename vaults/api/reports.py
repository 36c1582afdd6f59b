"""``GET /api/v1/reports/compliance/?from=&to=&vault=&tag=[&format=csv|pdf]`` (SPEC 5, 3.12):
the compliance report as JSON, or the same figures as a CSV or PDF download
(vaults/report_files.py; what each figure means: docs/reports.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal import clock
from portal.api import ERROR_SCHEMA
from portal.http import csv_lines
from portal.roles import has_capability

from .. import report_files, reports
from ..models import Vault

FORMATS = ("json", "csv", "pdf")


class JsonAlways(BaseContentNegotiation):
    """``format`` here names the download, not a renderer (DRF would 404 on ``csv``): JSON
    is rendered for JSON answers and errors; the files are plain Django responses."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0]

    def select_renderer(self, request: Request, renderers: Any, format_suffix: Any = None) -> Any:
        return renderers[0], renderers[0].media_type


def _query(name: str, description: str, **extra: Any) -> OpenApiParameter:
    return OpenApiParameter(name, str, OpenApiParameter.QUERY, description=description, **extra)


def download_name(report: reports.ComplianceReport, extension: str) -> str:
    last = report.end - timedelta(microseconds=1)
    scope = f"-{report.vault}" if report.vault else ""
    return f"holdfast-compliance{scope}-{report.start:%Y%m%d}-{last:%Y%m%d}.{extension}"


def file_response(report: reports.ComplianceReport, kind: str) -> HttpResponse:
    """The report as the ``csv`` or ``pdf`` attachment (the page's download links too)."""
    if kind == "csv":
        body: Any = "".join(csv_lines(report_files.csv_rows(report)))
        response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    else:
        body = report_files.as_pdf(report, generated=clock.now())
        response = HttpResponse(body, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{download_name(report, kind)}"'
    return response


def report_for(params: Any, window: slice | None = None) -> reports.ComplianceReport:
    """The report a request's parameters ask for (listing only ``window``'s items, if
    given); PeriodError for a period or tag that is wrong, Vault.DoesNotExist for a vault
    that is not there."""
    start, end = report_files.period(
        clock.now(),
        days=params.get("period", ""),
        start=params.get("from", ""),
        end=params.get("to", ""),
    )
    vault = params.get("vault", "") or None
    if vault and not Vault.objects.filter(name=vault).exists():
        raise Vault.DoesNotExist(f"vault: there is no vault named {vault!r}.")
    return reports.compliance(
        start=start,
        end=end,
        vault=vault,
        tags=report_files.parse_tag(params.get("tag", "")),
        window=window,
    )


class ComplianceReportView(APIView):
    """Per vault and item over a period: backups, RPO met, drills, immutability and soft
    delete, storage growth (docs/reports.md)."""

    content_negotiation_class = JsonAlways

    @extend_schema(
        operation_id="reports_compliance",
        parameters=[
            _query("from", "Start: YYYY-MM-DD (00:00 UTC) or an ISO 8601 time."),
            _query("to", "End: YYYY-MM-DD (that day included) or an ISO 8601 time (excluded)."),
            _query(
                "period",
                "Without from/to: the last 7, 30 (default) or 90 days.",
                enum=list(report_files.PERIODS),
            ),
            _query("vault", "Only this vault."),
            _query("tag", "Only vaults with this tag, as key=value."),
            _query("format", "json (default), or csv or pdf as a download.", enum=FORMATS),
        ],
        responses={
            200: OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="The report (JSON), or a text/csv or application/pdf attachment.",
            ),
            400: ERROR_SCHEMA,
            403: ERROR_SCHEMA,
            404: ERROR_SCHEMA,
            503: ERROR_SCHEMA,
        },
    )
    def get(self, request: Request) -> Response | HttpResponse:
        if not has_capability(request.user, "view"):
            raise exceptions.PermissionDenied("Your role does not allow you to see reports.")
        kind = request.query_params.get("format", "json")
        if kind not in FORMATS:
            raise exceptions.ValidationError({"format": [f"choose one of {', '.join(FORMATS)}."]})
        try:
            report = report_for(request.query_params)
        except report_files.PeriodError as error:
            raise exceptions.ValidationError({error.field: [error.sentence]}) from error
        except Vault.DoesNotExist as error:
            raise exceptions.NotFound(str(error)) from error
        except reports.ReportUnavailable as error:  # the embedded SQLite demo
            return Response({"code": "report_unavailable", "detail": str(error)}, status=503)
        if kind == "json":
            return Response(report_files.as_json(report))
        return file_response(report, kind)
