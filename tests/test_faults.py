"""Fault injection with real components (issue 7, item 5).

Each test breaks one real thing while work is in flight and then checks the same promise:
nothing lost (points taken before still verify and restore), nothing half-visible (no
point row without its manifest, no manifest of a failed backup), a clear job error and an
alert, and work resumes once the fault is gone.

- The storage made read-only, and full (ENOSPC), mid-backup: a real tmpfs mounted over the
  test's storage root (``mount -t tmpfs``, then ``mount -o remount,ro``); skipped with the
  reason when this host does not allow mounting. Backups run on a real in-process Celery
  worker.
- A ``celery worker`` subprocess killed with SIGKILL mid-sweep: once while the points sweep
  expires rows and data, once while the storage sweep's GC deletes chunks.
- Redis stopped while the web serves: a private ``redis-server`` on a free loopback port,
  a gunicorn web process and a ``celery worker`` pointed at it (never the shared Redis).

Elsewhere: "PostgreSQL restarted under load" is ``tests/test_fault_postgres.py`` (a cluster
of its own: the machine's is shared by other test runs), the worker killed mid-backup is
``tests/test_worker.py``.
"""

# ruff: noqa: F401, F811  (fixtures imported from test_jobs.py and test_worker.py)
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import requests
from django.conf import settings
from django.db import connection
from django.test import Client

from portal import clock
from portal.celery import app
from portal.models import Alert, AuditRecord
from tests.conftest import token_for
from tests.factories import make_vault
from tests.test_jobs import (
    people,
    protect,
    storage,
    tree_of,
    wait_for,
    worker,
    write_tree,
)
from tests.test_worker import _database_url, _poll, worker_process
from vaults import locations, tasks
from vaults.jobs import requests as job_requests
from vaults.jobs import runner, sweeps
from vaults.models import Job, RecoveryPoint

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


# --- helpers --------------------------------------------------------------------------------


def random_tree(root: Path, files: int, mib: int) -> Path:
    """``files`` files of ``mib`` MiB of incompressible data: seconds of work for a backup."""
    root.mkdir(parents=True)
    for i in range(files):
        with open(root / f"blob-{i:02d}.bin", "wb") as out:
            for _ in range(mib):
                out.write(os.urandom(1024 * 1024))
    return root


def run_here(request: Callable[[], Job]) -> Job:
    """Create a job without sending it to the queue (a worker listening there must not take
    it), run it in this process and return it finished."""
    with mock.patch.object(job_requests, "enqueue_job"):
        job = request()
    done = runner.job_run(job_id=job.pk)
    assert done is not None
    return done


def assert_rows_have_manifests(vault: Any) -> None:
    """Nothing half-visible: every point row's manifest exists and its data verifies."""
    store = locations.vault_store(vault)
    for point in RecoveryPoint.objects.filter(vault=vault):
        assert store.has_point(point.storage_key), f"point {point.pk} lost its manifest"
        assert store.verify(point.storage_key).ok, f"point {point.pk} does not verify"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a web or worker subprocess on this test's database and storage."""
    return {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "HOLDFAST_STORAGE_ROOT": str(settings.HOLDFAST_STORAGE_ROOT),
        "HOLDFAST_RESTORE_ROOTS": ":".join(map(str, settings.HOLDFAST_RESTORE_ROOTS)),
        **extra,
    }


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


