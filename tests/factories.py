"""A few factories; objects that have rules are made through the services (the gate)."""

from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth import get_user_model

from vaults import services as vault_services
from vaults.models import Vault


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")


def make_vault(
    actor: Any,
    *,
    name: str = "vault-one",
    kind: str = "recovery_services",
    region: str = "westeurope",
    immutability: str = "disabled",
    **extra: Any,
) -> Vault:
    vault = vault_services.vault_create(actor=actor, name=name, kind=kind, region=region, **extra)
    if immutability != "disabled":
        vault = vault_services.immutability_set(actor=actor, vault=vault, state="enabled")
    if immutability == "locked":
        vault = lock_vault(vault, requester=actor)
    return vault


def lock_vault(vault: Vault, *, requester: Any, approver: Any = None) -> Vault:
    from portal import services
    from tests.conftest import make_user

    approver = approver or make_user(f"approver-{vault.name}", "security_admin")
    approval = vault_services.immutability_lock_request(
        actor=requester, vault=vault, confirmation=vault.name
    )
    services.approval_approve(actor=approver, approval=approval)
    vault.refresh_from_db()
    return vault


def stored_digest(point: Any) -> str:
    """The digest of a point's manifest as its own vault stores it. A replica's copy has its
    own (its chunk ids are keyed by the replica's data key), never its source's."""
    import blake3

    from vaults import locations

    store = locations.archive_store if point.is_archived else locations.vault_store
    raw = store(point.vault).backend.get(f"manifests/{point.storage_key}.json")
    return str(blake3.blake3(raw).hexdigest())
