"""The audit chain under concurrent writers (issue 20, deliverable 4): gate decisions are
linked right after their commit (portal/audit_link.py), so writers do not hold the chain's
lock for their whole transaction; the chain stays linear, gap-free and as tamper-evident.

Transactional tests: real commits, real threads with connections of their own, on PostgreSQL.
"""

from __future__ import annotations

import itertools
import threading
from io import StringIO
from typing import Any

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from portal import audit, audit_link, clock
from portal.gate import DomainError
from portal.models import AuditPending, AuditRecord
from tests.conftest import make_user
from tests.dbroles import postgres_only
from tests.factories import make_vault
from tests.test_audit_chain import TABLE, tamper
from vaults import services

pytestmark = postgres_only


def _chain() -> list[AuditRecord]:
    return list(AuditRecord.objects.order_by("id"))


def _assert_linear(records: list[AuditRecord]) -> None:
    assert records[0].prev_hash == audit.GENESIS
    for previous, record in itertools.pairwise(records):
        assert record.prev_hash == previous.hash, record.pk
    status = audit.verify()
    assert status.ok, status.failures
    assert status.checked == len(records)
    assert not AuditPending.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_writers_in_threads_with_multi_decision_transactions_keep_the_chain_linear() -> None:
    admin = make_user("alice", "backup_admin")
    reader = make_user("rita", "reader")
    vaults = [make_vault(admin, name=f"w-{index}") for index in range(6)]
    before = AuditRecord.objects.count()
    start = threading.Barrier(len(vaults))
    errors: list[BaseException] = []
    rounds = 5

    def work(index: int) -> None:
        try:
            start.wait()
            for _ in range(rounds):
                with transaction.atomic():  # two decisions in one transaction
                    services.job_alerts_mute(actor=admin, vault=vaults[index], muted=True)
                    services.job_alerts_mute(actor=admin, vault=vaults[index], muted=False)
                with pytest.raises(DomainError):  # a refusal commits its record alone
                    services.job_alerts_mute(actor=reader, vault=vaults[index], muted=True)
                with transaction.atomic():  # rolled back: leaves no record and no hole
                    services.job_alerts_mute(actor=admin, vault=vaults[index], muted=True)
                    transaction.set_rollback(True)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(vaults))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    records = _chain()
    assert len(records) == before + len(vaults) * rounds * 3
    _assert_linear(records)
    mutes = [r for r in records if r.operation == "job_alerts_mute"]
    assert {r.version for r in mutes} == {2}
    assert sum(r.outcome == "refused" for r in mutes) == len(vaults) * rounds


