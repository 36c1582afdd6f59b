"""Two real worker processes, each on a host of its own (SPEC 3.13): an item's jobs run on
its host only, a message delivered to the wrong host's worker is refused, and a job for a
stopped host waits, says so, then fails with an alert while the other host keeps working.

Each worker may read only its own source directories (``HOLDFAST_SOURCE_ROOTS``), so a
backup run on the wrong host would fail rather than pass unnoticed. Time is injected with
the clock for the offline wait; the only waiting is bounded polling for the workers.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import current_app
from django.conf import settings as django_settings
from django.db import connection

from policies import services as policy_services
from portal import clock
from portal.celery import host_queue
from portal.models import Alert
from tests.conftest import api_client_for
from tests.factories import make_vault
from tests.host_workers import HostWorker, host_workers
from tests.test_jobs import people, protect, storage, tree_of, wait_for, write_tree  # noqa: F401
from vaults import services as vault_services
from vaults.hosts import Host
from vaults.jobs import requests, sweeps
from vaults.models import Job, RecoveryPoint

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_hosts(storage: Path) -> Any:  # noqa: F811
    if connection.vendor != "postgresql":
        pytest.skip("the worker subprocesses share the test database: PostgreSQL only")
    with host_workers(storage, "fsa", "fsb") as workers:
        yield workers


def _on(worker: HostWorker, job: Job) -> bool:
    return job.host == worker.name and job.worker.startswith(f"{worker.name}:")


def test_each_items_jobs_run_on_its_host_only(
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    two_hosts: list[HostWorker],
) -> None:
    admin, operator = people["admin"], people["operator"]
    fsa, fsb = two_hosts
    vault = make_vault(admin, name="fleet")
    a_item = protect(admin, vault, write_tree(fsa.sources / "share", seed=1), "a-share")
    a_item = vault_services.item_host_set(actor=admin, item=a_item, host=fsa.name)
    b_item = vault_services.item_protect(
        actor=admin,
        vault=vault,
        name="b-share",
        source_path=str(write_tree(fsb.sources / "share", seed=2)),
        source_host=fsb.name,
        policy=a_item.policy,
    )

    jobs = [
        requests.backup_request(actor=operator, item=item).pk
        for item in (a_item, b_item, a_item, b_item)
    ]
    done = wait_for(*jobs, timeout=180)
    assert all(job.status == "completed" for job in done), [job.error for job in done]
    assert [_on(fsa, job) for job in done] == [True, False, True, False]
    assert [_on(fsb, job) for job in done] == [False, True, False, True]

    # A restore goes to the item's host, or to the host the request names.
    point = done[1].recovery_point
    assert point is not None
    restore_root = Path(storage / "restores")
    here = requests.restore_request(
        actor=operator, point=point, target_path=str(restore_root / "b")
    )
    there = requests.restore_request(
        actor=operator, point=point, target_path=str(restore_root / "a"), target_host=fsa.name
    )
    restored = wait_for(here.pk, there.pk, timeout=120)
    assert [job.status for job in restored] == ["completed", "completed"], restored
    assert _on(fsb, restored[0]) and _on(fsa, restored[1])
    assert tree_of(restore_root / "b") == tree_of(fsb.sources / "share")

    # The Hosts API counts the items read on each host; both are online.
    hosts = api_client_for(operator).get("/api/v1/hosts/").json()["results"]
    ours = {h["name"]: h for h in hosts if h["name"] in {fsa.name, fsb.name}}
    assert {name: (h["online"], h["items"]) for name, h in ours.items()} == {
        fsa.name: (True, 1),
        fsb.name: (True, 1),
    }
    assert ours[fsa.name]["queues"] == sorted(
        [django_settings.HOLDFAST_TASK_QUEUE, host_queue(fsa.name)]
    )
    assert ours[fsa.name]["version"]


def test_a_message_delivered_to_the_wrong_hosts_worker_is_refused(
    people: dict[str, Any],  # noqa: F811
    two_hosts: list[HostWorker],
) -> None:
    admin, operator = people["admin"], people["operator"]
    fsa, fsb = two_hosts
    vault = make_vault(admin, name="misrouted")
    item = protect(admin, vault, write_tree(fsa.sources / "data"), "a-data")
    vault_services.item_host_set(actor=admin, item=item, host=fsa.name)
    b_item = protect(admin, vault, write_tree(fsb.sources / "data"), "b-data")
    vault_services.item_host_set(actor=admin, item=b_item, host=fsb.name)

    # An fsa job (as a forged or misrouted message would be) put straight on fsb's queue,
    # followed by an fsb job: fsb's single worker takes its queue in order.
    stray = Job.objects.create(
        kind="backup",
        item=item,
        vault=vault,
        host=fsa.name,
        created_at=clock.now(),
        params={"tier": "snapshot_and_vault", "on_demand": True},
    )
    current_app.send_task(requests.RUN_JOB_TASK, args=(stray.pk,), queue=host_queue(fsb.name))
    (after,) = wait_for(requests.backup_request(actor=operator, item=b_item).pk, timeout=120)
    assert after.status == "completed" and _on(fsb, after)
    stray.refresh_from_db()
    assert (stray.status, stray.worker, stray.started_at) == ("queued", "", None)
    assert f"job {stray.pk} is for host {fsa.name}; refused on host {fsb.name}" in fsb.log()

    # Sent where it belongs, it runs there.
    requests.enqueue_job(stray.pk, fsa.name)
    (ran,) = wait_for(stray.pk, timeout=120)
    assert ran.status == "completed" and _on(fsa, ran), ran.error


def test_a_job_for_a_stopped_host_waits_then_fails_while_the_other_host_works(
    people: dict[str, Any],  # noqa: F811
    two_hosts: list[HostWorker],
    settings: Any,
) -> None:
    settings.HOLDFAST_HOST_WAIT_MINUTES = 30
    admin, operator = people["admin"], people["operator"]
    fsa, fsb = two_hosts
    vault = make_vault(admin, name="halfdown")
    a_item = protect(admin, vault, write_tree(fsa.sources / "data"), "a-data")
    vault_services.item_host_set(actor=admin, item=a_item, host=fsa.name)
    b_item = protect(admin, vault, write_tree(fsb.sources / "data"), "b-data")
    vault_services.item_host_set(actor=admin, item=b_item, host=fsb.name)

    fsb.stop()
    waiting = requests.backup_request(actor=operator, item=b_item)
    (a_job,) = wait_for(requests.backup_request(actor=operator, item=a_item).pk, timeout=120)
    assert a_job.status == "completed" and _on(fsa, a_job)
    waiting.refresh_from_db()
    assert waiting.status == "queued"  # fsa consumed its queues and left fsb's job alone

    api = api_client_for(operator)
    last_seen = Host.objects.get(name=fsb.name).last_seen
    sentence = f"waiting for host {fsb.name} (offline since {last_seen:%Y-%m-%d %H:%M} UTC)"
    clock.set_now(last_seen + timedelta(minutes=6))
    try:
        body = api.get(f"/api/v1/jobs/{waiting.pk}/").json()
        assert (body["status"], body["host"]) == ("queued", fsb.name)
        assert body["error"] == body["waiting_for_host"] == sentence
        page = api.get(f"/api/v1/jobs/?host={fsb.name}").json()
        assert [job["waiting_for_host"] for job in page["results"]] == [sentence]
        assert sweeps.jobs_fail_stale() == 0  # not waited long enough yet

        clock.set_now(last_seen + timedelta(minutes=32))
        assert sweeps.jobs_fail_stale() == 1
    finally:
        clock.set_now(None)

    waiting.refresh_from_db()
    assert waiting.status == "failed" and waiting.worker == ""
    assert waiting.error.startswith(f"Gave up after 30 minutes {sentence}: no worker on {fsb.name}")
    job_alert = Alert.objects.get(kind="backup_failed", target="item:b-data")
    assert f"on host {fsb.name} failed: Gave up after 30 minutes" in job_alert.message
    host_alert = Alert.objects.get(kind="host_offline", target=f"host:{fsb.name}")
    assert sentence in host_alert.message

    # fsa goes on working.
    (again,) = wait_for(requests.backup_request(actor=operator, item=a_item).pk, timeout=120)
    assert again.status == "completed" and _on(fsa, again)


def test_the_host_that_reads_a_source_judges_it_when_it_runs(
    people: dict[str, Any],  # noqa: F811
    two_hosts: list[HostWorker],
) -> None:
    """The web cannot see fsa's disks, so it accepts these paths for fsa; fsa's worker
    refuses each when it opens it, and reads nothing."""
    admin, operator = people["admin"], people["operator"]
    fsa, fsb = two_hosts
    vault = make_vault(admin, name="judged")
    policy = policy_services.policy_create(actor=admin, vault=vault, name="daily", daily_days=7)
    (fsa.sources / "swap").symlink_to(fsa.home / "var")  # a source swapped for Holdfast's var
    paths = {
        "elsewhere": write_tree(fsb.sources / "data"),  # fsb's, outside fsa's source roots
        "missing": fsa.sources / "gone",
        "swapped": fsa.sources / "swap",
    }
    items = [
        vault_services.item_protect(
            actor=admin,
            vault=vault,
            name=name,
            source_path=str(path),
            source_host=fsa.name,
            policy=policy,
        )
        for name, path in paths.items()
    ]
    jobs = wait_for(*(requests.backup_request(actor=operator, item=i).pk for i in items))
    assert [(job.status, _on(fsa, job)) for job in jobs] == [("failed", True)] * 3
    elsewhere, missing, swapped = (job.error for job in jobs)
    assert "is outside the directories this installation backs up" in elsewhere
    assert str(paths["missing"]) in missing
    assert "holds Holdfast's own storage or data" in swapped
    assert not RecoveryPoint.objects.filter(item__in=items).exists()
