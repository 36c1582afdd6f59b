"""Real ``celery -A portal worker`` processes, each as on a host of its own (SPEC 3.13): its
own ``HOLDFAST_WORKER_HOST``, var dir, temp dir and source directories (it may back up only
under its own, ``HOLDFAST_SOURCE_ROOTS``), sharing the test database, the broker and the
vault storage. Started with ``-Q`` the test's shared queue only: the host's own queue,
``host.<name>``, is what the worker adds by itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from tests.test_worker import _database_url
from vaults.hosts import Host

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class HostWorker:
    name: str
    home: Path
    process: subprocess.Popen[bytes]

    @property
    def sources(self) -> Path:
        return self.home / "sources"

    def log(self) -> str:
        return (self.home / "worker.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def unique_host(prefix: str) -> str:
    """Host names unique per test run: their queues (``host.<name>``) are the test's own."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _start(name: str, home: Path) -> HostWorker:
    for sub in ("sources", "var", "tmp"):
        (home / sub).mkdir(parents=True)
    env = {
        **{k: v for k, v in os.environ.items() if k != "HOLDFAST_WORKER_NAME"},
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "HOLDFAST_WORKER_HOST": name,
        "HOLDFAST_SOURCE_ROOTS": str(home / "sources"),
        "HOLDFAST_STORAGE_ROOT": str(settings.HOLDFAST_STORAGE_ROOT),
        "HOLDFAST_KEY_FILE": str(settings.HOLDFAST_KEY_FILE),
        "HOLDFAST_VAR_DIR": str(home / "var"),
        "HOLDFAST_RESTORE_ROOTS": ":".join(map(str, settings.HOLDFAST_RESTORE_ROOTS)),
        "HOLDFAST_DRILL_ROOT": str(home / "var" / "drills"),
        "TMPDIR": str(home / "tmp"),
    }
    with open(home / "worker.log", "wb") as out:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("celery")),
                "-A",
                "portal",
                "worker",
                "-P",
                "solo",
                "-n",
                f"{name}@%h",
                "-Q",
                settings.HOLDFAST_TASK_QUEUE,
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
                "-l",
                "INFO",
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,  # its own process group, so the kill takes everything
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return HostWorker(name=name, home=home, process=process)


@contextmanager
def host_workers(base: Path, *prefixes: str, timeout: float = 90.0) -> Iterator[list[HostWorker]]:
    """Start one worker per prefix and wait (bounded) until each has announced its host."""
    workers = [_start(unique_host(p), base / p) for p in prefixes]
    try:
        deadline = time.monotonic() + timeout
        while Host.objects.filter(name__in=[w.name for w in workers]).count() < len(workers):
            for worker in workers:
                if worker.process.poll() is not None:
                    raise AssertionError(f"worker {worker.name} exited:\n{worker.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError("workers did not announce their hosts in time")
            time.sleep(0.1)
        yield workers
    finally:
        for worker in workers:
            worker.stop()
