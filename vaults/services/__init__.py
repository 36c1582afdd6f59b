"""Writes to vaults, one module per blade of the vault page and per concern; every one goes
through the operation gate (``portal.gate``).

- ``vault``: create and delete a vault, its properties (Properties blade)
- ``immutability``: the Immutable vault blade
- ``soft_delete``: soft delete, always-on, undelete and purges (Security settings blade)
- ``mua``: the vault's Resource Guard (Multi-user authorization blade)
- ``hosts``: a worker's host announcing itself, the host an item is read on (SPEC 3.13)
- ``items``: protecting a directory, stopping and resuming protection (Backup items blade)
- ``points``: recovery points; ``downloads``: reading a point's files out as a download
- ``expiry``: the sweeps' batches of points (expiry, snapshot lapse, rehydration end)
- ``replication``: pairing with a replica vault, its points (Replication blade)
- ``common``: what they share (the locked vault row, irreversible lock requests)

Callers write ``services.immutability_set(...)``: every service is re-exported here. A new
service goes in the module of its blade and into ``__all__`` below.
"""

from __future__ import annotations

from .downloads import Download, point_download
from .expiry import points_expire_batch, rehydrations_end_batch, snapshots_lapse_batch
from .hosts import host_announce, item_host_set, known_host
from .immutability import immutability_lock, immutability_lock_request, immutability_set
from .items import item_protect, protection_resume, protection_stop
from .mua import vault_guard_remove, vault_guard_set
from .points import (
    point_delete,
    point_drill_record,
    point_expire,
    point_expiry,
    point_flag,
    point_record,
    point_retain_until,
)
from .replication import replica_point_record, replica_remove, replica_set
from .soft_delete import (
    UPCOMING_PURGE_WARNING,
    item_purge,
    item_purge_warn,
    item_undelete,
    soft_delete_always_on,
    soft_delete_always_on_request,
    soft_delete_set,
)
from .vault import job_alerts_mute, vault_create, vault_delete

__all__ = [
    "UPCOMING_PURGE_WARNING",
    "Download",
    "host_announce",
    "immutability_lock",
    "immutability_lock_request",
    "immutability_set",
    "item_host_set",
    "item_protect",
    "item_purge",
    "item_purge_warn",
    "item_undelete",
    "job_alerts_mute",
    "known_host",
    "point_delete",
    "point_download",
    "point_drill_record",
    "point_expire",
    "point_expiry",
    "point_flag",
    "point_record",
    "point_retain_until",
    "points_expire_batch",
    "protection_resume",
    "protection_stop",
    "rehydrations_end_batch",
    "replica_point_record",
    "replica_remove",
    "replica_set",
    "snapshots_lapse_batch",
    "soft_delete_always_on",
    "soft_delete_always_on_request",
    "soft_delete_set",
    "vault_create",
    "vault_delete",
    "vault_guard_remove",
    "vault_guard_set",
]
