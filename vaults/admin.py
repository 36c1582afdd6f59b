"""Vaults in the admin: read-only, like every model there (``portal/admin.py``). Creating,
deleting and changing a vault's security settings happen on its blades and in the API, through
the gate."""

from __future__ import annotations

from django.contrib import admin

from portal.admin import ReadOnlyAdmin

from .models import Host, Vault


@admin.register(Vault)
class VaultAdmin(ReadOnlyAdmin):
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


@admin.register(Host)
class HostAdmin(ReadOnlyAdmin):
    """Hosts are written by their workers' beats only (``services.host_announce``)."""

    list_display = ["name", "last_seen", "version", "started_at", "first_seen"]
    search_fields = ["name"]
