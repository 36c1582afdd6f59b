"""The storage sweep: orphan points the storage no longer keeps, then each store's garbage
collection, over every vault in pages of ``PAGE`` (issue 20).

Per page of vaults (keyset over the vault id): one query reads the page's ids, names and
locations; a local vault with no store (its name is in neither tier's directory, listed once
a sweep) has nothing to collect and is passed over, and no directory is made to look. For
the others, if any: one query reads their rows; their storage is listed (notes, then points
of each tier); then one query reads the running jobs that write into any of them and one
the point rows that name any key listed. Each vault's orphans are then decided as before
(``orphans_remove`` has the rules), and its store collected (`VaultStore.gc`: each directory
it deleted from synced once; a store with nothing to delete only read).

Run by the periodic sweep job (``runner.sweep_run``) or ``manage.py sweep``; docs/jobs.md,
"Storage sweep", has the queries and their plans.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.db.models import Q, QuerySet

from portal import clock, gate
from portal.alerts import raise_alert
from portal.gate import DomainError

from ..keyring import stored_key_backend
from ..locations import has_store, is_s3, local_store_names, swept_stores
from ..models import Job, RecoveryPoint, Vault
from ..storage import ArchiveStore, PointNotFound, StorageError, VaultStore
from ..storage.backends import LocalBackend
from ..storage.crypto import KeyUnavailable, SealedBackend
from ..storage.errors import ObjectLocked, PointRetained
from ..storage.holds import Holds
from ..storage_notes import storage_note

logger = logging.getLogger(__name__)

# Vaults per page: one query for the page, and for those with a store one for their running
# jobs and one for their point rows.
PAGE = 500

Status = Job.Status
# What stops one vault's sweep and not the others' (OSError: a local store that cannot be
# opened at all, e.g. its directory replaced or unmounted).
FAILURES = (StorageError, DomainError, OSError)
Failed = Callable[[Vault, Exception], None]


@dataclass(frozen=True)
class _Listed:
    """What one vault's storage held when it was listed, before the page's queries."""

    vault: Vault
    store: VaultStore
    archive: ArchiveStore
    noted: set[str]
    keys: set[str]
    archived: set[str]


def _listed(vault: Vault, store: VaultStore, archive: ArchiveStore) -> _Listed:
    # Order matters. Notes first: a note is written only for a point whose manifest exists,
    # so a noted point in neither listing below is gone for good (a tier move writes the
    # archive copy before it removes the standard one, and standard is listed first). Then
    # keys, and only then (`_busy`, `_known`) running jobs and rows: a backup commits its
    # row while its job is running, so this order never misses a point being published.
    noted = store.holds.noted_points()
    keys = set(store.points())
    archived = set(archive.points())
    return _Listed(vault, store, archive, noted, keys, archived)


def _busy(vaults: Sequence[Vault]) -> dict[int, set[str | None]]:
    """The storage keys that queued and running jobs write into each vault, in one query:
    its own jobs, and the copy jobs of other vaults whose replica it is (SPEC 3.10)."""
    by_name = {vault.name: vault.pk for vault in vaults}
    busy: dict[int, set[str | None]] = {vault.pk: set() for vault in vaults}
    writing = Q(vault_id__in=list(busy)) | Q(kind=Job.Kind.COPY, params__replica__in=list(by_name))
    jobs = Job.objects.filter(writing, status__in=[Status.QUEUED, Status.RUNNING]).order_by()
    for vault_id, kind, params in jobs.values_list("vault_id", "kind", "params"):
        params = params if isinstance(params, dict) else {}
        key = params.get("storage_key")
        if vault_id in busy:
            busy[vault_id].add(key)
        replica = params.get("replica")
        if kind == Job.Kind.COPY and isinstance(replica, str) and replica in by_name:
            busy[by_name[replica]].add(key)
    return busy


# The rows that name a listed key, in one statement for a page of vaults (docs/jobs.md).
KNOWN_SQL = (
    "SELECT vault_id, storage_key FROM vaults_recoverypoint "
    "WHERE vault_id = ANY(%s) AND storage_key = ANY(%s)"
)


def _known(listed: Sequence[_Listed]) -> dict[int, set[str]]:
    """Of the keys each vault's storage listed, those a point row of that vault names."""
    known: dict[int, set[str]] = {item.vault.pk: set() for item in listed}
    keys = sorted(set().union(*(item.keys | item.archived for item in listed)))
    if not keys:
        return known
    with connection.cursor() as cursor:
        cursor.execute(KNOWN_SQL, [list(known), keys])
        for vault_id, key in cursor.fetchall():
            known[vault_id].add(key)
    return known


