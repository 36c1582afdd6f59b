"""The jobs list's filters (pages and API)."""

from __future__ import annotations

import django_filters

from ..models import Job


class JobFilter(django_filters.FilterSet):
    vault = django_filters.CharFilter(field_name="vault__name")
    item = django_filters.CharFilter(field_name="item__name")
    status = django_filters.ChoiceFilter(choices=Job.Status.choices)
    kind = django_filters.ChoiceFilter(choices=Job.Kind.choices)

    class Meta:
        model = Job
        fields = ["vault", "item", "status", "kind"]
