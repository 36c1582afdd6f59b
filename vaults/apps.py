from django.apps import AppConfig


class VaultsConfig(AppConfig):
    name = "vaults"

    def ready(self) -> None:
        from portal.models import Approval
        from portal.services import register_approved_action

        from . import services

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
