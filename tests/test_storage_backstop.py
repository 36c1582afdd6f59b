"""Storage keeps what it was told to keep (SPEC 8.3), whatever the database says.

The attack these tests replay: the recovery-point rows of a locked vault are deleted behind
the triggers (as PostgreSQL's owner, triggers switched off), or their expiry or tier forged,
and then the sweeps run. The storage must keep every manifest, and every chunk an unexpired
manifest names, until the date the manifest and its notes give; say so with one
``point_missing`` security alert per vault; and the point must still restore from its
manifest. The deletions the gate allows must still reach the storage. Local disk and S3
(moto on loopback) both.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from hypothesis import given
from hypothesis import strategies as st

from policies import services as policy_services
from portal import clock
from portal.models import Alert, AuditRecord
from tests.conftest import api_client_for, make_user
from tests.factories import lock_vault, make_vault
from tests.s3server import S3Server, s3, s3_server  # noqa: F401  (fixtures)
from tests.test_jobs import SLOT, protect, storage, tree_of, write_tree  # noqa: F401
from vaults import locations
from vaults import services as vault_services
from vaults.jobs import requests, runner, schedules, sweeps
from vaults.models import Job, ProtectedItem, RecoveryPoint, Vault
from vaults.storage import LocalBackend, VaultStore
from vaults.storage.backends import COMPLIANCE
from vaults.storage.crypto import sealed
from vaults.storage.errors import PointRetained
from vaults.storage.holds import Keep, Note, keep_of
from vaults.storage.manifest import Manifest, Terms
from vaults.storage_notes import storage_note

ROOT = Path(__file__).resolve().parent.parent
DAY = timedelta(days=1)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def people(db: None) -> dict[str, Any]:
    return {
        "admin": make_user("alice", "backup_admin"),
        "operator": make_user("oscar", "operator"),
        "security": make_user("sam", "security_admin"),
    }


@pytest.fixture
def at_slot() -> Iterator[Any]:
    """Time frozen just after the standard policies' daily slot (test_jobs.SLOT)."""
    clock.set_now(SLOT + timedelta(seconds=30))
    yield clock
    clock.set_now(None)


def run(job: Job) -> Job:
    done = runner.job_run(job_id=job.pk)
    assert done is not None
    assert done.status == "completed", done.error
    return done


def backup(item: ProtectedItem, operator: Any, **kwargs: Any) -> RecoveryPoint:
    """An on-demand backup, run in this process."""
    point = run(requests.backup_request(actor=operator, item=item, **kwargs)).recovery_point
    assert point is not None
    return point


def scheduled_backup(item: ProtectedItem) -> RecoveryPoint:
    """The backup of the slot just passed (policy retention applies to it)."""
    (job,) = [job for job in schedules.backups_dispatch() if job.item_id == item.pk]
    point = run(job).recovery_point
    assert point is not None
    return point


def behind_the_triggers(*statements: tuple[str, list[Any]]) -> None:
    """SQL as PostgreSQL's owner with every trigger and foreign-key check switched off: a
    database that forgot or forged whatever the attacker wanted, however they got there."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        for sql, params in statements:
            cursor.execute(sql, params)
        cursor.execute("SET LOCAL session_replication_role = origin")


def forget_points(vault: Vault) -> None:
    """The reviewer's attack: the vault's jobs no longer name its points, its point rows go."""
    behind_the_triggers(
        ("UPDATE vaults_job SET recovery_point_id = NULL WHERE vault_id = %s", [vault.pk]),
        ("DELETE FROM vaults_recoverypoint WHERE vault_id = %s", [vault.pk]),
    )
    assert not RecoveryPoint.objects.filter(vault=vault).exists()


def stored(vault: Vault) -> set[str]:
    """The keys of the vault's points and their data (manifests and chunks)."""
    backend = locations.vault_store(vault).backend
    return set(backend.list("manifests/")) | set(backend.list("chunks/"))


def sweep(name: str = "storage") -> dict[str, int]:
    """Run a sweep now, as `manage.py sweep` does; its report."""
    job = runner.sweep_run(sweep=name)
    assert job.status == "completed", job.error
    report: dict[str, int] = job.params["report"]
    return report


