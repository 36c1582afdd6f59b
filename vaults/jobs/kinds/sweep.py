"""A sweep job: stale jobs, expired points, or orphan storage and garbage, with its report."""

from __future__ import annotations

from ...models import Job
from ..state import Heartbeat, JobFailed, finish
from ..sweeps import jobs_fail_stale, points_sweep, storage_sweep


def run(job: Job, beat: Heartbeat) -> None:
    what = job.params.get("sweep", "points")
    failures: list[str] = []
    if what == "jobs":
        report = {"failed_stale_jobs": jobs_fail_stale()}
    elif what == "points":
        report = points_sweep()
    else:
        report = storage_sweep(failures=failures)
    Job.objects.filter(pk=job.pk).update(params={**job.params, "report": report})
    if failures:
        raise JobFailed(
            f"The storage of {len(failures)} vault(s) could not be swept ("
            + "; ".join(failures[:5])
            + "). The other vaults were swept; the next sweep tries these again."
        )
    finish(job)
