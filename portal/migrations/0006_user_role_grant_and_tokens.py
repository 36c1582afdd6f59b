"""Grants of power as approvals (SPEC 3.9), and API tokens kept as digests only.

DRF's ``authtoken`` app stored each key in plain text; knox stores a SHA-512 digest. Each old
key becomes a knox row (its digest and first 15 characters), so clients keep their key until it
expires ``HOLDFAST_API_TOKEN_HOURS`` after this migration, like a newly issued one; then the
plain-text table is dropped. Nothing can turn a digest back into a key, so this does not reverse.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.utils import timezone

OLD_TOKEN_TABLE = "authtoken_token"


def hash_old_tokens(apps, schema_editor):
    from knox.crypto import hash_token
    from knox.settings import CONSTANTS, knox_settings

    connection = schema_editor.connection
    if OLD_TOKEN_TABLE not in connection.introspection.table_names():
        return
    AuthToken = apps.get_model("knox", "AuthToken")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id FROM {OLD_TOKEN_TABLE}")  # noqa: S608
        rows = cursor.fetchall()
    expiry = timezone.now() + knox_settings.TOKEN_TTL
    AuthToken.objects.bulk_create(
        AuthToken(
            digest=hash_token(key),
            token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH],
            user_id=user_id,
            expiry=expiry,
        )
        for key, user_id in rows
    )
    schema_editor.execute(f"DROP TABLE {OLD_TOKEN_TABLE}")


class Migration(migrations.Migration):

    dependencies = [
        ("portal", "0005_guard_weaken"),
        ("knox", "0009_extend_authtoken_field"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="approval",
            name="account",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="role_grants",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="approval",
            name="kind",
            field=models.CharField(
                choices=[
                    ("lock_immutability", "Lock immutability"),
                    ("always_on_soft_delete", "Make soft delete always-on"),
                    ("elevation", "Elevation on a Resource Guard"),
                    ("guard_weaken", "Weaken or delete a Resource Guard"),
                    ("user_role_grant", "Grant an account power"),
                ],
                max_length=32,
            ),
        ),
        migrations.RunPython(hash_old_tokens, migrations.RunPython.noop, elidable=False),
    ]
