"""Resource Guard endpoints of SPEC section 5: guards (security admins) and access requests."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from portal.api import ERROR_SCHEMA, ApprovalSerializer, otp_field
from portal.gate import DomainError
from portal.models import Approval
from portal.roles import has_capability

from . import services
from .models import ResourceGuard


class ResourceGuardSerializer(serializers.ModelSerializer[ResourceGuard]):
    owner = serializers.CharField(source="owner.username", read_only=True)
    mandatory_operations = serializers.SerializerMethodField()
    vaults = serializers.SerializerMethodField()

    class Meta:
        model = ResourceGuard
        fields = [
            "name",
            "description",
            "owner",
            "protected_operations",
            "mandatory_operations",
            "vaults",
            "created_at",
        ]

    def get_mandatory_operations(self, guard: ResourceGuard) -> list[str]:
        return sorted(guard.MANDATORY)

    def get_vaults(self, guard: ResourceGuard) -> list[str]:
        return [vault.name for vault in guard.vaults.all()]


class GuardWriteSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=50, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    protected_operations = serializers.ListField(
        child=serializers.CharField(), required=False, allow_null=True
    )
    otp = otp_field()


class AccessRequestSerializer(serializers.Serializer[Any]):
    justification = serializers.CharField(allow_blank=True)
    duration_minutes = serializers.IntegerField()
    otp = otp_field()


class GuardDeleteSerializer(serializers.Serializer[Any]):
    otp = otp_field()


class ResourceGuardViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    """Guards are owned by security admins; backup admins can see them and ask for access."""

    serializer_class = ResourceGuardSerializer
    lookup_field = "name"
    lookup_value_regex = "[^/]+"

    queryset = ResourceGuard.objects.none()  # for the schema; requests use get_queryset()

    def get_queryset(self):  # type: ignore[no-untyped-def]
        if getattr(self, "swagger_fake_view", False):
            return ResourceGuard.objects.none()
        if not has_capability(self.request.user, "view"):
            raise DomainError("permission_denied", "Your role does not allow you to see guards.")
        return ResourceGuard.objects.select_related("owner").prefetch_related("vaults")

    @extend_schema(
        request=GuardWriteSerializer, responses={201: ResourceGuardSerializer, 400: ERROR_SCHEMA}
    )
    def create(self, request: Request) -> Response:
        data = GuardWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        guard = services.guard_create(
            actor=request.user,
            name=data.validated_data.get("name", ""),
            protected_operations=data.validated_data.get("protected_operations"),
            description=data.validated_data.get("description", ""),
        )
        return Response(ResourceGuardSerializer(guard).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=GuardWriteSerializer,
        responses={
            200: ResourceGuardSerializer,
            202: ApprovalSerializer,
            400: ERROR_SCHEMA,
            403: ERROR_SCHEMA,
        },
        description="Adding protected operations takes effect at once (200). Removing any is "
        "a weakening: 202 with a pending `guard_weaken` approval that another security admin "
        "decides, and a security alert.",
    )
    def partial_update(self, request: Request, name: str | None = None) -> Response:
        guard = self.get_object()
        data = GuardWriteSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        result = services.guard_update(
            actor=request.user,
            guard=guard,
            protected_operations=data.validated_data.get("protected_operations"),
            description=data.validated_data.get("description"),
            otp=data.validated_data.get("otp", ""),
        )
        if isinstance(result, Approval):
            return Response(ApprovalSerializer(result).data, status=status.HTTP_202_ACCEPTED)
        return Response(ResourceGuardSerializer(result).data)

    @extend_schema(
        request=GuardDeleteSerializer,
        responses={202: ApprovalSerializer, 403: ERROR_SCHEMA, 409: ERROR_SCHEMA},
        description="Deleting a guard is a weakening: 202 with a pending `guard_weaken` "
        "approval; `guard_in_use` while vaults use it.",
    )
    def destroy(self, request: Request, name: str | None = None) -> Response:
        data = GuardDeleteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        approval = services.guard_delete(
            actor=request.user, guard=self.get_object(), otp=data.validated_data.get("otp", "")
        )
        return Response(ApprovalSerializer(approval).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=AccessRequestSerializer, responses={201: ApprovalSerializer, 400: ERROR_SCHEMA}
    )
    @action(detail=True, methods=["post"], url_path="access-requests")
    def access_requests(self, request: Request, name: str | None = None) -> Response:
        guard = self.get_object()
        data = AccessRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        approval = services.elevation_request(
            actor=request.user, guard=guard, **data.validated_data
        )
        return Response(ApprovalSerializer(approval).data, status=status.HTTP_201_CREATED)
