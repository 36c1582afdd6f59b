"""Cancelling a job (gate operation ``job_cancel``): a queued job ends at once, a running one
stops at its next file boundary and publishes nothing; an ended job, a reader and Holdfast's
own upkeep jobs are refused, from the page and the API alike, and every attempt is audited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from portal.models import AuditRecord
from tests.point_world import point_fixture, protect, stores_fixture  # noqa: F401
from vaults.jobs import requests, runner
from vaults.jobs.state import Heartbeat, JobCancelled
from vaults.locations import vault_store
from vaults.models import Job, RecoveryPoint

pytestmark = pytest.mark.django_db


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def queued(admin: Any, stores: dict[str, Path]) -> Job:
    return requests.backup_request(actor=admin, item=protect(admin, stores["source"]))


def test_an_operator_cancels_a_queued_job_from_its_page_and_no_worker_runs_it(
    operator: Any, queued: Job
) -> None:
    client = _client(operator)
    page = client.get(reverse("jobs:detail", args=[queued.pk])).content.decode()
    assert 'id="job-cancel"' in page
    response = client.post(reverse("jobs:cancel", args=[queued.pk]))
    assert response.status_code == 302
    queued.refresh_from_db()
    assert queued.status == "failed" and queued.was_cancelled
    assert queued.error == "Cancelled by oscar before it started."
    assert queued.ended_at is not None
    assert runner.job_run(job_id=queued.pk) is None  # the claim finds it no longer queued
    record = AuditRecord.objects.get(operation="job_cancel")
    assert record.outcome == "allowed" and record.source == "web"
    assert record.before["status"] == "queued" and record.after["status"] == "failed"
    page = client.get(reverse("jobs:detail", args=[queued.pk])).content.decode()
    assert 'job-state-cancelled">Cancelled<' in page and 'id="job-cancel"' not in page


def test_the_page_answers_htmx_with_the_refreshed_card(operator: Any, queued: Job) -> None:
    response = _client(operator).post(
        reverse("jobs:cancel", args=[queued.pk]), headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<section class="card job-card" id="job-card"')
    assert "Cancelled" in body and "hx-trigger" not in body


def test_a_running_backup_stops_at_a_file_boundary_and_leaves_no_point(
    operator: Any, queued: Job
) -> None:
    claimed = runner.job_claim(job_id=queued.pk)
    assert claimed is not None and claimed.status == "running"
    cancelled = requests.job_cancel(actor=operator, job=claimed)
    assert cancelled.status == "running" and cancelled.display_state == "cancelling"
    # The worker notices the request (its heartbeat reads it) and stops before publishing.
    runner.job_execute(claimed)
    claimed.refresh_from_db()
    assert claimed.status == "failed" and claimed.display_state == "cancelled"
    assert claimed.error.startswith("Cancelled by oscar while it ran")
    assert claimed.recovery_point is None
    assert not RecoveryPoint.objects.exists()
    store = vault_store(claimed.vault)
    assert store.points() == []
    assert not AuditRecord.objects.filter(operation="point_record").exists()


def test_the_heartbeat_raises_at_the_next_boundary_once_cancelled(queued: Job) -> None:
    beat = Heartbeat(queued.pk)
    beat.files(1, 10)
    beat.cancelled.set()
    with pytest.raises(JobCancelled):
        beat.files(2, 10)
    with pytest.raises(JobCancelled):
        beat(100, 1000)


def test_cancelling_an_ended_job_is_a_409_with_a_stable_code_and_changes_nothing(
    api: Any, operator: Any, point: RecoveryPoint
) -> None:
    job = Job.objects.get(kind="backup")
    response = api(operator).post(f"/api/v1/jobs/{job.pk}/cancel/")
    assert response.status_code == 409
    assert response.json()["code"] == "job_ended"
    job.refresh_from_db()
    assert job.status == "completed" and job.cancel_requested_at is None
    page = _client(operator).post(reverse("jobs:cancel", args=[job.pk]))
    assert page.status_code == 409 and "Not cancelled" in page.content.decode()
    assert AuditRecord.objects.filter(operation="job_cancel", outcome="refused").count() == 2


def test_the_api_cancels_queued_with_200_and_running_with_202(
    api: Any, operator: Any, admin: Any, queued: Job
) -> None:
    response = api(operator).post(f"/api/v1/jobs/{queued.pk}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "failed"
    assert response.json()["cancel_requested_at"] is not None
    second = requests.backup_request(actor=admin, item=queued.item)
    runner.job_claim(job_id=second.pk)
    response = api(operator).post(f"/api/v1/jobs/{second.pk}/cancel/")
    assert response.status_code == 202 and response.json()["status"] == "running"
    assert AuditRecord.objects.filter(operation="job_cancel", source="api").count() == 2


def test_a_reader_is_refused_on_the_page_and_the_api_and_the_job_runs_on(
    api: Any, reader: Any, queued: Job
) -> None:
    client = _client(reader)
    assert (
        'id="job-cancel"'
        not in client.get(reverse("jobs:detail", args=[queued.pk])).content.decode()
    )
    assert client.post(reverse("jobs:cancel", args=[queued.pk])).status_code == 403
    response = api(reader).post(f"/api/v1/jobs/{queued.pk}/cancel/")
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"
    queued.refresh_from_db()
    assert queued.status == "queued" and queued.cancel_requested_at is None
    assert (
        AuditRecord.objects.filter(
            operation="job_cancel", outcome="refused", code="permission_denied"
        ).count()
        == 2
    )


def test_holdfasts_own_upkeep_jobs_cannot_be_cancelled(api: Any, admin: Any, operator: Any) -> None:
    from portal import clock

    sweep = Job.objects.create(kind="sweep", created_at=clock.now(), params={"sweep": "points"})
    response = api(admin).post(f"/api/v1/jobs/{sweep.pk}/cancel/")
    assert response.status_code == 409 and response.json()["code"] == "job_not_cancellable"
    sweep.refresh_from_db()
    assert sweep.status == "queued"


@pytest.mark.parametrize("kind", ["verify", "lock_verify"])
def test_checks_that_find_damage_cannot_be_cancelled(
    api: Any, admin: Any, vault: Any, kind: str
) -> None:
    """The attack: an operator cancels each verification as it starts, so a damaged or
    under-locked point is never found. Verifications are upkeep, like sweeps."""
    from portal import clock

    check = Job.objects.create(kind=kind, vault=vault, created_at=clock.now())
    response = api(admin).post(f"/api/v1/jobs/{check.pk}/cancel/")
    assert response.status_code == 409 and response.json()["code"] == "job_not_cancellable"
    check.refresh_from_db()
    assert check.status == "queued" and check.cancel_requested_at is None


def test_a_job_of_a_vault_the_user_cannot_see_is_not_found(api: Any, operator: Any) -> None:
    assert api(operator).post("/api/v1/jobs/999999/cancel/").status_code == 404


# --- a real worker, a backup in flight -----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_backup_cancelled_while_a_real_worker_runs_it_publishes_nothing(
    settings: Any, tmp_path: Path, worker_id: str, api: Any
) -> None:
    import os
    import time
    import uuid

    from celery.contrib.testing.worker import start_worker

    from portal.celery import app
    from tests.conftest import make_user

    settings.HOLDFAST_STORAGE_ROOT = tmp_path / "storage"
    settings.HOLDFAST_TASK_QUEUE = f"holdfast-test-{worker_id}-{uuid.uuid4().hex[:8]}"
    settings.HOLDFAST_JOB_HEARTBEAT_SECONDS = 0.05
    source = tmp_path / "data" / "big"
    source.mkdir(parents=True)
    for i in range(96):  # 192 MiB of incompressible files: a second or more of work
        (source / f"part-{i:02d}.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    admin = make_user("alice", "backup_admin")
    operator = make_user("oscar", "operator")
    item = protect(admin, source)
    with start_worker(
        app,
        pool="solo",
        perform_ping_check=False,
        queues=[settings.HOLDFAST_TASK_QUEUE],
        loglevel="WARNING",
        shutdown_timeout=30,
    ):
        job = requests.backup_request(actor=admin, item=item)
        deadline = time.monotonic() + 60
        # Bounded polling: the heartbeat reports the first files taken.
        while not Job.objects.filter(pk=job.pk, status="running", files_done__gt=0).exists():
            assert time.monotonic() < deadline, "the backup never started"
            time.sleep(0.01)
        response = api(operator).post(f"/api/v1/jobs/{job.pk}/cancel/")
        assert response.status_code == 202, response.content
        while not Job.objects.get(pk=job.pk).is_finished:
            assert time.monotonic() < deadline, "the backup never stopped"
            time.sleep(0.02)
    job.refresh_from_db()
    assert job.status == "failed" and job.was_cancelled, (job.status, job.error, job.files_done)
    assert job.error.startswith("Cancelled by oscar while it ran")
    assert 0 < job.files_done < 96
    assert not RecoveryPoint.objects.exists()
    assert vault_store(item.vault).points() == []


# --- the attack: skipping every scheduled slot stops protection without MUA ----------------


@pytest.fixture
def scheduled(queued: Job) -> Job:
    from portal import clock

    item = queued.item
    return Job.objects.create(
        kind="backup", vault=item.vault, item=item, slot=clock.now(), created_at=clock.now()
    )


def test_an_operator_cannot_skip_a_scheduled_backup(
    api: Any, operator: Any, scheduled: Job
) -> None:
    """One operator cancelling each scheduled backup as it is queued would stop protection,
    which their role cannot do and a guard may protect: only a backup admin skips a slot."""
    response = api(operator).post(f"/api/v1/jobs/{scheduled.pk}/cancel/")
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"
    assert "scheduled backup" in response.json()["detail"]
    scheduled.refresh_from_db()
    assert scheduled.status == "queued" and scheduled.cancel_requested_at is None
    page = _client(operator).post(reverse("jobs:cancel", args=[scheduled.pk]))
    assert page.status_code in (302, 403)
    scheduled.refresh_from_db()
    assert scheduled.status == "queued"


def test_a_guard_protecting_stop_protection_guards_skipping_a_slot(
    api: Any, admin: Any, security_admin: Any, scheduled: Job
) -> None:
    from guards.models import ResourceGuard

    guard = ResourceGuard.objects.create(
        name="slot-guard",
        owner=security_admin,
        protected_operations=["stop_protection_retain_data"],
    )
    vault = scheduled.vault
    vault.resource_guard = guard
    vault.save(update_fields=["resource_guard"])
    response = api(admin).post(f"/api/v1/jobs/{scheduled.pk}/cancel/")
    assert response.status_code == 409 and response.json()["code"] == "mua_required"
    scheduled.refresh_from_db()
    assert scheduled.status == "queued"


def test_a_backup_admin_skips_a_slot_and_an_operator_still_cancels_on_demand_work(
    api: Any, admin: Any, operator: Any, scheduled: Job, queued: Job
) -> None:
    assert api(admin).post(f"/api/v1/jobs/{scheduled.pk}/cancel/").status_code == 200
    assert api(operator).post(f"/api/v1/jobs/{queued.pk}/cancel/").status_code == 200
