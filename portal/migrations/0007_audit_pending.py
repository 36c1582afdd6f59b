"""Audit records linked after the commit (issue 20): the pending table, the record's chain
version (1 for every record so far) and, on PostgreSQL, the linker ``holdfast_audit_link()``
(``portal/audit_link.py``), owned by the role migrations run as. Run ``db_roles`` afterwards:
it makes the pending table insert-only for the application role, like the log.
"""

from typing import Any

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def create_linker(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        from portal.audit_link import LINK_FUNCTION_SQL

        schema_editor.execute(LINK_FUNCTION_SQL)


def drop_linker(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS holdfast_audit_link()")


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0006_user_role_grant_and_tokens"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="auditrecord",
            name="version",
            field=models.PositiveSmallIntegerField(db_default=1, default=1),
        ),
        # Existing records are version 1; a raw INSERT from now on is judged as version 2.
        migrations.AlterField(
            model_name="auditrecord",
            name="version",
            field=models.PositiveSmallIntegerField(db_default=2, default=1),
        ),
        migrations.CreateModel(
            name="AuditPending",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("at", models.DateTimeField()),
                ("actor_name", models.CharField(max_length=150)),
                ("operation", models.CharField(max_length=64)),
                (
                    "outcome",
                    models.CharField(
                        choices=[("allowed", "Allowed"), ("refused", "Refused")], max_length=10
                    ),
                ),
                ("code", models.CharField(blank=True, max_length=64)),
                ("reason", models.TextField(blank=True)),
                ("vault_name", models.CharField(blank=True, max_length=50)),
                ("target", models.CharField(blank=True, max_length=255)),
                ("source", models.CharField(blank=True, max_length=16)),
                ("before", models.JSONField(blank=True, default=dict)),
                ("after", models.JSONField(blank=True, default=dict)),
                ("details", models.JSONField(blank=True, default=dict)),
                (
                    "actor",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
        ),
        migrations.RunPython(create_linker, drop_linker, elidable=False),
    ]
