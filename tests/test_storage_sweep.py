"""The storage sweep at fleet scale (issue 20): vaults a page at a time, no store created to
look, queries per page not per vault, and GC syncing each directory it deleted from once.

Real PostgreSQL and real stores on disk; the only stand-in is a spy around the storage's
directory sync that counts and then syncs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext

from portal import clock
from portal.models import Alert
from tests.conftest import make_user
from tests.factories import make_vault
from tests.test_jobs import SLOT, protect, storage  # noqa: F401  (fixture)
from tests.test_storage_backstop import backup
from vaults import locations
from vaults.jobs import storage_sweep as sweep_module
from vaults.jobs import sweeps
from vaults.models import Job, RecoveryPoint, Vault
from vaults.storage import PointNotFound, backends
from vaults.storage.chunks import chunk_key
from vaults.storage.errors import ObjectLocked, PointRetained
from vaults.storage.manifest import Terms, chunk_ids_of

NOW = SLOT + timedelta(seconds=30)


@pytest.fixture
def people(db: None) -> dict[str, Any]:
    return {"admin": make_user("alice", "backup_admin"), "operator": make_user("oscar", "operator")}


@pytest.fixture
def frozen() -> Iterator[Any]:
    clock.set_now(NOW)
    yield clock
    clock.set_now(None)


def small_tree(root: Path, files: int = 3, seed: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (root / f"f{i:04d}.txt").write_text(f"{seed} file {i} of {root.name}\n" * 3)
    return root


def directories(root: Path) -> set[str]:
    return {
        str(Path(dirpath).relative_to(root) / name)
        for dirpath, dirnames, _ in os.walk(root)
        for name in dirnames
    }


def test_sweeping_vaults_without_a_store_creates_no_directory(
    people: dict[str, Any],
    storage: Path,  # noqa: F811
    frozen: Any,
) -> None:
    admin = people["admin"]
    vaults = [make_vault(admin, name=f"empty-{i}") for i in range(3)]
    make_vault(admin, name="locked-empty", immutability="locked")
    root = storage / "storage"
    root.mkdir(exist_ok=True)
    before = directories(root)

    report = sweeps.storage_sweep()
    assert sweeps.orphans_remove(vaults[0]) == 0

    assert directories(root) == before  # no store, no key written, no marker
    assert report["vaults_failed"] == report["orphan_manifests"] == report["deleted_chunks"] == 0
    assert not any(locations.has_store(vault) for vault in Vault.objects.all())


def reference_orphans_remove(vault: Vault, report: dict[str, int], now: datetime) -> int:
    """The per-vault sweep as it was before the pages (main before issue 20), verbatim but
    for its helpers' new home: the reference the page sweep must match."""
    store, archive = locations.vault_store(vault), locations.archive_store(vault)
    noted = store.holds.noted_points()
    keys = set(store.points())
    archived = set(archive.points())
    writing = Q(vault=vault) | Q(kind=Job.Kind.COPY, params__replica=vault.name)
    busy = {
        job.params.get("storage_key")
        for job in Job.objects.filter(writing, status__in=["queued", "running"])
    }
    rows = RecoveryPoint.objects.filter(vault=vault).exclude(storage_key="")
    known = set(rows.values_list("storage_key", flat=True))
    counts = {"standard": 0, "archive": 0, "locked": 0}
    kept: set[str] = set()
    for tier_store, tier, orphans in (
        (store, "standard", keys - busy - known),
        (archive, "archive", archived - busy - known),
    ):
        for key in sorted(orphans):
            try:
                tier_store.delete_point(key, now=now)
            except PointNotFound:
                continue
            except PointRetained:
                kept.add(key)
                continue
            except ObjectLocked:
                counts["locked"] += 1
                continue
            counts[tier] += 1
    for key in sorted(noted - keys - archived):
        store.holds.forget(key)
    sweep_module._terms_stamp(
        vault, store, archive, rows.exclude(storage_key__in=noted), keys, archived
    )
    if kept:
        sweep_module._point_missing(vault, sorted(kept))
    report["orphan_archive_points"] = report.get("orphan_archive_points", 0) + counts["archive"]
    report["kept_unknown"] = report.get("kept_unknown", 0) + len(kept)
    return counts["standard"]


