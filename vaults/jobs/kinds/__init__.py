"""One runner per job kind, and the table :func:`runner.job_run` looks them up in.

A runner takes the claimed job and its heartbeat (call ``beat(done, total)`` with progress)
and either finishes the job (``state.finish``) or raises ``JobFailed`` with the sentence to
show. A new kind: a ``Job.Kind`` value, its runner module here, one line in ``RUNNERS``, and
the request that queues it (``requests.py``) or the schedule that does (``schedules.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from ...models import Job
from ..state import Heartbeat
from . import backup, copy, drill, rehydrate, restore, storage_lock, sweep, tier_move, verify

Kind = Job.Kind

RUNNERS: dict[str, Callable[[Job, Heartbeat], None]] = {
    Kind.BACKUP: backup.run,
    Kind.RESTORE: restore.run,
    Kind.VERIFY: verify.run,
    Kind.TIER_MOVE: tier_move.run,
    Kind.REHYDRATE: rehydrate.run,
    Kind.SWEEP: sweep.run,
    Kind.STORAGE_LOCK: storage_lock.run_storage_lock,
    Kind.LOCK_VERIFY: storage_lock.run_lock_verify,
    Kind.COPY: copy.run,
    Kind.DRILL: drill.run,
}
