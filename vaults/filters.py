"""One FilterSet for every vault list: the dashboard's and the API's."""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Q, QuerySet

from .models import Vault


class VaultFilter(django_filters.FilterSet):
    immutability = django_filters.ChoiceFilter(
        choices=Vault.Immutability.choices, empty_label="Any"
    )
    soft_delete = django_filters.ChoiceFilter(
        field_name="soft_delete_state",
        choices=Vault.SoftDelete.choices,
        empty_label="Any",
        label="Soft delete",
    )
    mua = django_filters.BooleanFilter(
        field_name="resource_guard",
        lookup_expr="isnull",
        exclude=True,
        label="MUA",
        widget=forms.Select(choices=[("", "Any"), ("true", "On"), ("false", "Off")]),
    )
    kind = django_filters.ChoiceFilter(choices=Vault.Kind.choices, empty_label="Any")
    region = django_filters.CharFilter(field_name="region", lookup_expr="iexact")
    search = django_filters.CharFilter(method="filter_search", label="Name")

    class Meta:
        model = Vault
        fields = ["immutability", "soft_delete", "mua", "kind", "region", "search"]

    def filter_search(self, queryset: QuerySet[Vault], name: str, value: str) -> QuerySet[Vault]:
        return queryset.filter(Q(name__icontains=value) | Q(region__icontains=value))