def point_missing(vault: Vault) -> list[Alert]:
    return list(Alert.objects.filter(kind="point_missing", vault_name=vault.name))


def restores_from_its_manifest(vault: Vault, key: str, source: Path, target: Path) -> None:
    """The data plane alone restores the point, row or no row."""
    store = locations.vault_store(vault)
    assert store.verify(key).ok
    store.restore(key, target, allowed_roots=[target.parent])
    assert tree_of(target) == tree_of(source)


# --- the manifest and the notes (data plane, no database) -------------------------------------


def test_a_manifest_records_its_terms_and_an_older_one_reads_without_them() -> None:
    terms = Terms(retain_until=T0 + 30 * DAY, locked_vault=True)
    manifest = Manifest("p1", 1.0, "/src", [], {}, terms=terms)

    again = Manifest.from_bytes(manifest.to_bytes())
    assert again.terms == terms
    assert b'"retain_until":"2026-03-31T12:00:00Z"' in manifest.to_bytes()
    older = Manifest.from_bytes(Manifest("p2", 1.0, "/src", [], {}).to_bytes())
    assert older.terms is None


def _note(days: float, *, release: bool = False, until: float | None = None) -> Note:
    return Note(
        "p1",
        at=T0 + days * DAY,
        retain_until=None if release else T0 + (until if until is not None else 0) * DAY,
        release=release,
    )


KEEP_RULES = {
    # name: (terms, notes, vault locked at (days), expected keep)
    "unlocked: a shorter date later wins": (
        Terms(T0 + 30 * DAY),
        [_note(1, until=60), _note(2, until=7)],
        None,
        Keep(T0 + 7 * DAY),
    ),
    "unlocked: a release is honoured": (
        Terms(T0 + 30 * DAY),
        [_note(1, release=True)],
        None,
        Keep(T0 + 30 * DAY, released=True),
    ),
    "locked at backup: a shorter date is ignored": (
        Terms(T0 + 30 * DAY, locked_vault=True),
        [_note(1, until=7)],
        None,
        Keep(T0 + 30 * DAY, locked=True),
    ),
    "locked at backup: a release is ignored, a longer date kept": (
        Terms(T0 + 30 * DAY, locked_vault=True),
        [_note(1, until=90), _note(2, release=True), _note(3, until=40)],
        None,
        Keep(T0 + 90 * DAY, locked=True),
    ),
    "locked later: what came before the lock stands, nothing after shortens": (
        Terms(T0 + 30 * DAY),
        [_note(1, until=10), _note(5, release=True), _note(6, until=2)],
        3.0,
        Keep(T0 + 10 * DAY, locked=True),
    ),
    "locked later: an operational snapshot is outside immutability": (
        Terms(T0 + 5 * DAY, operational=True),
        [_note(4, release=True)],
        1.0,
        Keep(T0 + 5 * DAY, released=True),
    ),
    "older manifest, never noted: no date, the caller decides as before": (
        None,
        [],
        None,
        Keep(None),
    ),
    "older manifest, stamped once from its row, then locked": (
        None,
        [_note(1, until=30), _note(3, release=True)],
        2.0,
        Keep(T0 + 30 * DAY, locked=True),
    ),
}


@pytest.mark.parametrize("rule", list(KEEP_RULES))
def test_notes_replay_over_the_manifests_terms(rule: str) -> None:
    terms, notes, locked_days, expected = KEEP_RULES[rule]
    locked_at = None if locked_days is None else T0 + locked_days * DAY
    assert keep_of(terms, list(reversed(notes)), locked_at) == expected


