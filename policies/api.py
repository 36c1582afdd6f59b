"""Policy endpoints of SPEC section 5, under ``/vaults/{name}/policies/``, and the preview a
``dry_run`` answers (also for moving an item to another policy: ``vaults/api/items.py``).

The API speaks the nested policy shape (``schedule``, ``retention``, ``tiering``); the model
is flat. Nested serializers declared with ``source="*"`` map one onto the other, so
``validated_data`` already holds model field names and goes to the services unchanged.
Serializers check types and formats only (``"HH:MM"``, weekday names, integers); the range
rules of SPEC 3.6 live in ``policies/rules.py`` and the services raise them with the field's
API path (``retention.daily_days``).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet
from drf_spectacular.utils import (
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
)
from rest_framework import mixins, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from portal.api import ERROR_SCHEMA
from vaults.api.common import DRY_RUN, NAME_VALIDATOR, VaultScopedViewSet, dry_run

from . import services
from .models import WEEKDAYS, Policy

SMALLINT_MAX = 32767  # PositiveSmallIntegerField columns
INT_MAX = 2147483647  # PositiveIntegerField columns

# --- policies -------------------------------------------------------------------------------


@extend_schema_field({"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"})
class HourMinuteField(serializers.TimeField):
    """A time of day as ``"HH:MM"``, in the policy's time zone."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="%H:%M", input_formats=["%H:%M"], **kwargs)


class WeekdayField(serializers.ChoiceField):
    """A lower-case weekday name; ``"Sunday"`` is accepted as ``"sunday"``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=[(day, day) for day in WEEKDAYS], **kwargs)

    def to_internal_value(self, data: Any) -> Any:
        return super().to_internal_value(data.lower() if isinstance(data, str) else data)


# No enum here: the same weekday names as a second enum component would be ambiguous
# (``weekly_weekday`` carries the enum).
@extend_schema_field(
    {
        "type": "array",
        "items": {"type": "string", "description": "A weekday name: monday ... sunday."},
    }
)
class WeekdayListField(serializers.ListField):
    """Weekday names; an error names ``schedule.weekdays`` rather than one list index."""

    child = WeekdayField()

    def to_internal_value(self, data: Any) -> Any:
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if isinstance(exc.detail, dict):
                raise serializers.ValidationError(
                    'Use weekday names, e.g. ["monday", "thursday"].'
                ) from exc
            raise


def _count(**kwargs: Any) -> serializers.IntegerField:
    return serializers.IntegerField(required=False, min_value=0, **kwargs)


class ScheduleSerializer(serializers.Serializer[Any]):
    frequency = serializers.ChoiceField(choices=Policy.Frequency.choices, required=False)
    interval_hours = _count(allow_null=True, max_value=SMALLINT_MAX)
    window_start = HourMinuteField(required=False, allow_null=True)
    window_hours = _count(allow_null=True, max_value=SMALLINT_MAX)
    time = HourMinuteField(required=False)
    weekdays = WeekdayListField(required=False)
    timezone = serializers.CharField(required=False, max_length=64)


class RetentionSerializer(serializers.Serializer[Any]):
    """Vault-tier GFS retention; ``null`` turns a tier off (the rules refuse it for daily)."""

    daily_days = _count(allow_null=True, max_value=INT_MAX)
    weekly_weeks = _count(allow_null=True, max_value=INT_MAX)
    weekly_weekday = WeekdayField(required=False)
    monthly_months = _count(allow_null=True, max_value=INT_MAX)
    monthly_day = _count(max_value=SMALLINT_MAX)
    yearly_years = _count(allow_null=True, max_value=SMALLINT_MAX)
    yearly_month = _count(max_value=SMALLINT_MAX)


class TieringSerializer(serializers.Serializer[Any]):
    mode = serializers.ChoiceField(
        source="tiering_mode", choices=Policy.Tiering.choices, required=False
    )
    after_days = _count(source="tiering_after_days", allow_null=True, max_value=INT_MAX)


@extend_schema_field(
    {
        "type": "object",
        "nullable": True,
        "properties": {"every_days": {"type": "integer", "minimum": 1, "maximum": 365}},
        "required": ["every_days"],
        "description": "Scheduled restore drills: one point per item every N days; null is off.",
    }
)
class RestoreDrillField(serializers.Field):  # type: ignore[type-arg]
    """``{"every_days": N}`` or null, onto the flat ``restore_drill_every_days``. Only the
    shape is checked here; the range (1 to 365) is the model's rule, raised by the services."""

    default_error_messages = {
        "invalid": 'Give {{"every_days": N}} with N a whole number of days, or null for off.'
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(source="restore_drill_every_days", allow_null=True, **kwargs)

    def to_representation(self, value: int) -> dict[str, int]:
        return {"every_days": value}

    def to_internal_value(self, data: Any) -> int:
        every = data.get("every_days") if isinstance(data, dict) else None
        if set(data if isinstance(data, dict) else ()) != {"every_days"}:
            self.fail("invalid")
        if not isinstance(every, int) or isinstance(every, bool):
            self.fail("invalid")
        return every


class PolicySerializer(serializers.Serializer[Policy]):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=50, validators=[NAME_VALIDATOR])
    kind = serializers.ChoiceField(choices=Policy.Kind.choices, required=False)
    schedule = ScheduleSerializer(source="*", required=False)
    instant_restore_days = _count(max_value=SMALLINT_MAX)
    retention = RetentionSerializer(source="*", required=False)
    tiering = TieringSerializer(source="*", required=False)
    restore_drill = RestoreDrillField(required=False)
    items = serializers.SerializerMethodField(help_text="How many protected items use it.")
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def get_items(self, policy: Policy) -> int:
        count = getattr(policy, "item_count", None)
        return count if count is not None else policy.items.count()


