"""A worker's beacon (SPEC 3.13): once the worker is ready, and then every
``HOLDFAST_HOST_BEAT_SECONDS`` (60) from a side thread, it announces its host with its
version and queues (``services.host_announce``). A host whose workers all stopped is offline
5 minutes after its last beat. Started and stopped by Celery's worker signals
(``vaults/tasks.py``); nothing else runs it."""

from __future__ import annotations

import logging
import threading
import tomllib
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection

from portal import clock
from portal.celery import worker_host
from portal.gate import entry_point

from .. import services

logger = logging.getLogger(__name__)


def holdfast_version() -> str:
    """The installed package's version, else the source tree's (pyproject.toml)."""
    try:
        return version("holdfast")
    except PackageNotFoundError:
        pass
    try:
        with open(Path(settings.BASE_DIR) / "pyproject.toml", "rb") as file:
            return str(tomllib.load(file)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return ""


class Beacon:
    def __init__(self, queues: list[str]) -> None:
        self.host = worker_host()
        self.queues = queues
        self.started_at: datetime = clock.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="holdfast-beacon", daemon=True)

    def beat(self) -> None:
        with entry_point("task"):
            services.host_announce(
                name=self.host,
                version=holdfast_version(),
                queues=self.queues,
                started_at=self.started_at,
            )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        seconds = float(getattr(settings, "HOLDFAST_HOST_BEAT_SECONDS", 60))
        try:
            while True:
                try:
                    self.beat()
                except DatabaseError as exc:  # a missed beat, not a dead worker
                    logger.warning("host %s: beat missed: %s", self.host, exc)
                    connection.close()
                if self._stop.wait(seconds):
                    return
        finally:
            connection.close()


_running: list[Beacon] = []


def beacon_start(queues: list[str]) -> None:
    beacon = Beacon(queues)
    beacon.start()
    _running.append(beacon)


def beacon_stop() -> None:
    while _running:
        _running.pop().stop()
