"""Hosts (SPEC 3.13) without worker processes: the announcement, the API and page, items
naming a host through every entry point (API, form, admin), the routing of jobs, the
worker's own refusal of another host's job, and the wait for an offline host.

The real workers are ``tests/test_host_workers.py``; the browser journey
``tests/test_browser_hosts.py``."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from policies import services as policy_services
from portal import clock
from portal.celery import host_queue, worker_host
from portal.models import Alert, AuditRecord
from tests.conftest import api_client_for
from tests.factories import make_vault
from vaults import services as vault_services
from vaults.hosts import Host, job_waits
from vaults.jobs import beacon, requests, runner, schedules, sweeps
from vaults.jobs.state import new_job
from vaults.models import Job, ProtectedItem

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def announce(name: str, at: datetime = NOW, version: str = "0.1.0") -> None:
    clock.set_now(at)
    try:
        vault_services.host_announce(
            name=name, version=version, queues=["celery", host_queue(name)], started_at=at
        )
    finally:
        clock.set_now(None)


@pytest.fixture
def fleet(admin: Any, tmp_path: Path) -> dict[str, Any]:
    announce("fs01", NOW)
    announce("fs02", NOW - timedelta(hours=1))  # offline at NOW
    vault = make_vault(admin, name="fleet")
    policy = policy_services.policy_create(actor=admin, vault=vault, name="daily", daily_days=7)
    (tmp_path / "local").mkdir()
    return {"vault": vault, "policy": policy, "dir": tmp_path / "local"}


def _create(api: Any, source: dict[str, Any], name: str = "share") -> Any:
    return api.post(
        "/api/v1/vaults/fleet/items/",
        {"name": name, "source": source, "policy": "daily"},
        format="json",
    )


# --- the announcement ---------------------------------------------------------------------


def test_the_first_announcement_of_a_host_is_audited_and_its_beats_are_not(db: None) -> None:
    announce("fs01", NOW)
    announce("fs01", NOW + timedelta(minutes=1), version="0.2.0")
    host = Host.objects.get(name="fs01")
    assert (host.first_seen, host.last_seen, host.version) == (
        NOW,
        NOW + timedelta(minutes=1),
        "0.2.0",
    )
    assert host.queues == ["celery", "host.fs01"]
    records = AuditRecord.objects.filter(operation="host_announce")
    assert [(r.target, r.outcome, r.after["host"]) for r in records] == [
        ("host:fs01", "allowed", "fs01")
    ]


def test_a_workers_beacon_announces_its_host_version_and_queues(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOLDFAST_WORKER_HOST", "db-7.example")
    beacon.Beacon(["celery", "host.db-7.example"]).beat()
    host = Host.objects.get(name="db-7.example")
    assert host.version == "0.1.0" and host.queues == ["celery", "host.db-7.example"]
    assert AuditRecord.objects.get(operation="host_announce").source == "task"


@pytest.mark.parametrize("name", ["", "-dash", "a b", "x" * 101, "fs01;rm", "ü"])
def test_a_host_name_that_is_not_one_stops_the_worker(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOLDFAST_WORKER_HOST", name)
    if not name:  # unset: the machine's own name
        assert worker_host()
        return
    with pytest.raises(RuntimeError, match="HOLDFAST_WORKER_HOST"):
        worker_host()


@pytest.mark.parametrize(
    ("given", "consumed"), [([], {"celery", "host.fs01"}), (["shared"], {"shared", "host.fs01"})]
)
def test_a_worker_consumes_its_hosts_queue_besides_the_shared_one_without_q(
    given: list[str], consumed: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``celery -A portal worker`` does after ``-Q`` (or none) was applied: the host's
    own queue is added (the real workers of test_host_workers.py show it end to end)."""
    from types import SimpleNamespace

    from celery import Celery

    from portal.celery import consume_host_queue

    monkeypatch.setenv("HOLDFAST_WORKER_HOST", "fs01")
    fresh = Celery("hosts-test", set_as_current=False)
    fresh.amqp.queues.select(given)
    consume_host_queue(sender="worker@fs01", instance=SimpleNamespace(app=fresh))
    assert set(fresh.amqp.queues.consume_from) == consumed


