from __future__ import annotations

from django.apps import AppConfig


class VaultsConfig(AppConfig):
    name = "vaults"

    def ready(self) -> None:
        from portal.anchors import register_anchor_stores

        from .anchors import anchor_stores

        # The audit chain's anchors go to vault storage; the kernel only knows the hook.
        register_anchor_stores(anchor_stores)
