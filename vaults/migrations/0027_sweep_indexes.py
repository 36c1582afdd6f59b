# Issue 20, deliverable 5: indexes for what the sweeps and the portfolio sort by (the plans are
# in docs/jobs.md, "The sweeps' statements and their plans").

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("guards", "0002_guard_names"),
        ("policies", "0004_restore_drill"),
        ("vaults", "0026_report_indexes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # The soft-delete sweep's warnings and purges: soft-deleted items only.
        migrations.AddIndex(
            model_name="protecteditem",
            index=models.Index(
                condition=models.Q(("protection_state", "soft_deleted")),
                fields=["purge_at"],
                name="item_purge_idx",
            ),
        ),
        # The snapshot-lapse and rehydration-end sweeps' keyset pages: partial, so they hold
        # only the points those sweeps visit (a page was a scan of every point).
        migrations.AddIndex(
            model_name="recoverypoint",
            index=models.Index(
                condition=models.Q(("tier", "snapshot_and_vault")),
                fields=["snapshot_expires_at", "id"],
                name="point_snapshot_lapse_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="recoverypoint",
            index=models.Index(
                condition=models.Q(("rehydrated_until__isnull", False)),
                fields=["rehydrated_until", "id"],
                name="point_rehydrated_idx",
            ),
        ),
        # The portfolio's sorts by immutability, kind and region (ORDER BY <column>, name).
        migrations.RemoveIndex(
            model_name="vault",
            name="vault_immutability_idx",
        ),
        migrations.AddIndex(
            model_name="vault",
            index=models.Index(fields=["immutability", "name"], name="vault_immutability_name_idx"),
        ),
        migrations.AddIndex(
            model_name="vault",
            index=models.Index(fields=["kind", "name"], name="vault_kind_name_idx"),
        ),
        migrations.AddIndex(
            model_name="vault",
            index=models.Index(fields=["region", "name"], name="vault_region_sort_idx"),
        ),
    ]