def orphan_fixture(admin: Any, operator: Any, group: str, sources: Path) -> list[Vault]:
    """Two vaults with a store and one without, holding one of each case the sweep decides:
    a point its row names, orphans past their date or never dated, one the storage still
    keeps, one a queued job of the vault writes, one a copy job of another vault writes into
    this one (its replica), an archive-only orphan, and a note of a point gone everywhere."""
    vaults = []
    for n in range(2):
        vault = make_vault(admin, name=f"{group}-{n}")
        item = protect(admin, vault, small_tree(sources / f"{group}-{n}", seed=group))
        known = backup(item, operator)
        store = locations.vault_store(vault)
        source = small_tree(sources / f"{group}-{n}-orphans", files=5, seed=f"{group}{n}")
        past, future = NOW - timedelta(days=1), NOW + timedelta(days=30)
        store.backup(source, "rp-undated")
        store.backup(source, "rp-past", terms=Terms(retain_until=past))
        store.backup(source, "rp-kept", terms=Terms(retain_until=future))
        store.backup(source, "rp-own-busy")
        store.backup(source, "rp-copy-busy")
        store.backup(source, "rp-archived")
        locations.archive_store(vault).archive_point(store, "rp-archived")
        store.delete_point("rp-archived", now=NOW)
        store.holds.note("rp-gone", at=NOW - timedelta(days=2), release=True)
        Job.objects.create(
            kind="backup", status="queued", vault=vault, item=item, created_at=NOW,
            params={"storage_key": "rp-own-busy"},
        )  # fmt: skip
        vaults.append(vault)
        assert known.storage_key in store.points()
    # A copy job of the first vault writes rp-copy-busy into the second (its replica).
    Job.objects.create(
        kind="copy", status="running", vault=vaults[0], created_at=NOW,
        params={"replica": vaults[1].name, "storage_key": "rp-copy-busy"},
    )  # fmt: skip
    vaults.append(make_vault(admin, name=f"{group}-nostore"))
    return vaults


def state(vault: Vault) -> dict[str, Any]:
    store = locations.vault_store(vault)
    rows = set(RecoveryPoint.objects.filter(vault=vault).values_list("storage_key", flat=True))
    assert len(rows) == 1 and rows <= set(store.points())  # the point its row names stays
    return {
        "standard": sorted(set(store.points()) - rows),
        "archive": sorted(locations.archive_store(vault).points()),
        "noted": sorted(store.holds.noted_points()),
        "alerts": sorted(a.count for a in Alert.objects.filter(vault_name=vault.name)),
    }


def test_the_page_sweep_removes_exactly_what_the_one_by_one_sweep_did(
    people: dict[str, Any],
    storage: Path,  # noqa: F811
    frozen: Any,
) -> None:
    admin, operator = people["admin"], people["operator"]
    one_by_one = orphan_fixture(admin, operator, "one", storage / "src")
    paged = orphan_fixture(admin, operator, "page", storage / "src")
    clock.set_now(NOW)

    expected: dict[str, int] = {}
    removed = [reference_orphans_remove(v, expected, NOW) for v in one_by_one[:2]]
    report: dict[str, int] = {}
    by_vault = sweep_module.orphans_remove_page(paged, report, now=NOW)

    assert [by_vault[v.pk] for v in paged[:2]] == removed == [2, 2]  # rp-undated, rp-past
    assert paged[2].pk not in by_vault  # no store: passed over
    assert not locations.has_store(paged[2])
    assert report["kept_unknown"] == expected["kept_unknown"] == 2
    assert report["orphan_archive_points"] == expected["orphan_archive_points"] == 2
    for reference, page in zip(one_by_one[:2], paged[:2], strict=True):
        assert state(page) == state(reference)
        assert state(page)["standard"] == ["rp-copy-busy", "rp-kept", "rp-own-busy"]
        assert state(page)["archive"] == [] and state(page)["noted"] == []
    # rp-copy-busy: the copy job is the first vault's own and writes into the second.

    # The whole sweep, again: nothing more goes, the kept points are counted again.
    again = sweeps.storage_sweep(now=NOW)
    assert again["orphan_manifests"] == 0 and again["kept_unknown"] == 4  # both groups
    # The removed orphans shared their chunks with rp-kept and the busy points: all stay.
    assert again["vaults_failed"] == 0 and again["deleted_chunks"] == 0