@given(
    st.lists(
        st.tuples(
            st.floats(0, 400, allow_nan=False), st.booleans(), st.floats(-400, 400, allow_nan=False)
        ),
        max_size=12,
    ),
    st.booleans(),
)
def test_a_locked_points_keep_never_shrinks_whatever_is_noted(
    noted: list[tuple[float, bool, float]], locked_at_backup: bool
) -> None:
    terms = Terms(T0 + 30 * DAY, locked_vault=locked_at_backup)
    notes = [
        Note("p1", T0 + at * DAY, None if release else T0 + until * DAY, release)
        for at, release, until in noted
    ]
    keep = keep_of(terms, notes, None if locked_at_backup else T0 - DAY)
    assert keep.locked and not keep.released
    assert keep.until is not None and keep.until >= terms.retain_until
    assert not keep.allows_delete(T0 + 30 * DAY - timedelta(seconds=1))


def test_delete_point_refuses_before_the_retain_until_and_gc_keeps_the_chunks(
    tmp_path: Path,
) -> None:
    store = VaultStore(sealed(LocalBackend(tmp_path / "store")))
    source = write_tree(tmp_path / "source")
    store.backup(source, "p1", terms=Terms(T0 + 30 * DAY, locked_vault=True))
    store.holds.note("p1", at=T0 + DAY, release=True)  # a release is no use on a locked point
    chunks = set(store.backend.list("chunks/"))

    with pytest.raises(PointRetained, match="until 2026-03-31 12:00:00 UTC"):
        store.delete_point("p1", now=T0 + 29 * DAY)
    assert store.gc().deleted_chunks == 0
    assert set(store.backend.list("chunks/")) == chunks
    (tmp_path / "restores").mkdir()
    store.restore("p1", tmp_path / "restores" / "r", allowed_roots=[tmp_path / "restores"])
    assert tree_of(tmp_path / "restores" / "r") == tree_of(source)

    store.delete_point("p1", now=T0 + 30 * DAY)
    assert store.points() == []
    assert store.gc().deleted_chunks == len(chunks)


# --- the attack, on local disk ----------------------------------------------------------------


def test_point_rows_deleted_behind_the_triggers_leave_every_manifest_chunk_and_one_alert(
    people: dict[str, Any],
    storage: Path,  # noqa: F811
    clock: Any,
) -> None:
    admin, operator = people["admin"], people["operator"]
    vault = make_vault(admin, name="locked", immutability="locked")
    sources = {name: write_tree(storage / name, seed=i) for i, name in enumerate(("a", "b"))}
    items = {name: protect(admin, vault, source, name) for name, source in sources.items()}
    points = [backup(items["a"], operator), backup(items["b"], operator)]
    clock.advance(DAY)
    points.append(backup(items["a"], operator))  # shares most chunks with the first
    before = stored(vault)

    forget_points(vault)
    report = sweep()

    assert report["kept_unknown"] == 3
    assert report["orphan_manifests"] == report["deleted_chunks"] == 0
    assert stored(vault) == before
    (alert,) = point_missing(vault)
    assert alert.category == "security" and alert.severity == "critical" and alert.count == 1
    assert "3 recovery point(s) that the database no longer names" in alert.message
    (audit,) = AuditRecord.objects.filter(operation="point_missing_found", vault_name=vault.name)
    assert audit.outcome == "allowed" and audit.actor_name == "holdfast"
    assert sorted(audit.after["storage_keys"]) == sorted(p.storage_key for p in points)

    sweep()  # a repeat is counted, not duplicated
    (alert,) = point_missing(vault)
    assert alert.count == 2
    assert stored(vault) == before
    # The sweep's queries do not grow with the points it keeps (three here, one there).
    other = make_vault(admin, name="other", immutability="locked")
    backup(protect(admin, other, sources["a"], "a-too"), operator)
    forget_points(other)
    sweep()
    with CaptureQueriesContext(connection) as three:
        sweeps.orphans_remove(vault)
    with CaptureQueriesContext(connection) as one:
        sweeps.orphans_remove(other)
    assert len(three) == len(one)
    assert len(point_missing(other)) == 1  # one alert per vault
    for point, name in zip(points, ("a", "b", "a2"), strict=True):
        source = sources[name.rstrip("2")]
        target = storage / "restores" / name
        restores_from_its_manifest(vault, point.storage_key, source, target)

    # Storage keeps until the date it was told, not for ever.
    clock.set_now(max(p.expires_at for p in points) + timedelta(seconds=1))
    report = sweep()
    assert report["orphan_manifests"] == 3 + 1 and report["kept_unknown"] == 0
    assert stored(vault) == stored(other) == set()
    assert list(locations.vault_store(vault).backend.list("holds/")) == []


