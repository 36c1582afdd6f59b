from __future__ import annotations

from datetime import UTC

import django_filters
from django.db.models import Q

from . import clock
from .models import Alert, Approval, AuditRecord


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 time with any offset, compared in UTC (PostgreSQL refuses offsets beyond
    ±15:59, which ISO 8601 allows)."""

    def filter(self, qs, value):  # type: ignore[no-untyped-def]
        if value is not None:
            try:
                value = value.astimezone(UTC)
            except OverflowError:
                # Past year 9999 or before year 1 once in UTC (9999-12-31T23:59-14:00): every
                # record lies on the same side of such a time.
                later_than_all = value.year > 1
                keeps_all = self.lookup_expr in {"lt", "lte"}
                return qs if keeps_all == later_than_all else qs.none()
        return super().filter(qs, value)


class AuditFilter(django_filters.FilterSet):
    vault = django_filters.CharFilter(field_name="vault_name", lookup_expr="iexact")
    operation = django_filters.CharFilter(field_name="operation")
    outcome = django_filters.ChoiceFilter(choices=AuditRecord.Outcome.choices)
    actor = django_filters.CharFilter(field_name="actor_name", lookup_expr="iexact")
    since = UTCDateTimeFilter(field_name="at", lookup_expr="gte", label="From")
    until = UTCDateTimeFilter(field_name="at", lookup_expr="lt", label="Until")

    class Meta:
        model = AuditRecord
        fields = ["vault", "operation", "outcome", "actor", "since", "until"]


class ApprovalFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Approval.Status.choices, method="filter_status")
    kind = django_filters.ChoiceFilter(choices=Approval.Kind.choices, empty_label="Any")

    class Meta:
        model = Approval
        fields = ["status", "kind"]

    def filter_status(self, queryset, name, value):  # type: ignore[no-untyped-def]
        """Filter on the status as of now: expiry is judged at read time, not by a sweep."""
        now = clock.now()
        pending = Approval.Status.PENDING
        approved = Approval.Status.APPROVED
        if value == pending:
            return queryset.pending(now)
        if value == Approval.Status.EXPIRED:
            return queryset.filter(
                Q(status=Approval.Status.EXPIRED)
                | Q(status=pending, expires_at__lte=now)
                | Q(status=approved, active_until__lte=now)
            )
        if value == approved:
            return queryset.filter(status=approved).exclude(active_until__lte=now)
        return queryset.filter(status=value)


class AlertFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Alert.Status.choices, empty_label="Any")
    severity = django_filters.ChoiceFilter(choices=Alert.Severity.choices, empty_label="Any")
    category = django_filters.ChoiceFilter(choices=Alert.Category.choices, empty_label="Any")
    vault = django_filters.CharFilter(field_name="vault_name", lookup_expr="iexact")
    kind = django_filters.CharFilter(field_name="kind")

    class Meta:
        model = Alert
        fields = ["status", "severity", "category", "vault", "kind"]
