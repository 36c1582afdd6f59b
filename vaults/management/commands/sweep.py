"""``manage.py sweep points|storage|jobs|all``: run a sweep now instead of waiting for beat.

Each sweep runs here, in this process, as a recorded sweep job (``vaults.jobs.runner.sweep_run``),
exactly as the periodic task runs it; its report is printed. ``all`` runs the jobs, points
and storage sweeps in that order (stale jobs failed first, so their storage keys no longer
look busy; expired points before the storage they free). Exits non-zero with the job's
sentence when a sweep fails, e.g. a vault's storage cannot be reached.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.gate import DomainError, entry_point
from vaults.jobs import runner

ORDER = ("jobs", "points", "storage")


class Command(BaseCommand):
    help = "Run a sweep now: stale jobs, expired points, orphan storage and garbage, or all."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("sweep", choices=[*ORDER, "all"], help="Which sweep to run.")

    def handle(self, *args: Any, **options: Any) -> None:
        names = ORDER if options["sweep"] == "all" else (options["sweep"],)
        failed: list[str] = []
        for name in names:
            try:
                with entry_point("command"):
                    job = runner.sweep_run(sweep=name)
            except DomainError as exc:
                raise CommandError(exc.detail) from None
            report = job.params.get("report") or {}
            self.stdout.write(f"{name} sweep (job #{job.pk}): {job.status}")
            for key, value in sorted(report.items()):
                self.stdout.write(f"  {key}: {value}")
            if job.status != job.Status.COMPLETED:
                failed.append(f"The {name} sweep failed: {job.error or 'it did not finish.'}")
        if failed:
            raise CommandError(" ".join(failed))
