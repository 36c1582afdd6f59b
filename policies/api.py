"""Policy, protected item and recovery point endpoints of SPEC section 5.

The API speaks the nested policy shape (``schedule``, ``retention``, ``tiering``); the model
is flat. Nested serializers declared with ``source="*"`` map one onto the other, so
``validated_data`` already holds model field names and goes to the services unchanged.
Serializers check types and formats only (``"HH:MM"``, weekday names, integers); the range
rules of SPEC 3.6 live in ``policies/rules.py`` and the services raise them with the field's
API path (``retention.daily_days``).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.validators import RegexValidator
from django.db.models import Count, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from portal import clock
from portal.api import ERROR_SCHEMA
from portal.gate import DomainError
from vaults import services as vault_services
from vaults.models import ProtectedItem, RecoveryPoint, Vault
from vaults.selectors import get_vault_for_user

from . import services
from .models import WEEKDAYS, Policy

SMALLINT_MAX = 32767  # PositiveSmallIntegerField columns
INT_MAX = 2147483647  # PositiveIntegerField columns

# Names appear in URLs (``/policies/{policy}/``, ``/items/{item}/``), so no slashes.
NAME_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$",
    "Use letters, digits, spaces, dots, underscores or hyphens, starting with a letter or digit.",
)

DRY_RUN = OpenApiParameter(
    "dry_run",
    OpenApiTypes.BOOL,
    OpenApiParameter.QUERY,
    description="Answer what the change would do (expiry moves, refusals) and change nothing.",
)


def _dry_run(request: Request) -> bool:
    return request.query_params.get("dry_run", "").lower() in {"1", "true", "yes", "on"}


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


class PolicySerializer(serializers.Serializer[Policy]):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=50, validators=[NAME_VALIDATOR])
    kind = serializers.ChoiceField(choices=Policy.Kind.choices, required=False)
    schedule = ScheduleSerializer(source="*", required=False)
    instant_restore_days = _count(max_value=SMALLINT_MAX)
    retention = RetentionSerializer(source="*", required=False)
    tiering = TieringSerializer(source="*", required=False)
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


def _policy_or_preview(name: str, serializer: type[serializers.Serializer[Any]]) -> Any:
    return PolymorphicProxySerializer(
        component_name=name,
        serializers=[serializer, PreviewSerializer],
        resource_type_field_name=None,
    )


class VaultScopedViewSet(viewsets.GenericViewSet[Any]):
    """A viewset under ``/vaults/{name}/``: the vault is fetched once, for the user."""

    def vault(self) -> Vault:
        if not hasattr(self, "_vault"):
            try:
                self._vault = get_vault_for_user(self.request.user, self.kwargs["name"])
            except PermissionDenied as exc:
                # portal.api.exception_handler maps only DRF's PermissionDenied to a code.
                raise DomainError("permission_denied", str(exc)) from exc
        return self._vault

    def schema_only(self) -> bool:
        return bool(getattr(self, "swagger_fake_view", False))


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
            200: _policy_or_preview("PolicyOrPreview", PolicySerializer),
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
        if _dry_run(request):
            preview = services.policy_preview(actor=request.user, policy=current, changes=changes)
            return Response({"dry_run": True, **preview.as_dict()})
        updated = services.policy_update(actor=request.user, policy=current, changes=changes)
        return Response(PolicySerializer(updated).data)

    @extend_schema(responses={204: None, 403: ERROR_SCHEMA, 409: ERROR_SCHEMA})
    def destroy(self, request: Request, name: str, policy: str) -> Response:
        services.policy_delete(actor=request.user, policy=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- protected items ------------------------------------------------------------------------


class SourceSerializer(serializers.Serializer[Any]):
    kind = serializers.ChoiceField(
        source="source_kind",
        choices=ProtectedItem.SourceKind.choices,
        default=ProtectedItem.SourceKind.DIRECTORY,
    )
    path = serializers.CharField(source="source_path", max_length=1000, allow_blank=True)


class ProtectedItemSerializer(serializers.ModelSerializer[ProtectedItem]):
    source = SourceSerializer(source="*")  # type: ignore[assignment]  # a field, not Field.source
    policy = serializers.CharField(source="policy.name")

    class Meta:
        model = ProtectedItem
        fields = [
            "name",
            "source",
            "policy",
            "protection_state",
            "stopped_at",
            "soft_deleted_at",
            "purge_at",
            "last_backup_at",
            "created_at",
        ]
        read_only_fields = fields


class ItemCreateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=100, validators=[NAME_VALIDATOR])
    source = SourceSerializer(source="*")  # type: ignore[assignment]  # a field, not Field.source
    policy = serializers.CharField(max_length=50, help_text="The name of a policy of the vault.")


class ItemPolicySerializer(serializers.Serializer[Any]):
    policy = serializers.CharField(max_length=50, help_text="The name of a policy of the vault.")


class StopProtectionSerializer(serializers.Serializer[Any]):
    delete_data = serializers.BooleanField(
        help_text="false keeps the recovery points (backups suspended); true deletes them "
        "(soft-deleted while the vault's soft delete is on)."
    )


def _policy_named(vault: Vault, name: str) -> Policy:
    policy = Policy.objects.filter(vault=vault, name=name).first()
    if policy is None:
        raise DomainError(
            "validation_error",
            f"policy: vault {vault.name} has no policy named {name!r}.",
            field="policy",
        )
    return policy


class ProtectedItemViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    VaultScopedViewSet,
):
    """A vault's protected items, whatever their protection state."""

    serializer_class = ProtectedItemSerializer
    lookup_field = "name"
    lookup_url_kwarg = "item"

    def get_queryset(self) -> QuerySet[ProtectedItem]:
        if self.schema_only():
            return ProtectedItem.objects.none()
        return (
            ProtectedItem.objects.filter(vault=self.vault())
            .select_related("vault", "policy")
            .order_by("name")
        )

    @extend_schema(
        request=ItemCreateSerializer,
        responses={201: ProtectedItemSerializer, 400: ERROR_SCHEMA, 403: ERROR_SCHEMA},
    )
    def create(self, request: Request, name: str) -> Response:
        vault = self.vault()  # an unknown vault is 404 whatever the body
        data = ItemCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        # An unknown policy name reaches the service as None: the gate checks the role first,
        # then refuses it as a validation error naming ``policy``.
        item = vault_services.item_protect(
            actor=request.user,
            vault=vault,
            name=fields["name"],
            source_kind=fields["source_kind"],
            source_path=fields["source_path"],
            policy=Policy.objects.filter(vault=vault, name=fields["policy"]).first(),
        )
        return Response(ProtectedItemSerializer(item).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=ItemPolicySerializer,
        parameters=[DRY_RUN],
        responses={
            200: _policy_or_preview("ProtectedItemOrPreview", ProtectedItemSerializer),
            400: ERROR_SCHEMA,
            403: ERROR_SCHEMA,
            409: ERROR_SCHEMA,
        },
    )
    def partial_update(self, request: Request, name: str, item: str) -> Response:
        """Move the item to another policy of the vault (its points' expiries follow)."""
        current = self.get_object()
        data = ItemPolicySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        policy = _policy_named(current.vault, data.validated_data["policy"])
        if _dry_run(request):
            preview = services.policy_change_preview(
                actor=request.user, item=current, policy=policy
            )
            return Response({"dry_run": True, **preview.as_dict()})
        moved = services.item_change_policy(actor=request.user, item=current, policy=policy)
        return Response(ProtectedItemSerializer(moved).data)

    @extend_schema(
        request=StopProtectionSerializer,
        responses={
            200: ProtectedItemSerializer,
            204: OpenApiResponse(description="The item and its data are gone (soft delete off)."),
            400: ERROR_SCHEMA,
            403: ERROR_SCHEMA,
            409: ERROR_SCHEMA,
        },
    )
    def stop_protection(self, request: Request, name: str, item: str) -> Response:
        current = self.get_object()
        data = StopProtectionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        stopped = vault_services.protection_stop(
            actor=request.user, item=current, delete_data=data.validated_data["delete_data"]
        )
        if stopped.pk is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(ProtectedItemSerializer(stopped).data)

    @extend_schema(
        request=None,
        responses={200: ProtectedItemSerializer, 400: ERROR_SCHEMA, 403: ERROR_SCHEMA},
    )
    def resume(self, request: Request, name: str, item: str) -> Response:
        resumed = vault_services.protection_resume(actor=request.user, item=self.get_object())
        return Response(ProtectedItemSerializer(resumed).data)

    @extend_schema(
        request=None,
        responses={200: ProtectedItemSerializer, 400: ERROR_SCHEMA, 403: ERROR_SCHEMA},
    )
    def undelete(self, request: Request, name: str, item: str) -> Response:
        """Bring a soft-deleted item back as protection stopped, data retained (SPEC 3.3)."""
        restored = vault_services.item_undelete(actor=request.user, item=self.get_object())
        return Response(ProtectedItemSerializer(restored).data)