def _settle(
    item: _Listed,
    busy: set[str | None],
    known: set[str],
    report: dict[str, int] | None,
    now: datetime,
) -> int:
    """Delete one vault's orphans as listed, forget the notes of points gone from both
    tiers, stamp old points' terms, report what the storage keeps (`orphans_remove`)."""
    vault, store, archive = item.vault, item.store, item.archive
    counts = {"standard": 0, "archive": 0, "locked": 0}
    kept: set[str] = set()
    for tier, tier_store, orphans in (
        ("standard", store, item.keys - busy - known),
        ("archive", archive, item.archived - busy - known),
    ):
        for key in sorted(orphans):
            try:
                tier_store.delete_point(key, now=now)
            except PointNotFound:
                continue
            except PointRetained:
                kept.add(key)
                continue
            except ObjectLocked as exc:  # reported; deleted by a sweep once the lock ended
                logger.info("orphan %s point %s of vault %s kept: %s", tier, key, vault.name, exc)
                counts["locked"] += 1
                continue
            counts[tier] += 1
    for key in sorted(item.noted - item.keys - item.archived):
        store.holds.forget(key)
    rows = RecoveryPoint.objects.filter(vault=vault).exclude(storage_key="")
    _terms_stamp(
        vault, store, archive, rows.exclude(storage_key__in=item.noted), item.keys, item.archived
    )
    if kept:
        _point_missing(vault, sorted(kept))
    if report is not None:
        report["orphan_archive_points"] = report.get("orphan_archive_points", 0) + counts["archive"]
        report["locked_orphans"] = report.get("locked_orphans", 0) + counts["locked"]
        report["kept_unknown"] = report.get("kept_unknown", 0) + len(kept)
    return counts["standard"]


def orphans_remove_page(
    vaults: Sequence[Vault],
    report: dict[str, int] | None = None,
    *,
    now: datetime | None = None,
    failed: Failed | None = None,
) -> dict[int, int]:
    """`orphans_remove` for a page of vaults: each vault's storage listed first, then one
    query for the page's running jobs and one for its rows, then each vault settled.
    Vaults with no store are passed over (absent from the result). A vault whose storage
    fails goes to ``failed`` and the others go on; without ``failed`` the error is raised.
    Returns the standard-tier manifests removed, by vault id."""
    now = now or clock.now()
    listed: list[_Listed] = []
    for vault in vaults:
        try:
            stores = swept_stores(vault)
            if stores is not None:
                listed.append(_listed(vault, *stores))
        except FAILURES as exc:
            if failed is None:
                raise
            failed(vault, exc)
    if not listed:
        return {}
    busy = _busy([item.vault for item in listed])
    known = _known(listed)
    removed: dict[int, int] = {}
    for item in listed:
        pk = item.vault.pk
        try:
            removed[pk] = _settle(item, busy[pk], known[pk], report, now)
        except FAILURES as exc:
            if failed is None:
                raise
            failed(item.vault, exc)
    return removed


