"""Jobs (SPEC 3.8): backups, restores, verification, tier moves, rehydration and sweeps.

The database is the source of truth for what must run. A job is a ``Job`` row; Celery only
carries its id. A worker claims a queued job with a compare-and-set (``UPDATE ... WHERE
status = 'queued'``), so a message delivered twice (Redis redelivery, a retried task, two
beats) runs the work once. A scheduled backup's (item, slot) is unique, so two dispatchers
racing create one job. A running job heartbeats from a side thread; a job whose heartbeat
went stale (its worker was killed) is failed by :func:`sweeps.jobs_fail_stale`.

A recovery point row is recorded only after the store has published the point's manifest,
in the same transaction that completes the job: no half point is ever visible. The data
plane is ``vaults.storage``; docs/jobs.md describes the whole flow.

The rooms, lowest first (each imports only those above it, so there is no import circle):

- ``state``: a job row through its life (new, progress heartbeat, finished, failed, its
  failure alert) and ``with_database``, which survives a database restart.
- ``requests``: asking for a job, through the gate (backup, restore, verify, rehydrate,
  storage lock, lock verification), and the storage-lock follow-up services call after a
  change that grows locks. Jobs are sent to the workers by task name.
- ``kinds``: one runner per job kind (``kinds/backup.py``, ...) and the table of them.
- ``runner``: claim a queued job and run it to completed or failed; run a sweep now.
- ``dispatch``: the backup dispatcher, set-based (due slots per distinct schedule, one
  insert of the missing jobs, one audit record per tick).
- ``schedules``: what beat dispatches (due backups, tier moves, verifications, lock checks).
- ``sweeps``: expiry, snapshot lapse, rehydration end, soft-delete purges, stale jobs,
  orphans and the storage garbage collection.
- ``views``, ``api``, ``forms``, ``urls``, ``api_urls``: the jobs pages and endpoints.
"""
