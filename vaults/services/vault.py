"""A vault itself (SPEC 3.1): create it, delete it, change its properties."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from portal import gate
from portal.gate import Check, DomainError
from portal.validators import check_storable

from .. import keyring, locations
from ..models import Vault
from ..storage import StorageError
from ..storage.crypto import KeyUnavailable
from ..storage.s3_client import parse_location
from .common import validation_error, vault_change


def vault_create(
    *,
    actor: Any,
    name: str,
    kind: str,
    region: str,
    tags: dict[str, str] | None = None,
    storage_location: str = "",
) -> Vault:
    """Create a vault; new vaults start with soft delete on for 14 days (SPEC 3.3)."""
    check_storable(name=name, region=region, tags=tags, storage_location=storage_location)
    vault = Vault(
        name=name,
        kind=kind,
        region=region,
        tags=tags or {},
        storage_location=storage_location or str(settings.HOLDFAST_STORAGE_ROOT / "vaults" / name),
        created_by=actor,
    )

    def precheck(check: Check) -> None:
        try:
            vault.full_clean()
        except ValidationError as exc:
            raise validation_error(exc) from exc
        _check_storage_location(vault.storage_location)
        # Born with its own data key, wrapped by the master key (SPEC 3.11).
        try:
            keyring.give_data_key(vault)
        except KeyUnavailable as exc:
            raise DomainError("storage_unavailable", str(exc)) from None

    def change(check: Check) -> Vault:
        vault.save()
        return vault

    return gate.execute(
        "vault_create",
        actor=actor,
        vault_name=name[:50],
        target=f"vault:{name}",
        facts={"name": name},
        precheck=precheck,
        change=change,
        after=lambda v: v.audit_state(),
    )


def _check_storage_location(location: str) -> None:
    """An S3 location must be a bucket with versioning and Object Lock, used by no other
    vault; the storage is asked before the vault exists (docs/storage.md). Any other location
    overlaps no other vault's either, as the database also insists (vault_storage_apart)."""
    if not locations.is_s3(location):
        mine = location + "/"
        for other in Vault.objects.exclude(storage_location="").exclude(
            storage_location__startswith=locations.S3_SCHEME
        ):
            theirs = other.storage_location + "/"
            if mine.startswith(theirs) or theirs.startswith(mine):
                raise DomainError(
                    "validation_error",
                    f"storage_location: {location} overlaps the storage of vault {other.name}.",
                    field="storage_location",
                )
        return
    try:
        wanted = str(parse_location(location)) + "/"
        for other in Vault.objects.filter(storage_location__startswith=locations.S3_SCHEME):
            taken = str(parse_location(other.storage_location)) + "/"
            if wanted.startswith(taken) or taken.startswith(wanted):
                raise DomainError(
                    "validation_error",
                    f"storage_location: {location} overlaps the storage of vault {other.name}.",
                    field="storage_location",
                )
        locations.check_location(location)
    except StorageError as exc:
        raise DomainError(
            "validation_error", f"storage_location: {exc}", field="storage_location"
        ) from None


def vault_delete(*, actor: Any, vault: Vault) -> None:
    """Delete a vault; an immutable vault only once none of its points is unexpired."""

    def change(check: Check) -> None:
        assert check.vault is not None
        check.vault.delete()

    gate.execute(
        "vault_delete",
        actor=actor,
        vault=vault,
        target=f"vault:{vault.name}",
        change=change,
        after=lambda _: {"deleted": True},
    )


def job_alerts_mute(*, actor: Any, vault: Vault, muted: bool) -> Vault:
    """Mute (or unmute) the delivery of this vault's job alerts; security alerts stay on."""
    return vault_change(
        "job_alerts_mute", actor=actor, vault=vault, fields={"mute_job_alerts": muted}
    )