def test_the_database_refuses_a_host_row_with_a_bad_name(db: None) -> None:
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Host.objects.create(name="bad name", first_seen=NOW, started_at=NOW, last_seen=NOW)


# --- the API and the page -----------------------------------------------------------------


def test_hosts_api_lists_hosts_online_or_not_with_their_jobs_and_items(
    fleet: dict[str, Any], admin: Any, reader: Any
) -> None:
    for name, host in (("a", "fs01"), ("b", "fs01"), ("c", "fs02")):
        vault_services.item_protect(
            actor=admin,
            vault=fleet["vault"],
            name=name,
            source_path="/srv/" + name,
            source_host=host,
            policy=fleet["policy"],
        )
    item = ProtectedItem.objects.get(name="a")
    new_job("backup", now=NOW, vault=fleet["vault"], item=item, host="fs01", status="running")
    clock.set_now(NOW + timedelta(minutes=4))
    try:
        api = api_client_for(reader)
        with CaptureQueriesContext(connection) as queries:
            body = api.get("/api/v1/hosts/").json()
        assert body["count"] == 2
        rows = {h["name"]: h for h in body["results"]}
        assert {n: (h["online"], h["jobs_running"], h["items"]) for n, h in rows.items()} == {
            "fs01": (True, 1, 2),
            "fs02": (False, 0, 1),
        }
        assert rows["fs02"]["last_seen"] == "2026-03-01T11:00:00Z"
        assert {"name", "last_seen", "online", "version", "queue", "queues"} <= set(rows["fs01"])
        for n in range(3):  # the query count does not grow with the hosts
            announce(f"extra-{n}", NOW)
        with CaptureQueriesContext(connection) as more:
            assert api.get("/api/v1/hosts/").json()["count"] == 5
        assert len(more) == len(queries)
    finally:
        clock.set_now(None)


def test_hosts_page_shows_state_in_words_and_links_to_jobs_and_items(
    fleet: dict[str, Any], client: Any, admin: Any
) -> None:
    client.force_login(admin)
    clock.set_now(NOW + timedelta(minutes=1))
    try:
        html = client.get("/hosts/").content.decode()
    finally:
        clock.set_now(None)
    assert 'id="host-fs01"' in html and 'id="host-fs02"' in html
    assert ">Online<" in html and ">Offline<" in html
    assert "/jobs/?host=fs01&amp;status=running" in html and "/items/?host=fs02" in html
    assert 'href="/hosts/"' in client.get("/jobs/").content.decode()  # in the left navigation


# --- an item's host, through every entry point --------------------------------------------


def test_api_protects_a_path_on_a_known_host_without_judging_it_here(
    fleet: dict[str, Any], admin: Any
) -> None:
    api = api_client_for(admin)
    answer = _create(api, {"kind": "directory", "path": "/srv/not-on-this-machine", "host": "fs01"})
    assert answer.status_code == 201, answer.json()
    assert answer.json()["source"] == {
        "kind": "directory",
        "path": "/srv/not-on-this-machine",
        "host": "fs01",
    }
    # Without a host the web judges the path (every worker must read it), as before.
    local = _create(api, {"kind": "directory", "path": str(fleet["dir"])}, name="local")
    assert local.json()["source"]["host"] == ""
    missing = _create(api, {"kind": "directory", "path": "/srv/nowhere"}, name="nowhere")
    assert missing.status_code == 400 and "not a readable directory" in missing.json()["detail"]
    relative = _create(api, {"kind": "directory", "path": "srv", "host": "fs01"}, name="rel")
    assert relative.status_code == 400 and "relative" in relative.json()["detail"]
    assert api.get("/api/v1/vaults/fleet/items/?host=fs01").json()["count"] == 1
    assert api.get("/api/v1/vaults/?host=fs01").json()["count"] == 1
    assert api.get("/api/v1/vaults/?host=fs09").json()["count"] == 0


