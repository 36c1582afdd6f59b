"""Filters of the Reports page (templates/center/reports.html): an RPO share as a
percentage, and a value of a per-tier dictionary."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from django import template

from vaults import report_files

register = template.Library()


@register.filter
def share(value: Fraction | None) -> str:
    """``Fraction(87, 168)`` reads "51.79%" (as in the PDF); no share reads "none"."""
    return report_files.share(value)


@register.filter
def tier(values: dict[str, Any], key: str) -> Any:
    return values.get(key, 0)
