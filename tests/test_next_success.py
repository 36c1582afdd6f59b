"""Each successful backup's next success, kept on the job by triggers (vaults/report_sql.py,
``job_next_success_*``) so the compliance report sums RPO coverage without a window over a
million jobs. The column must equal what the window computes after any write, from any
writer: the services, bulk loads, deletes, two workers at once, and the app role by hand."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from tests.factories import make_vault
from tests.test_reports import _item
from vaults.models import Job, ProtectedItem

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, tzinfo=UTC)

# What the report's window used to compute: the next completed backup in (ended_at, id) order.
EXPECTED = """
SELECT id, LEAD(ended_at) OVER (PARTITION BY item_id ORDER BY ended_at, id)
FROM vaults_job WHERE kind = 'backup' AND status = 'completed' AND item_id IS NOT NULL
  AND ended_at IS NOT NULL
"""


def _kept() -> dict[int, Any]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, next_success_at FROM vaults_job WHERE kind = 'backup' "
            "AND status = 'completed' AND item_id IS NOT NULL"
        )
        return dict(cursor.fetchall())


def _expected() -> dict[int, Any]:
    with connection.cursor() as cursor:
        cursor.execute(EXPECTED)
        return dict(cursor.fetchall())


def _job(item: ProtectedItem, status: str, hours: float, kind: str = "backup") -> Job:
    ended = T0 + timedelta(hours=hours)
    return Job.objects.create(
        kind=kind, status=status, vault=item.vault, item=item,
        created_at=ended - timedelta(minutes=5), ended_at=ended,
    )  # fmt: skip


@pytest.fixture
def items(admin: Any) -> list[ProtectedItem]:
    vault = make_vault(admin, name="next-success")
    return [_item(admin, vault, f"ns-{n}", T0 - timedelta(days=1)) for n in range(2)]


def test_the_column_follows_every_kind_of_write(items: list[ProtectedItem]) -> None:
    a, b = items
    first, third = _job(a, "completed", 0), _job(a, "completed", 48)
    _job(a, "failed", 12)
    _job(a, "completed", 30, kind="restore")  # not a backup: never a next success
    _job(b, "completed", 6)
    assert _kept() == _expected()
    assert _kept()[first.id] == third.ended_at
    # Completed out of order: a backup ending between the two becomes the first's next.
    middle = _job(a, "running", 0)
    Job.objects.filter(pk=middle.pk).update(status="completed", ended_at=T0 + timedelta(hours=24))
    assert _kept() == _expected()
    assert _kept()[first.id] == T0 + timedelta(hours=24)
    # Two at the same moment: the first by id has the second as its next (a zero interval).
    twin = _job(a, "completed", 24)
    assert _kept() == _expected()
    assert _kept()[middle.id] == twin.ended_at
    # Bulk, moved to another item, ended later, failed after all, deleted.
    Job.objects.bulk_create(
        [Job(kind="backup", status="completed", vault=b.vault, item=b, created_at=T0,
             ended_at=T0 + timedelta(hours=h)) for h in (1, 3, 2, 3)]
    )  # fmt: skip
    Job.objects.filter(pk=twin.pk).update(item=b)
    Job.objects.filter(pk=third.pk).update(ended_at=T0 + timedelta(hours=72))
    Job.objects.filter(pk=middle.pk).update(status="failed")
    Job.objects.filter(item=b, ended_at=T0 + timedelta(hours=3)).delete()
    assert _kept() == _expected()
    assert _kept()[first.id] == T0 + timedelta(hours=72)


def test_a_value_written_by_hand_is_put_back_in_the_same_statement(
    items: list[ProtectedItem], as_app: psycopg.Connection
) -> None:
    """The app role (a compromised worker) cannot stretch a backup's coverage in the report
    by writing the column: the statement's trigger recomputes it."""
    a, _ = items
    first, second = _job(a, "completed", 0), _job(a, "completed", 24)
    # Committed for the app role's connection to see (transactional_db via as_app).
    far = T0 + timedelta(days=300)
    as_app.execute("UPDATE vaults_job SET next_success_at = %s WHERE id = %s", [far, first.id])
    as_app.execute("UPDATE vaults_job SET next_success_at = %s WHERE id = %s", [far, second.id])
    assert _kept() == {first.id: second.ended_at, second.id: None}
    inserted = as_app.execute(
        "INSERT INTO vaults_job (kind, status, vault_id, item_id, params, bytes_done, "
        "bytes_total, files_done, files_total, created_at, ended_at, error, worker, host, "
        "next_success_at) VALUES ('backup', 'completed', %s, %s, '{}', 0, 0, 0, 0, %s, %s, "
        "'', '', '', %s) RETURNING id",
        [a.vault_id, a.id, T0, T0 + timedelta(hours=12), far],
    ).fetchone()[0]
    assert _kept() == {first.id: T0 + timedelta(hours=12), inserted: second.ended_at,
                       second.id: None}  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_two_workers_completing_backups_of_one_item_at_once_see_each_other(admin: Any) -> None:
    """Each finishing transaction recomputes under the item's advisory lock, reading after
    it: the second waits for the first to commit, then sees its row, so neither leaves a
    stale next (without the lock each would miss the other's uncommitted completion)."""
    vault = make_vault(admin, name="next-success-race")
    item = _item(admin, vault, "ns-race", T0 - timedelta(days=1))
    first = _job(item, "completed", 0)
    early, late = _job(item, "running", 0), _job(item, "running", 0)
    settings = connection.settings_dict
    params = {"dbname": settings["NAME"], "user": settings["USER"] or None,
              "host": settings["HOST"] or None, "port": settings["PORT"] or None}  # fmt: skip
    finish = "UPDATE vaults_job SET status = 'completed', ended_at = %s WHERE id = %s"
    updated = threading.Event()
    errors: list[BaseException] = []

    def second() -> None:
        try:
            updated.wait(timeout=30)
            with psycopg.connect(**params) as conn, conn.transaction():
                conn.execute(finish, [T0 + timedelta(hours=48), late.id])
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    with (
        psycopg.connect(**params) as conn,
        psycopg.connect(**params, autocommit=True) as watch,
        conn.transaction(),
    ):
        conn.execute(finish, [T0 + timedelta(hours=24), early.id])
        updated.set()
        # Commit only once the second is waiting for the item's lock.
        waiting = 0
        for _ in range(3000):
            waiting = watch.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()[0]
            if waiting:
                break
            threading.Event().wait(0.01)
        assert waiting, "the second completion did not wait for the item's lock"
    thread.join(timeout=30)
    assert not errors
    assert _kept() == _expected()
    assert _kept()[first.id] == T0 + timedelta(hours=24)
    assert _kept()[early.id] == T0 + timedelta(hours=48)


def test_a_bulk_load_of_more_items_than_the_per_item_locks_gets_the_same_values(
    db: None,
) -> None:
    """seed_scale loads a fleet's history in one COPY: the trigger then takes the table's
    lock alone (no lock per item) and probes the index once a row."""
    from vaults.report_sql import BULK_ITEMS

    call_command(
        "seed_scale", vaults=30, items=BULK_ITEMS + 200, points=BULK_ITEMS + 200, days=30,
        history=3,
        stdout=io.StringIO(),
    )  # fmt: skip
    kept, expected = _kept(), _expected()
    assert len({j.item_id for j in Job.objects.filter(kind="backup")}) > BULK_ITEMS
    assert kept == expected
    assert sum(1 for value in kept.values() if value is not None) > BULK_ITEMS