@pytest.mark.parametrize("host", ["fs09", "FS01", "../fs01", "fs01\u0000", "x" * 101])
def test_api_refuses_an_unknown_host_naming_it_and_changes_nothing(
    fleet: dict[str, Any], admin: Any, host: str
) -> None:
    answer = _create(api_client_for(admin), {"kind": "directory", "path": "/srv/x", "host": host})
    assert answer.status_code == 400
    body = answer.json()
    assert body["code"] == "validation_error"
    if host in {"fs09", "FS01"}:
        assert f"no worker has announced a host named {host!r}" in body["detail"]
        assert "known hosts: fs01, fs02" in body["detail"]
    assert not ProtectedItem.objects.exists()


def test_repointing_an_items_host_by_patch_is_gated_and_audited(
    fleet: dict[str, Any], admin: Any, operator: Any, reader: Any
) -> None:
    vault_services.item_protect(
        actor=admin,
        vault=fleet["vault"],
        name="share",
        source_path="/srv/share",
        source_host="fs01",
        policy=fleet["policy"],
    )
    url = "/api/v1/vaults/fleet/items/share/"
    for user in (reader, operator):
        refused = api_client_for(user).patch(url, {"source": {"host": "fs02"}}, format="json")
        assert refused.status_code == 403
    assert ProtectedItem.objects.get(name="share").source_host == "fs01"
    api = api_client_for(admin)
    unknown = api.patch(url, {"source": {"host": "evil"}, "policy": "daily"}, format="json")
    assert unknown.status_code == 400 and "'evil'" in unknown.json()["detail"]
    moved = api.patch(url, {"source": {"host": "fs02"}}, format="json")
    assert moved.status_code == 200 and moved.json()["source"]["host"] == "fs02"
    anywhere = api.patch(url, {"source": {"host": ""}}, format="json")
    assert anywhere.json()["source"]["host"] == ""
    records = AuditRecord.objects.filter(operation="item_host_change").order_by("id")
    assert [(r.actor_name, r.outcome) for r in records] == [
        ("rita", "refused"),
        ("oscar", "refused"),
        ("alice", "allowed"),
        ("alice", "allowed"),
    ]
    assert (records[2].before["source_host"], records[2].after["source_host"]) == ("fs01", "fs02")
    assert records[2].source == "api"


def test_a_replica_item_reads_no_host(fleet: dict[str, Any], admin: Any) -> None:
    item = ProtectedItem.objects.create(
        vault=fleet["vault"],
        name="copied",
        source_kind="replica",
        source_path="elsewhere",
        policy=fleet["policy"],
    )
    with pytest.raises(Exception, match="is a replica"):
        vault_services.item_host_set(actor=admin, item=item, host="fs01")


def test_item_form_offers_known_hosts_and_refuses_an_unknown_one(
    fleet: dict[str, Any], client: Any, admin: Any
) -> None:
    client.force_login(admin)
    url = "/vaults/fleet/items/new/"
    form = client.get(url).content.decode()
    assert '<option value="fs01">fs01 (' in form and '<option value="" selected>Any host' in form
    data = {"name": "share", "source_path": "/srv/share", "policy": fleet["policy"].pk}
    refused = client.post(url, {**data, "source_host": "fs09"})
    assert refused.status_code in (200, 400)
    assert "No worker has announced a host named fs09" in refused.content.decode()
    assert not ProtectedItem.objects.exists()
    done = client.post(url, {**data, "source_host": "fs02"})
    assert done.status_code == 302
    assert ProtectedItem.objects.get(name="share").source_host == "fs02"


def test_item_page_changes_the_host_through_the_gate(
    fleet: dict[str, Any], client: Any, admin: Any, reader: Any
) -> None:
    item = vault_services.item_protect(
        actor=admin,
        vault=fleet["vault"],
        name="share",
        source_path="/srv/share",
        source_host="fs01",
        policy=fleet["policy"],
    )
    url = f"/vaults/fleet/items/{item.pk}/host/"
    client.force_login(reader)
    assert client.post(url, {"host": "fs02"}).status_code == 403
    client.force_login(admin)
    page = client.get(f"/vaults/fleet/items/{item.pk}/").content.decode()
    assert 'id="item-host"' in page and '<option value="fs01" selected>' in page
    unknown = client.post(url, {"host": "fs09"})
    assert unknown.status_code == 400
    assert "No worker has announced a host named fs09" in unknown.content.decode()
    assert client.post(url, {"host": "fs02"}).status_code == 302
    assert ProtectedItem.objects.get(pk=item.pk).source_host == "fs02"
    records = AuditRecord.objects.filter(operation="item_host_change").order_by("id")
    assert [(r.actor_name, r.outcome, r.source) for r in records] == [
        ("rita", "refused", "web"),
        ("alice", "allowed", "web"),
    ]


