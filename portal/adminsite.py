"""The admin site Holdfast installs as Django's default (``portal.apps.ReadOnlyAdminConfig``).

Every model admin registered on it is made read-only, whoever registered it (Django, a library
or Holdfast): no add, change or delete, no actions, and none of a library admin's extra views
(django-otp's QR code of a TOTP key, the password form of Django's user admin, the "run now"
of a periodic task, ...). A module of its own, registering nothing: Django imports it to build
the default site, before any ``admin.py`` registers on that site.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import URLPattern


class ReadOnlyAdmin(admin.ModelAdmin):
    """Lists and detail pages; nothing that writes."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # Actions without ``allowed_permissions`` are offered to anyone who can view.
        return {}

    def get_urls(self) -> list[URLPattern]:
        # Only the standard views, which honour the permissions above; a library's own views
        # (which may show a secret or write) are dropped.
        return admin.ModelAdmin.get_urls(self)


class ReadOnlyAdminSite(admin.AdminSite):
    """Every model admin registered here is made read-only (see the module's docstring)."""

    site_header = "Holdfast administration (read-only)"

    def register(self, model_or_iterable: Any, admin_class: Any = None, **options: Any) -> None:
        base = admin_class or admin.ModelAdmin
        if not issubclass(base, ReadOnlyAdmin):
            base = type(f"ReadOnly{base.__name__}", (ReadOnlyAdmin, base), {"__module__": __name__})
        super().register(model_or_iterable, base, **options)
