"""A tick's many jobs reach their hosts in batches (vaults/jobs/sending.py): the tick sends
one ``holdfast.send_jobs`` message per batch of a host's jobs to that host's queue, and the
worker that takes it sends one ``holdfast.run_job`` message per job, still on that queue; a
host with few jobs gets them one by one at once. Checked on the real broker (Redis)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, time
from typing import Any

import pytest
import redis
from celery import current_app

from policies import services as policy_services
from portal import clock
from portal.celery import host_queue
from tests.factories import make_vault
from vaults import services as vault_services
from vaults.jobs import schedules, sending
from vaults.models import Job

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TICK = datetime(2026, 3, 1, 22, 0, 30, tzinfo=UTC)
MANY, FEW = "fanout-many", "fanout-few"

pytestmark = pytest.mark.skipif(
    not str(current_app.conf.broker_url or "").startswith("redis"),
    reason="needs the Redis broker (make test)",
)


def _messages(broker: redis.Redis, host: str) -> list[tuple[str, list[Any]]]:
    """(task name, args) of every message waiting on a host's queue, oldest first."""
    found = []
    for raw in reversed(broker.lrange(host_queue(host), 0, -1)):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        found.append((message["headers"]["task"], args))
    return found


@pytest.mark.django_db(transaction=True)
def test_a_hosts_many_jobs_go_over_as_batches_its_worker_fans_out(
    admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = redis.Redis.from_url(current_app.conf.broker_url)
    broker.delete(host_queue(MANY), host_queue(FEW))
    clock.set_now(NOW)
    for name in (MANY, FEW):
        vault_services.host_announce(
            name=name, version="0.1.0", queues=["celery", host_queue(name)], started_at=NOW
        )
    clock.set_now(None)
    vault = make_vault(admin, name="fleet")
    policy = policy_services.policy_create(
        actor=admin, vault=vault, name="daily", daily_days=7, time=time(22, 0)
    )
    for n in range(45):
        vault_services.item_protect(
            actor=admin, vault=vault, name=f"share-{n:02d}", source_path=f"/srv/share-{n:02d}",
            source_host=MANY, policy=policy,
        )  # fmt: skip
    for n in range(3):
        vault_services.item_protect(
            actor=admin, vault=vault, name=f"db-{n}", source_path=f"/srv/db-{n}",
            source_host=FEW, policy=policy,
        )  # fmt: skip
    monkeypatch.setattr(sending, "FAN_OUT", 20)  # three batches of 20, 20 and 5
    try:
        jobs = schedules.backups_dispatch(now=TICK)
        many = sorted(job.pk for job in jobs if job.host == MANY)
        few = sorted(job.pk for job in jobs if job.host == FEW)
        assert (len(many), len(few)) == (45, 3)
        assert set(Job.objects.filter(pk__in=many).values_list("host", flat=True)) == {MANY}

        batches = _messages(broker, MANY)
        assert [task for task, _ in batches] == [sending.SEND_JOBS_TASK] * 3
        assert [len(args[0]) for _, args in batches] == [20, 20, 5]
        assert sorted(pk for _, args in batches for pk in args[0]) == many
        assert _messages(broker, FEW) == [("holdfast.run_job", [pk]) for pk in few]

        # The host's worker runs each batch: one run_job message per job, on the same queue.
        broker.delete(host_queue(MANY))
        Job.objects.filter(pk=many[0]).update(status="running")  # taken meanwhile: not sent
        assert sum(sending.jobs_send(args[0]) for _, args in batches) == 44
        assert _messages(broker, MANY) == [("holdfast.run_job", [pk]) for pk in many[1:]]
    finally:
        broker.delete(host_queue(MANY), host_queue(FEW))
