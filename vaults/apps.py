from __future__ import annotations

from django.apps import AppConfig


class VaultsConfig(AppConfig):
    name = "vaults"

    def ready(self) -> None:
        from portal.anchors import register_anchor_stores
        from portal.models import Approval
        from portal.services import register_approved_action

        from . import services
        from .anchors import anchor_stores

        register_approved_action(
            Approval.Kind.LOCK_IMMUTABILITY,
            operation="immutability_lock",
            run=services.immutability_lock,
            needs_vault=True,
        )
        register_approved_action(
            Approval.Kind.ALWAYS_ON_SOFT_DELETE,
            operation="soft_delete_always_on",
            run=services.soft_delete_always_on,
            needs_vault=True,
        )
        # The audit chain's anchors go to vault storage; the kernel only knows the hook.
        register_anchor_stores(anchor_stores)