def orphans_remove(
    vault: Vault, report: dict[str, int] | None = None, *, now: datetime | None = None
) -> int:
    """Delete points of either tier that no point row names and no running job is writing,
    once the storage itself no longer keeps them (SPEC 8.3): the retain-until their manifest
    records, raised by later notes, has passed, or a release was noted (a point deleted by a
    person, or purged). That covers a backup that crashed between its manifest and its row
    (once its expiry has passed) and data whose deletion the storage refused while its lock
    lasted. A point the storage must still keep is kept whatever the database says: counted
    (``kept_unknown``), audited and raised as one ``point_missing`` security alert per vault.
    A manifest or note that cannot be read stops the vault's sweep with a `StorageError`,
    as a damaged manifest stops GC: nothing is deleted on a guess. A local vault with no
    store has nothing to remove, and none is created to look.

    Returns how many standard-tier manifests went; ``report`` also counts archive copies,
    refusals and kept points. The storage sweep does this a page of vaults at a time
    (`orphans_remove_page`)."""
    return orphans_remove_page([vault], report, now=now).get(vault.pk, 0)


def _terms_stamp(
    vault: Vault,
    store: VaultStore,
    archive: ArchiveStore,
    unnoted: QuerySet[RecoveryPoint],
    keys: set[str],
    archived: set[str],
) -> int:
    """Once per vault: note the expiry of every point whose manifest predates recorded terms
    (docs/storage.md), from its row, so the storage keeps older points as it keeps new ones.
    This trusts the database once, at the first storage sweep after the upgrade; from then
    on the vault's store says it was done. Also records a locked vault's lock if its store
    lacks it (a vault locked before its first backup, or before the upgrade)."""
    if store.holds.stamped():
        storage_note(vault=vault)
        return 0
    old = []
    for point in unnoted.select_related("vault"):
        key = point.storage_key
        source = store if key in keys else archive if key in archived else None
        with contextlib.suppress(PointNotFound):  # gone since listed: nothing to stamp
            if source is not None and source.terms(key) is None:
                old.append(point)
    storage_note(old, vault=vault)
    store.holds.mark_stamped(clock.now())
    return len(old)


def _point_missing(vault: Vault | None, kept: list[str], *, name: str = "") -> None:
    """Audit the discovery and raise (or count again) the vault's ``point_missing`` alert;
    ``vault`` None: the store of a vault named ``name`` whose row is gone."""
    name = vault.name if vault is not None else name
    shown = ", ".join(kept[:5]) + (", ..." if len(kept) > 5 else "")
    whose = "that the database no longer names" if vault else "and the database has no such vault"
    message = (
        f"The storage of vault {name} holds {len(kept)} recovery point(s) {whose} ({shown}). "
        "Their data is kept until the storage's own retain-until date and restores from the "
        "store as it is. Rows deleted outside Holdfast leave this (so does a backup that "
        "crashed before recording its point): check the audit log and who can write to "
        "the database."
    )
    target = f"vault:{name}"
    gate.execute(
        "point_missing_found",
        actor=None,
        vault=vault,
        vault_name=name,
        target=target,
        change=lambda check: raise_alert(
            "point_missing", vault_name=name, target=target, message=message
        ),
        after=lambda _: {"kept": len(kept), "storage_keys": kept[:100]},
    )


def stores_without_vault(*, now: datetime | None = None) -> int:
    """Local vault stores whose vault row is gone. No sweep visits them, so nothing deletes
    their data; but one still holding points its storage keeps means the database forgot a
    whole vault: the same ``point_missing`` alert, under the store's vault name. (An S3
    vault's location lives only in its row, so its store cannot be found this way.)
    Returns how many such stores keep points."""
    now = now or clock.now()
    root = Path(settings.HOLDFAST_STORAGE_ROOT)
    names = {
        entry.name
        for tier in ("vaults", "archive")
        if (root / tier).is_dir()
        for entry in os.scandir(root / tier)
        if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".")
    }
    found = 0
    for name in sorted(names - set(Vault.objects.values_list("name", flat=True))):
        # Opened with the data key kept beside the data: no row holds it any more.
        try:
            standard = stored_key_backend(LocalBackend(root / "vaults" / name))
        except KeyUnavailable as exc:
            # Unreadable without its key: what it keeps cannot be judged, so it is reported.
            _point_missing(None, [f"keys/ ({exc})"], name=name)
            found += 1
            continue
        holds = Holds(standard)
        archive = SealedBackend(
            LocalBackend(root / "archive" / name),
            standard.key,
            legacy_plaintext=standard.legacy_plaintext,
        )
        kept: set[str] = set()
        for store in (VaultStore(standard), ArchiveStore(archive, holds=holds)):
            for key in store.points():
                try:
                    if not store.keep(key).allows_delete(now):
                        kept.add(key)
                except PointNotFound:
                    continue
                except StorageError as exc:
                    # Unreadable (its keys removed, a planted object): reported as kept.
                    kept.add(f"{key} ({exc})")
        if kept:
            _point_missing(None, sorted(kept), name=name)
            found += 1
    return found


