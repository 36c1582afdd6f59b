"""The audit chain anchored outside the database (SPEC 8.4, issue 12 item 4).

The chain alone cannot see a log rewritten consistently from some record on (its hash is
unkeyed) or shortened at the end. Anchors, written once to local disk and to S3 under
Object Lock, can: each attack below is made as a database superuser (the test's own
connection, with the append-only trigger switched off) and must be reported by
``manage.py audit_verify`` (non-zero exit) and on the Audit page.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import types
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.migrations.loader import MigrationLoader
from django.urls import reverse

from portal import audit, clock, tasks
from portal.anchors import Anchor
from portal.models import Alert, AuditRecord
from portal.schedule import CELERY_BEAT_SCHEDULE
from tests.conftest import PASSWORD
from tests.factories import make_vault
from tests.s3server import S3Server, s3, s3_server  # noqa: F401  (fixtures)
from tests.test_audit_chain import TABLE, some_history, tamper
from vaults.anchors import local_store
from vaults.storage.backends import COMPLIANCE, GOVERNANCE
from vaults.storage.errors import ObjectLocked
from vaults.storage.s3 import S3Backend
from vaults.storage.s3_client import parse_location


def run(command: str, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def anchor_files(directory: Path) -> list[str]:
    """The anchors in a local anchor directory (``keys/`` holds the anchors' wrapped key)."""
    return sorted(
        path.name
        for path in directory.iterdir()
        if not path.name.startswith(".") and path.name != "keys"
    )


def read_anchor(name: str) -> bytes:
    """An anchor's plaintext: anchors are sealed with their store's own key (SPEC 3.11)."""
    return local_store().read(name)


def rechain(records: list[AuditRecord], prev: str) -> None:
    """What an attacker who knows the algorithm does after a change: recompute every link
    from ``records[0]`` on, so the chain verifies on its own again."""
    for stale in records:
        record = AuditRecord.objects.get(pk=stale.pk)
        record.prev_hash = prev
        prev = audit.record_hash(record)
        tamper(
            f"UPDATE {TABLE} SET prev_hash = %s, hash = %s WHERE id = %s",
            [record.prev_hash, prev, record.pk],
        )


def rewrite(records: list[AuditRecord], index: int) -> None:
    """The full-rewrite attack: change one record and re-hash it and every later one."""
    tamper(f"UPDATE {TABLE} SET actor_name = 'mallory' WHERE id = %s", [records[index].pk])
    rechain(records[index:], records[index - 1].hash)


def page(client: Any, user: Any, **query: str) -> str:
    client.login(username=user.username, password=PASSWORD)
    return str(client.get(reverse("audit"), query).content.decode())


# --- writing anchors ----------------------------------------------------------------------


@pytest.mark.django_db
def test_audit_anchor_writes_the_head_once_to_the_local_store(
    admin: Any, reader: Any, audit_anchor_dir: Path
) -> None:
    records = some_history(admin, reader)
    out, _ = run("audit_anchor")
    head = records[-1]
    name = f"{head.pk:020d}-{head.hash}.json"
    assert f"Anchored record {head.pk} ({len(records)} record(s), head {head.hash})" in out
    assert anchor_files(audit_anchor_dir) == [name]
    payload = json.loads(read_anchor(name))
    assert b"holdfast-audit-anchor" not in (audit_anchor_dir / name).read_bytes()  # sealed
    assert payload["record_id"] == head.pk
    assert payload["hash"] == head.hash
    assert payload["count"] == len(records)
    assert payload["format"] == "holdfast-audit-anchor/1"
    written = (audit_anchor_dir / name).read_bytes()

    # The same head again: nothing is overwritten (write once), nothing new is written.
    out, _ = run("audit_anchor")
    assert "Already anchored" in out
    assert anchor_files(audit_anchor_dir) == [name]
    assert (audit_anchor_dir / name).read_bytes() == written

    # A longer log: a second anchor next to the first, which stays.
    make_vault(admin, name="later-vault")
    run("audit_anchor")
    assert len(anchor_files(audit_anchor_dir)) == 2
    assert anchor_files(audit_anchor_dir)[0] == name


@pytest.mark.django_db
def test_the_anchoring_task_is_scheduled_and_anchors(
    admin: Any, reader: Any, audit_anchor_dir: Path
) -> None:
    tasks_scheduled = {entry["task"] for entry in CELERY_BEAT_SCHEDULE.values()}
    assert {"holdfast.audit_anchor", "holdfast.audit_verify"} <= tasks_scheduled
    some_history(admin, reader)
    assert tasks.audit_anchor() == "ok"
    assert len(anchor_files(audit_anchor_dir)) == 1
    assert tasks.audit_verify() == "ok"


@pytest.mark.django_db
def test_an_empty_log_is_not_anchored(db: None, audit_anchor_dir: Path) -> None:
    assert not AuditRecord.objects.exists()
    with pytest.raises(CommandError, match="The audit log is empty"):
        run("audit_anchor")
    assert anchor_files(audit_anchor_dir) == []


@pytest.mark.django_db
def test_a_store_that_cannot_be_written_is_named_and_the_command_fails(
    admin: Any, settings: Any, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the anchor directory should be")
    settings.HOLDFAST_AUDIT_ANCHOR_DIR = blocker / "audit-anchors"
    with pytest.raises(CommandError, match="Could not write the anchor to local disk at "):
        run("audit_anchor")
    alert = Alert.objects.get(kind="audit_anchor_failed")
    assert alert.target == f"local disk at {blocker / 'audit-anchors'}"


# --- verifying against anchors ------------------------------------------------------------


@pytest.mark.django_db
def test_an_anchored_log_verifies_and_says_where_it_is_anchored(
    client: Any, admin: Any, reader: Any
) -> None:
    records = some_history(admin, reader)
    run("audit_anchor")
    make_vault(admin, name="after-the-anchor")
    out, err = run("audit_verify")
    assert f"Audit chain intact: {len(records) + 1} record(s) verified." in out
    assert f"Anchored at record {records[-1].pk}; 1 newer record(s) not anchored yet." in out
    assert err == ""
    text = page(client, reader)
    assert f"Chain intact</span>, anchored at #{records[-1].pk} (<time" in text
    assert "1 newer record not anchored yet" in text


@pytest.mark.django_db
def test_without_an_anchor_the_chain_is_still_verified_with_a_warning(
    client: Any, admin: Any, reader: Any
) -> None:
    some_history(admin, reader)
    out, err = run("audit_verify")
    assert "Audit chain intact" in out
    assert "Warning: No anchor in local disk" in err
    with pytest.raises(CommandError, match="No anchor to check the log against"):
        run("audit_verify", "--require-anchor")
    text = page(client, reader)
    assert "Chain intact" in text
    assert "No anchor in local disk" in text


@pytest.mark.django_db
@pytest.mark.parametrize("last", [None, 3], ids=["full", "quick"])
def test_blanking_every_hash_fails_against_the_anchor_too(
    client: Any, admin: Any, reader: Any, last: int | None
) -> None:
    records = some_history(admin, reader)
    run("audit_anchor")
    tamper(f"UPDATE {TABLE} SET hash = '', prev_hash = ''")
    status = audit.verify(last=last)
    assert not status.ok
    assert any("no longer has the anchored hash" in failure for failure in status.failures)
    with pytest.raises(
        CommandError, match=rf"Audit chain broken at record {records[0].pk}: its hash is blank"
    ):
        run("audit_verify")
    text = page(client, reader)
    assert "Chain broken" in text
    assert "Chain intact" not in text


@pytest.mark.django_db
def test_a_log_truncated_below_the_anchor_is_reported(client: Any, admin: Any, reader: Any) -> None:
    records = some_history(admin, reader)
    run("audit_anchor")
    tamper(f"DELETE FROM {TABLE} WHERE id >= %s", [records[-2].pk])
    status = audit.verify()
    assert status.chain_ok  # what is left links up: only the anchor sees the missing tail
    assert not status.ok
    expected = (
        f"Record {records[-1].pk}, anchored on .* UTC, is missing: the log was truncated or the "
        f"record deleted \\({len(records) - 2} of the {len(records)} anchored record\\(s\\)"
    )
    with pytest.raises(CommandError, match=expected):
        run("audit_verify")
    text = page(client, reader)
    assert "Chain broken" in text
    assert f"Record {records[-1].pk}, anchored on" in text


@pytest.mark.django_db
def test_a_full_rewrite_with_every_hash_recomputed_is_found_by_the_anchor(
    client: Any, admin: Any, reader: Any, audit_anchor_dir: Path
) -> None:
    records = some_history(admin, reader)
    run("audit_anchor")
    rewrite(records, 3)
    status = audit.verify()
    assert status.chain_ok  # the chain alone is fooled ...
    assert [check.ok for check in status.anchors] == [False]  # ... the anchor is not
    with pytest.raises(
        CommandError,
        match=f"Record {records[-1].pk}, anchored on .* no longer has the anchored hash",
    ):
        run("audit_verify")
    assert "no longer has the anchored hash" in page(client, reader)
    # The quick check (the page's default) reads the anchor too, beyond its window.
    assert not audit.verify(last=1, remote=False).ok

    # Anchoring again would bless the rewrite: refused, nothing written, a security alert.
    with pytest.raises(
        CommandError, match=r"The audit log does not verify: .* No anchor was written"
    ):
        run("audit_anchor")
    assert len(anchor_files(audit_anchor_dir)) == 1
    alert = Alert.objects.get(kind="audit_chain_broken")
    assert alert.category == Alert.Category.SECURITY
    assert "no longer has the anchored hash" in alert.message


@pytest.mark.django_db
def test_a_record_deleted_below_the_anchor_and_the_rest_rechained_is_found(
    admin: Any, reader: Any
) -> None:
    records = some_history(admin, reader)
    make_vault(admin, name="before-the-anchor")
    records = list(AuditRecord.objects.order_by("id"))
    run("audit_anchor")
    tamper(f"DELETE FROM {TABLE} WHERE id = %s", [records[2].pk])
    rechain(records[3:], records[1].hash)
    status = audit.verify()
    assert status.chain_ok
    assert not status.ok
    with pytest.raises(CommandError, match="no longer has the anchored hash"):
        run("audit_verify")


@pytest.mark.django_db
def test_a_record_deleted_below_the_anchor_without_rechaining_is_counted_by_the_quick_check(
    admin: Any, reader: Any
) -> None:
    """The page's quick check walks only the latest links; the anchor's count sees a record
    removed further back."""
    records = some_history(admin, reader)
    run("audit_anchor")
    tamper(f"DELETE FROM {TABLE} WHERE id = %s", [records[1].pk])
    status = audit.verify(last=2, remote=False)
    assert status.chain_ok
    [failure] = status.failures
    assert f"Up to record {records[-1].pk}, anchored on " in failure
    assert f"the log holds {len(records) - 1} record(s) instead of {len(records)}" in failure
    assert "records were removed" in failure


@pytest.mark.django_db
def test_an_insert_into_an_id_gap_below_the_anchor_is_reported(admin: Any, reader: Any) -> None:
    """What the application's role may do (INSERT only, no trigger to switch off): slip a
    well-formed record into an unused id below the anchor. It cannot hide anything, and it
    shows: the next link and the anchored count both break."""
    some_history(admin, reader)
    with transaction.atomic():
        make_vault(admin, name="gap-maker")
        transaction.set_rollback(True)  # burns ids, leaves a gap
    make_vault(admin, name="after-the-gap")
    records = list(AuditRecord.objects.order_by("id"))
    gap = next(r.pk + 1 for r, s in itertools.pairwise(records) if s.pk > r.pk + 1)
    run("audit_anchor")
    before = AuditRecord.objects.filter(pk__lt=gap).order_by("-id").first()
    assert before is not None
    forged = AuditRecord.objects.get(pk=before.pk)
    forged.pk, forged.actor_name = gap, "mallory"
    forged.prev_hash = before.hash
    forged.hash = audit.record_hash(forged)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (id, at, actor_id, actor_name, operation, outcome, code, reason, "
            "vault_name, target, source, before, after, details, prev_hash, hash) SELECT %s, "
            "at, actor_id, %s, operation, outcome, code, reason, vault_name, target, source, "
            "before, "
            "after, details, %s, %s FROM " + TABLE + " WHERE id = %s",
            [gap, "mallory", forged.prev_hash, forged.hash, before.pk],
        )
    status = audit.verify()
    assert status.broken_id == next(r.pk for r in records if r.pk > gap)
    assert any("records were inserted" in failure for failure in status.failures)


@pytest.mark.django_db
def test_deleted_local_anchors_are_reported_as_missing_not_as_a_break(
    admin: Any, reader: Any, audit_anchor_dir: Path
) -> None:
    some_history(admin, reader)
    run("audit_anchor")
    shutil.rmtree(audit_anchor_dir)
    out, err = run("audit_verify")
    assert "Audit chain intact" in out
    assert "Warning: No anchor in local disk" in err
    assert "or they were deleted" in err


@pytest.mark.django_db
def test_a_forged_anchor_file_is_a_failure_that_names_it(
    admin: Any, reader: Any, audit_anchor_dir: Path
) -> None:
    some_history(admin, reader)
    run("audit_anchor")
    forged = f"{10**12:020d}-{'a' * 64}.json"
    # Written in plaintext since the anchors were encrypted: not trusted, and said so.
    bogus = Anchor(record_id=10**12, hash="a" * 64, count=10**12, at=datetime.now(UTC))
    (audit_anchor_dir / forged).write_bytes(bogus.to_bytes())
    with pytest.raises(CommandError, match=f"anchor {forged} is in plaintext .*not trusted"):
        run("audit_verify")
    # Bytes that do not open with the anchors' key: named, not trusted.
    (audit_anchor_dir / forged).write_bytes(b"HFE\x01" + os.urandom(64))
    with pytest.raises(CommandError, match=f"{forged} cannot be trusted: it fails authentication"):
        run("audit_verify")
    # Sealed with the anchors' key (whoever holds the master key) but not JSON: malformed.
    local_store().backend.put(forged, b"{}")
    with pytest.raises(CommandError, match=f"the anchor {forged} is not a well-formed"):
        run("audit_verify")
    # A well-formed anchor of a record that never existed reads as a truncation.
    (audit_anchor_dir / forged).unlink()
    local_store().backend.put(forged, bogus.to_bytes())
    with pytest.raises(CommandError, match=f"Record {10**12}, anchored on .* is missing"):
        run("audit_verify")


def test_an_anchor_whose_contents_disagree_with_its_name_is_refused() -> None:
    anchor = Anchor(record_id=7, hash="b" * 64, count=7, at=datetime.now(UTC))
    assert Anchor.from_bytes(anchor.name, anchor.to_bytes()) == anchor
    other = f"{8:020d}-{'b' * 64}.json"
    with pytest.raises(ValueError, match="not a well-formed"):
        Anchor.from_bytes(other, anchor.to_bytes())


# --- S3 under Object Lock -----------------------------------------------------------------


def anchors_backend(s3: S3Server, location: str) -> S3Backend:  # noqa: F811
    return S3Backend(s3.client(), parse_location(location).child("audit-anchors"))


@pytest.mark.django_db
def test_an_s3_anchor_is_locked_in_compliance_mode_and_cannot_be_deleted(
    s3: S3Server,  # noqa: F811
    settings: Any,
    admin: Any,
    reader: Any,
    audit_anchor_dir: Path,
) -> None:
    bucket = s3.bucket()
    location = f"s3://{bucket}/holdfast"
    settings.HOLDFAST_AUDIT_ANCHOR_LOCATIONS = [location]
    records = some_history(admin, reader)
    out, _ = run("audit_anchor")
    assert f"in {location}/audit-anchors." in out
    backend = anchors_backend(s3, location)
    [name] = [key for key in backend.list("") if not key.startswith("keys/")]
    assert name == f"{records[-1].pk:020d}-{records[-1].hash}.json"
    lock = backend.lock_of(name)
    assert lock.mode == COMPLIANCE
    assert lock.until is not None and lock.until >= datetime.now(UTC) + timedelta(days=364)

    with pytest.raises(ObjectLocked):
        backend.delete(name)
    key = f"holdfast/audit-anchors/{name}"
    version = s3.client().head_object(Bucket=bucket, Key=key)["VersionId"]
    with pytest.raises(ClientError):
        s3.client().delete_object(
            Bucket=bucket, Key=key, VersionId=version, BypassGovernanceRetention=True
        )
    assert backend.exists(name)

    # The local anchors are gone and the log rewritten: the S3 anchor still tells.
    shutil.rmtree(audit_anchor_dir)
    rewrite(records, 2)
    with pytest.raises(
        CommandError, match=f"no longer has the anchored hash.*anchor in {location}/audit-anchors"
    ):
        run("audit_verify")
    # The page's quick check reads local anchors only, and says so; the full check reads S3.
    status = audit.verify(last=1000, remote=False)
    assert status.ok and any("No anchor in local disk" in w for w in status.warnings)
    assert not audit.verify(remote=True).ok


@pytest.mark.django_db
def test_an_unchanged_head_keeps_its_s3_anchor_locked_for_the_full_term(
    s3: S3Server,  # noqa: F811
    settings: Any,
    admin: Any,
    reader: Any,
) -> None:
    location = f"s3://{s3.bucket()}/holdfast"
    settings.HOLDFAST_AUDIT_ANCHOR_LOCATIONS = [location]
    settings.HOLDFAST_AUDIT_ANCHOR_LOCK_MODE = GOVERNANCE
    settings.HOLDFAST_AUDIT_ANCHOR_RETENTION_DAYS = 30
    some_history(admin, reader)
    run("audit_anchor")
    backend = anchors_backend(s3, location)
    [name] = [key for key in backend.list("") if not key.startswith("keys/")]
    first = backend.lock_of(name)
    assert first.mode == GOVERNANCE
    later = datetime.now(UTC) + timedelta(days=10)
    with clock.frozen(later):
        out, _ = run("audit_anchor")
    assert "Already anchored" in out
    assert [key for key in backend.list("") if not key.startswith("keys/")] == [name]
    extended = backend.lock_of(name)
    assert first.until is not None and extended.until is not None
    assert extended.until >= later + timedelta(days=30) - timedelta(seconds=1)
    assert extended.until > first.until


@pytest.mark.django_db
def test_every_s3_vault_location_gets_the_anchor_when_none_is_configured(
    s3: S3Server,  # noqa: F811
    admin: Any,
    reader: Any,
) -> None:
    bucket = s3.bucket()
    make_vault(admin, name="s3-one", storage_location=f"s3://{bucket}/one")
    make_vault(admin, name="s3-two", storage_location=f"s3://{bucket}/two")
    some_history(admin, reader)
    out, _ = run("audit_anchor")
    for prefix in ("one", "two"):
        location = f"s3://{bucket}/{prefix}"
        assert f"in {location}/audit-anchors." in out
        assert len(list(anchors_backend(s3, location).list("0"))) == 1
    out, _ = run("audit_verify")
    assert out.count("Matches the anchor in") == 3  # local disk and both vaults


@pytest.mark.django_db
def test_an_unreachable_s3_store_is_a_warning_when_verifying_and_a_failure_when_anchoring(
    admin: Any, reader: Any, settings: Any
) -> None:
    settings.HOLDFAST_AUDIT_ANCHOR_LOCATIONS = ["not-a-location"]
    some_history(admin, reader)
    with pytest.raises(
        CommandError, match="Could not write the anchor to not-a-location/audit-anchors"
    ):
        run("audit_anchor")
    out, err = run("audit_verify")
    assert "Audit chain intact" in out
    assert "Could not read the anchors in not-a-location/audit-anchors" in err


# --- the migration that chains records written before the chain ---------------------------


def chain_old_records_migration() -> Any:
    """The data migration's function and the models as it sees them, found by name so the
    test survives a renumbering."""
    loader = MigrationLoader(connection)
    [key] = [
        key
        for key in loader.disk_migrations
        if key[0] == "portal" and key[1].endswith("_chain_old_audit_records")
    ]
    operation = loader.disk_migrations[key].operations[0]
    apps = loader.project_state(key).apps
    editor = types.SimpleNamespace(connection=connection)
    return lambda: operation.code(apps, editor)


def upgraded_installation(records: list[AuditRecord], old: int) -> None:
    """What an installation upgraded from before the chain holds: ``old`` records without
    hashes, then a chain whose first link points at nothing."""
    tamper(f"UPDATE {TABLE} SET hash = '', prev_hash = '' WHERE id <= %s", [records[old - 1].pk])
    rechain(records[old:], audit.GENESIS)


@pytest.mark.django_db
def test_the_migration_chains_records_written_before_the_chain(admin: Any, reader: Any) -> None:
    records = some_history(admin, reader)
    upgraded_installation(records, 3)
    assert audit.verify().broken_id == records[0].pk  # no "predates the chain" escape
    chain_old_records_migration()()
    status = audit.verify()
    assert status.ok, status.failures
    assert status.checked == len(records)
    after = list(AuditRecord.objects.order_by("id"))
    assert [r.actor_name for r in after] == [r.actor_name for r in records]
    assert after[0].prev_hash == audit.GENESIS and all(r.hash for r in after)


@pytest.mark.django_db
def test_the_migration_leaves_a_chained_log_alone(admin: Any, reader: Any) -> None:
    records = some_history(admin, reader)
    chain_old_records_migration()()
    assert [r.hash for r in AuditRecord.objects.order_by("id")] == [r.hash for r in records]


@pytest.mark.django_db
def test_the_migration_refuses_to_rehash_a_tampered_log(admin: Any, reader: Any) -> None:
    """Re-hashing a chain that does not verify would launder the tampering."""
    records = some_history(admin, reader)
    upgraded_installation(records, 2)
    tamper(f"UPDATE {TABLE} SET reason = 'nothing to see' WHERE id = %s", [records[4].pk])
    before = list(AuditRecord.objects.order_by("id").values_list("hash", flat=True))
    with (
        pytest.raises(RuntimeError, match=f"broken at record {records[4].pk}"),
        transaction.atomic(),
    ):
        chain_old_records_migration()()
    assert list(AuditRecord.objects.order_by("id").values_list("hash", flat=True)) == before