# --- recovery points ------------------------------------------------------------------------


class StorageLockSerializer(serializers.Serializer[Any]):
    """The S3 Object Lock of the point's objects as the storage itself confirmed it."""

    until = serializers.DateTimeField(source="storage_locked_until", allow_null=True)
    mode = serializers.CharField(source="storage_lock_mode")
    checked_at = serializers.DateTimeField(source="storage_lock_checked_at", allow_null=True)
    problem = serializers.CharField(source="storage_lock_problem")


class RecoveryPointSerializer(serializers.ModelSerializer[RecoveryPoint]):
    item = serializers.CharField(source="item.name", read_only=True)
    tags = serializers.ListField(child=serializers.CharField(), read_only=True)
    storage_lock = StorageLockSerializer(source="*", read_only=True)
    state = serializers.SerializerMethodField(
        help_text="soft_deleted: past its expiry, restorable until soft_deleted_until."
    )

    @extend_schema_field(serializers.ChoiceField(choices=["active", "soft_deleted"]))
    def get_state(self, point: RecoveryPoint) -> str:
        return point.state(clock.now())

    class Meta:
        model = RecoveryPoint
        fields = [
            "id",
            "item",
            "tier",
            "created_at",
            "expires_at",
            "tags",
            "logical_bytes",
            "stored_bytes",
            "digest",
            "on_demand",
            "storage_lock",
            "state",
            "soft_deleted_until",
        ]
        read_only_fields = fields