def test_admin_can_neither_add_a_host_nor_change_an_items_host(
    fleet: dict[str, Any], client: Any, superuser: Any
) -> None:
    client.force_login(superuser)
    assert client.get("/admin/vaults/host/").status_code == 200
    added = client.post(
        "/admin/vaults/host/add/",
        {"name": "rogue", "first_seen_0": "2026-03-01", "first_seen_1": "12:00"},
    )
    assert added.status_code == 403
    host = Host.objects.get(name="fs01")
    changed = client.post(f"/admin/vaults/host/{host.pk}/change/", {"name": "fs01-renamed"})
    assert changed.status_code == 403
    assert client.post(f"/admin/vaults/host/{host.pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.get("/admin/vaults/protecteditem/").status_code == 404  # not in the admin
    assert sorted(Host.objects.values_list("name", flat=True)) == ["fs01", "fs02"]


# --- routing --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_every_job_of_an_item_is_routed_to_its_host(
    admin: Any, operator: Any, tmp_path: Path
) -> None:
    announce("fs01", NOW)
    vault = make_vault(admin, name="routed")
    policy = policy_services.policy_create(
        actor=admin, vault=vault, name="daily", daily_days=7, time=time(22, 0)
    )
    item = vault_services.item_protect(
        actor=admin,
        vault=vault,
        name="share",
        source_path="/srv/share",
        source_host="fs01",
        policy=policy,
    )
    backup = requests.backup_request(actor=operator, item=item)
    point = vault_services.point_record(item=item)
    restore = requests.restore_request(
        actor=operator, point=point, target_path=str(tmp_path / "restores")
    )
    verify = requests.verify_request(actor=operator, point=point)
    # A job made without a host (the dispatcher's kind) is stamped with it as it is sent.
    bare = Job.objects.create(kind="tier_move", vault=vault, item=item, created_at=NOW)
    requests.send(bare)
    (scheduled,) = schedules.backups_dispatch(now=datetime(2026, 3, 1, 22, 0, 30, tzinfo=UTC))
    assert scheduled.item == item and scheduled.slot is not None
    routed = [Job.objects.get(pk=j.pk).host for j in (backup, restore, verify, bare, scheduled)]
    assert routed == ["fs01"] * 5
    assert requests.job_route(Job.objects.get(pk=bare.pk)) == "fs01"
    unknown = pytest.raises(Exception, match="no worker has announced a host named 'fs09'")
    with unknown:
        requests.restore_request(
            actor=operator, point=point, target_path="/srv/anything", target_host="fs09"
        )
    assert not Job.objects.filter(kind="restore", params__target_path="/srv/anything").exists()