def test_a_vault_locked_after_its_backups_keeps_them_from_a_release_the_app_was_fooled_into(
    people: dict[str, Any],
    storage: Path,  # noqa: F811
    clock: Any,
) -> None:
    admin, operator = people["admin"], people["operator"]
    vault = make_vault(admin, name="later", immutability="enabled")
    source = write_tree(storage / "src")
    point = backup(protect(admin, vault, source), operator)
    vault = lock_vault(vault, requester=admin, approver=people["security"])
    assert locations.vault_store(vault).holds.locked_at() == clock.now()
    before = stored(vault)

    # Code fooled by a forged database (the vault looks unlocked, the point deleted, or its
    # expiry cut) writes a release and a shorter date: the storage honours neither.
    clock.advance(DAY)
    storage_note([point], release=True, vault=vault)
    point.expires_at = clock.now() + timedelta(minutes=1)
    storage_note([point], vault=vault)
    forget_points(vault)
    clock.advance(DAY)
    report = sweep()

    assert report["kept_unknown"] == 1 and stored(vault) == before
    assert len(point_missing(vault)) == 1
    restores_from_its_manifest(vault, point.storage_key, source, storage / "restores" / "r")


def test_a_forged_expiry_does_not_let_the_points_sweep_delete_locked_data(
    people: dict[str, Any],
    storage: Path,  # noqa: F811
    clock: Any,
) -> None:
    admin, operator = people["admin"], people["operator"]
    vault = make_vault(admin, name="forged", immutability="locked")
    source = write_tree(storage / "src")
    point = backup(protect(admin, vault, source), operator)
    before = stored(vault)
    behind_the_triggers(
        (
            "UPDATE vaults_recoverypoint SET expires_at = %s WHERE id = %s",
            [clock.now() - DAY, point.pk],
        )
    )

    assert sweep("points")["expired_points"] == 1
    assert not RecoveryPoint.objects.filter(pk=point.pk).exists()  # the database gave way
    assert stored(vault) == before  # the storage did not
    assert sweep()["kept_unknown"] == 1
    assert len(point_missing(vault)) == 1
    restores_from_its_manifest(vault, point.storage_key, source, storage / "restores" / "r")


def test_a_forged_archive_tier_does_not_let_the_rehydration_sweep_drop_the_only_copy(
    people: dict[str, Any],
    storage: Path,  # noqa: F811
    clock: Any,
) -> None:
    admin, operator = people["admin"], people["operator"]
    vault = make_vault(admin, name="tiers", immutability="locked")
    point = backup(protect(admin, vault, write_tree(storage / "src")), operator)
    behind_the_triggers(
        (
            "UPDATE vaults_recoverypoint SET tier = 'vault_archive', rehydrated_until = %s "
            "WHERE id = %s",
            [clock.now() - DAY, point.pk],
        )
    )

    assert sweep("points")["ended_rehydrations"] == 1
    assert locations.vault_store(vault).has_point(point.storage_key)
    assert locations.vault_store(vault).verify(point.storage_key).ok


@pytest.mark.parametrize("how", ["retain_until", "policy_retention"])
def test_a_longer_retention_reaches_the_storage(
    how: str,
    people: dict[str, Any],
    storage: Path,  # noqa: F811
    at_slot: Any,
) -> None:
    admin, operator = people["admin"], people["operator"]
    vault = make_vault(admin, name="grows", immutability="locked")
    item = protect(admin, vault, write_tree(storage / "src"), daily_days=30)
    if how == "retain_until":
        point = backup(item, operator, retain_until=clock.now() + 10 * DAY)
        vault_services.point_retain_until(
            actor=admin, point=point, retain_until=clock.now() + 60 * DAY
        )
    else:
        point = scheduled_backup(item)
        policy_services.policy_update(actor=admin, policy=item.policy, changes={"daily_days": 60})
    first = point.expires_at if how == "policy_retention" else clock.now() + 10 * DAY
    point.refresh_from_db()
    assert point.expires_at > first + 20 * DAY
    before = stored(vault)

    forget_points(vault)
    clock.set_now(first + DAY)  # past what the manifest first said, before the new date
    assert sweep()["kept_unknown"] == 1
    assert stored(vault) == before
    clock.set_now(point.expires_at + timedelta(seconds=1))
    assert sweep()["orphan_manifests"] == 1
    assert stored(vault) == set()