class RetainUntilSerializer(serializers.Serializer[Any]):
    retain_until = serializers.DateTimeField(
        help_text="The point's new expiry; an immutable vault only lets it grow."
    )


class RecoveryPointViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    VaultScopedViewSet,
):
    """An item's recovery points, newest first."""

    serializer_class = RecoveryPointSerializer
    lookup_field = "pk"
    lookup_url_kwarg = "id"

    def get_queryset(self) -> QuerySet[RecoveryPoint]:
        if self.schema_only():
            return RecoveryPoint.objects.none()
        item = get_object_or_404(ProtectedItem, vault=self.vault(), name=self.kwargs["item"])
        return (
            RecoveryPoint.objects.filter(item=item)
            .select_related("item", "vault")
            .order_by("-created_at", "-id")
        )

    @extend_schema(
        request=RetainUntilSerializer,
        responses={
            200: RecoveryPointSerializer,
            400: ERROR_SCHEMA,
            403: ERROR_SCHEMA,
            409: ERROR_SCHEMA,
        },
    )
    def partial_update(self, request: Request, name: str, item: str, id: int) -> Response:
        """Change the point's expiry (``retain_until``)."""
        point = self.get_object()
        data = RetainUntilSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        point = vault_services.point_retain_until(
            actor=request.user, point=point, retain_until=data.validated_data["retain_until"]
        )
        return Response(RecoveryPointSerializer(point).data)

    @extend_schema(
        responses={204: None, 403: ERROR_SCHEMA, 409: ERROR_SCHEMA},
        description="With soft delete on, a vault-tier point is soft-deleted (its `state` then "
        "reads `soft_deleted` until the vault's soft-delete retention has passed; a later "
        "`retain_until` brings it back); otherwise it is gone.",
    )
    def destroy(self, request: Request, name: str, item: str, id: int) -> Response:
        vault_services.point_delete(actor=request.user, point=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
