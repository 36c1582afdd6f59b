"""``manage.py audit_anchor``: write the audit chain's head to the anchor stores now.

What the hourly task ``holdfast.audit_anchor`` does (docs/security.md, "Audit anchors"): the
log is first checked against the latest anchors already written, and a log that no longer
matches them is not anchored (non-zero exit, and the ``audit_chain_broken`` alert). Exits
non-zero, saying where, when a store could not be written.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from portal import audit


class Command(BaseCommand):
    help = "Write the audit chain's head to local disk and S3 (under Object Lock) now."

    def handle(self, *args: Any, **options: Any) -> None:
        result = audit.anchor()
        if result.refused:
            raise CommandError(result.refused)
        anchor = result.anchor
        assert anchor is not None
        what = f"record {anchor.record_id} ({anchor.count} record(s), head {anchor.hash})"
        for store in result.outcome.written:
            self.stdout.write(f"Anchored {what} in {store}.")
        for store in result.outcome.present:
            self.stdout.write(f"Already anchored {what} in {store}.")
        if result.outcome.failed:
            raise CommandError(
                " ".join(
                    f"Could not write the anchor to {store}: {sentence}"
                    for store, sentence in result.outcome.failed
                )
            )
