"""audit_verify's fast walk (portal/audit_scan.py): COPY text, id ranges in worker processes.

Whatever the walk, the verdict is the one-process walk's: the same first broken record, the
same reason, the same count and head, for records tampered with in the middle of a range and
at the boundary between two, and for fields COPY escapes (tabs, newlines, backslashes) or
that are not ASCII. Transactional tests: the workers have connections of their own.
"""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.urls import reverse

from portal import audit, audit_scan
from portal.models import Alert, AuditRecord
from tests.conftest import PASSWORD
from tests.dbroles import postgres_only
from tests.test_audit_chain import TABLE, tamper

pytestmark = [postgres_only, pytest.mark.django_db(transaction=True)]

RANGE = 4  # ids a range spans: records 0-3, 4-7, 8-11... of the log are checked apart
AWKWARD = "tab\there, new\nline, cr\r, back\\slash \\N \\t, ünïcode € \u2603, \b\f\v"

SEED = """
INSERT INTO portal_auditpending (at, actor_id, actor_name, operation, outcome, code, reason,
    vault_name, target, source, before, after, details)
SELECT timestamptz '2026-01-01 00:00:00+00' + n * interval '31.5 seconds', NULL, 'scan',
    'job_alerts_mute', 'allowed', '', CASE WHEN n %% 3 = 0 THEN %s ELSE '' END,
    'vault-' || n, 'vault:vault-' || n, 'api',
    jsonb_build_object('mute_job_alerts', n %% 2 = 0),
    jsonb_build_object('mute_job_alerts', n %% 2 = 1, 'note', CASE WHEN n %% 4 = 0 THEN %s END),
    CASE WHEN n %% 5 = 0 THEN jsonb_build_object('why', %s) ELSE '{}'::jsonb END
FROM generate_series(1, %s) AS n
"""


def _seed(count: int) -> list[AuditRecord]:
    with connection.cursor() as cursor:
        cursor.execute(SEED, [AWKWARD, AWKWARD, AWKWARD, count])
        cursor.execute("SELECT holdfast_audit_link()")
    return list(AuditRecord.objects.order_by("id"))


def _walks(settings: Any) -> tuple[audit.ChainStatus, audit.ChainStatus]:
    """The log verified by worker processes over ranges of RANGE ids, and in one process."""
    settings.HOLDFAST_AUDIT_VERIFY_RANGE = RANGE
    settings.HOLDFAST_AUDIT_VERIFY_WORKERS = 2
    with transaction.atomic():
        assert audit_scan.plan(0) is not None  # the parallel walk runs
    parallel = audit.verify(readings=[])
    settings.HOLDFAST_AUDIT_VERIFY_WORKERS = 1
    alone = audit.verify(readings=[])
    return parallel, alone


def _same(parallel: audit.ChainStatus, alone: audit.ChainStatus) -> None:
    assert (parallel.broken_id, parallel.reason, parallel.checked, parallel.head) == (
        alone.broken_id,
        alone.reason,
        alone.checked,
        alone.head,
    )


def test_an_intact_log_with_escaped_and_non_ascii_fields_verifies_in_ranges(settings: Any) -> None:
    records = _seed(22)
    assert any("\t" in r.reason and "\\" in r.reason for r in records)
    assert any("€" in str(r.after.get("note")) for r in records)
    for record in records:  # the rebuilt body is the linker's, byte for byte
        assert audit.record_hash(record) == record.hash
    parallel, alone = _walks(settings)
    _same(parallel, alone)
    assert parallel.ok and parallel.checked == len(records)
    assert parallel.head == records[-1].hash


def _edit(records: list[AuditRecord], at: int) -> tuple[int, str]:
    victim = records[at]
    tamper(f"UPDATE {TABLE} SET reason = %s WHERE id = %s", [AWKWARD + "!", victim.pk])
    return victim.pk, audit.ALTERED


def _edit_escaped(records: list[AuditRecord], at: int) -> tuple[int, str]:
    """A tab becomes a space: the same text but for one escaped character."""
    victim = records[at]
    tamper(
        f"UPDATE {TABLE} SET reason = %s, details = %s::jsonb WHERE id = %s",
        [AWKWARD, '{"why": "tab here"}', victim.pk],
    )
    tamper(f"UPDATE {TABLE} SET reason = replace(reason, E'\\t', ' ') WHERE id = %s", [victim.pk])
    return victim.pk, audit.ALTERED


def _delete(records: list[AuditRecord], at: int) -> tuple[int, str]:
    tamper(f"DELETE FROM {TABLE} WHERE id = %s", [records[at].pk])
    return records[at + 1].pk, audit.UNLINKED


