"""Chain the audit records written before the hash chain existed (SPEC 8.4).

Installations upgraded from before ``0003_audit_hash_chain`` hold a prefix of records with an
empty ``hash`` and ``prev_hash``; the records sealed after them start a chain whose first
``prev_hash`` is empty. ``audit.verify`` no longer excuses empty hashes (blanking every hash
used to pass as "written before the chain"), so this migration chains the old records in: in
id order from the genesis, then re-links the existing chain onto them, recomputing each hash.

It first checks the existing chain, and refuses to run on a log whose chained part does not
verify: re-hashing would hide that tampering. A fresh or fully chained log is left alone.
Runs as the table owner (migrations do), with the ``audit_append_only`` trigger ignored for
this migration's statements only; ``db_roles`` lets only the owner ignore triggers.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pgtrigger
from django.db import migrations

BATCH = 1000


def chain_old_records(apps: Any, schema_editor: Any) -> None:
    from portal.audit import GENESIS, record_hash

    Record = apps.get_model("portal", "AuditRecord")
    records = Record._default_manager.using(schema_editor.connection.alias)
    if not records.filter(hash="").exists():
        return
    versions = _versions(schema_editor, Record._meta.db_table)
    changed: list[Any] = []
    in_prefix = True
    old_expected = GENESIS  # the existing chain's first link points at nothing
    new_prev = GENESIS
    for record in records.order_by("id").iterator(chunk_size=BATCH):
        record.version = versions.get(record.pk, 1)
        if in_prefix and not record.hash and not record.prev_hash:
            pass  # written before the chain: gets its first hash below
        else:
            in_prefix = False
            if not record.hash or record.prev_hash != old_expected or record.hash != record_hash(record):
                raise RuntimeError(
                    f"The audit chain is broken at record {record.pk} (found before chaining the "
                    "records written before the chain). Re-hashing would hide whatever changed "
                    "it: investigate with the previous version's manage.py audit_verify, "
                    "restore the log from a backup, then migrate again."
                )
            old_expected = record.hash
        record.prev_hash = new_prev
        record.hash = record_hash(record)
        new_prev = record.hash
        changed.append(record)
        if len(changed) >= BATCH:
            _save(records, changed, schema_editor)
            changed = []
    _save(records, changed, schema_editor)


def _versions(schema_editor: Any, table: str) -> dict[int, int]:
    """Each record's chain version, when the log has the column (0007_audit_pending added
    it: this function is also run over a newer log, whose records may be version 2)."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        columns = connection.introspection.get_table_description(cursor, table)
        if not any(column.name == "version" for column in columns):
            return {}
        cursor.execute(f"SELECT id, version FROM {table} WHERE version <> 1")
        return dict(cursor.fetchall())


def _save(records: Any, changed: list[Any], schema_editor: Any) -> None:
    if not changed:
        return
    ignore = (
        pgtrigger.ignore("portal.AuditRecord:audit_append_only")
        if schema_editor.connection.vendor == "postgresql"
        else contextlib.nullcontext()
    )
    with ignore:
        records.bulk_update(changed, ["prev_hash", "hash"])


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0003_audit_hash_chain"),
    ]

    operations = [
        migrations.RunPython(chain_old_records, migrations.RunPython.noop, elidable=False),
    ]
