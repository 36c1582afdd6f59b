"""What the vault-scoped endpoints share: names fit for URLs, the ``dry_run`` parameter, and
the viewset that fetches ``/vaults/{name}/`` once, for the user."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.validators import RegexValidator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import viewsets
from rest_framework.request import Request

from portal.gate import DomainError

from ..models import Vault
from ..selectors import get_vault_for_user

# Names appear in URLs (``/policies/{policy}/``, ``/items/{item}/``), so no slashes.
NAME_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$",
    "Use letters, digits, spaces, dots, underscores or hyphens, starting with a letter or digit.",
)

DRY_RUN = OpenApiParameter(
    "dry_run",
    OpenApiTypes.BOOL,
    OpenApiParameter.QUERY,
    description="Answer what the change would do (expiry moves, refusals) and change nothing.",
)


def dry_run(request: Request) -> bool:
    return request.query_params.get("dry_run", "").lower() in {"1", "true", "yes", "on"}


class VaultScopedViewSet(viewsets.GenericViewSet[Any]):
    """A viewset under ``/vaults/{name}/``: the vault is fetched once, for the user."""

    def vault(self) -> Vault:
        if not hasattr(self, "_vault"):
            try:
                self._vault = get_vault_for_user(self.request.user, self.kwargs["name"])
            except PermissionDenied as exc:
                # portal.api.exception_handler maps only DRF's PermissionDenied to a code.
                raise DomainError("permission_denied", str(exc)) from exc
        return self._vault

    def schema_only(self) -> bool:
        return bool(getattr(self, "swagger_fake_view", False))