@pytest.mark.django_db(transaction=True)
def test_an_open_transaction_does_not_hold_up_other_writers() -> None:
    """The old chain held its lock from a decision's audit insert to its commit: a writer
    with an open transaction stopped every other. Now the other commits and is linked, and
    the open one is linked after it, in commit order."""
    admin = make_user("alice", "backup_admin")
    slow, fast = make_vault(admin, name="slow"), make_vault(admin, name="fast")
    decided, other_done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def open_transaction() -> None:
        try:
            with transaction.atomic():
                services.job_alerts_mute(actor=admin, vault=slow, muted=True)
                decided.set()
                # Liveness, not timing: the other writer finishes while this is open.
                assert other_done.wait(timeout=120), "the other writer was held up"
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    def other_writer() -> None:
        try:
            assert decided.wait(timeout=120)
            services.job_alerts_mute(actor=admin, vault=fast, muted=True)
            other_done.set()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=open_transaction), threading.Thread(target=other_writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    records = _chain()
    assert [r.vault_name for r in records[-2:]] == ["fast", "slow"]
    _assert_linear(records)


@pytest.mark.django_db(transaction=True)
def test_a_record_left_pending_by_a_crash_is_linked_and_verified() -> None:
    """A process that dies between its commit and the linker leaves a pending row: verify
    says so, and the next decision (or audit_verify, or anchoring) links it, in order."""
    admin = make_user("alice", "backup_admin")
    vault = make_vault(admin, name="crash")
    crashed = AuditPending.objects.create(
        at=clock.now(), actor=admin, actor_name="alice", operation="job_alerts_mute",
        outcome="allowed", vault_name="crash", target="vault:crash", source="api",
        before={"mute_job_alerts": False}, after={"mute_job_alerts": True},
    )  # fmt: skip
    status = audit.verify()
    assert status.ok
    assert any("1 audit record(s) are committed but not linked" in w for w in status.warnings)
    err = StringIO()
    call_command("audit_verify", stdout=StringIO(), stderr=err)
    assert "Linked 1 committed record(s)" in err.getvalue()
    services.job_alerts_mute(actor=admin, vault=vault, muted=False)
    records = _chain()
    assert (records[-2].actor_name, records[-2].after) == ("alice", crashed.after)
    assert (records[-1].operation, records[-1].after["mute_job_alerts"]) == (
        "job_alerts_mute",
        False,
    )
    _assert_linear(records)


@pytest.mark.django_db(transaction=True)
def test_the_linker_links_each_pending_row_once_when_run_concurrently() -> None:
    admin = make_user("alice", "backup_admin")
    for index in range(40):
        AuditPending.objects.create(
            at=clock.now(), actor=admin, actor_name="alice", operation="vault_update",
            outcome="allowed", target=f"vault:x{index}", source="api",
        )  # fmt: skip
    before = AuditRecord.objects.count()
    linked: list[int] = []

    def link() -> None:
        try:
            linked.append(audit_link.link_pending())
        finally:
            connection.close()

    threads = [threading.Thread(target=link) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(linked) == 40
    records = _chain()
    assert len(records) == before + 40
    assert [r.target for r in records[-40:]] == [f"vault:x{i}" for i in range(40)]
    _assert_linear(records)


# --- tampering with version 2 records --------------------------------------------------------


def _history() -> list[AuditRecord]:
    admin = make_user("alice", "backup_admin")
    vault = make_vault(admin, name="tamper", tags={"b": "2", "a": "ünï €"})
    for muted in (True, False, True):
        services.job_alerts_mute(actor=admin, vault=vault, muted=muted)
    records = _chain()
    assert {r.version for r in records} == {2}
    return records


def _swap(records: list[AuditRecord]) -> int:
    """Reorder: two records trade places (contents and hashes), ids stay."""
    a, b = records[2], records[3]
    columns = [*audit_link.CONTENT_COLUMNS, "prev_hash", "hash"]
    assignments = ", ".join(f'"{c}" = o."{c}"' for c in columns)
    tamper(
        f"UPDATE {TABLE} t SET {assignments} FROM {TABLE} o "
        "WHERE (t.id, o.id) IN ((%s, %s), (%s, %s))",
        [a.pk, b.pk, b.pk, a.pk],
    )
    return a.pk


def _version_flip(records: list[AuditRecord]) -> int:
    tamper(f"UPDATE {TABLE} SET version = 1 WHERE id = %s", [records[2].pk])
    return records[2].pk


def _edit_json(records: list[AuditRecord]) -> int:
    tamper(f"""UPDATE {TABLE} SET "after" = '{{"mute_job_alerts": false}}' WHERE id = %s""",
           [records[3].pk])  # fmt: skip
    return records[3].pk


def _edit_time(records: list[AuditRecord]) -> int:
    tamper(f"UPDATE {TABLE} SET at = at - interval '1 microsecond' WHERE id = %s", [records[1].pk])
    return records[1].pk


def _delete(records: list[AuditRecord]) -> int:
    tamper(f"DELETE FROM {TABLE} WHERE id = %s", [records[2].pk])
    return records[3].pk


def _forge_pending_style(records: list[AuditRecord]) -> int:
    """A record inserted around the linker, hashed as version 2 on the wrong predecessor."""
    forged = AuditRecord.objects.get(pk=records[1].pk)
    forged.prev_hash, forged.actor_name = records[0].hash, "mallory"
    digest = audit.record_hash(forged)
    tamper(
        f"INSERT INTO {TABLE} (at, actor_name, operation, outcome, code, reason, vault_name, "
        "target, source, before, after, details, prev_hash, hash) SELECT at, 'mallory', "
        "operation, outcome, code, reason, vault_name, target, source, before, after, "
        f"details, %s, %s FROM {TABLE} WHERE id = %s",
        [forged.prev_hash, digest, records[1].pk],
    )
    return AuditRecord.objects.order_by("-id").values_list("id", flat=True)[0]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("attack", "reason"),
    [
        (_swap, "prev_hash does not match"),
        (_version_flip, "contents do not match"),
        (_edit_json, "contents do not match"),
        (_edit_time, "contents do not match"),
        (_delete, "prev_hash does not match"),
        (_forge_pending_style, "prev_hash does not match"),
    ],
    ids=["reorder", "version-flip", "edit-json", "edit-time", "delete", "forge"],
)
def test_tampering_with_linked_records_is_found_by_audit_verify(attack: Any, reason: str) -> None:
    records = _history()
    with transaction.atomic():
        broken = attack(records)
    status = audit.verify()
    assert (status.ok, status.broken_id) == (False, broken)
    assert reason in status.reason
    with pytest.raises(CommandError, match=rf"Audit chain broken at record {broken}: "):
        call_command("audit_verify", stdout=StringIO(), stderr=StringIO())


PENDING_ATTACKS = {
    "delete a pending decision": "DELETE FROM portal_auditpending",
    "rewrite a pending decision": "UPDATE portal_auditpending SET reason = 'forged'",
    "truncate the pending decisions": "TRUNCATE portal_auditpending",
    "replace the linker": "CREATE OR REPLACE FUNCTION holdfast_audit_link() RETURNS integer "
    "LANGUAGE sql AS 'SELECT 0'",
}


@pytest.mark.parametrize("attack", list(PENDING_ATTACKS))
def test_the_app_role_cannot_remove_or_rewrite_pending_decisions(
    as_app: psycopg.Connection, attack: str
) -> None:
    AuditPending.objects.create(
        at=clock.now(), actor_name="holdfast", operation="vault_update", outcome="allowed"
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_app.execute(PENDING_ATTACKS[attack])
    assert AuditPending.objects.count() == 1


def test_what_the_app_role_can_do_to_the_chain_shows(as_app: psycopg.Connection) -> None:
    """INSERT and the linker are all it has. A pending row it forges is linked at the end of
    the chain, like any appended record (the unanchored tail, docs/security.md); a record it
    writes around the linker breaks the chain; it cannot reach a linked record."""
    records = _history()
    as_app.execute(
        "INSERT INTO portal_auditpending (at, actor_name, operation, outcome, code, reason, "
        "vault_name, target, source, before, after, details) VALUES (now(), 'mallory', "
        "'vault_update', 'allowed', '', '', '', '', 'api', '{}', '{}', '{}')"
    )
    assert as_app.execute("SELECT holdfast_audit_link()").fetchone() == (1,)
    forged = AuditRecord.objects.order_by("-id").first()
    assert forged is not None and forged.pk > records[-1].pk and forged.actor_name == "mallory"
    assert audit.verify().ok
    as_app.execute(
        f"INSERT INTO {TABLE} (at, actor_name, operation, outcome, code, reason, vault_name, "
        "target, source, before, after, details, prev_hash, hash) VALUES (now(), 'mallory', "
        "'vault_update', 'allowed', '', '', '', '', 'api', '{}', '{}', '{}', %s, %s)",
        [records[0].hash, "f" * 64],
    )
    status = audit.verify()
    assert status.broken_id == AuditRecord.objects.order_by("-id").values_list("id", flat=True)[0]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_app.execute(f"UPDATE {TABLE} SET version = 1 WHERE id = %s", [records[0].pk])


@pytest.mark.django_db(transaction=True)
def test_audit_verify_reports_progress_on_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    records = _history()
    monkeypatch.setattr(audit, "PROGRESS_EVERY", 2)
    out, err = StringIO(), StringIO()
    call_command("audit_verify", stdout=out, stderr=err)
    assert f"Audit chain intact: {len(records)} record(s) verified." in out.getvalue()
    lines = [line for line in err.getvalue().splitlines() if line.startswith("Verified")]
    assert lines[0].startswith(f"Verified 2 of {len(records)} (")
    assert lines[-1].startswith(f"Verified {len(records)} of {len(records)} (100%)")
    quiet = StringIO()
    call_command("audit_verify", "--quiet", stdout=StringIO(), stderr=quiet)
    assert "Verified" not in quiet.getvalue()
