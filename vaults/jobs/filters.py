"""The jobs list's filters (pages and API)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import django_filters

from portal import clock

from ..models import Job

# "since": jobs created within this long before now (bookmarkable: relative, not a date).
SINCE = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


class JobFilter(django_filters.FilterSet):
    vault = django_filters.CharFilter(field_name="vault__name")
    item = django_filters.CharFilter(field_name="item__name")
    host = django_filters.CharFilter(field_name="host")
    status = django_filters.ChoiceFilter(choices=Job.Status.choices)
    kind = django_filters.ChoiceFilter(choices=Job.Kind.choices)
    since = django_filters.ChoiceFilter(
        choices=[("24h", "Last 24 hours"), ("7d", "Last 7 days"), ("30d", "Last 30 days")],
        label="Created",
        empty_label="Any time",
        method="filter_since",
    )

    class Meta:
        model = Job
        fields = ["vault", "item", "host", "status", "kind", "since"]

    def filter_since(self, queryset: Any, name: str, value: str) -> Any:
        return queryset.filter(created_at__gte=clock.now() - SINCE[value])