# --- what the gate allows still reaches the storage -------------------------------------------


def _delete(how: str, admin: Any, vault: Vault, item: ProtectedItem, point: RecoveryPoint) -> None:
    if how == "point_delete":
        # Soft delete keeps the point its period, then the points sweep purges it.
        vault_services.point_delete(actor=admin, point=point)
        clock.advance(15 * DAY)
        assert sweeps.points_expire() == 1
    elif how == "stop_protection_delete_data":
        vault_services.soft_delete_set(
            actor=admin, vault=vault, state="disabled", confirm_purge_count=0
        )
        vault_services.protection_stop(actor=admin, item=item, delete_data=True)
    elif how == "disable_soft_delete_purges":
        vault_services.protection_stop(actor=admin, item=item, delete_data=True)
        vault_services.soft_delete_set(
            actor=admin, vault=vault, state="disabled", confirm_purge_count=1
        )
    elif how == "soft_delete_purge":
        vault_services.protection_stop(actor=admin, item=item, delete_data=True)
        clock.advance(15 * DAY)
        assert sweeps.soft_delete_sweep()["purged"] == 1
    elif how == "retention_reduction":
        policy_services.policy_update(actor=admin, policy=item.policy, changes={"daily_days": 7})
        clock.advance(8 * DAY)
        assert sweeps.points_expire() == 0, "soft delete keeps a shortened point its period"
        clock.advance(14 * DAY)
        assert sweeps.points_expire() == 1
    else:  # pragma: no cover
        raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "point_delete",
        "stop_protection_delete_data",
        "disable_soft_delete_purges",
        "soft_delete_purge",
        "retention_reduction",
    ],
)
def test_deletions_the_gate_allows_reach_the_storage_without_an_alert(
    how: str,
    people: dict[str, Any],
    storage: Path,  # noqa: F811
    at_slot: Any,
) -> None:
    admin = people["admin"]
    vault = make_vault(admin, name="plain")
    item = protect(admin, vault, write_tree(storage / "src"), daily_days=30)
    point = scheduled_backup(item)
    assert point.expires_at > clock.now() + 20 * DAY

    _delete(how, admin, vault, item, point)
    assert not RecoveryPoint.objects.filter(pk=point.pk).exists()
    report = sweep()

    assert report["kept_unknown"] == 0
    assert stored(vault) == set()
    assert point_missing(vault) == []


def test_a_storage_that_cannot_be_told_refuses_the_change(
    people: dict[str, Any],
    storage: Path,  # noqa: F811
    clock: Any,
) -> None:
    admin, operator = people["admin"], people["operator"]
    vault = make_vault(admin, name="mute")
    point = backup(protect(admin, vault, write_tree(storage / "src")), operator)
    # The notes' directory cannot be created: the store refuses every write there.
    store_root = Path(locations.vault_store(vault).backend.root)  # type: ignore[attr-defined]
    (store_root / "holds").write_bytes(b"not a directory")

    answer = api_client_for(admin).delete(
        f"/api/v1/vaults/{vault.name}/items/docs/recovery-points/{point.pk}/"
    )

    assert answer.status_code == 503, answer.content
    assert answer.json()["code"] == "storage_unavailable"
    assert "nothing was changed" in answer.json()["detail"]
    assert RecoveryPoint.objects.filter(pk=point.pk).exists()


