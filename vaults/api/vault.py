"""Vault endpoints of SPEC section 5: list, create, read, delete, immutability and lock."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from guards.models import ResourceGuard
from portal import clock
from portal.api import ERROR_SCHEMA, ApprovalSerializer, otp_field
from portal.gate import DomainError
from portal.roles import has_capability

from .. import services
from ..filters import VaultFilter
from ..models import Vault
from ..replicas import replica_state, with_replication_columns
from ..selectors import PORTFOLIO_COLUMNS, STORAGE_TIERS, vaults_for_user, with_portfolio_columns


class VaultSerializer(serializers.ModelSerializer[Vault]):
    immutability = serializers.SerializerMethodField()
    soft_delete = serializers.SerializerMethodField()
    resource_guard = serializers.CharField(
        source="resource_guard.name", default=None, allow_null=True
    )
    security_level = serializers.CharField()
    data_lock = serializers.CharField()
    protected_items = serializers.SerializerMethodField()
    last_backup = serializers.SerializerMethodField()
    storage_bytes = serializers.SerializerMethodField()
    replica = serializers.SerializerMethodField(
        help_text="The vault every recovery point is copied to (SPEC 3.10), its lag and last copy."
    )
    replica_of = serializers.SerializerMethodField(help_text="The vault this one is a replica of.")

    class Meta:
        model = Vault
        fields = [
            "name",
            "kind",
            "region",
            "tags",
            "storage_location",
            "immutability",
            "soft_delete",
            "resource_guard",
            "mute_job_alerts",
            "security_level",
            "data_lock",
            "created_at",
            "protected_items",
            "last_backup",
            "storage_bytes",
            "replica",
            "replica_of",
        ]
        read_only_fields = ["protected_items", "last_backup", "storage_bytes"]

    @extend_schema_field(
        {"type": "object", "nullable": True, "properties": {
            "vault": {"type": "string"}, "region": {"type": "string"},
            "paired_at": {"type": "string", "nullable": True},
            "lag_seconds": {"type": "integer"},
            "last_copied_at": {"type": "string", "nullable": True}}}
    )  # fmt: skip
    def get_replica(self, vault: Vault) -> dict[str, Any] | None:
        return replica_state(vault, clock.now())

    @extend_schema_field({"type": "string", "nullable": True})
    def get_replica_of(self, vault: Vault) -> str | None:
        source = vault.replica_of
        return source.name if source is not None else None

    def get_immutability(self, vault: Vault) -> dict[str, Any]:
        return {"state": vault.immutability, "changed_at": vault.immutability_changed_at}

    def _columns(self, vault: Vault) -> Vault:
        # Lists come annotated (vaults.selectors); a vault fetched alone is annotated here.
        if not hasattr(vault, "item_count"):
            annotated = with_portfolio_columns(Vault.objects.filter(pk=vault.pk)).get()
            for column in PORTFOLIO_COLUMNS:
                setattr(vault, column, getattr(annotated, column))
        return vault

    def get_protected_items(self, vault: Vault) -> int:
        return int(self._columns(vault).item_count)  # type: ignore[attr-defined]

    @extend_schema_field(
        {"type": "object", "properties": {"status": {"type": "string", "nullable": True},
                                          "at": {"type": "string", "nullable": True}}}
    )  # fmt: skip
    def get_last_backup(self, vault: Vault) -> dict[str, Any]:
        columns: Any = self._columns(vault)
        return {"status": columns.last_backup_status, "at": columns.last_backup_at}

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "integer"}})
    def get_storage_bytes(self, vault: Vault) -> dict[str, int]:
        columns = self._columns(vault)
        return {name: getattr(columns, f"storage_{name}") for name in STORAGE_TIERS}

    def get_soft_delete(self, vault: Vault) -> dict[str, Any]:
        return {
            "state": vault.soft_delete_state,
            "retention_days": vault.soft_delete_retention_days,
        }


class VaultCreateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=50)
    kind = serializers.ChoiceField(choices=Vault.Kind.choices)
    region = serializers.CharField(max_length=40)
    tags = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False)
    storage_location = serializers.CharField(required=False, allow_blank=True)


class ImmutabilitySerializer(serializers.Serializer[Any]):
    state = serializers.ChoiceField(choices=[("enabled", "enabled"), ("disabled", "disabled")])


class LockSerializer(serializers.Serializer[Any]):
    confirmation = serializers.CharField(allow_blank=True)
    otp = otp_field()


class SoftDeleteSerializer(serializers.Serializer[Any]):
    state = serializers.ChoiceField(
        choices=[("enabled", "enabled"), ("disabled", "disabled"), ("always_on", "always_on")],
        required=False,
    )
    retention_days = serializers.IntegerField(required=False)
    confirm_purge_count = serializers.IntegerField(required=False)
    confirmation = serializers.CharField(required=False, allow_blank=True)
    otp = otp_field()


class GuardAssociationSerializer(serializers.Serializer[Any]):
    guard = serializers.CharField()


class VaultViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = VaultSerializer
    filterset_class = VaultFilter
    lookup_field = "name"
    lookup_value_regex = "[A-Za-z0-9-]+"

    def get_queryset(self):  # type: ignore[no-untyped-def]
        # Annotated columns (items, last backup, storage by tier): no query per row.
        vaults = with_portfolio_columns(vaults_for_user(self.request.user))
        return with_replication_columns(vaults, clock.now()).order_by("name")

    def get_object(self) -> Vault:
        if not has_capability(self.request.user, "view"):
            raise DomainError("permission_denied", "Your role does not allow you to see vaults.")
        return super().get_object()

    @extend_schema(
        request=VaultCreateSerializer, responses={201: VaultSerializer, 400: ERROR_SCHEMA}
    )
    def create(self, request: Request) -> Response:
        data = VaultCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        vault = services.vault_create(actor=request.user, **data.validated_data)
        return Response(VaultSerializer(vault).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None, 409: ERROR_SCHEMA})
    def destroy(self, request: Request, name: str | None = None) -> Response:
        services.vault_delete(actor=request.user, vault=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=ImmutabilitySerializer, responses={200: VaultSerializer, 409: ERROR_SCHEMA}
    )
    @action(detail=True, methods=["post"])
    def immutability(self, request: Request, name: str | None = None) -> Response:
        vault = self.get_object()
        data = ImmutabilitySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        vault = services.immutability_set(
            actor=request.user, vault=vault, state=data.validated_data["state"]
        )
        return Response(VaultSerializer(vault).data)

    @extend_schema(request=LockSerializer, responses={202: ApprovalSerializer, 409: ERROR_SCHEMA})
    @action(detail=True, methods=["post"], url_path="immutability/lock")
    def lock(self, request: Request, name: str | None = None) -> Response:
        vault = self.get_object()
        data = LockSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        approval = services.immutability_lock_request(
            actor=request.user,
            vault=vault,
            confirmation=data.validated_data["confirmation"],
            otp=data.validated_data.get("otp", ""),
        )
        return Response(ApprovalSerializer(approval).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=SoftDeleteSerializer,
        responses={200: VaultSerializer, 202: ApprovalSerializer, 409: ERROR_SCHEMA},
    )
    @action(detail=True, methods=["patch"], url_path="soft-delete")
    def soft_delete(self, request: Request, name: str | None = None) -> Response:
        vault = self.get_object()
        data = SoftDeleteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        if fields.get("state") == Vault.SoftDelete.ALWAYS_ON:
            approval = services.soft_delete_always_on_request(
                actor=request.user,
                vault=vault,
                confirmation=fields.get("confirmation", ""),
                retention_days=fields.get("retention_days"),
                otp=fields.get("otp", ""),
            )
            return Response(ApprovalSerializer(approval).data, status=status.HTTP_202_ACCEPTED)
        vault = services.soft_delete_set(
            actor=request.user,
            vault=vault,
            state=fields.get("state"),
            retention_days=fields.get("retention_days"),
            confirm_purge_count=fields.get("confirm_purge_count"),
        )
        return Response(VaultSerializer(vault).data)

    @extend_schema(
        request=GuardAssociationSerializer, responses={200: VaultSerializer, 409: ERROR_SCHEMA}
    )
    @action(detail=True, methods=["put", "delete"], url_path="resource-guard")
    def resource_guard(self, request: Request, name: str | None = None) -> Response:
        vault = self.get_object()
        if request.method == "DELETE":
            vault = services.vault_guard_remove(actor=request.user, vault=vault)
            return Response(VaultSerializer(vault).data)
        data = GuardAssociationSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        guard = ResourceGuard.objects.filter(name=data.validated_data["guard"]).first()
        if guard is None:
            raise DomainError(
                "validation_error", "guard: no Resource Guard has that name.", field="guard"
            )
        vault = services.vault_guard_set(actor=request.user, vault=vault, guard=guard)
        return Response(VaultSerializer(vault).data)
