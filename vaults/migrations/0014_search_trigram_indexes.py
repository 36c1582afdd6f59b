"""The portfolio's name search (``icontains`` on the name or the region: ``UPPER(col) LIKE
UPPER('%...%')``): trigram GIN indexes, so counting the matches of 10,000 vaults reads the
index instead of every row. PostgreSQL only (pg_trgm is a trusted extension); the embedded
SQLite has a few vaults and no such index type."""

from django.db import migrations

INDEXES = {
    "vault_name_trgm_idx": "UPPER(name::text) gin_trgm_ops",
    "vault_region_trgm_idx": "UPPER(region::text) gin_trgm_ops",
}


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, expression in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON vaults_vault USING gin ({expression})"
        )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for name in INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("vaults", "0013_tallies")]

    operations = [migrations.RunPython(forwards, backwards)]
