"""``/healthz/background/``: a monitor's proof that beat sends the periodic schedule.

If beat stops, nothing dispatches backups, sweeps, verifies or anchors the audit log, and the
alerts that would say so are raised by those same tasks: so the answer is read from what
django-celery-beat's own scheduler writes when it sends an entry, and a stopped beat, an
entry switched off or an entry removed turns it 503 with a sentence.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler

from portal import clock
from portal.celery import app
from portal.center.health import HEARTBEAT, scheduler_health
from portal.schedule import CELERY_BEAT_SCHEDULE
from vaults.jobs.beacon import Beacon

URL = "/healthz/background/"


def _beat_loads_the_schedule() -> DatabaseScheduler:
    """What beat does when it starts: the real DatabaseScheduler copies the schedule in."""
    app.loader.import_default_modules()
    previous = app.conf.beat_schedule
    app.conf.beat_schedule = CELERY_BEAT_SCHEDULE  # what settings' import does
    try:
        return DatabaseScheduler(app=app, lazy=False)
    finally:
        app.conf.beat_schedule = previous


def _beat_sends_the_heartbeat(scheduler: DatabaseScheduler) -> None:
    """What beat does each minute: send the dispatcher's entry (reserve), then write what it
    sent (sync). The message itself is not needed for the bookkeeping."""
    scheduler.reserve(scheduler.schedule[HEARTBEAT])
    scheduler.sync()


def _a_worker_beats() -> None:
    """What a worker of the shared queue does every minute: its beacon announces its host."""
    Beacon(queues=[app.conf.task_default_queue, "host.bench"]).beat()


def test_beat_that_never_ran_is_stale_and_says_so(db: None) -> None:
    PeriodicTask.objects.all().delete()
    _a_worker_beats()
    answer = Client().get(URL)
    assert answer.status_code == 503
    assert answer.content.decode() == (
        "stale: beat has never loaded the schedule (is it running?)."
    )


def test_beat_sending_with_no_worker_to_run_it_is_stale(transactional_db: None) -> None:
    """Beat sends into the broker whether or not anyone takes the messages: all workers of
    the shared queue stopped (or only host-only workers left) is stale too."""
    _beat_sends_the_heartbeat(_beat_loads_the_schedule())
    Beacon(queues=["host.fs01"]).beat()  # a host-only worker runs no periodic task
    answer = Client().get(URL)
    assert answer.status_code == 503
    assert answer.content.decode() == (
        "stale: no worker consuming the shared queue 'celery' (where the periodic tasks run) "
        "has announced its host in the last 5 min."
    )
    _a_worker_beats()
    assert Client().get(URL).status_code == 200
    # The worker stops: six minutes on, its host is offline and the answer turns.
    with clock.frozen(clock.now() + timedelta(minutes=6)):
        assert Client().get(URL).status_code == 503


def test_the_real_scheduler_sending_the_heartbeat_makes_it_ok_until_it_stops(
    transactional_db: None,
) -> None:
    scheduler = _beat_loads_the_schedule()
    _a_worker_beats()
    # Just started: beat writes what it sent at its first sync, up to 3 minutes on.
    PeriodicTask.objects.filter(name=HEARTBEAT).update(last_run_at=None)
    loaded = PeriodicTask.objects.get(name=HEARTBEAT).date_changed
    health = scheduler_health()
    assert health.ok and "no sending recorded yet" in health.sentence
    with clock.frozen(loaded + timedelta(minutes=11)):
        _a_worker_beats()
        answer = Client().get(URL)
        assert answer.status_code == 503
        assert answer.content.decode() == (
            "stale: beat loaded the schedule 11 min ago and has recorded no sending of "
            "holdfast-dispatch-backups since: is beat running?"
        )
    _beat_sends_the_heartbeat(scheduler)
    answer = Client().get(URL)
    assert answer.status_code == 200, answer.content
    assert answer.content.decode().startswith("ok: beat sent holdfast-dispatch-backups ")
    sent = PeriodicTask.objects.get(name=HEARTBEAT).last_run_at
    assert sent is not None
    # Beat stops: eleven minutes later (time injected, not slept) the answer turns.
    with clock.frozen(sent + timedelta(minutes=11)):
        answer = Client().get(URL)
        assert answer.status_code == 503
        text = answer.content.decode()
        assert text.startswith("stale: beat last sent holdfast-dispatch-backups 11 min ago")
        assert "is beat running?" in text
    # Within the limit it is still fine: DatabaseScheduler writes what it sent every 3 min.
    with clock.frozen(sent + timedelta(minutes=9)):
        _a_worker_beats()  # the worker went on beating every minute
        assert Client().get(URL).status_code == 200


@pytest.mark.parametrize(
    "attack, said",
    [
        # The anchoring entry switched off (the admin cannot: test_admin_backdoor; the app's
        # database role or a shell on the beat host can): the log would stay unanchored.
        (
            lambda: PeriodicTask.objects.filter(name="holdfast-audit-anchor").update(enabled=False),
            "schedule entries switched off: holdfast-audit-anchor",
        ),
        # An entry removed, beat left running: the sweeps would stop, the heartbeat goes on.
        (
            lambda: PeriodicTask.objects.filter(name="holdfast-sweep-points").delete(),
            "schedule entries missing: holdfast-sweep-points",
        ),
        # Renamed out of the schedule's sight: missing too (beat would add it back on start).
        (
            lambda: PeriodicTask.objects.filter(name="holdfast-sweep-storage").update(
                name="sweep-storage-old"
            ),
            "schedule entries missing: holdfast-sweep-storage",
        ),
    ],
)
def test_a_schedule_entry_switched_off_or_removed_is_stale_while_the_heartbeat_is_fresh(
    transactional_db: None, attack: Any, said: str
) -> None:
    scheduler = _beat_loads_the_schedule()
    _beat_sends_the_heartbeat(scheduler)
    _a_worker_beats()
    assert scheduler_health().ok
    attack()
    answer = Client().get(URL)
    assert answer.status_code == 503
    assert said in answer.content.decode()


def test_the_answer_costs_two_queries(db: None, django_assert_num_queries: Any) -> None:
    PeriodicTask.objects.all().delete()
    with django_assert_num_queries(2):
        scheduler_health()