# --- a tmpfs of our own ---------------------------------------------------------------------


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def tmpfs() -> Iterator[Callable[[Path, str], Path]]:
    """Mount a small tmpfs over a directory of the test (unmounted at teardown).

    Only this test's directory is affected; skipped when the host does not allow it
    (not root, or no CAP_SYS_ADMIN in a container)."""
    mounted: list[Path] = []

    def mount(path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        done = _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs on this host: {done.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount(path: Path, mode: str) -> None:
    """``mount -o remount,ro|rw``; a remount to ro fails (EBUSY) while a file is open for
    writing, so retry until the backup is between two writes (bounded)."""
    deadline = time.monotonic() + 15
    while True:
        done = _mount("-o", f"remount,{mode}", str(path))
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"remount,{mode} of {path} failed: {done.stderr.strip()}")
        time.sleep(0.005)


# --- storage faults -------------------------------------------------------------------------


def _start_big_backup(people: dict[str, Any], storage: Path, name: str, mib: int) -> Any:
    """A vault with one kept point (small tree) and a big item to back up."""
    admin, operator = people["admin"], people["operator"]
    vault = make_vault(admin, name=name)
    small = protect(admin, vault, write_tree(storage / "small"), "small")
    big = protect(admin, vault, random_tree(storage / "big", files=mib // 16, mib=16), "big")
    (first,) = wait_for(job_requests.backup_request(actor=operator, item=small).pk)
    assert first.status == "completed", first.error
    return vault, small, big, first.recovery_point


def _assert_failed_cleanly(job: Job, vault: Any, big: Any, kept: Any, says: str) -> None:
    assert job.status == "failed"
    assert "Cannot write to the store" in job.error and says in job.error, job.error
    assert "run the job again" in job.error
    # No half point: no row, no manifest; the earlier point is whole.
    assert not RecoveryPoint.objects.filter(item=big).exists()
    store = locations.vault_store(vault)
    assert store.points() == [kept.storage_key]
    assert_rows_have_manifests(vault)
    alert = Alert.objects.get(kind="backup_failed", vault_name=vault.name)
    assert alert.target == "item:big" and f"#{job.pk}" in alert.message and says in alert.message


def test_storage_made_read_only_mid_backup_fails_the_job_and_keeps_every_point(
    people: dict[str, Any],
    storage: Path,
    worker: Any,
    tmpfs: Callable[[Path, str], Path],
) -> None:
    root = tmpfs(Path(settings.HOLDFAST_STORAGE_ROOT), "900m")
    vault, _, big, kept = _start_big_backup(people, storage, "read-only", mib=256)
    store = locations.vault_store(vault)
    chunks_before = set(store.backend.list("chunks/"))

    job = job_requests.backup_request(actor=people["operator"], item=big)
    _poll(
        lambda: len(set(store.backend.list("chunks/")) - chunks_before) >= 3,
        timeout=60,
        what="the backup to start writing chunks",
    )
    remount(root, "ro")
    try:
        (failed,) = wait_for(job.pk)
        _assert_failed_cleanly(failed, vault, big, kept, says="read-only")
        # Reads still work on a read-only store: the kept point restores.
        target = storage / "restores" / "while-read-only"
        restored = run_here(
            lambda: job_requests.restore_request(
                actor=people["operator"], point=kept, target_path=str(target)
            )
        )
        assert restored.status == "completed", restored.error
        assert tree_of(target) == tree_of(storage / "small")
    finally:
        remount(root, "rw")

    # Writable again: the next backup runs; the dead backup's lease (it could not even
    # remove it) protects its chunks until it expires, then GC frees them.
    retry = run_here(lambda: job_requests.backup_request(actor=people["operator"], item=big))
    assert retry.status == "completed", retry.error
    collected = store.gc(now=time.time() + store.lease_timeout + 60)
    assert collected.completed and collected.expired_leases == 1
    assert sorted(store.points()) == sorted([kept.storage_key, retry.recovery_point.storage_key])
    assert_rows_have_manifests(vault)


def test_storage_full_mid_backup_fails_the_job_and_the_sweep_gives_the_space_back(
    people: dict[str, Any],
    storage: Path,
    worker: Any,
    tmpfs: Callable[[Path, str], Path],
) -> None:
    root = tmpfs(Path(settings.HOLDFAST_STORAGE_ROOT), "24m")
    vault, _, big, kept = _start_big_backup(people, storage, "full", mib=64)
    used_before = shutil.disk_usage(root).used

    (failed,) = wait_for(job_requests.backup_request(actor=people["operator"], item=big).pk)
    _assert_failed_cleanly(failed, vault, big, kept, says="no space left")
    assert shutil.disk_usage(root).free < 5 * 1024 * 1024  # it really filled the device
    temporaries = [p for p in root.rglob(".tmp-*")]
    assert temporaries == []  # a failed put removes its temporary file

    # The failed backup released its lease, so the storage sweep frees its chunks at once.
    sweep = runner.sweep_run(sweep="storage")
    assert sweep.status == "completed", sweep.error
    assert sweep.params["report"]["deleted_chunks"] > 0
    assert shutil.disk_usage(root).used <= used_before + 256 * 1024

    # Work resumes: a backup that fits completes and every point verifies and restores.
    medium = protect(people["admin"], vault, random_tree(storage / "medium", 1, 4), "medium")
    point = run_here(lambda: job_requests.backup_request(actor=people["operator"], item=medium))
    assert point.status == "completed", point.error
    assert_rows_have_manifests(vault)
    target = storage / "restores" / "after-full"
    restored = run_here(
        lambda: job_requests.restore_request(
            actor=people["operator"], point=kept, target_path=str(target)
        )
    )
    assert restored.status == "completed", restored.error
    assert tree_of(target) == tree_of(storage / "small")


# --- the worker killed mid-sweep ------------------------------------------------------------


def _running_sweep() -> Job | None:
    return Job.objects.filter(kind="sweep", status="running").first()


def _fail_stale_sweep() -> Job:
    """The stale-job sweep, ten minutes on, fails the dead worker's sweep job."""
    (sweep,) = Job.objects.filter(kind="sweep")
    assert sweep.status == "running"
    clock.set_now(datetime.now(UTC) + timedelta(minutes=10))
    try:
        assert sweeps.jobs_fail_stale() == 1
    finally:
        clock.set_now(None)
    sweep.refresh_from_db()
    assert sweep.status == "failed" and "stopped responding" in sweep.error
    return sweep


def test_worker_killed_while_the_points_sweep_expires_points_leaves_no_row_without_data(
    people: dict[str, Any],
    storage: Path,
    worker_process: Any,
) -> None:
    admin, operator = people["admin"], people["operator"]
    vault = make_vault(admin, name="sweep-killed", immutability="enabled")
    source = storage / "old"
    old = protect(admin, vault, write_tree(source), "old")
    # 60 on-demand points taken 30 days ago, kept for a day: all expired now. Each has a
    # file of its own, so each has data only it references.
    taken = datetime.now(UTC) - timedelta(days=30)
    clock.set_now(taken)
    try:
        for i in range(60):
            (source / "changing.bin").write_bytes(os.urandom(4096) + bytes([i]))
            job = run_here(
                lambda: job_requests.backup_request(
                    actor=operator, item=old, retain_until=taken + timedelta(days=1)
                )
            )
            assert job.status == "completed"
    finally:
        clock.set_now(None)
    kept_source = write_tree(storage / "kept", seed=7)
    kept_item = protect(admin, vault, kept_source, "kept")
    kept = run_here(
        lambda: job_requests.backup_request(
            actor=operator, item=kept_item, retain_until=datetime.now(UTC) + timedelta(days=30)
        )
    ).recovery_point
    assert RecoveryPoint.objects.filter(item=old).count() == 60

    tasks.sweep_points.apply_async(queue=settings.HOLDFAST_TASK_QUEUE)
    # The sweep deletes a batch of rows (here all 60, in one transaction) and then their
    # data: killed once the rows are gone, most of the data is still to be deleted.
    _poll(
        lambda: RecoveryPoint.objects.filter(item=old).count() < 60,
        timeout=60,
        what="the points sweep to be expiring points",
    )
    os.killpg(worker_process.pid, signal.SIGKILL)
    worker_process.wait(timeout=30)

    # Rows go first, data second: at worst a manifest without a row, never the reverse.
    left = RecoveryPoint.objects.filter(item=old).count()
    assert left < 60
    assert_rows_have_manifests(vault)
    store = locations.vault_store(vault)
    assert len(store.points()) >= left + 1
    sweep = _fail_stale_sweep()

    # Work resumes: the next sweeps expire the rest, drop any orphan manifest, free data.
    assert runner.sweep_run(sweep="points").status == "completed"
    assert runner.sweep_run(sweep="storage").status == "completed"
    assert not RecoveryPoint.objects.filter(item=old).exists()
    assert store.points() == [kept.storage_key]
    assert_rows_have_manifests(vault)
    target = storage / "restores" / "kept"
    restored = run_here(
        lambda: job_requests.restore_request(actor=operator, point=kept, target_path=str(target))
    )
    assert restored.status == "completed" and tree_of(target) == tree_of(kept_source)
    assert sweep.pk not in Job.objects.filter(status="running").values_list("pk", flat=True)


def test_worker_killed_while_gc_deletes_chunks_leaves_every_point_whole(
    people: dict[str, Any],
    storage: Path,
    worker_process: Any,
) -> None:
    admin, operator = people["admin"], people["operator"]
    vault = make_vault(admin, name="gc-killed")
    source = write_tree(storage / "src")
    item = protect(admin, vault, source)
    kept = run_here(lambda: job_requests.backup_request(actor=operator, item=item)).recovery_point
    store = locations.vault_store(vault)
    chunks_root = Path(settings.HOLDFAST_STORAGE_ROOT) / "vaults" / vault.name / "chunks"
    kept_chunks = set(store.backend.list("chunks/"))
    # Garbage as crashed backups leave it: chunks no manifest and no live lease names.
    garbage = 6000
    for _ in range(garbage):
        name = uuid.uuid4().hex + uuid.uuid4().hex
        (chunks_root / name[:2]).mkdir(exist_ok=True)
        (chunks_root / name[:2] / name).write_bytes(b"garbage")

    def chunk_count() -> int:
        return sum(len(files) for _, _, files in os.walk(chunks_root))

    tasks.sweep_storage.apply_async(queue=settings.HOLDFAST_TASK_QUEUE)
    total = len(kept_chunks) + garbage
    _poll(
        lambda: len(kept_chunks) + 50 < chunk_count() < total - 50,
        timeout=60,
        what="GC to be deleting chunks",
    )
    os.killpg(worker_process.pid, signal.SIGKILL)
    worker_process.wait(timeout=30)

    # Half a GC is a smaller pile of garbage: every point verifies, nothing it needs went.
    assert len(kept_chunks) < chunk_count() < total
    assert kept_chunks <= set(store.backend.list("chunks/"))
    assert_rows_have_manifests(vault)
    # What the dead GC leaves besides: its marker (see the xfail test below).
    assert len(list(store.backend.list("gc/"))) == 1
    _fail_stale_sweep()

    # The next storage sweep finishes the job.
    again = runner.sweep_run(sweep="storage")
    assert again.status == "completed", again.error
    assert set(store.backend.list("chunks/")) == kept_chunks
    assert_rows_have_manifests(vault)
    target = storage / "restores" / "after-gc"
    restored = run_here(
        lambda: job_requests.restore_request(actor=operator, point=kept, target_path=str(target))
    )
    assert restored.status == "completed" and tree_of(target) == tree_of(source)


def test_a_backup_after_a_gc_killed_mid_run_is_not_held_by_its_marker(
    people: dict[str, Any],
    storage: Path,
) -> None:
    admin = people["admin"]
    vault = make_vault(admin, name="dead-marker")
    item = protect(admin, vault, write_tree(storage / "src"))
    store = locations.vault_store(vault)
    # Exactly what the killed GC of the test above leaves: its marker, started a minute ago.
    marker = f"gc/{time.time_ns()}-deadbeef.json"
    store.backend.put(marker, f'{{"started_at": {time.time() - 60}}}'.encode())
    runner = threading.Thread(
        target=lambda: (
            run_here(lambda: job_requests.backup_request(actor=people["operator"], item=item)),
            connection.close(),
        )
    )
    runner.start()
    runner.join(timeout=10)
    held = runner.is_alive()
    store.backend.delete(marker)  # lets the held backup finish before teardown
    runner.join(timeout=30)
    assert not held, "the backup waited for a dead GC's marker"


# --- Redis stopped while the web serves -----------------------------------------------------


class PrivateRedis:
    """A ``redis-server`` of this test's own, on a free loopback port, without persistence."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
            ],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _poll(self._answers, timeout=15, what="the private redis-server to start")

    def _answers(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn,
        ):
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
        return False

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def web_and_worker(
    private_redis: PrivateRedis,
    storage: Path,
) -> Iterator[str]:
    """gunicorn and a ``celery worker`` on the test database and the private Redis; the
    subprocesses send to and read the default queue, which only this Redis holds."""
    if connection.vendor != "postgresql":
        pytest.skip("the web and worker subprocesses share the test database: PostgreSQL only")
    env = subprocess_env(CELERY_BROKER_URL=private_redis.url)
    port = free_port()
    logs = storage / "web-and-worker.log"  # both processes' output, for a failing test
    log = logs.open("ab")
    common: dict[str, Any] = {
        "cwd": ROOT,
        "env": env,
        "start_new_session": True,
        "stdout": log,
        "stderr": subprocess.STDOUT,
    }
    web = subprocess.Popen(
        [
            *(str(BIN / "gunicorn"), "portal.wsgi:application", "-b", f"127.0.0.1:{port}"),
            *("-w", "1", "--threads", "4", "--timeout", "60"),
        ],
        **common,
    )
    celery_worker = subprocess.Popen(
        [
            *(str(BIN / "celery"), "-A", "portal", "worker", "-P", "solo", "-l", "INFO"),
            *("--without-heartbeat", "--without-mingle", "--without-gossip"),
        ],
        **common,
    )
    base = f"http://127.0.0.1:{port}"

    def serving() -> bool:
        with contextlib.suppress(requests.RequestException):
            return requests.get(f"{base}/healthz/", timeout=2).status_code == 200
        return False

    try:
        _poll(serving, timeout=30, what="gunicorn to serve")
        yield base
    finally:
        stop(web)
        stop(celery_worker)
        log.close()


def test_redis_stopped_pages_keep_working_actions_say_so_and_work_resumes(
    people: dict[str, Any],
    storage: Path,
    private_redis: PrivateRedis,
    web_and_worker: str,
) -> None:
    base = web_and_worker
    admin, operator = people["admin"], people["operator"]
    vault = make_vault(admin, name="no-queue")
    source = write_tree(storage / "src")
    item = protect(admin, vault, source)
    signed_in = Client()
    signed_in.force_login(operator)
    browser = requests.Session()
    browser.cookies.set("sessionid", signed_in.cookies["sessionid"].value)
    api = requests.Session()
    api.headers["Authorization"] = f"Token {token_for(operator)}"

    private_redis.stop()

    # Pages and reads keep working: none of them needs the queue.
    for path in ("/", "/backup-center/", f"/vaults/{vault.name}/", "/jobs/", "/items/"):
        page = browser.get(base + path, timeout=30, allow_redirects=False)
        assert page.status_code == 200, (path, page.status_code, page.text[-3000:])
    assert api.get(f"{base}/api/v1/jobs/", timeout=30).status_code == 200

    # The API says so: 503, a sentence, and the job it recorded (queued, not lost).
    started = time.monotonic()
    answer = api.post(f"{base}/api/v1/vaults/{vault.name}/items/docs/backup/", timeout=30)
    assert time.monotonic() - started < 15
    assert answer.status_code == 503, answer.text
    body = answer.json()
    assert body["code"] == "queue_unavailable"
    assert "could not be reached" in body["detail"] and "no need to submit" in body["detail"]
    from_api = Job.objects.get(pk=body["job"]["id"])
    assert from_api.status == "queued" and from_api.error == body["detail"]
    assert AuditRecord.objects.filter(operation="backup_run", outcome="allowed").count() == 1

    # The form says so too, on the job's page, where the job waits.
    form_url = f"{base}/jobs/items/{item.pk}/backup/"
    form = browser.get(form_url, timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token is not None
    posted = browser.post(
        form_url,
        {"csrfmiddlewaretoken": token.group(1), "retain_until": ""},
        headers={"Referer": form_url},
        timeout=30,
    )
    assert posted.status_code == 200 and "/jobs/" in posted.url, posted.status_code
    assert "could not be reached" in posted.text and "no need to submit" in posted.text
    from_form = Job.objects.exclude(pk=from_api.pk).get(kind="backup")
    assert from_form.status == "queued" and "could not be reached" in from_form.error

    # One open job alert, counted twice; no point yet.
    alert = Alert.objects.get(kind="backup_failed", vault_name=vault.name)
    assert alert.count == 2 and "could not be started yet" in alert.message
    assert not RecoveryPoint.objects.exists()

    # Redis returns; the job sweep (beat's every-minute task, sent here as beat would)
    # re-sends the waiting jobs and the worker runs them.
    private_redis.start()
    # (An explicit connection: CELERY_BROKER_URL in this process names the shared Redis.)
    with app.connection_for_write(private_redis.url) as beat:
        tasks.sweep_jobs.apply_async(connection=beat)
    done = wait_for(from_api.pk, from_form.pk, timeout=60)
    assert [job.status for job in done] == ["completed", "completed"], [j.error for j in done]
    assert [job.error for job in done] == ["", ""]
    assert RecoveryPoint.objects.filter(item=item).count() == 2
    assert_rows_have_manifests(vault)
    again = api.post(f"{base}/api/v1/vaults/{vault.name}/items/docs/backup/", timeout=30)
    assert again.status_code == 202, again.text
    (last,) = wait_for(again.json()["id"], timeout=60)
    assert last.status == "completed", last.error
