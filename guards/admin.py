"""Resource Guards in the admin: read-only; security admins change them on their pages and in
the API, through the gate."""

from __future__ import annotations

from django.contrib import admin

from portal.admin import ReadOnlyAdmin

from .models import ResourceGuard


@admin.register(ResourceGuard)
class ResourceGuardAdmin(ReadOnlyAdmin):
    list_display = ["name", "owner", "created_at"]
