"""One run at a time of a periodic task, whatever the number of workers, beats and hosts.

Beat fires a task every period whether or not the last run has ended, and a second beat or a
redelivered message runs it again: the tasks are idempotent, but an overlapping run doubles
the work and contends for the same rows. :func:`single_run` takes a session-level PostgreSQL
advisory lock named after the task with ``pg_try_advisory_lock``: the run that gets it does
the work, a run that overlaps it skips at once. The lock ends with the run, or with its
connection if the worker dies. On SQLite (the embedded default, one worker) every run goes.
"""

from __future__ import annotations

import contextlib
import logging
import zlib
from collections.abc import Iterator

from django.db import DatabaseError, connection

logger = logging.getLogger(__name__)

# The first key of the two-key form, "Hold": periodic task locks never meet the one-key
# locks of the audit chain and the report e-mail (PostgreSQL keeps the two forms apart).
LOCK_CLASS = 0x486F6C64


def lock_key(name: str) -> int:
    """The task's second key: a stable signed 32-bit hash of its name."""
    key = zlib.crc32(name.encode())
    return key - (1 << 32) if key >= 1 << 31 else key


@contextlib.contextmanager
def single_run(name: str) -> Iterator[bool]:
    """``with single_run("holdfast.dispatch_backups") as mine: if mine: ...``: True for the
    one run holding the task's lock, False while another run holds it."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_CLASS, lock_key(name)])
        mine = bool(cursor.fetchone()[0])
    if not mine:
        logger.info("%s skipped: another run holds its lock", name)
    try:
        yield mine
    finally:
        if mine:
            try:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT pg_advisory_unlock(%s, %s)", [LOCK_CLASS, lock_key(name)]
                    )
            except DatabaseError:  # a broken connection: closing it ends the lock too
                connection.close()
