"""One FilterSet for every vault list: the dashboard's and the API's; and the items'
restore drill filter, shared by the items API and the protected items page.

``PortfolioFilter`` adds sorting for the Backup center, whose rows carry the annotations of
``vaults.selectors.with_portfolio_columns`` (items, last backup, storage by tier).
"""

from __future__ import annotations

import django_filters
from django import forms
from django.db import connection
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.fields.json import KeyTransform

from portal import clock

from .models import ProtectedItem, Vault
from .replicas import REPLICATION_CHOICES, filter_replication
from .selectors import (
    DRILL_CHOICES,
    filter_drill,
    security_level_expression,
    security_level_rank,
)


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
    security_level = django_filters.ChoiceFilter(
        choices=Vault.SecurityLevel.choices,
        empty_label="Any",
        label="Security level",
        method="filter_security_level",
    )
    kind = django_filters.ChoiceFilter(choices=Vault.Kind.choices, empty_label="Any")
    region = django_filters.CharFilter(field_name="region", lookup_expr="iexact")
    tag = django_filters.CharFilter(
        method="filter_tag",
        label="Tag",
        help_text="key=value, or key alone for any value",
    )
    search = django_filters.CharFilter(method="filter_search", label="Name")
    replication = django_filters.ChoiceFilter(
        choices=REPLICATION_CHOICES,
        empty_label="Any",
        label="Replication",
        method="filter_replication",
    )
    host = django_filters.CharFilter(
        method="filter_host", label="Host", help_text="Vaults with an item read on this host."
    )

    class Meta:
        model = Vault
        fields = [
            "immutability",
            "soft_delete",
            "mua",
            "security_level",
            "kind",
            "region",
            "tag",
            "search",
            "replication",
            "host",
        ]

    def filter_host(self, queryset: QuerySet[Vault], name: str, value: str) -> QuerySet[Vault]:
        on_host = ProtectedItem.objects.filter(vault=OuterRef("pk"), source_host=value.strip())
        return queryset.filter(Exists(on_host))

    def filter_replication(
        self, queryset: QuerySet[Vault], name: str, value: str
    ) -> QuerySet[Vault]:
        return filter_replication(queryset, value, clock.now())

    def filter_search(self, queryset: QuerySet[Vault], name: str, value: str) -> QuerySet[Vault]:
        return queryset.filter(Q(name__icontains=value) | Q(region__icontains=value))

    def filter_security_level(
        self, queryset: QuerySet[Vault], name: str, value: str
    ) -> QuerySet[Vault]:
        # alias(): works on any vault queryset, annotated by the selectors or not.
        return queryset.alias(level_filter=security_level_expression()).filter(level_filter=value)

    def filter_tag(self, queryset: QuerySet[Vault], name: str, value: str) -> QuerySet[Vault]:
        key, has_value, tag_value = value.partition("=")
        key = key.strip()
        if not key:
            return queryset
        if has_value:
            if connection.vendor == "postgresql":  # containment, served by the GIN index
                return queryset.filter(tags__contains={key: tag_value.strip()})
            # SQLite (the embedded default) has no JSON containment: compare the key's value.
            # KeyTransform takes the key literally (a key holding "__" is no lookup).
            return queryset.alias(tag_text=KeyTransform(key, "tags")).filter(
                tag_text=tag_value.strip()
            )
        return queryset.filter(tags__has_key=key)


class PortfolioFilter(VaultFilter):
    """The Backup center's filters: the vault filters plus its sortable columns."""

    sort = django_filters.OrderingFilter(
        fields=(
            ("name", "name"),
            ("kind", "kind"),
            ("region", "region"),
            ("immutability", "immutability"),
            ("soft_delete_state", "soft_delete"),
            ("level_rank", "security_level"),
            ("item_count", "items"),
            ("last_backup_status", "last_backup"),
            ("storage_standard", "storage"),
            # No sort by replication lag: it would compute every vault's lag to order 10,000
            # rows (1.7x the 100-vault time); the replication filter's "lagging" finds them.
        ),
        label="Sort",
    )

    class Meta(VaultFilter.Meta):
        fields = [*VaultFilter.Meta.fields, "sort"]

    def filter_queryset(self, queryset: QuerySet[Vault]) -> QuerySet[Vault]:
        queryset = super().filter_queryset(queryset.alias(level_rank=security_level_rank()))
        # Ties (and the default) fall back to the unique name so pages never overlap.
        ordering = list(queryset.query.order_by) or ["name"]
        if not any(str(key).lstrip("-") == "name" for key in ordering):
            ordering.append("name")
        return queryset.order_by(*ordering)


class ItemDrillFilter(django_filters.FilterSet):
    """Items by scheduled restore drill state (``vaults.selectors.filter_drill``)."""

    drill = django_filters.ChoiceFilter(
        choices=DRILL_CHOICES,
        empty_label="Any",
        label="Restore drill",
        method="filter_drill",
        help_text="overdue: no drill passed within the policy's drill period (plus a day).",
    )

    host = django_filters.CharFilter(field_name="source_host", label="Host")

    class Meta:
        model = ProtectedItem
        fields = ["drill", "host"]

    def filter_drill(
        self, queryset: QuerySet[ProtectedItem], name: str, value: str
    ) -> QuerySet[ProtectedItem]:
        return filter_drill(queryset, value, clock.now())
