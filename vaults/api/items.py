"""Protected item and recovery point endpoints of SPEC section 5, under
``/vaults/{name}/items/``. Moving an item to another policy answers the policies app's
preview with ``dry_run``."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from policies import services as policy_services
from policies.api import policy_or_preview
from policies.models import Policy
from portal import clock
from portal.api import ERROR_SCHEMA
from portal.gate import DomainError

from .. import services
from ..filters import ItemDrillFilter
from ..hosts import known_host
from ..models import ProtectedItem, RecoveryPoint, Vault
from .common import DRY_RUN, NAME_VALIDATOR, VaultScopedViewSet, dry_run

# --- protected items ------------------------------------------------------------------------


class SourceSerializer(serializers.Serializer[Any]):
    kind = serializers.ChoiceField(
        source="source_kind",
        choices=ProtectedItem.SourceKind.choices,
        default=ProtectedItem.SourceKind.DIRECTORY,
    )
    path = serializers.CharField(
        source="source_path", max_length=1000, allow_blank=True, required=False, default=""
    )
    database = serializers.CharField(
        max_length=1000,
        allow_blank=True,
        required=False,
        default="",
        write_only=True,
        help_text="kind postgres: the database's name on the server the worker reaches "
        "(docs/workloads.md).",
    )
    host = serializers.CharField(
        source="source_host",
        max_length=100,
        allow_blank=True,
        required=False,
        default="",
        help_text="The host whose workers read the source (SPEC 3.13); empty for any host.",
    )


class ItemSourceSerializer(SourceSerializer):
    """An item's source as read: a replica item's is ``{kind: "replica", vault}``, a
    database's ``{kind: "postgres", database, host}``."""

    def to_representation(self, instance: Any) -> dict[str, Any]:
        if instance.source_kind == ProtectedItem.SourceKind.REPLICA:
            return {"kind": "replica", "vault": instance.source_path}
        if instance.source_kind == ProtectedItem.SourceKind.POSTGRES:
            return {
                "kind": "postgres",
                "database": instance.source_path,
                "host": instance.source_host,
            }
        return dict(super().to_representation(instance))


class ProtectedItemSerializer(serializers.ModelSerializer[ProtectedItem]):
    source = ItemSourceSerializer(source="*")  # type: ignore[assignment]  # a field
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


class ItemHostSerializer(serializers.Serializer[Any]):
    host = serializers.CharField(max_length=100, allow_blank=True)


