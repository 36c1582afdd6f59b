from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Holdfast portal"

    def ready(self) -> None:
        from .roles import ensure_roles

        # Permissions exist only after migrate; the role groups are (re)built from them.
        post_migrate.connect(ensure_roles, sender=self, dispatch_uid="holdfast_ensure_roles")
