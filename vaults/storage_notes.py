"""What a vault's storage is told to keep, by the services, as the gate allows it.

The lock a point's objects get (S3 Object Lock, SPEC 6), the terms its manifest records
(SPEC 8.3), and :func:`storage_note`: after a change the gate allowed (a new expiry, an
early deletion, a vault locked), the storage is told at once, so it never has to learn it
from the database, which someone holding only the database could forge.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db.models import QuerySet

from portal import clock
from portal.gate import DomainError

from .locations import has_store, raw_standard_backend, vault_store
from .models import RecoveryPoint, Vault
from .storage.backends import COMPLIANCE, GOVERNANCE, Retention
from .storage.errors import StorageError
from .storage.manifest import Terms


def lock_mode(vault: Vault) -> str | None:
    """The object-lock mode immutability maps to (SPEC 6): none while disabled."""
    modes: dict[str, str] = {
        Vault.Immutability.ENABLED: GOVERNANCE,
        Vault.Immutability.LOCKED: COMPLIANCE,
    }
    return modes.get(vault.immutability)


def point_retention(vault: Vault, expires_at: datetime, *, operational: bool) -> Retention | None:
    """The storage lock a point's objects get: until its expiry, in the vault's mode.

    Operational (snapshot-only) points are outside immutability (SPEC 3.2)."""
    mode = lock_mode(vault)
    if mode is None or operational or not raw_standard_backend(vault).supports_object_lock:
        return None
    return Retention(mode, expires_at)


# As the storage lock job's LOCK_MARGIN: a retain-until this close gets no object lock on a note.
NOTE_LOCK_MARGIN = timedelta(minutes=5)


def point_terms(vault: Vault, expires_at: datetime, *, operational: bool) -> Terms:
    """What a new point's manifest records of how long the storage keeps it (SPEC 8.3)."""
    return Terms(
        retain_until=expires_at,
        locked_vault=vault.is_locked and not operational,
        operational=operational,
    )


def keep_until(point: RecoveryPoint) -> datetime:
    """Until when a point stays: its expiry, or the end of its soft-delete period if later."""
    if point.soft_deleted_until is not None and point.soft_deleted_until > point.expires_at:
        return point.soft_deleted_until
    return point.expires_at


def storage_note(
    points: Iterable[RecoveryPoint] = (), *, release: bool = False, vault: Vault | None = None
) -> None:
    """Tell the vaults' storage what the gate has just allowed for ``points``: their new
    retain-until (expiry, or the end of their soft-delete period), or with ``release`` that
    they were deleted early; and, for a locked vault, that it is locked.

    Call it inside the gate's transaction, after the change (``vault`` is the row the gate
    locked): a storage that cannot be told refuses the change with ``storage_unavailable``
    and nothing changes. The storage never learns these from the database later, which
    someone holding only the database could forge; and it ignores a release or an earlier
    date for a point held by a locked vault (docs/storage.md, "What the storage was told to
    keep")."""
    if isinstance(points, QuerySet):
        points = points.select_related("vault")
    by_vault: dict[int, tuple[Vault, list[RecoveryPoint]]] = {}
    if vault is not None:
        by_vault[vault.pk] = (vault, [])
    for point in points:
        owner = vault if vault is not None and point.vault_id == vault.pk else point.vault
        by_vault.setdefault(owner.pk, (owner, []))[1].append(point)
    now = clock.now()
    for owner, noted in by_vault.values():
        if not has_store(owner):
            continue
        try:
            holds = vault_store(owner).holds
            if owner.is_locked:
                holds.lock_vault(now)
            notes: list[tuple[str, datetime | None, Retention | None]] = []
            for point in noted:
                if not point.storage_key:
                    continue  # a point without data (never backed up): nothing to keep
                if release:
                    notes.append((point.storage_key, None, None))
                    continue
                until = keep_until(point)
                # Locked like the point's own objects; a date about to pass gets no lock
                # (the storage would refuse one that has passed when the request lands).
                operational = point.is_operational_only
                retention = None
                if until > now + NOTE_LOCK_MARGIN:
                    retention = point_retention(owner, until, operational=operational)
                notes.append((point.storage_key, until, retention))
            holds.note_many(notes, at=now)
        except (StorageError, OSError) as exc:
            raise DomainError(
                "storage_unavailable",
                f"The storage of vault {owner.name} could not be told of this change ({exc}); "
                "nothing was changed. Try again once the storage answers.",
            ) from None
