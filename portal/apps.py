from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.db.models.signals import post_migrate


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Holdfast portal"
    default = True

    def ready(self) -> None:
        from .models import Approval
        from .roles import ensure_roles
        from .services import register_approved_action, user_role_grant

        # Permissions exist only after migrate; the role groups are (re)built from them.
        post_migrate.connect(ensure_roles, sender=self, dispatch_uid="holdfast_ensure_roles")
        # The kernel's own kind of approval; the apps register theirs in their ready().
        register_approved_action(
            Approval.Kind.USER_ROLE_GRANT, operation="user_role_grant", run=user_role_grant
        )


class ReadOnlyAdminConfig(admin_apps.AdminConfig):
    """``django.contrib.admin`` with Holdfast's read-only site as the default one."""

    default = False
    default_site = "portal.adminsite.ReadOnlyAdminSite"

    def ready(self) -> None:
        super().ready()  # autodiscover: every app's admin module is loaded now
        from .admin import lock_down_accounts

        lock_down_accounts()
