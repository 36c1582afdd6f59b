"""``manage.py audit_verify [--last N]``: check the audit log's hash chain.

Exits 0 when every link holds and prints the head hash (keep it somewhere the database's
administrators cannot write, to detect a rewrite of the whole tail later); otherwise names the
first broken record and exits non-zero.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal import audit


class Command(BaseCommand):
    help = "Verify the audit log's hash chain and report the first broken link."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--last", type=int, default=None, help="Check only the most recent N records."
        )
        parser.add_argument(
            "--expect-head",
            default="",
            help="Fail unless the chain's head hash is this one (or a later record follows it).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        status = audit.verify(last=options["last"])
        if not status.ok:
            raise CommandError(
                f"Audit chain broken at record {status.broken_id}: {status.reason}. "
                f"{status.checked - 1} record(s) before it verified."
            )
        expected = options["expect_head"]
        if expected and expected != status.head and not audit.contains_hash(expected):
            raise CommandError(
                f"Audit chain does not contain the expected head {expected}: records at the "
                "end of the log were removed or the log was rewritten."
            )
        scope = f"the last {status.checked}" if status.partial else f"{status.checked}"
        self.stdout.write(f"Audit chain intact: {scope} record(s) verified.")
        if status.unchained:
            self.stdout.write(
                f"{status.unchained} older record(s) predate the chain and are not covered."
            )
        self.stdout.write(f"Head: {status.head or '(empty log)'}")
