"""The Django admin shows data and changes none of it (SPEC 1, 3.9, 8).

Every change in Holdfast goes through the gate, with its role checks, four-eyes rules and audit
record; the admin would be a second way in that skips all three. So the default admin site is
``portal.adminsite.ReadOnlyAdminSite`` (see there), which makes every model admin read-only,
whoever registered it. Accounts, groups, API tokens and TOTP devices are registered again below
with fields that show no secret: no password hash, no token or digest, no TOTP key. Accounts are
managed on the Users page and ``/api/v1/users/``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.http import HttpRequest
from django_otp.plugins.otp_totp.models import TOTPDevice
from knox.models import AuthToken

from .adminsite import ReadOnlyAdmin
from .models import Approval, AuditRecord

__all__ = ["ReadOnlyAdmin"]


def _reregister(model: Any, admin_class: type[ReadOnlyAdmin]) -> None:
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, admin_class)


class UserAdmin(ReadOnlyAdmin):
    # Never the password field: shown read-only it would print the whole hash.
    list_display = ["username", "email", "is_active", "is_superuser", "last_login"]
    list_filter = ["is_active", "is_superuser", "groups"]
    search_fields = ["username", "email"]
    fields = ["username", "email", "is_active", "is_superuser", "groups", "last_login"]


class GroupAdmin(ReadOnlyAdmin):
    list_display = ["name"]
    fields = ["name", "permissions"]


class AuthTokenAdmin(ReadOnlyAdmin):
    # Neither the digest nor the key's first characters: which account holds a token, since
    # when and until when, is all an administrator needs.
    list_display = ["user", "created", "expiry"]
    list_display_links = None
    search_fields = ["user__username"]
    fields = ["user", "created", "expiry"]

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        # The digest is the row's key; its detail page would print it in the URL.
        return None


class TOTPDeviceAdmin(ReadOnlyAdmin):
    list_display = ["user", "name", "confirmed", "created_at", "last_used_at"]
    list_filter = ["confirmed"]
    fields = ["user", "name", "confirmed", "created_at", "last_used_at"]


def lock_down_accounts() -> None:
    """Show accounts, groups, tokens and authenticators without their secrets (called once
    every app's admin module is loaded)."""
    _reregister(get_user_model(), UserAdmin)
    _reregister(Group, GroupAdmin)
    _reregister(AuthToken, AuthTokenAdmin)
    _reregister(TOTPDevice, TOTPDeviceAdmin)


@admin.register(AuditRecord)
class AuditRecordAdmin(ReadOnlyAdmin):
    list_display = ["at", "actor_name", "operation", "outcome", "code", "vault_name", "source"]
    list_filter = ["outcome", "source", "operation"]
    search_fields = ["vault_name", "actor_name", "target"]


@admin.register(Approval)
class ApprovalAdmin(ReadOnlyAdmin):
    # Decided in the approvals inbox (pages and API), with the approver's second factor.
    list_display = ["id", "kind", "status", "requested_by", "decided_by", "vault", "expires_at"]
    list_filter = ["kind", "status"]
