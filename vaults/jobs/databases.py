"""What a restore request of a database dump must name (SPEC 3.13, section 5): a new
database, ``target_database``, never a directory; and a directory point never a database.

The name is checked where the request is made: its form, never Holdfast's own database nor
the server's system ones, and not one that exists on the server as this process's libpq
settings reach it (a service or PG* variables; never libpq's defaults, which may name another
server). A web host without them, or that cannot reach the server within 3 s, leaves that
last check to the worker, whose CREATE DATABASE refuses an existing name.
"""

from __future__ import annotations

import contextlib

from django.conf import settings

from portal.gate import DomainError

from .. import rules
from ..models import RecoveryPoint
from ..workloads import postgres


def _refused(detail: str, field: str) -> DomainError:
    return DomainError("validation_error", detail, field=field)


def check_target(
    point: RecoveryPoint, *, target_path: str, target_database: str, on_host: str = ""
) -> bool:
    """Refuse a target that does not fit the point; True for a database restore. Restored
    ``on_host`` (a named host), the server is the one that host's workers reach, not this
    process's: whether the name exists there is left to the worker's CREATE DATABASE."""
    workload = point.workload or {}
    if not postgres.is_dump(workload):
        if target_database:
            raise _refused(
                f"target_database: recovery point {point.pk} is a copy of files, not of a "
                "database: restore it to a directory (target_path).",
                "target_database",
            )
        return False
    source = workload.get("database")
    if target_path:
        raise _refused(
            f"target_path: recovery point {point.pk} is a dump of database {source}: it "
            "restores into a new database (target_database), not a directory.",
            "target_path",
        )
    if not target_database:
        raise _refused(
            f"target_database: recovery point {point.pk} is a dump of database {source}: name "
            "the new database to restore it into.",
            "target_database",
        )
    refusal = postgres.name_refusal(target_database)
    if refusal is not None:
        raise _refused(f"target_database: {refusal}", "target_database")
    if rules.own_database(target_database):
        raise _refused(
            f"target_database: {target_database} is Holdfast's own database: a restore never "
            "writes there. Choose a new name.",
            "target_database",
        )
    if target_database in postgres.SYSTEM_DATABASES:
        raise _refused(
            f"target_database: {target_database} is one of the server's own databases. "
            "Choose a new name.",
            "target_database",
        )
    service = str(getattr(settings, "HOLDFAST_PG_SERVICE", "") or "")
    exists = False  # not known here: the worker's CREATE DATABASE decides
    if not on_host and postgres.configured(service):
        with contextlib.suppress(postgres.WorkloadFailed):
            exists = postgres.database_exists(target_database, service=service, timeout=3)
    if exists:
        raise _refused(
            f"target_database: database {target_database} already exists on the server: a "
            "restore only creates a new database. Choose another name.",
            "target_database",
        )
    return True