def _insert(records: list[AuditRecord], at: int) -> tuple[int, str]:
    """A forged record, correctly hashed on its predecessor, slid in before ``at``: the ids
    from ``at`` on move up by one."""
    victim = records[at]
    forged = AuditRecord.objects.get(pk=victim.pk)
    forged.actor_name = "mallory"
    forged.hash = audit.record_hash(forged)
    tamper(f"UPDATE {TABLE} SET id = -id WHERE id >= %s", [victim.pk])
    tamper(f"UPDATE {TABLE} SET id = 1 - id WHERE id < 0")
    tamper(
        f"INSERT INTO {TABLE} (id, version, at, actor_name, operation, outcome, code, reason, "
        "vault_name, target, source, before, after, details, prev_hash, hash) SELECT %s, "
        "version, at, 'mallory', operation, outcome, code, reason, vault_name, target, source, "
        f"before, after, details, prev_hash, %s FROM {TABLE} WHERE id = %s",
        [victim.pk, forged.hash, victim.pk + 1],
    )
    return victim.pk + 1, audit.UNLINKED


def _forge_match(records: list[AuditRecord], at: int) -> tuple[int, str]:
    """An edit whose hash ends in a tab and "t", as if the line's next field said "matches":
    COPY escapes the tab, so the line still splits where the server put its fields."""
    victim = records[at]
    tamper(
        f"UPDATE {TABLE} SET reason = 'forged', hash = left(hash, 60) || E'\\tt\\tt' WHERE id = %s",
        [victim.pk],
    )
    return victim.pk, audit.ALTERED


def _blank(records: list[AuditRecord], at: int) -> tuple[int, str]:
    tamper(f"UPDATE {TABLE} SET hash = '', prev_hash = '' WHERE id = %s", [records[at].pk])
    return records[at].pk, audit.BLANK


def _blank_from(records: list[AuditRecord], at: int) -> tuple[int, str]:
    tamper(f"UPDATE {TABLE} SET hash = '', prev_hash = '' WHERE id >= %s", [records[at].pk])
    return records[at].pk, audit.BLANK


@pytest.mark.parametrize(
    "attack",
    [_edit, _edit_escaped, _forge_match, _delete, _insert, _blank, _blank_from],
    ids=lambda f: f.__name__[1:],
)
@pytest.mark.parametrize(
    "at", [5, RANGE * 2 - 1, RANGE * 2], ids=["mid-range", "range-end", "range-start"]
)
def test_tampering_is_found_at_the_same_record_in_ranges_as_in_one_walk(
    settings: Any, attack: Any, at: int
) -> None:
    records = _seed(15)
    with transaction.atomic():
        broken, reason = attack(records, at)
    parallel, alone = _walks(settings)
    _same(parallel, alone)
    assert (parallel.broken_id, parallel.reason) == (broken, reason)


def test_two_breaks_report_the_first_in_id_order(settings: Any) -> None:
    records = _seed(15)
    with transaction.atomic():
        _edit(records, 10)  # in the third range: checked first by the other worker, maybe
        _delete(records, 2)
    parallel, alone = _walks(settings)
    _same(parallel, alone)
    assert parallel.broken_id == records[3].pk


def test_version_1_records_and_gaps_in_the_ids_verify_in_ranges(settings: Any) -> None:
    """Records sealed the version 1 way (Python's canonical JSON: bulk seeding) and ids the
    sequence skipped (rolled-back inserts) between ranges."""
    _seed(5)
    with transaction.atomic():
        old = AuditRecord(
            at=audit.clock.now(), actor_name="seed", operation="vault_create",
            outcome="allowed", reason=AWKWARD, details={"why": AWKWARD},
        )  # fmt: skip
        audit.seal(old)
        old.save()
    assert old.version == 1
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT setval(pg_get_serial_sequence('{TABLE}', 'id'), %s)", [old.pk + 9])
    records = _seed(6)
    parallel, alone = _walks(settings)
    _same(parallel, alone)
    assert parallel.ok and parallel.checked == len(records)
    with transaction.atomic():
        tamper(f"UPDATE {TABLE} SET reason = 'x' WHERE id = %s", [old.pk])
    parallel, alone = _walks(settings)
    _same(parallel, alone)
    assert (parallel.broken_id, parallel.reason) == (old.pk, audit.ALTERED)


SHADOW = """
CREATE FUNCTION public.holdfast_always_true(text, text) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS 'SELECT true';
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text,
    FUNCTION = public.holdfast_always_true);
CREATE FUNCTION public.sha256(text) RETURNS bytea LANGUAGE sql IMMUTABLE AS 'SELECT ''''::bytea';
"""
UNSHADOW = """
DROP OPERATOR IF EXISTS public.= (text, text);
DROP FUNCTION IF EXISTS public.holdfast_always_true(text, text);
DROP FUNCTION IF EXISTS public.sha256(text);
"""


