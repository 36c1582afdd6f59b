"""Access helpers shared by pages and the API: one way to fetch a vault for a user."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from vaults.models import Vault

from .roles import has_capability


def vaults_for_user(user: Any) -> QuerySet[Vault]:
    """Vaults the user may see; every role sees the whole portfolio today."""
    if not has_capability(user, "view"):
        return Vault.objects.none()
    return Vault.objects.select_related("resource_guard")


def get_vault_for_user(user: Any, name: str) -> Vault:
    if not has_capability(user, "view"):
        raise PermissionDenied("Your role does not allow you to see vaults.")
    return get_object_or_404(vaults_for_user(user), name=name)
