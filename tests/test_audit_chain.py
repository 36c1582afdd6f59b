"""The audit log is a hash chain: tampering by someone who bypasses the append-only trigger
(a database superuser) is found, at the record where it happened."""

from __future__ import annotations

import itertools
import threading
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from portal import audit
from portal.gate import DomainError
from portal.models import AuditRecord
from tests.conftest import PASSWORD, make_user
from tests.factories import make_vault
from vaults import services

TABLE = AuditRecord._meta.db_table


def some_history(admin: Any, reader: Any) -> list[AuditRecord]:
    """A few allowed and refused operations, so the log has records of every kind."""
    vault = make_vault(admin, name="chain-vault")
    services.immutability_set(actor=admin, vault=vault, state="enabled")
    with pytest.raises(DomainError):
        services.immutability_set(actor=reader, vault=vault, state="disabled")
    services.soft_delete_set(actor=admin, vault=vault, retention_days=30)
    make_vault(admin, name="other-vault", tags={"team": "ops", "cost": "ünïcode €"})
    return list(AuditRecord.objects.order_by("id"))


def tamper(sql: str, params: list[Any] | None = None) -> None:
    """What a database superuser can do: switch the append-only trigger off and write.

    Runs in the test's transaction, so it is rolled back with it."""
    with connection.cursor() as cursor:
        # Django's foreign keys are deferred: fire their checks now, or ALTER TABLE refuses.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER ALL")
        cursor.execute(sql, params or [])
        cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER ALL")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


@pytest.mark.django_db
def test_every_record_seals_its_predecessor_and_the_chain_verifies(admin: Any, reader: Any) -> None:
    records = some_history(admin, reader)
    assert len(records) == 7
    assert records[0].prev_hash == ""
    for previous, record in itertools.pairwise(records):
        assert record.prev_hash == previous.hash
        assert record.hash == audit.record_hash(record)
    status = audit.verify()
    assert status.ok, status.reason
    assert (status.checked, status.head) == (len(records), records[-1].hash)


@pytest.mark.django_db
def test_the_hash_covers_what_was_written_not_what_python_held(admin: Any) -> None:
    make_vault(admin, name="tagged", tags={"b": "2", "a": "1"})
    record = AuditRecord.objects.order_by("-id").first()
    assert record is not None
    assert audit.record_hash(record) == record.hash


@pytest.mark.django_db
def test_audit_verify_command_reports_an_intact_chain(admin: Any, reader: Any) -> None:
    records = some_history(admin, reader)
    out = StringIO()
    call_command("audit_verify", stdout=out)
    assert f"Audit chain intact: {len(records)} record(s) verified." in out.getvalue()
    assert records[-1].hash in out.getvalue()
    out = StringIO()
    call_command("audit_verify", "--last", "3", "--expect-head", records[-2].hash, stdout=out)
    assert "the last 3 record(s) verified" in out.getvalue()


def _alter(records: list[AuditRecord]) -> int:
    victim = records[3]
    tamper(f"UPDATE {TABLE} SET reason = 'nothing to see' WHERE id = %s", [victim.pk])
    return victim.pk


def _alter_json(records: list[AuditRecord]) -> int:
    victim = records[4]
    tamper(
        f"""UPDATE {TABLE} SET "after" = '{{"immutability": "disabled"}}' WHERE id = %s""",
        [victim.pk],
    )
    return victim.pk


def _delete(records: list[AuditRecord]) -> int:
    tamper(f"DELETE FROM {TABLE} WHERE id = %s", [records[2].pk])
    return records[3].pk


def _alter_and_rehash(records: list[AuditRecord]) -> int:
    """An attacker who knows the algorithm recomputes the altered record's own hash: the
    next record's link still gives it away."""
    victim = records[3]
    tamper(f"UPDATE {TABLE} SET actor_name = 'mallory' WHERE id = %s", [victim.pk])
    victim = AuditRecord.objects.get(pk=victim.pk)
    tamper(f"UPDATE {TABLE} SET hash = %s WHERE id = %s", [audit.record_hash(victim), victim.pk])
    return records[4].pk


def _delete_first(records: list[AuditRecord]) -> int:
    tamper(f"DELETE FROM {TABLE} WHERE id = %s", [records[0].pk])
    return records[1].pk