def test_an_older_manifest_is_stamped_from_its_row_once_then_kept(
    people: dict[str, Any],
    storage: Path,  # noqa: F811
    clock: Any,
) -> None:
    admin = people["admin"]
    vault = make_vault(admin, name="upgraded", immutability="locked")
    source = write_tree(storage / "src")
    item = protect(admin, vault, source)
    # A point written before manifests recorded their terms, with its row.
    store = locations.vault_store(vault)
    store.backup(source, "rp-before-the-upgrade")
    point = vault_services.point_record(item=item, created_at=clock.now())
    RecoveryPoint.objects.filter(pk=point.pk).update(storage_key="rp-before-the-upgrade")
    assert store.terms("rp-before-the-upgrade") is None

    assert sweep()["kept_unknown"] == 0
    assert store.holds.stamped()
    assert store.keep("rp-before-the-upgrade").until == point.expires_at
    before = stored(vault)
    forget_points(vault)
    assert sweep()["kept_unknown"] == 1
    assert stored(vault) == before
    assert len(point_missing(vault)) == 1


def test_a_vault_row_deleted_behind_the_triggers_leaves_its_store_and_raises_the_alert(
    people: dict[str, Any],
    storage: Path,  # noqa: F811
    clock: Any,
) -> None:
    admin, operator = people["admin"], people["operator"]
    vault = make_vault(admin, name="vanished", immutability="locked")
    point = backup(protect(admin, vault, write_tree(storage / "src")), operator)
    before = stored(vault)
    behind_the_triggers(
        *(
            (f"DELETE FROM {table} WHERE vault_id = %s", [vault.pk])
            for table in (
                "portal_approval",
                "vaults_job",
                "vaults_recoverypoint",
                "vaults_protecteditem",
            )
        ),
        ("DELETE FROM policies_policy WHERE vault_id = %s", [vault.pk]),
        ("DELETE FROM vaults_vault WHERE id = %s", [vault.pk]),
    )

    report = sweep()

    assert report["stores_without_vault"] == 1
    assert stored(vault) == before
    (alert,) = point_missing(vault)
    assert "the database has no such vault" in alert.message and point.storage_key in alert.message
    assert AuditRecord.objects.filter(
        operation="point_missing_found", vault_name="vanished"
    ).exists()
    clock.set_now(point.expires_at + timedelta(seconds=1))
    assert sweep()["stores_without_vault"] == 0  # past its date: no longer kept, nor reported


def test_an_unreadable_orphan_manifest_stops_its_vaults_sweep_and_deletes_nothing(
    people: dict[str, Any],
    storage: Path,  # noqa: F811
    clock: Any,
) -> None:
    admin, operator = people["admin"], people["operator"]
    vault = make_vault(admin, name="damaged")
    point = backup(protect(admin, vault, write_tree(storage / "src")), operator)
    forget_points(vault)
    backend = locations.vault_store(vault).backend
    backend.put(f"manifests/{point.storage_key}.json", b"{not json")
    before = stored(vault)

    job = runner.sweep_run(sweep="storage")

    assert job.status == "failed"
    assert "vault damaged: A manifest is damaged" in job.error and "is kept" in job.error
    assert stored(vault) == before


# --- the same on S3 -----------------------------------------------------------------------------


def test_on_s3_point_rows_deleted_behind_the_triggers_keep_every_object_and_restore(
    s3: S3Server,  # noqa: F811
    people: dict[str, Any],
    storage: Path,  # noqa: F811
) -> None:
    admin, operator = people["admin"], people["operator"]
    location = f"s3://{s3.bucket()}/locked"
    vault = make_vault(admin, name="s3-locked", storage_location=location, immutability="locked")
    source = write_tree(storage / "src")
    point = backup(protect(admin, vault, source), operator)
    store = locations.vault_store(vault)
    assert store.terms(point.storage_key) == Terms(point.expires_at, locked_vault=True)
    before = stored(vault)

    forget_points(vault)
    report = sweep()

    assert report["kept_unknown"] == 1 and report["vaults_failed"] == 0
    assert report["orphan_manifests"] == report["deleted_chunks"] == report["locked_orphans"] == 0
    assert stored(vault) == before
    assert store.backend.lock_of(f"manifests/{point.storage_key}.json").mode == COMPLIANCE
    assert len(point_missing(vault)) == 1
    restores_from_its_manifest(vault, point.storage_key, source, storage / "restores" / "r")