def test_a_worker_refuses_another_hosts_job_and_leaves_it_queued(
    fleet: dict[str, Any], admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = vault_services.item_protect(
        actor=admin,
        vault=fleet["vault"],
        name="share",
        source_path="/srv/share",
        source_host="fs01",
        policy=fleet["policy"],
    )
    job = new_job("backup", now=NOW, vault=fleet["vault"], item=item, host="fs01")
    monkeypatch.setenv("HOLDFAST_WORKER_HOST", "fs02")
    assert runner.job_run(job_id=job.pk) is None
    # Also when the job row was never stamped: the item's host decides.
    unstamped = new_job("verify", now=NOW, vault=fleet["vault"], item=item)
    assert runner.job_run(job_id=unstamped.pk) is None
    for row in Job.objects.filter(pk__in=[job.pk, unstamped.pk]):
        assert (row.status, row.worker, row.started_at) == ("queued", "", None)
    assert Job.objects.get(pk=unstamped.pk).host == "fs01"  # re-sent to its host's queue


# --- waiting for an offline host ----------------------------------------------------------


def test_a_queued_job_for_an_offline_host_says_it_waits_then_fails_after_the_limit(
    fleet: dict[str, Any], admin: Any, operator: Any, settings: Any
) -> None:
    settings.HOLDFAST_HOST_WAIT_MINUTES = 45
    on_fs02 = vault_services.item_protect(
        actor=admin,
        vault=fleet["vault"],
        name="share",
        source_path="/srv/share",
        source_host="fs02",
        policy=fleet["policy"],
    )
    on_fs01 = vault_services.item_protect(
        actor=admin,
        vault=fleet["vault"],
        name="other",
        source_path="/srv/other",
        source_host="fs01",
        policy=fleet["policy"],
    )
    waiting = new_job("backup", now=NOW, vault=fleet["vault"], item=on_fs02, host="fs02")
    busy = new_job("backup", now=NOW, vault=fleet["vault"], item=on_fs01, host="fs01")
    jobs = [waiting, busy]
    job_waits(jobs, NOW + timedelta(minutes=1))
    sentence = "waiting for host fs02 (offline since 2026-03-01 11:00 UTC)"
    assert [j.waiting_for_host for j in jobs] == [sentence, ""]

    # The pages and the API say it.
    clock.set_now(NOW + timedelta(minutes=1))
    try:
        api = api_client_for(operator)
        assert api.get(f"/api/v1/jobs/{waiting.pk}/").json()["error"] == sentence
        assert api.get(f"/api/v1/jobs/{busy.pk}/").json()["error"] == ""
        from django.test import Client

        page = Client()
        page.force_login(operator)
        assert "Waiting for host fs02 (offline since" in page.get("/jobs/").content.decode()
        detail = page.get(f"/jobs/{waiting.pk}/").content.decode()
        assert "W" + sentence[1:] in detail and 'id="job-host"' in detail
        item_page = page.get(f"/vaults/fleet/items/{on_fs02.pk}/").content.decode()
        assert "W" + sentence[1:] in item_page
    finally:
        clock.set_now(None)

    # fs01 stays online (it beats); fs02's job fails 45 minutes after it was queued.
    announce("fs01", NOW + timedelta(minutes=44))
    assert sweeps.host_waits_expire(now=NOW + timedelta(minutes=44)) == 0
    announce("fs01", NOW + timedelta(minutes=46))
    assert sweeps.host_waits_expire(now=NOW + timedelta(minutes=46)) == 1
    waiting.refresh_from_db()
    busy.refresh_from_db()
    assert waiting.status == "failed" and busy.status == "queued"
    assert waiting.error == (
        f"Gave up after 45 minutes {sentence}: no worker on fs02 took the job, and no other host "
        "may run it. Start a worker on fs02 (docs/hosts.md), then run the job again."
    )
    alert = Alert.objects.get(kind="host_offline")
    assert alert.target == "host:fs02" and sentence in alert.message
    assert "on host fs02 failed" in Alert.objects.get(kind="backup_failed").message
    # Again: nothing more to fail, and the host's alert is not duplicated.
    assert sweeps.host_waits_expire(now=NOW + timedelta(minutes=90)) == 0
    assert Alert.objects.filter(kind="host_offline").count() == 1


def test_a_host_back_online_resets_the_wait(fleet: dict[str, Any], admin: Any) -> None:
    item = vault_services.item_protect(
        actor=admin,
        vault=fleet["vault"],
        name="share",
        source_path="/srv/share",
        source_host="fs02",
        policy=fleet["policy"],
    )
    job = new_job("backup", now=NOW, vault=fleet["vault"], item=item, host="fs02")
    # fs02 was seen 50 minutes after the job was queued, then went silent again: the wait
    # counts from then, so 70 minutes after queueing it has waited 20 of its 60.
    announce("fs02", NOW + timedelta(minutes=50))
    assert sweeps.host_waits_expire(now=NOW + timedelta(minutes=70)) == 0
    assert sweeps.host_waits_expire(now=NOW + timedelta(minutes=111)) == 1
    job.refresh_from_db()
    assert job.status == "failed"
