"""The weekly verification schedule set-based (issue 20, deliverable 3): the newest point per
item in one query per page of items, the due ones queued by one gate decision per page."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from portal.models import AuditRecord
from tests.factories import make_vault
from tests.test_expiry_batch import _item, _point
from vaults.jobs import schedules
from vaults.models import Job, RecoveryPoint

pytestmark = pytest.mark.django_db
DAY = timedelta(days=1)


def _verify_jobs() -> dict[int, int]:
    jobs = Job.objects.filter(kind="verify").values_list("recovery_point_id", "status")
    counts: dict[int, int] = {}
    for point, _ in jobs:
        counts[point] = counts.get(point, 0) + 1
    return counts


@pytest.mark.parametrize("batch", [1, 2, 1000])
def test_the_newest_verifiable_point_of_each_item_is_queued_once(
    admin: Any, tmp_path: Path, clock: Any, batch: int
) -> None:
    vault = make_vault(admin, name="verify")
    made: dict[str, RecoveryPoint] = {}
    for name in ("plain", "recent", "archived", "corrupt", "queued", "empty"):
        item = _item(admin, vault, tmp_path, name=name)
        if name == "empty":
            continue
        older = _point(item, 30 * DAY, created_at=clock.now() - 3 * DAY)
        newest = _point(item, 30 * DAY, created_at=clock.now() - DAY)
        made[f"{name}/older"], made[f"{name}/newest"] = older, newest
    RecoveryPoint.objects.filter(pk=made["recent/newest"].pk).update(
        verified_at=clock.now() - 2 * DAY
    )
    RecoveryPoint.objects.filter(pk=made["archived/newest"].pk).update(tier="vault_archive")
    RecoveryPoint.objects.filter(pk=made["corrupt/newest"].pk).update(corrupted_at=clock.now())
    Job.objects.create(
        kind="verify", vault=vault, recovery_point=made["queued/newest"], created_at=clock.now()
    )

    assert schedules.verifications_schedule(batch=batch) == 3
    assert _verify_jobs() == {
        made["plain/newest"].pk: 1,
        made["archived/older"].pk: 1,
        made["corrupt/older"].pk: 1,
        made["queued/newest"].pk: 1,
    }
    records = list(AuditRecord.objects.filter(operation="verifications_schedule"))
    listed = sorted(entry["point"] for r in records for entry in r.before["points"])
    assert listed == sorted(
        made[key].pk for key in ("plain/newest", "archived/older", "corrupt/older")
    )
    assert all(r.after["jobs"] for r in records)
    # A second run finds them queued: nothing new, nothing audited.
    assert schedules.verifications_schedule(batch=batch) == 0
    assert AuditRecord.objects.filter(operation="verifications_schedule").count() == len(records)


def test_statements_per_page_of_items_not_per_item(admin: Any, tmp_path: Path) -> None:
    vault = make_vault(admin, name="many")

    def queries(items: int) -> int:
        for number in range(items):
            _point(_item(admin, vault, tmp_path, name=f"i-{items}-{number}"), 30 * DAY)
        Job.objects.filter(kind="verify").delete()
        with CaptureQueriesContext(connection) as context:
            assert schedules.verifications_schedule() > 0
        return len(context.captured_queries)

    assert queries(3) == queries(12)


def test_sending_the_queued_jobs_reads_no_item_per_job(
    admin: Any, tmp_path: Path, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The jobs are built with their items' host, so the send after commit routes them
    without loading each one's item (bench-scale: 100,000 items cost 180 s that way)."""
    settings.HOLDFAST_TASK_QUEUE = f"holdfast-verify-{uuid.uuid4().hex[:8]}"  # no worker reads
    vault = make_vault(admin, name="sent")

    def queries(items: int) -> int:
        for number in range(items):
            _point(_item(admin, vault, tmp_path, name=f"s-{items}-{number}"), 30 * DAY)
        Job.objects.filter(kind="verify").delete()
        with (
            CaptureQueriesContext(connection) as context,
            django_capture_on_commit_callbacks(execute=True) as sent,
        ):
            assert schedules.verifications_schedule() >= items
        assert sent
        return len(context.captured_queries)

    assert queries(3) == queries(25)
    assert not Job.objects.filter(kind="verify").exclude(host="").exists()
