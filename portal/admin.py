"""The Django admin is one more caller of the gate: it never writes around it."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest

from .models import Approval, AuditRecord


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditRecord)
class AuditRecordAdmin(ReadOnlyAdmin):
    list_display = ["at", "actor_name", "operation", "outcome", "code", "vault_name", "source"]
    list_filter = ["outcome", "source", "operation"]
    search_fields = ["vault_name", "actor_name", "target"]


@admin.register(Approval)
class ApprovalAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "status", "requested_by", "decided_by", "vault", "expires_at"]
    list_filter = ["kind", "status"]
    actions = ["approve_selected", "deny_selected"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Needed for the actions; every field stays read-only and actions call the gate.
        return obj is None

    @admin.action(description="Approve the selected requests")
    def approve_selected(self, request: HttpRequest, queryset: Any) -> None:
        self._decide(request, queryset, "approve")

    @admin.action(description="Deny the selected requests")
    def deny_selected(self, request: HttpRequest, queryset: Any) -> None:
        self._decide(request, queryset, "deny")

    def _decide(self, request: HttpRequest, queryset: Any, action: str) -> None:
        from . import services
        from .gate import DomainError

        for approval in queryset:
            try:
                getattr(services, f"approval_{action}")(actor=request.user, approval=approval)
            except DomainError as error:
                self.message_user(request, f"#{approval.pk}: {error.detail}", messages.ERROR)
            else:
                self.message_user(request, f"#{approval.pk}: {action} done.")