def test_an_operator_or_function_shadowing_the_servers_check_does_not_pass_an_edit(
    settings: Any,
) -> None:
    """The server recomputes version 2 hashes in the COPY's query: whoever can create objects
    in the schema and set the database's search path (public first) makes ``=`` always true
    and ``sha256(text)`` a constant. The verifying transactions pin ``pg_catalog``: the edit
    is still found, in ranges and in one walk."""
    records = _seed(15)
    with transaction.atomic():
        broken, reason = _edit(records, 6)
    name = connection.settings_dict["NAME"]
    with connection.cursor() as cursor:
        cursor.execute(SHADOW)
        cursor.execute(f'ALTER DATABASE "{name}" SET search_path = public, pg_catalog')
    try:
        connection.close()  # the next connection starts with the shadowing search path
        with connection.cursor() as cursor:
            cursor.execute("SELECT 'a'::text = 'b'::text")
            assert cursor.fetchone()[0] is True  # the shadow works where it is not pinned
        parallel, alone = _walks(settings)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER DATABASE "{name}" RESET search_path')
            cursor.execute(UNSHADOW)
        connection.close()
    _same(parallel, alone)
    assert (parallel.broken_id, parallel.reason) == (broken, reason)


def _dies(job: Any) -> None:
    """A worker killed mid-range (the OOM killer, say): gone without an answer."""
    os._exit(9)


def test_a_worker_that_dies_makes_the_check_fail_saying_so_not_hang(
    settings: Any, monkeypatch: Any
) -> None:
    """A range's worker that dies is an error with a sentence (the command: a non-zero exit),
    never a verdict and never a wait for an answer that cannot come. SIGALRM fails the test
    instead of hanging the suite if it ever waits again."""
    _seed(15)
    settings.HOLDFAST_AUDIT_VERIFY_RANGE = RANGE
    settings.HOLDFAST_AUDIT_VERIFY_WORKERS = 2
    monkeypatch.setattr(audit_scan, "_check_range", _dies)

    def hung(*_: Any) -> None:
        raise AssertionError("audit_verify waited for a dead worker")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        with pytest.raises(audit_scan.RangeLost):
            audit.verify(readings=[])
        with pytest.raises(CommandError, match=r"died .* proves nothing either way"):
            call_command("audit_verify", "--local-only", "--quiet", stdout=io.StringIO())
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_worker_that_dies_leaves_the_page_saying_not_verified_and_no_anchor_written(
    settings: Any, monkeypatch: Any, client: Any, reader: Any, audit_anchor_dir: Path
) -> None:
    """The Audit page's "Verify the whole log" and the anchoring run walk the same ranges: a
    dead worker there is "not verified" on the page (not an error page, not "Chain broken"),
    and anchoring refuses without writing an anchor or raising the broken-chain alert, but
    opens the anchor-failed alert: killing the workers cannot keep the log unanchored unseen."""
    _seed(15)
    settings.HOLDFAST_AUDIT_VERIFY_RANGE = RANGE
    settings.HOLDFAST_AUDIT_VERIFY_WORKERS = 2
    monkeypatch.setattr(audit_scan, "_check_range", _dies)
    client.login(username=reader.username, password=PASSWORD)
    response = client.get(reverse("audit"), {"chain": "full"})
    page = response.content.decode()
    assert response.status_code == 200
    assert "Not verified" in page and "proves nothing either way" in page
    assert "Chain broken" not in page and "Chain intact" not in page
    assert "Verify the whole log again" in page
    result = audit.anchor()
    assert not result.ok and result.anchor is None
    assert "was not verified" in result.refused and "No anchor was written" in result.refused
    assert [p.name for p in audit_anchor_dir.iterdir() if p.name != "keys"] == []
    assert not Alert.objects.filter(kind="audit_chain_broken").exists()
    alert = Alert.objects.get(kind="audit_anchor_failed", target="audit log")
    assert "was not verified" in alert.message and alert.count == 1
    with pytest.raises(CommandError, match="No anchor was written"):
        call_command("audit_anchor", stdout=io.StringIO())
    # Killing the workers run after run leaves one open alert that counts every refusal.
    assert Alert.objects.get(kind="audit_anchor_failed", target="audit log").count == 2
    monkeypatch.undo()  # the workers answer again: the same log verifies and is anchored
    assert "Chain intact" in client.get(reverse("audit"), {"chain": "full"}).content.decode()
    assert audit.anchor().anchor is not None
