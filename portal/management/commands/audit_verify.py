"""``manage.py audit_verify [--last N] [--local-only] [--require-anchor] [--expect-head HASH]``.

Checks the audit log's hash chain, then the log against the latest anchor in every anchor
store (local disk and S3; docs/security.md, "Audit anchors"). Exits 0 when every link holds
and the log matches every anchor, printing the head and the anchor it matches; otherwise
names the first broken record and each anchor the log no longer matches, and exits non-zero.
What cannot be checked (no anchor yet, an unreadable store) is printed as a warning.

Records committed but not linked into the chain yet (a process stopped between its commit and
the linker, ``portal/audit_link.py``) are linked first, so every committed decision is checked.
Progress goes to stderr every 100,000 records (``--quiet`` for none).
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal import audit, audit_link, audit_scan


class Command(BaseCommand):
    help = "Verify the audit log's hash chain and check it against its anchors."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--last", type=int, default=None, help="Check the links of the most recent N records."
        )
        parser.add_argument(
            "--local-only",
            action="store_true",
            help="Read anchors from local disk only, not from S3.",
        )
        parser.add_argument(
            "--require-anchor",
            action="store_true",
            help="Fail unless the log matches at least one anchor.",
        )
        parser.add_argument(
            "--expect-head",
            default="",
            help="Fail unless the chain contains this hash (a head kept elsewhere by hand).",
        )
        parser.add_argument("--quiet", action="store_true", help="No progress on stderr.")

    def handle(self, *args: Any, **options: Any) -> None:
        last = options["last"]
        if last is not None and last < 1:
            raise CommandError("--last needs a positive number of records.")
        linked = audit_link.link_pending()
        if linked:
            self.stderr.write(f"Linked {linked} committed record(s) that were not linked yet.")
        started = time.monotonic()

        def progress(checked: int, total: int) -> None:
            share = f" of {total:,} ({checked * 100 // max(total, 1)}%)" if total else ""
            rate = checked / max(time.monotonic() - started, 1e-9)
            self.stderr.write(f"Verified {checked:,}{share} record(s), {rate:,.0f}/s")

        try:
            status = audit.verify(
                last=last,
                remote=not options["local_only"],
                progress=None if options["quiet"] else progress,
            )
        except audit_scan.RangeLost as error:
            raise CommandError(f"Audit log not verified: {error}.") from error
        for warning in status.warnings:
            self.stderr.write(f"Warning: {warning}")
        if not status.chain_ok:
            raise CommandError(
                f"Audit chain broken at record {status.broken_id}: {status.reason}. "
                f"{status.checked - 1} record(s) before it verified."
                + "".join(f" {problem}" for problem in status.failures[1:])
            )
        if not status.ok:
            raise CommandError("Audit log does not match its anchors: " + " ".join(status.failures))
        expected = options["expect_head"]
        if expected and expected != status.head and not audit.contains_hash(expected):
            raise CommandError(
                f"Audit chain does not contain the expected head {expected}: records at the "
                "end of the log were removed or the log was rewritten."
            )
        anchored = status.anchored
        if anchored is None and options["require_anchor"]:
            raise CommandError(
                "No anchor to check the log against: run manage.py audit_anchor, and check that "
                "the anchor stores above are reachable."
            )
        scope = f"the last {status.checked}" if status.partial else f"{status.checked}"
        self.stdout.write(f"Audit chain intact: {scope} record(s) verified.")
        for check in status.anchors:
            self.stdout.write(
                f"Matches the anchor in {check.store}: record {check.anchor.record_id}, "
                f"{check.anchor.count} record(s), anchored {check.anchor.at:%Y-%m-%d %H:%M} UTC."
            )
        if anchored is not None:
            self.stdout.write(
                f"Anchored at record {anchored.anchor.record_id}; {status.unanchored} newer "
                "record(s) not anchored yet."
            )
        self.stdout.write(f"Head: {status.head or '(empty log)'}")