def vault_pages(size: int = PAGE) -> Iterator[list[tuple[int, str, str]]]:
    """Every vault's (id, name, storage location), ``size`` at a time in id order: keyset
    pages over the primary key, one query each."""
    after = 0
    rows = Vault.objects.order_by("pk").values_list("pk", "name", "storage_location")
    while True:
        page = list(rows.filter(pk__gt=after)[:size])
        if page:
            yield page
        if len(page) < size:
            return
        after = page[-1][0]


def with_store(page: Sequence[tuple[int, str, str]], local: set[str]) -> list[Vault]:
    """The page's vaults that may have a store (an S3 vault, or a local one whose name the
    storage root holds), their rows in full, in one query; none when none has one."""
    ids = [pk for pk, name, location in page if is_s3(location) or name in local]
    return list(Vault.objects.filter(pk__in=ids).order_by("pk")) if ids else []


def storage_sweep(
    *, now: datetime | None = None, failures: list[str] | None = None, page: int = PAGE
) -> dict[str, int]:
    """Remove orphan manifests the storage no longer keeps, then collect unreferenced chunks
    in every vault's store, ``page`` vaults at a time (the module docstring). One vault
    whose storage fails does not stop the others; its sentence goes to ``failures``.

    The store's GC is lease-based and never deletes a chunk a running backup is about to
    reference, nor one a kept manifest names (docs/storage.md), so this may run at any time."""
    now = now or clock.now()
    report = {
        "orphan_manifests": 0,
        "orphan_archive_points": 0,
        "locked_orphans": 0,
        "kept_unknown": 0,
        "deleted_chunks": 0,
        "freed_bytes": 0,
        "retained_chunks": 0,
        "refused_deletes": 0,
        "vaults_failed": 0,
        "stores_without_vault": 0,
    }

    def failed(vault: Vault, exc: Exception) -> None:
        reason = getattr(exc, "detail", None) or str(exc)
        logger.warning("storage sweep of vault %s failed: %s", vault.name, reason)
        report["vaults_failed"] += 1
        if failures is not None:
            failures.append(f"vault {vault.name}: {reason}")

    local = local_store_names()  # one listing: a vault created since has nothing yet
    for rows in vault_pages(page):
        vaults = with_store(rows, local)
        removed = orphans_remove_page(vaults, report, now=now, failed=failed)
        for vault in vaults:
            # Swept (a failed vault is left out), and a standard tier to collect exists.
            if vault.pk not in removed:
                continue
            report["orphan_manifests"] += removed[vault.pk]
            if not has_store(vault):
                continue
            try:
                stores = swept_stores(vault)
                result = stores[0].gc() if stores is not None else None
            except FAILURES as exc:
                failed(vault, exc)
                continue
            if result is None:
                continue
            report["deleted_chunks"] += result.deleted_chunks
            report["freed_bytes"] += result.freed_bytes
            report["retained_chunks"] += result.retained_chunks
            report["refused_deletes"] += result.refused_deletes
    try:
        report["stores_without_vault"] = stores_without_vault(now=now)
    except (StorageError, OSError) as exc:
        logger.warning("looking for stores without a vault failed: %s", exc)
        if failures is not None:
            failures.append(f"stores without a vault row: {exc}")
    return report