class RefusalSerializer(serializers.Serializer[Any]):
    code = serializers.CharField()
    detail = serializers.CharField()


class PointChangeSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    item = serializers.CharField()
    created_at = serializers.DateTimeField()
    old_expires_at = serializers.DateTimeField()
    new_expires_at = serializers.DateTimeField()
    delta_days = serializers.FloatField()


class PreviewSerializer(serializers.Serializer[Any]):
    """Documents ``Preview.as_dict()`` (``policies/services.py``) plus ``dry_run``."""

    dry_run = serializers.BooleanField()
    allowed = serializers.BooleanField()
    refusal = RefusalSerializer(allow_null=True)
    weaker = serializers.BooleanField()
    weaker_reasons = serializers.ListField(child=serializers.CharField())
    retention_longer = serializers.BooleanField()
    point_changes = PointChangeSerializer(many=True)


def policy_or_preview(name: str, serializer: type[serializers.Serializer[Any]]) -> Any:
    return PolymorphicProxySerializer(
        component_name=name,
        serializers=[serializer, PreviewSerializer],
        resource_type_field_name=None,
    )


class PolicyViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    VaultScopedViewSet,
):
    """A vault's backup policies."""

    serializer_class = PolicySerializer
    lookup_field = "name"
    lookup_url_kwarg = "policy"

    def get_queryset(self) -> QuerySet[Policy]:
        if self.schema_only():
            return Policy.objects.none()
        return (
            Policy.objects.filter(vault=self.vault())
            .select_related("vault")
            .annotate(item_count=Count("items"))
            .order_by("name")
        )

    @extend_schema(
        request=PolicySerializer,
        responses={201: PolicySerializer, 400: ERROR_SCHEMA, 403: ERROR_SCHEMA},
    )
    def create(self, request: Request, name: str) -> Response:
        vault = self.vault()  # an unknown vault is 404 whatever the body
        data = PolicySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        policy = services.policy_create(actor=request.user, vault=vault, **data.validated_data)
        return Response(PolicySerializer(policy).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=PolicySerializer,
        parameters=[DRY_RUN],
        responses={
            200: policy_or_preview("PolicyOrPreview", PolicySerializer),
            400: ERROR_SCHEMA,
            403: ERROR_SCHEMA,
            409: ERROR_SCHEMA,
        },
    )
    def partial_update(self, request: Request, name: str, policy: str) -> Response:
        """Change some fields; nested objects may be partial (``{"retention": {...}}``)."""
        current = self.get_object()
        data = PolicySerializer(current, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        if dry_run(request):
            preview = services.policy_preview(actor=request.user, policy=current, changes=changes)
            return Response({"dry_run": True, **preview.as_dict()})
        updated = services.policy_update(actor=request.user, policy=current, changes=changes)
        return Response(PolicySerializer(updated).data)

    @extend_schema(responses={204: None, 403: ERROR_SCHEMA, 409: ERROR_SCHEMA})
    def destroy(self, request: Request, name: str, policy: str) -> Response:
        services.policy_delete(actor=request.user, policy=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