def stored_orphans(admin: Any, count: int, prefix: str, sources: Path) -> list[Vault]:
    vaults = []
    for i in range(count):
        vault = make_vault(admin, name=f"{prefix}-{i}")
        store = locations.vault_store(vault)
        store.backup(small_tree(sources / f"{prefix}-{i}", files=1), "rp-orphan")
        store.holds.mark_stamped(NOW)
        vaults.append(vault)
    return vaults


def test_the_sweep_queries_per_page_of_vaults_not_per_vault(
    people: dict[str, Any],
    storage: Path,  # noqa: F811
    frozen: Any,
) -> None:
    admin = people["admin"]
    groups = {
        "few": stored_orphans(admin, 3, "few", storage / "src"),
        "many": stored_orphans(admin, 30, "many", storage / "src"),
    }
    names = locations.local_store_names()
    assert {v.name for group in groups.values() for v in group} <= names
    queries = {}
    for label, vaults in groups.items():
        ids = [v.pk for v in vaults]
        with CaptureQueriesContext(connection) as captured:
            for rows in sweep_module.vault_pages():
                page = sweep_module.with_store([r for r in rows if r[0] in ids], {"x"})
                assert page == []  # their names are not in the storage root given
                page = sweep_module.with_store([r for r in rows if r[0] in ids], names)
                removed = sweep_module.orphans_remove_page(page, now=NOW)
                assert sorted(removed) == sorted(ids) and set(removed.values()) == {1}
        queries[label] = len(captured)
    # The page, its vaults with a store, their running jobs, their rows: 4, for 3 as for 30.
    assert queries["few"] == queries["many"] == 4
    with CaptureQueriesContext(connection) as whole:
        report = sweeps.storage_sweep(now=NOW)
    assert report["vaults_failed"] == 0 and report["deleted_chunks"] >= 33
    # Page, vaults, jobs (rows: no key left to look up), the names of stores_without_vault.
    assert len(whole) == 4
    with CaptureQueriesContext(connection) as paged:
        sweeps.storage_sweep(now=NOW, page=10)
    assert len(paged) == 4 * 3 + 1  # 33 vaults in pages of 10: four pages


def test_gc_syncs_each_directory_it_deleted_from_once(
    people: dict[str, Any],
    storage: Path,  # noqa: F811
    frozen: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vault = make_vault(people["admin"], name="gc-sync")
    store = locations.vault_store(vault)
    store.backup(small_tree(storage / "src" / "kept", files=3, seed="kept"), "rp-kept")
    kept = {chunk_key(c) for c in chunk_ids_of(store.read_manifest("rp-kept"))}
    # What a backup that died long ago left (its lease expired): 600 chunks no manifest
    # names, over at most 256 directories, so most directories lose several.
    gone = {chunk_key(os.urandom(32).hex()) for _ in range(600)}
    for key in gone:
        store.backend.put(key, b"left by a dead backup")
    synced: list[str] = []
    real = backends.fsync_dir

    def spy(path: Path) -> None:  # counts, then syncs for real
        synced.append(str(Path(path).relative_to(store.backend.root)))
        real(path)

    monkeypatch.setattr(backends, "fsync_dir", spy)
    result = store.gc()

    assert result.deleted_chunks == len(gone) == 600
    chunk_dirs = [d for d in synced if d.startswith("chunks")]
    assert sorted(chunk_dirs) == sorted({k.rsplit("/", 1)[0] for k in gone})  # each once
    assert len(chunk_dirs) < result.deleted_chunks
    # The marker goes last, once the deletes are durable (writers wait for it to go).
    assert synced[-1] == "gc" and synced.index(chunk_dirs[-1]) < len(synced) - 1
    assert set(store.backend.list("chunks/")) == kept
    assert store.verify("rp-kept").ok
    synced.clear()
    assert store.gc().deleted_chunks == 0  # idempotent
    assert synced == []  # and a store with nothing to collect is only read: no marker