class ItemPolicySerializer(serializers.Serializer[Any]):
    """A PATCH changes the policy, the source's host (``source: {host}``), or both."""

    policy = serializers.CharField(
        max_length=50, required=False, help_text="The name of a policy of the vault."
    )
    source = ItemHostSerializer(required=False)  # type: ignore[assignment]  # a field

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "policy" not in attrs and "source" not in attrs:
            raise serializers.ValidationError({"policy": "This field is required."})
        return attrs


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
    filterset_class = ItemDrillFilter
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
        kind = fields["source_kind"]
        item = services.item_protect(
            actor=request.user,
            vault=vault,
            name=fields["name"],
            source_kind=kind,
            # A database's name is kept where a directory's path is (docs/workloads.md).
            source_path=fields["database" if kind == "postgres" else "source_path"],
            source_host=fields["source_host"],
            policy=Policy.objects.filter(vault=vault, name=fields["policy"]).first(),
        )
        return Response(ProtectedItemSerializer(item).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=ItemPolicySerializer,
        parameters=[DRY_RUN],
        responses={
            200: policy_or_preview("ProtectedItemOrPreview", ProtectedItemSerializer),
            400: ERROR_SCHEMA,
            403: ERROR_SCHEMA,
            409: ERROR_SCHEMA,
        },
    )
    def partial_update(self, request: Request, name: str, item: str) -> Response:
        """Move the item to another policy of the vault (its points' expiries follow), and/or
        read its source on another host (``source: {host}``, "" for any host)."""
        current = self.get_object()
        data = ItemPolicySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        host = fields["source"]["host"] if "source" in fields else None
        if host is not None:
            known_host(host)  # an unknown host changes nothing, not even the policy
        if "policy" in fields:
            policy = _policy_named(current.vault, fields["policy"])
            if dry_run(request):
                preview = policy_services.policy_change_preview(
                    actor=request.user, item=current, policy=policy
                )
                return Response({"dry_run": True, **preview.as_dict()})
            current = policy_services.item_change_policy(
                actor=request.user, item=current, policy=policy
            )
        if host is not None and not dry_run(request):
            current = services.item_host_set(actor=request.user, item=current, host=host)
        return Response(ProtectedItemSerializer(current).data)

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
        stopped = services.protection_stop(
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
        resumed = services.protection_resume(actor=request.user, item=self.get_object())
        return Response(ProtectedItemSerializer(resumed).data)

    @extend_schema(
        request=None,
        responses={200: ProtectedItemSerializer, 400: ERROR_SCHEMA, 403: ERROR_SCHEMA},
    )
    def undelete(self, request: Request, name: str, item: str) -> Response:
        """Bring a soft-deleted item back as protection stopped, data retained (SPEC 3.3)."""
        restored = services.item_undelete(actor=request.user, item=self.get_object())
        return Response(ProtectedItemSerializer(restored).data)


# --- recovery points ------------------------------------------------------------------------


class StorageLockSerializer(serializers.Serializer[Any]):
    """The S3 Object Lock of the point's objects as the storage itself confirmed it."""

    until = serializers.DateTimeField(source="storage_locked_until", allow_null=True)
    mode = serializers.CharField(source="storage_lock_mode")
    checked_at = serializers.DateTimeField(source="storage_lock_checked_at", allow_null=True)
    problem = serializers.CharField(source="storage_lock_problem")


class DrillSerializer(serializers.Serializer[Any]):
    """The point's last restore drill (SPEC 3.12); ``error`` and ``first_bad`` if it failed."""

    status = serializers.ChoiceField(choices=["passed", "failed"])
    at = serializers.DateTimeField()
    files = serializers.IntegerField()
    bytes = serializers.IntegerField()
    seconds = serializers.FloatField()
    error = serializers.CharField(required=False)
    first_bad = serializers.CharField(required=False, help_text="The first file found bad.")


class WorkloadSerializer(serializers.Serializer[Any]):
    """What a database dump point holds, as the server reported it at backup time."""

    kind = serializers.ChoiceField(choices=["postgres"])
    database = serializers.CharField()
    file = serializers.CharField(help_text="The dump in the point, e.g. sales.pgdump.")
    server_version = serializers.CharField(allow_null=True)
    server_version_num = serializers.IntegerField(required=False)
    database_size = serializers.IntegerField(allow_null=True, help_text="Bytes on the server.")


class RecoveryPointSerializer(serializers.ModelSerializer[RecoveryPoint]):
    item = serializers.CharField(source="item.name", read_only=True)
    tags = serializers.ListField(child=serializers.CharField(), read_only=True)
    storage_lock = StorageLockSerializer(source="*", read_only=True)
    state = serializers.SerializerMethodField(
        help_text="soft_deleted: past its expiry, restorable until soft_deleted_until."
    )
    source_point = serializers.SerializerMethodField(
        help_text="A replica's copy: the point it was copied from (SPEC 3.10)."
    )
    drill = DrillSerializer(read_only=True, allow_null=True)
    workload = WorkloadSerializer(read_only=True, allow_null=True)

    @extend_schema_field(
        {"type": "object", "nullable": True,
         "properties": {"vault": {"type": "string"}, "id": {"type": "integer"}}}
    )  # fmt: skip
    def get_source_point(self, point: RecoveryPoint) -> dict[str, Any] | None:
        if point.source_point_ref is None:
            return None
        return {"vault": point.source_vault, "id": point.source_point_ref}

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
            "source_point",
            "drill",
            "workload",
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
        point = services.point_retain_until(
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
        services.point_delete(actor=request.user, point=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
