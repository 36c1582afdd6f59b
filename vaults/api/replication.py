"""``PUT``, ``DELETE /api/v1/vaults/{name}/replica/`` (SPEC 5, 3.10): pair a vault with a
replica vault in another region, or stop replicating (gated: ``stop_replication``)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from portal.api import ERROR_SCHEMA

from .. import services
from ..models import Vault
from .common import VaultScopedViewSet
from .vault import VaultSerializer


class ReplicaSerializer(serializers.Serializer[Any]):
    vault = serializers.CharField(max_length=50, help_text="The name of the replica vault.")


class ReplicaViewSet(VaultScopedViewSet):
    """A vault's replica: every recovery point is copied there (SPEC 3.10)."""

    serializer_class = VaultSerializer

    def get_queryset(self) -> QuerySet[Vault]:
        return Vault.objects.none()  # one vault, fetched by ``vault()``

    def get_object(self) -> Vault:
        return self.vault()  # what an OPTIONS request asks about

    @extend_schema(
        request=ReplicaSerializer,
        responses={200: VaultSerializer, 400: ERROR_SCHEMA, 403: ERROR_SCHEMA, 409: ERROR_SCHEMA},
    )
    def update(self, request: Request, name: str) -> Response:
        vault = self.vault()
        data = ReplicaSerializer(data=request.data)
        # A body that does not name a vault still goes to the gate (the role is checked
        # first), which then refuses it naming the field; nothing hostile is looked up.
        replica, problem = None, ""
        if data.is_valid():
            replica = Vault.objects.filter(name=data.validated_data["vault"]).first()
        else:
            problem = str(next(iter(data.errors.get("vault", ["is not valid."]))))
        vault = services.replica_set(
            actor=request.user, vault=vault, replica=replica, problem=problem
        )
        return Response(VaultSerializer(vault).data)

    @extend_schema(responses={200: VaultSerializer, 403: ERROR_SCHEMA, 409: ERROR_SCHEMA})
    def destroy(self, request: Request, name: str) -> Response:
        vault = services.replica_remove(actor=request.user, vault=self.vault())
        return Response(VaultSerializer(vault).data)