def test_on_s3_a_point_deleted_through_the_gate_leaves_the_storage(
    s3: S3Server,  # noqa: F811
    people: dict[str, Any],
    storage: Path,  # noqa: F811
) -> None:
    admin, operator = people["admin"], people["operator"]
    vault = make_vault(admin, name="s3-plain", storage_location=f"s3://{s3.bucket()}/plain")
    point = backup(protect(admin, vault, write_tree(storage / "src")), operator)
    # Without soft delete, a point deleted through the gate goes at once.
    vault_services.soft_delete_set(
        actor=admin, vault=vault, state="disabled", confirm_purge_count=0
    )

    vault_services.point_delete(actor=admin, point=point)
    report = sweep()

    assert report["orphan_manifests"] == 1 and report["kept_unknown"] == 0
    assert stored(vault) == set() and point_missing(vault) == []


# --- manage.py sweep ------------------------------------------------------------------------------


def test_the_sweep_command_runs_each_sweep_and_prints_its_report(
    people: dict[str, Any],
    storage: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    admin, operator = people["admin"], people["operator"]
    vault = make_vault(admin, name="cmd", immutability="locked")
    backup(protect(admin, vault, write_tree(storage / "src")), operator)
    forget_points(vault)

    call_command("sweep", "storage")
    out = capsys.readouterr().out
    assert "storage sweep (job #" in out and "): completed" in out
    assert "  kept_unknown: 1" in out
    call_command("sweep", "all")
    out = capsys.readouterr().out
    for name in ("jobs", "points", "storage"):
        assert f"{name} sweep (job #" in out
    assert "  failed_stale_jobs: 0" in out and "  expired_points: 0" in out
    assert Job.objects.filter(kind="sweep", status="completed").count() == 4
    assert (
        AuditRecord.objects.filter(operation="point_missing_found", source="command").count() == 2
    )

    with pytest.raises(CommandError, match="invalid choice: 'everything'"):
        call_command("sweep", "everything")


def test_the_sweep_command_fails_with_a_sentence_when_a_vaults_storage_is_unreachable(
    s3: S3Server,  # noqa: F811
    people: dict[str, Any],
    storage: Path,  # noqa: F811
) -> None:
    admin = people["admin"]
    bucket = s3.bucket()
    make_vault(admin, name="gone", storage_location=f"s3://{bucket}/gone")
    make_vault(admin, name="fine")
    s3.client().delete_bucket(Bucket=bucket)

    with pytest.raises(CommandError) as failed:
        call_command("sweep", "storage")

    assert "The storage sweep failed: The storage of 1 vault(s) could not be swept" in str(
        failed.value
    )
    assert "vault gone: Cannot list" in str(failed.value) and "NoSuchBucket" in str(failed.value)
    (job,) = Job.objects.filter(kind="sweep")
    assert job.status == "failed" and job.params["report"]["vaults_failed"] == 1


@pytest.mark.django_db(transaction=True)
def test_manage_py_sweep_all_runs_in_its_own_process_and_refuses_nonsense(
    storage: Path,  # noqa: F811
) -> None:
    from tests.test_faults import subprocess_env

    admin = make_user("alice", "backup_admin")
    make_vault(admin, name="proc")
    manage = [sys.executable, str(ROOT / "manage.py"), "sweep"]
    env = subprocess_env()

    done = subprocess.run(
        [*manage, "all"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "jobs sweep (job #" in done.stdout and "storage sweep (job #" in done.stdout
    assert Job.objects.filter(kind="sweep", status="completed").count() == 3

    refused = subprocess.run(
        [*manage, "nonsense"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode != 0
    assert "invalid choice: 'nonsense'" in refused.stderr
    assert os.linesep.join(refused.stdout.splitlines()) == ""
