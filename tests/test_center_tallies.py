"""What the database keeps for the Backup center at scale (vaults/tallies.py): each vault's
newest backup, jobs per ten minutes and status, items per RPO deadline, vaults per setting.
After every kind of write each one equals what reading the rows themselves gives; the tiles
read them with the same answer as counting directly; a forged deadline does not stick.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from guards.models import ResourceGuard
from policies import services as policy_services
from policies.models import Policy
from portal.center.tiles import center_tiles
from tests.factories import make_vault
from tests.test_jobs import backup_now, people, protect, storage, worker, write_tree  # noqa: F401
from vaults import selectors, tallies
from vaults import services as vault_services
from vaults.models import Job, JobTally, ProtectedItem, RpoTally, Vault, VaultTally

ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)


def _bucket(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment - (moment - ORIGIN) % tallies.BUCKET


def _direct_counts(now: datetime) -> tuple[dict[str, int], int, int]:
    jobs = Counter(Job.objects.filter(created_at__gte=now - timedelta(hours=24)).values_list(
        "status", flat=True))  # fmt: skip
    items = ProtectedItem.objects.all()
    protected = items.filter(protection_state="protected").count()
    return dict(jobs), protected, items.filter(selectors.rpo_met_q(now)).count()


def assert_tallies_agree(*moments: datetime) -> None:
    """Every kept figure equals what the rows say (and the tiles' reads, at ``moments``)."""
    for vault in Vault.objects.all():
        newest = (
            Job.objects.filter(vault=vault, kind="backup").order_by("-created_at", "-id").first()
        )
        kept = (vault.last_backup_job_id, vault.last_backup_status, vault.last_backup_at)
        assert kept == ((newest.pk, newest.status, newest.created_at) if newest else (None,) * 3)
    jobs = Counter((_bucket(j.created_at), j.status) for j in Job.objects.all())
    kept_jobs = Counter({(t.bucket, t.status): t.n for t in JobTally.objects.all()})
    assert +kept_jobs == +jobs and not -kept_jobs  # zero rows may stay; nothing negative
    items = list(ProtectedItem.objects.select_related("policy"))
    for item in items:
        due = item.last_backup_at and item.last_backup_at + selectors.rpo_window(item.policy)
        if due is not None and not (
            item.policy.frequency != "hourly" or (item.policy.interval_hours or 4) in (4, 6, 8, 12)
        ):
            due = None  # an interval rpo_met_q does not know: never met
        assert item.rpo_due_at == (due and due + selectors.RPO_GRACE), item.name
    rpo = Counter(_bucket(i.rpo_due_at) for i in items if i.protection_state == "protected")
    kept_rpo = Counter({t.bucket: t.n for t in RpoTally.objects.all()})
    assert +kept_rpo == +rpo and not -kept_rpo
    vaults = Counter(
        (v.immutability, v.soft_delete_state, v.resource_guard_id is not None)
        for v in Vault.objects.all()
    )
    kept_vaults = Counter(
        {(t.immutability, t.soft_delete_state, t.guarded): t.n for t in VaultTally.objects.all()}
    )
    assert +kept_vaults == +vaults and not -kept_vaults
    for now in moments:
        by_status, protected, met = _direct_counts(now)
        assert tallies.job_counts_since(now - timedelta(hours=24), "default") == by_status
        assert tallies.rpo_counts(now, "default") == (protected, met)


def _moments(now: datetime) -> list[datetime]:
    """Now, a bucket boundary, just before and after one, and days either side."""
    edge = tallies.bucket_after(now)
    return [now, edge, edge - timedelta(microseconds=1), edge + timedelta(seconds=1),
            now + timedelta(hours=5), now + timedelta(days=2), now - timedelta(days=3)]  # fmt: skip


def test_every_write_of_jobs_items_and_policies_keeps_the_tallies(
    security_admin: Any, clock: Any
) -> None:
    now = clock.now().replace(minute=7, second=30)
    one, two = (Vault.objects.create(name=n, kind="backup", region="r") for n in ("ta", "tb"))
    daily = Policy.objects.create(vault=one, name="daily")
    hourly = Policy.objects.create(vault=one, name="h", kind="enhanced", frequency="hourly",
                                   interval_hours=6)  # fmt: skip
    other = Policy.objects.create(vault=two, name="daily")
    # Items created one by one and in bulk, backed up or never.
    item = ProtectedItem.objects.create(vault=one, name="a", source_path="/s", policy=daily,
                                        last_backup_at=now - timedelta(hours=20))  # fmt: skip
    ProtectedItem.objects.bulk_create([
        ProtectedItem(vault=one, name="b", source_path="/s", policy=hourly,
                      last_backup_at=now - timedelta(hours=6, minutes=30)),
        ProtectedItem(vault=one, name="c", source_path="/s", policy=hourly),
        ProtectedItem(vault=two, name="d", source_path="/s", policy=other,
                      last_backup_at=now - timedelta(days=3)),
    ])  # fmt: skip
    assert_tallies_agree(*_moments(now))
    # Jobs in bulk (several per vault, an older one after a newer), a sweep with no vault.
    Job.objects.bulk_create([
        Job(kind="backup", status="completed", vault=one, item=item, created_at=now),
        Job(kind="backup", status="running", vault=one, item=item,
            created_at=now - timedelta(hours=1)),
        Job(kind="restore", status="queued", vault=one, created_at=now + timedelta(minutes=1)),
        Job(kind="backup", status="failed", vault=two, created_at=now - timedelta(days=2)),
        Job(kind="sweep", status="completed", created_at=now - timedelta(minutes=3)),
    ])  # fmt: skip
    one.refresh_from_db()
    assert one.last_backup_status == "completed"  # the restore is newer, not a backup
    older = Job.objects.create(kind="backup", status="queued", vault=one, item=item,
                               created_at=now - timedelta(hours=2))  # fmt: skip
    assert_tallies_agree(*_moments(now))
    # A backup's life: queued, running, completed (one statement each, as the worker does).
    newest = Job.objects.create(kind="backup", status="queued", vault=one, item=item,
                                created_at=now + timedelta(seconds=1))  # fmt: skip
    for status in ("running", "completed"):
        Job.objects.filter(pk=newest.pk).update(status=status, heartbeat_at=now)
        ProtectedItem.objects.filter(pk=item.pk).update(last_backup_at=now)
        assert_tallies_agree(*_moments(now))
    Job.objects.filter(pk=older.pk).update(status="failed")  # not the newest: no change shown
    Job.objects.filter(vault=one).update(bytes_done=5)  # progress: nothing counted moves
    assert_tallies_agree(*_moments(now))
    # The newest backup deleted, and a job moved in time: the vault shows the next one.
    Job.objects.filter(pk=newest.pk).delete()
    Job.objects.filter(pk=older.pk).update(created_at=now + timedelta(hours=1))
    assert_tallies_agree(*_moments(now))
    # Protection stopped and resumed, an item moved to another policy, one deleted.
    ProtectedItem.objects.filter(name="b").update(protection_state="protection_stopped")
    assert_tallies_agree(*_moments(now))
    ProtectedItem.objects.filter(name="b").update(protection_state="protected")
    ProtectedItem.objects.filter(pk=item.pk).update(policy=hourly)
    ProtectedItem.objects.filter(name="c").delete()
    assert_tallies_agree(*_moments(now))
    # The policy's frequency and interval change: its items' deadlines follow.
    Policy.objects.filter(pk=hourly.pk).update(interval_hours=12)
    assert_tallies_agree(*_moments(now))
    hourly.refresh_from_db()
    hourly.frequency, hourly.interval_hours = "daily", None
    hourly.save()
    assert_tallies_agree(*_moments(now))
    # A vault's settings change (one statement for several, one by one); the storage totals'
    # updates of its row move no count.
    guard = ResourceGuard.objects.create(name="tg", owner=security_admin)
    Vault.objects.filter(pk__in=[one.pk, two.pk]).update(immutability="enabled")
    Vault.objects.filter(pk=one.pk).update(resource_guard=guard, soft_delete_state="always_on")
    Vault.objects.filter(pk=two.pk).update(soft_delete_state="disabled")
    Vault.objects.filter(pk=one.pk).update(stored_item_count=99)
    assert_tallies_agree(*_moments(now))
    Vault.objects.filter(pk=two.pk).update(immutability="disabled", resource_guard=guard)
    Vault.objects.filter(pk=two.pk).update(resource_guard=None)
    assert_tallies_agree(*_moments(now))
    # The vault deleted (its jobs lose their vault; its items and policies go).
    Job.objects.filter(vault=two).update(vault=None)
    ProtectedItem.objects.filter(vault=two).delete()
    assert_tallies_agree(*_moments(now))
    Vault.objects.filter(pk=two.pk).delete()
    assert_tallies_agree(*_moments(now))


def test_tiles_read_the_tallies_and_agree_with_counting_directly(
    security_admin: Any, reader: Any, clock: Any
) -> None:
    from tests.test_center_tiles import _fleet

    _fleet(4, security_admin, clock.now())
    for now in _moments(clock.now()):
        tiles = {tile.key: tile for tile in center_tiles(reader, now)}
        by_status, protected, met = _direct_counts(now)
        assert tiles["jobs"].total == sum(by_status.values())
        assert {e.label.lower(): e.count for e in tiles["jobs"].entries} == {
            v: by_status.get(v, 0) for v, _ in Job.Status.choices
        }
        assert tiles["items"].total == protected
        assert [e.count for e in tiles["items"].entries] == [protected - met, met]


def test_a_forged_deadline_or_status_does_not_reach_a_decision(admin: Any, clock: Any) -> None:
    """The application's database role can write these display columns; a deadline written
    by hand is computed again from the item's backup and policy, and nothing the gate decides
    reads any of them (a vault's deletion asks the items and points themselves)."""
    now = clock.now()
    vault = make_vault(admin, name="forge")
    policy = Policy.objects.create(vault=vault, name="daily")
    item = ProtectedItem.objects.create(vault=vault, name="i", source_path="/s", policy=policy,
                                        last_backup_at=now)  # fmt: skip
    ProtectedItem.objects.filter(pk=item.pk).update(rpo_due_at=now + timedelta(days=365))
    item.refresh_from_db()
    assert item.rpo_due_at == now + timedelta(days=1, hours=1)
    with connection.cursor() as cursor:  # the kept columns say "empty, never backed up"
        cursor.execute(
            "UPDATE vaults_vault SET stored_item_count = 0, last_backup_status = NULL "
            "WHERE id = %s",
            [vault.pk],
        )
    with pytest.raises(Exception) as refused:
        vault_services.vault_delete(actor=admin, vault=Vault.objects.get(pk=vault.pk))
    assert "vault_not_empty" in str(getattr(refused.value, "code", refused.value))
    assert Vault.objects.filter(pk=vault.pk).exists()


def test_a_backup_through_the_worker_and_a_policy_change_keep_the_tallies(
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    worker: Any,  # noqa: F811
) -> None:
    admin, operator = people["admin"], people["operator"]
    vault = make_vault(admin, name="tally-run")
    item = protect(admin, vault, write_tree(storage / "src"), "docs", daily_days=7)
    now = datetime.now(UTC)
    assert_tallies_agree(now)
    point = backup_now(item, operator)
    job = Job.objects.get(recovery_point=point)
    vault.refresh_from_db()
    item.refresh_from_db()
    assert (vault.last_backup_job_id, vault.last_backup_status) == (job.pk, "completed")
    assert item.rpo_due_at == item.last_backup_at + timedelta(days=1, hours=1)
    assert_tallies_agree(*_moments(datetime.now(UTC)))
    # The RPO follows a policy change made through the service (weekly: seven days).
    policy_services.policy_update(
        actor=admin,
        policy=item.policy,
        changes={"frequency": "weekly", "weekdays": ["monday"], "weekly_weeks": 4},
    )
    item.refresh_from_db()
    assert item.rpo_due_at == item.last_backup_at + timedelta(days=7, hours=1)
    # Protection stopped with its data deleted: out of the protected count, points gone.
    vault_services.protection_stop(actor=admin, item=item, delete_data=True)
    assert_tallies_agree(*_moments(datetime.now(UTC)))


@pytest.mark.parametrize("newer_first", [True, False])
def test_two_backups_recorded_at_once_leave_the_newer_shown(
    transactional_db: None, newer_first: bool
) -> None:
    """Two workers insert backup jobs of one vault in overlapping transactions: the second
    waits on the vault row, then compares with what the first committed, so the vault shows
    the newer job whichever commits first."""
    import threading
    import time

    from django.db import connections, transaction

    vault = Vault.objects.create(name="race", kind="backup", region="r")
    now = datetime.now(UTC)
    times = [now + timedelta(minutes=1), now] if newer_first else [now, now + timedelta(minutes=1)]
    first_inserted, release_first = threading.Event(), threading.Event()
    ids: dict[str, int] = {}

    def first() -> None:
        with transaction.atomic():
            ids["first"] = Job.objects.create(kind="backup", vault=vault, created_at=times[0]).pk
            first_inserted.set()
            release_first.wait(30)
        connections.close_all()

    def second() -> None:
        first_inserted.wait(30)
        ids["second"] = Job.objects.create(kind="backup", vault=vault, created_at=times[1]).pk
        connections.close_all()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30  # bounded polling until the second waits on the row
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
            waited = cursor.fetchone()[0] > 0
            if waited or time.monotonic() > deadline:
                break
            time.sleep(0.02)
    release_first.set()
    for thread in threads:
        thread.join(30)
    assert waited  # the second really waited for the first's commit
    vault.refresh_from_db()
    newer = ids["first"] if newer_first else ids["second"]
    assert vault.last_backup_job_id == newer
    assert vault.last_backup_at == max(times)
