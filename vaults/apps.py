from __future__ import annotations

from django.apps import AppConfig


class VaultsConfig(AppConfig):
    name = "vaults"

    def ready(self) -> None:
        # The kernel (portal) imports no app: the vaults app tells it what is its own here.
        from portal.alerts import register_mute
        from portal.anchors import register_anchor_stores
        from portal.models import Approval
        from portal.services import register_approved_action

        from . import keyring, services
        from .anchors import anchor_stores
        from .selectors import job_alerts_muted
        from .services.keys import vault_data_key_create

        # The approvals a vault's irreversible actions wait for, and what each then runs.
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
        # The audit chain's anchors go to vault storage; a vault's job alerts can be muted.
        register_anchor_stores(anchor_stores)
        register_mute(job_alerts_muted)
        # A vault from before encryption gets its data key through the gate, on first use.
        keyring.register_key_maker(vault_data_key_create)
