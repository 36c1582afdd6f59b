"""The ``postgres`` source kind's halves of the backup and restore jobs (SPEC 3.13).

A backup streams ``pg_dump`` through the chunker into a point holding one file,
``<database>.pgdump`` (``storage.stream``), and records the server's version and the
database's size on the point (``workload``). A restore creates the database named in the
request and streams the file from the store into ``pg_restore``; a restore that fails or is
cancelled drops the database it created. docs/workloads.md has the whole story.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings

from ...models import Job, ProtectedItem, RecoveryPoint
from ...storage import VaultStore
from ...storage.backends import Retention
from ...storage.backup import BackupResult
from ...storage.manifest import Terms
from ...storage.stream import backup_stream, read_stream
from ...workloads import postgres
from ..state import Heartbeat, JobFailed, finish

logger = logging.getLogger(__name__)


def is_database_point(point: RecoveryPoint) -> bool:
    """A dump of a PostgreSQL database (replica copies included: the facts travel along)."""
    return postgres.is_dump(point.workload)


def _service() -> str:
    return str(getattr(settings, "HOLDFAST_PG_SERVICE", "") or "")


def dump_into(
    store: VaultStore,
    item: ProtectedItem,
    key: str,
    beat: Heartbeat,
    *,
    retention: Retention | None,
    terms: Terms | None,
) -> tuple[BackupResult, dict[str, Any]]:
    """Dump the item's database into point ``key``; the result and the point's workload."""
    database, service = item.source_path, _service()
    try:
        # Read first, for the progress bar's scale; if the server cannot be reached,
        # pg_dump says why in its own words just after.
        before: dict[str, Any] | None = postgres.facts(database, service=service)
    except postgres.WorkloadFailed:
        before = None
    name = postgres.dump_file_name(database)
    try:
        with postgres.Dump(database, service=service) as dump:
            result = backup_stream(
                store,
                key,
                name,
                dump.pieces(),
                source=f"postgres:{database}",
                progress=beat,
                expected_bytes=(before or {}).get("database_size", 0),
                retention=retention,
                terms=terms,
            )
    except postgres.WorkloadFailed as exc:
        raise JobFailed(f"The dump of database {database} failed: {exc}") from None
    if before is None:
        with contextlib.suppress(postgres.WorkloadFailed):
            before = postgres.facts(database, service=service)
    workload: dict[str, Any] = {"kind": postgres.KIND, "database": database, "file": name}
    workload.update(before or {"server_version": None, "database_size": None})
    return result, workload


def _counted(pieces: Iterable[bytes], beat: Heartbeat, total: int) -> Iterator[bytes]:
    done = 0
    for piece in pieces:
        yield piece
        done += len(piece)
        beat(done, max(total, done))  # also where a cancel stops the restore


def restore_run(job: Job, point: RecoveryPoint, store: VaultStore, beat: Heartbeat) -> None:
    """Restore the point's dump into the new database ``job.params["target_database"]``."""
    target = str(job.params.get("target_database") or "")
    workload = point.workload or {}
    if not target or postgres.name_refusal(target) is not None:
        raise JobFailed(
            f"Recovery point {point.pk} is a dump of database {workload.get('database')}: a "
            "restore needs a valid target_database."
        )
    service = _service()
    try:
        postgres.database_create(target, service=service)
    except postgres.WorkloadFailed as exc:
        raise JobFailed(f"The restore of recovery point {point.pk} did not start: {exc}") from None
    try:
        pieces = read_stream(store, point.storage_key, str(workload.get("file")))
        fed = postgres.restore(target, _counted(pieces, beat, point.logical_bytes), service=service)
    except BaseException as exc:
        try:
            postgres.database_drop(target, service=service)
        except postgres.WorkloadFailed as drop_failed:
            logger.warning("database %s left after a failed restore: %s", target, drop_failed)
        if isinstance(exc, postgres.WorkloadFailed):
            raise JobFailed(
                f"The restore into database {target} failed: {exc} The database it created "
                "was removed."
            ) from None
        raise
    finish(job, done=fed, total=fed, files=1)
