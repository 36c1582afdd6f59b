"""Job progress as a person reads it: bytes, files, throughput and time left while a job
runs; "Preparing…" (never "0 bytes of 0 bytes") until the totals are known; the job
states' own badges; humanized durations; the card htmx polls, and the 286 that stops it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from portal import clock
from vaults.models import Job

pytestmark = pytest.mark.django_db


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _job(**fields: Any) -> Job:
    now = clock.now()
    defaults: dict[str, Any] = {"kind": "backup", "created_at": now - timedelta(seconds=90)}
    defaults.update(fields)
    return Job.objects.create(**defaults)


def test_a_running_job_shows_bytes_files_throughput_and_time_left(reader: Any) -> None:
    now = clock.now()
    job = _job(
        status="running",
        started_at=now - timedelta(seconds=80),
        heartbeat_at=now,
        bytes_done=400 * 1024 * 1024,
        bytes_total=1000 * 1024 * 1024,
        files_done=120,
        files_total=300,
    )
    body = (
        _client(reader)
        .get(reverse("jobs:progress", args=[job.pk]))
        .content.decode()
        .replace("\xa0", " ")
    )
    assert 'class="job-state job-state-running">Running<' in body
    assert "badge role" not in body
    assert '<progress class="job-bar" max="100" value="40"' in body
    assert "400.0 MB of 1000.0 MB" in body
    assert "120 of 300 files or folders" in body
    assert "5.0 MB/s" in body
    assert "about 2 min left" in body  # 600 MB at 5 MB/s
    assert "running for 1 min 20 s" in body
    assert 'hx-trigger="every 2s"' in body


def test_a_job_still_counting_says_preparing_not_zero_of_zero(reader: Any) -> None:
    now = clock.now()
    job = _job(status="running", started_at=now, heartbeat_at=now, files_total=42)
    body = (
        _client(reader)
        .get(reverse("jobs:progress", args=[job.pk]))
        .content.decode()
        .replace("\xa0", " ")
    )
    assert "0 bytes of 0 bytes" not in body and "0 bytes" not in body
    assert "Preparing… counting files (42 found)" in body


def test_an_ended_job_answers_286_with_the_whole_card_filled_in(reader: Any) -> None:
    now = clock.now()
    job = _job(
        status="completed",
        started_at=now - timedelta(seconds=9, microseconds=273276),
        ended_at=now,
        bytes_done=2048,
        bytes_total=2048,
        files_total=3,
    )
    response = _client(reader).get(reverse("jobs:progress", args=[job.pk]) + "?view=card")
    assert response.status_code == 286
    body = response.content.decode().replace("\xa0", " ")
    assert 'id="job-card"' in body and "hx-get" not in body
    assert "0:00:09" not in body and "9.3 s" in body
    assert 'id="job-started"><time' in body and 'id="job-ended"><time' in body
    assert "3 files or folders" in body


def test_job_lists_show_humanized_durations(reader: Any) -> None:
    now = clock.now()
    _job(
        status="failed", started_at=now - timedelta(minutes=4, seconds=12), ended_at=now, error="x"
    )
    page = _client(reader).get(reverse("jobs:list")).content.decode().replace("\xa0", " ")
    assert "took 4 min 12 s" in page and 'job-state-failed">Failed<' in page
