"""Typing for requests that went through django-htmx's middleware, and CSV streaming."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

from .roles import has_capability


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


class Echo:
    """A file-like object whose ``write`` returns what it is given, so ``csv.writer`` can
    feed a ``StreamingHttpResponse`` row by row."""

    def write(self, value: str) -> str:
        return value


# A spreadsheet reads a cell starting with one of these as a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """``value`` as a spreadsheet shows it, never runs it: text that would start a formula
    (a region ``=HYPERLINK(...)``) gets a leading apostrophe, as OWASP advises."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_lines(rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """Each row as one CSV line, every cell through :func:`csv_cell`, for a
    ``StreamingHttpResponse``: every CSV export goes through here."""
    writer = csv.writer(Echo())
    for row in rows:
        yield writer.writerow([csv_cell(value) for value in row])


def require_capability(request: HttpRequest, capability: str) -> None:
    """The one read check of pages: a role without ``capability`` gets a 403."""
    if not has_capability(request.user, capability):
        raise PermissionDenied("Your role does not allow you to see this page.")
