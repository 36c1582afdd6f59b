"""Indexes for what the sweeps read and the portfolio sorts by (issue 20): the models' Meta
lists them; the plans that use them are in docs/jobs.md (*The sweeps' statements and their
plans*)."""

from __future__ import annotations

from django.db import models

# The portfolio's sorts, ORDER BY <column>, name LIMIT 50 (-items and -storage read theirs
# backwards): a page is the index's first 50 entries, not a sort of every vault. The
# immutability one also serves its filter (it replaced an index on immutability alone).
VAULT_SORT_INDEXES = [
    models.Index(fields=["immutability", "name"], name="vault_immutability_name_idx"),
    models.Index(fields=["kind", "name"], name="vault_kind_name_idx"),
    models.Index(fields=["region", "name"], name="vault_region_sort_idx"),
    models.Index(fields=["stored_standard_bytes", "name"], name="vault_storage_idx"),
    models.Index(fields=["stored_item_count", "name"], name="vault_item_count_idx"),
    models.Index(fields=["last_backup_status", "name"], name="vault_last_backup_idx"),
    models.Index(fields=["soft_delete_state", "name"], name="vault_soft_delete_idx"),
]

# The soft-delete sweep's warnings and purges: soft-deleted items only.
ITEM_SWEEP_INDEXES = [
    models.Index(
        fields=["purge_at"],
        name="item_purge_idx",
        condition=models.Q(protection_state="soft_deleted"),
    ),
]

# The snapshot-lapse and rehydration-end sweeps' keyset pages (the expiry sweep's is
# point_expiry_idx): partial, so they hold only the points those sweeps will visit.
POINT_SWEEP_INDEXES = [
    models.Index(
        fields=["snapshot_expires_at", "id"],
        name="point_snapshot_lapse_idx",
        condition=models.Q(tier="snapshot_and_vault"),
    ),
    models.Index(
        fields=["rehydrated_until", "id"],
        name="point_rehydrated_idx",
        condition=models.Q(rehydrated_until__isnull=False),
    ),
]