def _forge_at_end(records: list[AuditRecord]) -> int:
    tamper(
        f"INSERT INTO {TABLE} (at, actor_name, operation, outcome, code, reason, vault_name, "
        "target, source, before, after, details, prev_hash, hash) VALUES (now(), 'alice', "
        "'vault_create', 'allowed', '', '', 'x', '', 'shell', '{}', '{}', '{}', %s, %s)",
        ["0" * 64, "f" * 64],
    )
    return AuditRecord.objects.order_by("-id").values_list("id", flat=True)[0]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("attack", "reason"),
    [
        (_alter, "contents do not match"),
        (_alter_json, "contents do not match"),
        (_delete, "prev_hash does not match"),
        (_alter_and_rehash, "prev_hash does not match"),
        (_delete_first, "prev_hash does not match"),
        (_forge_at_end, "prev_hash does not match"),
    ],
    ids=["alter", "alter-json", "delete", "alter-and-rehash", "delete-first", "forge-at-end"],
)
def test_tampering_is_detected_at_the_first_broken_link(
    admin: Any, reader: Any, attack: Any, reason: str
) -> None:
    records = some_history(admin, reader)
    broken_id = attack(records)
    status = audit.verify()
    assert (status.ok, status.broken_id) == (False, broken_id)
    assert reason in status.reason
    with pytest.raises(CommandError, match=rf"Audit chain broken at record {broken_id}: "):
        call_command("audit_verify")


@pytest.mark.django_db
def test_a_truncated_tail_is_found_against_an_anchor_kept_elsewhere(
    admin: Any, reader: Any
) -> None:
    records = some_history(admin, reader)
    anchor = records[-1].hash
    tamper(f"DELETE FROM {TABLE} WHERE id >= %s", [records[-2].pk])
    assert audit.verify().ok  # the chain alone cannot see a missing tail
    with pytest.raises(CommandError, match="does not contain the expected head"):
        call_command("audit_verify", "--expect-head", anchor)


@pytest.mark.django_db
def test_the_quick_check_starts_from_the_record_before_its_window(admin: Any, reader: Any) -> None:
    records = some_history(admin, reader)
    assert audit.verify(last=2).checked == 2
    tamper(f"DELETE FROM {TABLE} WHERE id = %s", [records[-3].pk])
    status = audit.verify(last=2)
    assert (status.ok, status.broken_id) == (False, records[-2].pk)


@pytest.mark.django_db
def test_a_record_without_a_hash_is_a_break_not_an_older_record(db: None) -> None:
    """There is no "written before the chain" escape any more: the migration chained those
    records, and a blank hash anywhere (even on the very first record) is a break."""
    tamper(
        f"INSERT INTO {TABLE} (at, actor_name, operation, outcome, code, reason, vault_name, "
        "target, source, before, after, details, prev_hash, hash) VALUES (now(), 'old', "
        "'vault_create', 'allowed', '', '', '', '', 'shell', '{}', '{}', '{}', '', '')"
    )
    first = AuditRecord.objects.order_by("id").first()
    assert first is not None
    make_vault(make_user("alice", "backup_admin"), name="after-upgrade")
    status = audit.verify()
    assert (status.ok, status.broken_id) == (False, first.pk)
    assert "hash is blank" in status.reason


@pytest.mark.django_db
@pytest.mark.parametrize("last", [None, 3], ids=["full", "quick"])
def test_blanking_every_hash_is_found(admin: Any, reader: Any, last: int | None) -> None:
    """The finding of issue 12: a superuser blanks hash and prev_hash on every record."""
    records = some_history(admin, reader)
    tamper(f"UPDATE {TABLE} SET hash = '', prev_hash = ''")
    status = audit.verify(last=last)
    expected = records[0].pk if last is None else records[-last].pk
    assert (status.ok, status.broken_id) == (False, expected)
    with pytest.raises(CommandError, match=rf"Audit chain broken at record {records[0].pk}: "):
        call_command("audit_verify", stdout=StringIO(), stderr=StringIO())


@pytest.mark.django_db
def test_audit_page_shows_the_chain_status(client: Any, admin: Any, reader: Any) -> None:
    records = some_history(admin, reader)
    client.login(username=reader.username, password=PASSWORD)
    page = client.get(reverse("audit")).content.decode()
    assert "Chain intact" in page
    assert f"The latest {len(records)} records link to each other" in page
    full = client.get(reverse("audit"), {"chain": "full"}).content.decode()
    assert f"All {len(records)} records verified" in full
    _alter(records)
    page = client.get(reverse("audit")).content.decode()
    assert "Chain broken" in page
    assert f"Record {records[3].pk} fails verification" in page


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_keep_the_chain_linear(db: None) -> None:
    admin = make_user("alice", "backup_admin")
    reader = make_user("rita", "reader")
    threads_count, per_thread = 6, 8
    errors: list[BaseException] = []
    start = threading.Barrier(threads_count)

    def work(index: int) -> None:
        try:
            start.wait()
            for step in range(per_thread):
                if step % 2:
                    make_vault(admin, name=f"v-{index}-{step}")
                else:
                    with pytest.raises(DomainError):
                        make_vault(reader, name=f"r-{index}-{step}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    before = AuditRecord.objects.count()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    records = list(AuditRecord.objects.order_by("id"))
    assert len(records) == before + threads_count * per_thread
    # Linear: no two records claim the same predecessor, and every link holds in id order.
    assert len({record.prev_hash for record in records}) == len(records)
    status = audit.verify()
    assert status.ok, status.reason
    assert status.checked == len(records)
