from django.apps import AppConfig


class GuardsConfig(AppConfig):
    name = "guards"

    def ready(self) -> None:
        from portal.models import Approval
        from portal.services import register_approved_action

        from . import services

        register_approved_action(
            Approval.Kind.GUARD_WEAKEN, operation="guard_weaken", run=services.guard_weaken
        )
