"""Is the periodic work running? The answer ``/healthz/background/`` gives a monitor.

Beat sends every periodic task (portal/schedule.py): dispatching backups, the sweeps, the
verification schedule, anchoring the audit log. If beat stops (its host down, or a shell on
it that stops it), nothing of that happens and nothing inside Holdfast can say so: the
alerts about missed work are raised by those same tasks. So the proof of life comes from
beat's own bookkeeping: django-celery-beat's DatabaseScheduler writes each entry's
``last_run_at`` when it sends it (in its ``sync``, every few minutes), and the dispatcher's
entry is sent every minute. An external monitor that polls this answer sees a stopped beat,
a schedule entry switched off, or one removed, within ``HOLDFAST_SCHEDULER_STALE_SECONDS``;
and workers that all stopped (none of the shared queue announcing its host) within 5 minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django_celery_beat.models import PeriodicTask

from portal import clock
from portal.celery import app
from portal.schedule import CELERY_BEAT_SCHEDULE
from portal.templatetags.holdfast import duration
from vaults.hosts import ONLINE_WINDOW, Host

# Sent every 60 s: the heartbeat of the whole schedule.
HEARTBEAT = "holdfast-dispatch-backups"


@dataclass(frozen=True)
class SchedulerHealth:
    ok: bool
    sentence: str
    last_sent: datetime | None


def scheduler_health() -> SchedulerHealth:
    """Whether beat sends the schedule: every entry present and enabled, the heartbeat's
    last sending no older than ``HOLDFAST_SCHEDULER_STALE_SECONDS``, and a worker online to
    run what it sends. Two queries."""
    now = clock.now()
    stale_after = timedelta(seconds=settings.HOLDFAST_SCHEDULER_STALE_SECONDS)
    rows = {
        name: (enabled, last_run_at, loaded)
        for name, enabled, last_run_at, loaded in PeriodicTask.objects.filter(
            name__in=list(CELERY_BEAT_SCHEDULE)
        ).values_list("name", "enabled", "last_run_at", "date_changed")
    }
    problems = []
    missing = sorted(set(CELERY_BEAT_SCHEDULE) - set(rows))
    if len(missing) == len(CELERY_BEAT_SCHEDULE):
        problems.append("beat has never loaded the schedule (is it running?)")
    elif missing:
        problems.append(f"schedule entries missing: {', '.join(missing)}")
    disabled = sorted(name for name, (enabled, _, _) in rows.items() if not enabled)
    if disabled:
        problems.append(f"schedule entries switched off: {', '.join(disabled)}")
    _, last_sent, loaded = rows.get(HEARTBEAT, (True, None, None))
    # A beat that just started writes what it sent at its first sync, up to 3 minutes on;
    # until then the entry's date_changed is when it loaded the schedule.
    since = last_sent or loaded
    if since is not None and now - since > stale_after:
        problems.append(
            f"beat last sent {HEARTBEAT} {duration(now - since)} ago (at "
            f"{since:%Y-%m-%d %H:%M:%S} UTC), more than {duration(stale_after)}: is beat running?"
            if last_sent
            else f"beat loaded the schedule {duration(now - since)} ago and has recorded no "
            f"sending of {HEARTBEAT} since: is beat running?"
        )
    problems.extend(_no_worker(now))
    if problems:
        text = "; ".join(problems)
        return SchedulerHealth(False, text if text.endswith("?") else text + ".", last_sent)
    if last_sent is None:
        assert loaded is not None
        age = max(now - loaded, timedelta(0))
        return SchedulerHealth(
            True, f"beat loaded the schedule {duration(age)} ago; no sending recorded yet.", None
        )
    age = max(now - last_sent, timedelta(0))
    return SchedulerHealth(True, f"beat sent {HEARTBEAT} {duration(age)} ago.", last_sent)


def _no_worker(now: datetime) -> list[str]:
    """Beat only sends: the periodic tasks run on workers that consume the shared queue, and
    each worker's beacon announces its host every minute (vaults/jobs/beacon.py)."""
    shared = app.conf.task_default_queue
    online = Host.objects.filter(last_seen__gte=now - ONLINE_WINDOW).values_list(
        "queues", flat=True
    )
    if any(shared in queues for queues in online):
        return []
    return [
        f"no worker consuming the shared queue '{shared}' (where the periodic tasks run) has "
        f"announced its host in the last {duration(ONLINE_WINDOW)}"
    ]


@login_not_required
def background(request: HttpRequest) -> HttpResponse:
    """For a monitor: 200 while beat sends the periodic schedule and a worker runs it, 503
    with the sentence why not (:func:`scheduler_health`). Names and ages only."""
    health = scheduler_health()
    return HttpResponse(
        ("ok: " if health.ok else "stale: ") + health.sentence,
        content_type="text/plain",
        status=200 if health.ok else 503,
    )
