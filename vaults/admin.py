"""Vault admin: creation, deletion and immutability all go through the services (the gate)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from portal.gate import DomainError

from . import services
from .models import Vault


@admin.register(Vault)
class VaultAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "kind",
        "region",
        "immutability",
        "soft_delete_state",
        "resource_guard",
        "created_at",
    ]
    list_filter = ["kind", "immutability", "soft_delete_state", "region"]
    search_fields = ["name", "region"]
    actions = ["enable_immutability", "disable_immutability"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return [
                "immutability",
                "immutability_changed_at",
                "soft_delete_state",
                "soft_delete_retention_days",
                "resource_guard",
                "created_by",
            ]
        # Security settings change only through the gate's operations, never a raw edit.
        return [f.name for f in self.model._meta.fields]

    def save_model(self, request: HttpRequest, obj: Vault, form: Any, change: bool) -> None:
        if change:
            raise PermissionDenied("Vaults change through their blades, not a raw edit.")
        try:
            created = services.vault_create(
                actor=request.user,
                name=obj.name,
                kind=obj.kind,
                region=obj.region,
                tags=obj.tags,
                storage_location=obj.storage_location,
            )
        except DomainError as error:
            raise PermissionDenied(error.detail) from error
        obj.pk = created.pk

    def delete_model(self, request: HttpRequest, obj: Vault) -> None:
        try:
            services.vault_delete(actor=request.user, vault=obj)
        except DomainError as error:
            # Refused (and audited): never let the admin report it as deleted.
            raise PermissionDenied(error.detail) from error

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for vault in queryset:
            self.delete_model(request, vault)

    def _set(self, request: HttpRequest, queryset: Any, state: str) -> None:
        for vault in queryset:
            try:
                services.immutability_set(actor=request.user, vault=vault, state=state)
            except DomainError as error:
                self.message_user(request, f"{vault.name}: {error.detail}", messages.ERROR)
            else:
                self.message_user(request, f"{vault.name}: immutability {state}.")

    @admin.action(description="Enable immutability")
    def enable_immutability(self, request: HttpRequest, queryset: Any) -> None:
        self._set(request, queryset, Vault.Immutability.ENABLED)

    @admin.action(description="Disable immutability")
    def disable_immutability(self, request: HttpRequest, queryset: Any) -> None:
        self._set(request, queryset, Vault.Immutability.DISABLED)
