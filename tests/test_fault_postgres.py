"""Fault injection with a real component (issue 7, item 5): PostgreSQL restarted under load.

The machine's PostgreSQL is shared by other test runs and must not be restarted, so the test
runs a cluster of its own: ``initdb`` into a temporary directory, a free loopback port, its
Unix socket in that directory, trust authentication (as the ``postgres`` OS user when the
test runs as root, which PostgreSQL refuses). Against it: ``manage.py migrate``, a gunicorn
web process and a ``celery worker`` (on a private ``redis-server``, never the shared one).

Six threads drive the web (signed-in pages, API reads with a reader's token, API writes with
a backup admin's token: create a vault, lengthen its soft delete, enable immutability) while
a 192 MiB backup runs on the worker. Mid-load the server is stopped (``pg_ctl stop -m
fast``), held down until both a page and an API call have answered, started again, and the
load goes on. Then:

- during the outage every failure is a 503 with a sentence (the API's
  ``{"code": "database_unavailable", "detail"}``, a plain page otherwise), never a 500;
- once the server is back every request succeeds again within a few seconds;
- every create that answered 201 exists exactly once, every change that answered 200 holds,
  every vault has its audit record, and ``manage.py audit_verify`` accepts the chain;
- the backup in flight completes: its data was durable before the database came back, and the
  worker reconnects to record its point; no recovery point row is without its data, no
  manifest without its row; the next backup completes.

Three quick tests before it take the answer apart one layer at a time (a failing query in
an API view, a session that cannot be read, a session save that fails), with mocks.
"""

# ruff: noqa: F401, F811  (fixtures imported from test_faults.py)
from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import psycopg
import pytest
import requests
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import OperationalError
from django.test import Client

from tests.test_faults import PrivateRedis, free_port, private_redis, random_tree, stop
from tests.test_worker import _poll
from vaults.api.vault import VaultViewSet

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
VAULT = "pg-restart"
ITEM = "big"
PASSWORD = "correct-horse-battery-staple"
RECOVERY_SECONDS = 5.0  # "every request succeeds again within a few seconds"


def _postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL server binaries (``/usr/lib/postgresql/<v>/bin``)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own, started and stopped with ``pg_ctl``."""

    def __init__(self) -> None:
        bindir = _postgres_bin()
        if bindir is None:
            pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
        self.bin = bindir
        # initdb and postgres refuse to run as root: then run them as the postgres OS user.
        self.as_user: list[str] = []
        owner = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no postgres OS user to run initdb")
            if shutil.which("runuser") is None:
                pytest.skip("running as root and runuser is missing (needed to run initdb)")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        # A short path of its own (Unix socket paths are limited to ~100 bytes) that the
        # postgres user can enter, unlike pytest's per-user temporary directory.
        self.dir = Path(tempfile.mkdtemp(prefix="holdfast-pg-"))
        if owner is not None:
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = free_port()
        self.server = f"postgres://holdfast@127.0.0.1:{self.port}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run(
            [*self.as_user, *args],
            cwd="/",  # the postgres user may not enter ours
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise AssertionError(f"{args[0]} failed: {done.stdout}{done.stderr}{self.log_tail()}")

    def init(self) -> None:
        self._run(
            *(str(self.bin / "initdb"), "-D", str(self.data), "-U", "holdfast"),
            *("-A", "trust", "-E", "UTF8", "--no-sync"),
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._run(
            *(str(self.bin / "pg_ctl"), "start", "-D", str(self.data), "-l", str(self.log)),
            *("-w", "-t", "30", "-o", options),
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", mode, "-w")

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n--- server log ---\n" + self.log.read_text()[-3000:]
        return ""

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    try:
        cluster.init()
        cluster.start()
        with psycopg.connect(f"{cluster.server}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE holdfast")
        yield cluster
    finally:
        cluster.destroy()


# --- the answer to a database that cannot be reached, one layer at a time -------------------

GONE = OperationalError("server closed the connection unexpectedly")


def test_api_answers_503_database_unavailable_when_a_query_fails(admin: Any, api: Any) -> None:
    with mock.patch.object(VaultViewSet, "get_queryset", side_effect=GONE):
        answer = api(admin).get("/api/v1/vaults/")
    assert answer.status_code == 503
    assert answer.json()["code"] == "database_unavailable"
    assert "cannot be reached" in answer.json()["detail"]


def test_a_page_answers_a_plain_503_when_the_session_cannot_be_read(admin: Any) -> None:
    browser = Client()
    browser.force_login(admin)
    with mock.patch.object(SessionStore, "load", side_effect=GONE):
        page = browser.get("/backup-center/")
    assert page.status_code == 503 and page["Retry-After"] == "5"
    assert b"Database unavailable" in page.content and b"cannot be reached" in page.content
    assert "sessionid" not in page.cookies  # the session is neither saved nor dropped
    assert browser.get("/backup-center/").status_code == 200  # still signed in


def test_a_session_save_that_fails_is_a_503_not_a_session_interrupted_400(admin: Any) -> None:
    browser = Client()
    browser.force_login(admin)
    with mock.patch.object(Session, "save", side_effect=GONE):
        page = browser.get("/backup-center/")
        answer = browser.get("/api/v1/vaults/")
    assert page.status_code == 503 and b"Database unavailable" in page.content
    assert answer.status_code == 503 and answer.json()["code"] == "database_unavailable"


# --- the installation under test ------------------------------------------------------------


@dataclass
class Installation:
    base: str
    database_url: str
    env: dict[str, str]
    storage: Path
    tokens: dict[str, str]
    logs: Path

    def manage(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def shell(self, code: str, **params: Any) -> Any:
        """Run ``code`` in ``manage.py shell`` on the private database; it prints one line
        ``RESULT <json>``, which is returned decoded."""
        env = {**self.env, "HOLDFAST_TEST_PARAMS": json.dumps(params)}
        done = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        (line,) = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
        return json.loads(line.removeprefix("RESULT "))

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n--- web and worker log ---\n" + self.logs.read_text()[-4000:]
        return ""


SETUP = """
import datetime, json, os
from knox.models import AuthToken
from policies import services as policy_services
from portal import services
from portal.gate import entry_point
from vaults import services as vault_services

params = json.loads(os.environ["HOLDFAST_TEST_PARAMS"])
tokens = {}
with entry_point("command"):
    people = {
        name: services.user_create(
            actor=None, username=name, role=role, password=params["password"]
        )
        for name, role in [("alice", "backup_admin"), ("oscar", "operator"), ("rita", "reader")]
    }
    vault = vault_services.vault_create(
        actor=people["alice"], name=params["vault"], kind="recovery_services", region="westeurope"
    )
    policy = policy_services.policy_create(
        actor=people["alice"], vault=vault, name="daily", daily_days=30, time=datetime.time(3)
    )
    vault_services.item_protect(
        actor=people["alice"], vault=vault, name=params["item"], source_path=params["source"],
        policy=policy,
    )
tokens = {name: AuthToken.objects.create(user=user)[1] for name, user in people.items()}
print("RESULT " + json.dumps(tokens))
"""


@pytest.fixture
def installation(
    private_postgres: PrivatePostgres, private_redis: PrivateRedis, tmp_path: Path
) -> Iterator[Installation]:
    """Migrate the private database, add people and a vault with a 192 MiB item, then start
    gunicorn and a ``celery worker`` on it."""
    storage = tmp_path / "storage"
    (tmp_path / "restores").mkdir()
    source = random_tree(tmp_path / "source", files=12, mib=16)
    database_url = f"{private_postgres.server}/holdfast"
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_OWNER_URL"},
        "DATABASE_URL": database_url,  # the owner: migrations and the app alike
        "CELERY_BROKER_URL": private_redis.url,
        "HOLDFAST_STORAGE_ROOT": str(storage),
        "HOLDFAST_RESTORE_ROOTS": str(tmp_path / "restores"),
        "LOG_LEVEL": "WARNING",
    }
    logs = tmp_path / "web-and-worker.log"
    site = Installation("", database_url, env, storage, {}, logs)
    migrated = site.manage("migrate", "--noinput", "-v", "0", timeout=120)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    site.tokens = site.shell(SETUP, password=PASSWORD, vault=VAULT, item=ITEM, source=str(source))

    port = free_port()
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
            *("-w", "2", "--threads", "4", "--timeout", "60"),
        ],
        **common,
    )
    worker = subprocess.Popen(
        [
            *(str(BIN / "celery"), "-A", "portal", "worker", "-P", "solo", "-l", "WARNING"),
            *("--without-heartbeat", "--without-mingle", "--without-gossip"),
        ],
        **common,
    )
    site.base = f"http://127.0.0.1:{port}"

    def serving() -> bool:
        with contextlib.suppress(requests.RequestException):
            return requests.get(f"{site.base}/healthz/", timeout=2).status_code == 200
        return False

    try:
        _poll(serving, timeout=30, what="gunicorn to serve")
        yield site
    finally:
        stop(web)
        stop(worker)
        log.close()


# --- load -----------------------------------------------------------------------------------


@dataclass
class Sample:
    actor: str  # "page", "read" or "write"
    method: str
    path: str
    status: int  # 0: no HTTP answer at all
    started: float
    ended: float
    clear_error: bool  # a 503 that says database_unavailable (API) or the plain page
    detail: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Load:
    """Threads driving the web until stopped; every request is recorded."""

    def __init__(self, base: str, tokens: dict[str, str], session_cookie: str) -> None:
        self.base = base
        self.tokens = tokens
        self.session_cookie = session_cookie
        self.samples: list[Sample] = []
        self.created: dict[str, int] = {}  # vault name -> status of its create
        self.changed: dict[str, dict[str, int]] = collections.defaultdict(dict)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _call(
        self, session: requests.Session, actor: str, method: str, path: str, **kw: Any
    ) -> Sample:
        started = time.monotonic()
        try:
            answer = session.request(
                method, self.base + path, timeout=20, allow_redirects=False, **kw
            )
        except requests.RequestException as exc:
            sample = Sample(actor, method, path, 0, started, time.monotonic(), False, repr(exc))
        else:
            clear = False
            if answer.status_code == 503:
                if path.startswith("/api/"):
                    with contextlib.suppress(ValueError):
                        clear = answer.json().get("code") == "database_unavailable"
                else:
                    clear = "Database unavailable" in answer.text and "Traceback" not in answer.text
            detail = "" if answer.ok else answer.text[:600]
            sample = Sample(
                actor, method, path, answer.status_code, started, time.monotonic(), clear, detail
            )
        self.samples.append(sample)
        return sample

    def _pages(self) -> None:
        session = requests.Session()
        session.cookies.set("sessionid", self.session_cookie)
        paths = itertools.cycle(
            [
                "/backup-center/",
                "/backup-center/?immutability=enabled&sort=-storage",
                f"/vaults/{VAULT}/",
                "/jobs/",
                "/items/",
            ]
        )
        while not self._stop.is_set():
            self._call(session, "page", "GET", next(paths))

    def _reads(self) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {self.tokens['rita']}"
        paths = itertools.cycle(
            ["/api/v1/vaults/", "/api/v1/jobs/", f"/api/v1/vaults/{VAULT}/", "/api/v1/audit/"]
        )
        while not self._stop.is_set():
            self._call(session, "read", "GET", next(paths))

    def _writes(self, number: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {self.tokens['alice']}"
        for i in itertools.count():
            if self._stop.is_set():
                return
            name = f"load-{number}-{i:04d}"
            create = self._call(
                session,
                "write",
                "POST",
                "/api/v1/vaults/",
                json={"name": name, "kind": "backup", "region": "westeurope"},
            )
            self.created[name] = create.status
            if create.status != 201:
                continue
            retention = self._call(
                session,
                "write",
                "PATCH",
                f"/api/v1/vaults/{name}/soft-delete/",
                json={"retention_days": 30},
            )
            self.changed[name]["retention"] = retention.status
            immutability = self._call(
                session,
                "write",
                "POST",
                f"/api/v1/vaults/{name}/immutability/",
                json={"state": "enabled"},
            )
            self.changed[name]["immutability"] = immutability.status

    def start(self) -> None:
        targets: list[Callable[[], None]] = [
            self._pages,
            self._pages,
            self._reads,
            self._reads,
            lambda: self._writes(1),
            lambda: self._writes(2),
        ]
        self._threads = [threading.Thread(target=t, daemon=True) for t in targets]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        assert not any(t.is_alive() for t in self._threads), "a load thread did not stop"

    def since(self, moment: float) -> list[Sample]:
        return [s for s in list(self.samples) if s.started >= moment]


def sign_in(base: str, username: str) -> str:
    """A real sign-in through the login form; returns the session cookie."""
    browser = requests.Session()
    form = browser.get(f"{base}/accounts/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token is not None, form.text[:500]
    done = browser.post(
        f"{base}/accounts/login/",
        {"csrfmiddlewaretoken": token.group(1), "username": username, "password": PASSWORD},
        headers={"Referer": f"{base}/accounts/login/"},
        timeout=30,
        allow_redirects=False,
    )
    assert done.status_code == 302, done.text[:500]
    return browser.cookies["sessionid"]


def job_row(database_url: str, job_id: int) -> tuple[str, str]:
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT status, error FROM vaults_job WHERE id = %s", [job_id]
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def job_finished(database_url: str, job_id: int) -> bool:
    with contextlib.suppress(Exception):  # the server may still be starting
        return job_row(database_url, job_id)[0] in {"completed", "failed"}
    return False


def chunk_count(storage: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(storage / "vaults" / VAULT / "chunks"))


INSPECT = """
import json, os
from portal.models import Alert, AuditRecord
from vaults import locations
from vaults.jobs import sweeps
from vaults.models import Job, RecoveryPoint, Vault

params = json.loads(os.environ["HOLDFAST_TEST_PARAMS"])
vault = Vault.objects.get(name=params["vault"])
store = locations.vault_store(vault)
job = Job.objects.get(pk=params["job"])
rows = set(RecoveryPoint.objects.filter(vault=vault).values_list("storage_key", flat=True))
unnamed = len(set(store.points()) - rows)
removed = sweeps.orphans_remove(vault)  # the storage sweep's first step
print("RESULT " + json.dumps({
    "manifests_without_row": unnamed,
    "orphans_removed": removed,
    "manifests_without_row_after_sweep": len(set(store.points()) - rows),
    "vaults": [
        {"name": v.name, "retention": v.soft_delete_retention_days, "immutability": v.immutability}
        for v in Vault.objects.filter(name__startswith="load-")
    ],
    "created_audits": list(
        AuditRecord.objects.filter(operation="vault_create", outcome="allowed")
        .values_list("vault_name", flat=True)
    ),
    "job": {"status": job.status, "error": job.error, "point": job.recovery_point_id},
    "points": [
        {"id": p.pk, "job_point": p.pk == job.recovery_point_id,
         "manifest": store.has_point(p.storage_key),
         "verifies": store.has_point(p.storage_key) and store.verify(p.storage_key).ok}
        for p in RecoveryPoint.objects.filter(vault=vault)
    ],
    "alerts": [
        a.message for a in Alert.objects.filter(kind="backup_failed", vault_name=vault.name)
    ],
}))
"""


def summary(load: Load, down: float, up: float) -> str:
    phases: dict[str, list[Sample]] = {"before": [], "during": [], "after": []}
    for sample in load.samples:
        phase = "before" if sample.ended < down else "after" if sample.started > up else "during"
        phases[phase].append(sample)
    lines = [f"outage (stop to ready): {up - down:.2f} s"]
    for phase, samples in phases.items():
        codes = collections.Counter(s.status for s in samples)
        lines.append(f"{phase:7} {len(samples):5d} requests  codes {dict(sorted(codes.items()))}")
    return "\n".join(lines)


def test_postgres_restarted_under_load_loses_nothing_and_answers_clearly(
    private_postgres: PrivatePostgres, installation: Installation
) -> None:
    site, cluster = installation, private_postgres
    load = Load(site.base, site.tokens, sign_in(site.base, "alice"))
    load.start()
    try:
        # Before: everything works, under load.
        _poll(lambda: len(load.samples) >= 60, timeout=30, what="load before the restart")

        # A backup in flight across the restart: stop the server once it writes chunks.
        operator = requests.Session()
        operator.headers["Authorization"] = f"Token {site.tokens['oscar']}"
        answer = operator.post(
            f"{site.base}/api/v1/vaults/{VAULT}/items/{ITEM}/backup/", timeout=30
        )
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]
        _poll(
            lambda: chunk_count(site.storage) >= 3,
            timeout=30,
            what="the backup to write chunks" + site.log_tail(),
        )

        down = time.monotonic()
        cluster.stop("fast")

        # Held down (bounded) until pages and the API have both answered the outage.
        def answered(actor: str) -> bool:
            return any(s.status == 503 for s in load.since(down) if s.actor == actor)

        _poll(
            lambda: answered("page") and answered("read") and answered("write"),
            timeout=20,
            what="pages and the API to answer during the outage",
        )
        cluster.start()
        up = time.monotonic()

        # After: load goes on until a good run of requests has succeeded (bounded).
        def recovered() -> bool:
            after = load.since(up + RECOVERY_SECONDS)
            return len(after) >= 60 and all(s.ok for s in after[-30:])

        _poll(recovered, timeout=40, what="requests to succeed after the restart")
    finally:
        load.stop()
    report = summary(load, down, up)
    print("\n" + report)

    # Nothing but clear answers: no 500, no dropped connection, no other status.
    expected = {"GET": {200}, "POST": {201, 200}, "PATCH": {200}}
    for sample in load.samples:
        if sample.status == 503:
            assert sample.clear_error, (sample, report)
        else:
            assert sample.status in expected[sample.method], (sample, report)
    assert all(s.ok for s in load.samples if s.ended < down), report
    assert all(s.ok for s in load.since(up + RECOVERY_SECONDS)), report
    first_ok_after = min((s.started for s in load.since(up) if s.ok), default=float("inf"))
    assert first_ok_after - up < RECOVERY_SECONDS, report
    page_503 = next(s for s in load.samples if s.status == 503 and s.actor == "page")
    assert "cannot be reached" in page_503.detail, page_503

    _poll(lambda: job_finished(site.database_url, job_id), timeout=60, what="the backup job")
    facts = site.shell(INSPECT, vault=VAULT, job=job_id)

    # Every 201 exists exactly once; nothing exists that was not attempted; a create whose
    # answer was lost (503 while committing) may exist, and then whole, with its record.
    names = [v["name"] for v in facts["vaults"]]
    assert len(names) == len(set(names))
    created = {name for name, status in load.created.items() if status == 201}
    assert created <= set(names), created - set(names)
    assert set(names) <= set(load.created), set(names) - set(load.created)
    assert all(load.created[name] in {201, 503} for name in names)
    audits = collections.Counter(facts["created_audits"])
    assert all(audits[name] == 1 for name in names), audits
    vaults = {v["name"]: v for v in facts["vaults"]}
    for name, changes in load.changed.items():
        if changes.get("retention") == 200:
            assert vaults[name]["retention"] == 30, (name, vaults[name])
        if changes.get("immutability") == 200:
            assert vaults[name]["immutability"] == "enabled", (name, vaults[name])
    verified = site.manage("audit_verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "Audit chain intact" in verified.stdout

    # The backup in flight: completed, or failed with an error and an alert; no point row
    # without its data either way.
    job = facts["job"]
    print(
        f"backup across the restart: {job['status']} {job['error'][:300]!r}; "
        f"manifests without a row: {facts['manifests_without_row']}"
    )
    # Its data was durable before the database came back, so the worker reconnects and
    # records the point (vaults.jobs.state.with_database) instead of losing the backup.
    assert job["status"] == "completed", job
    assert job["point"] is not None and any(p["job_point"] for p in facts["points"])
    assert all(p["manifest"] and p["verifies"] for p in facts["points"]), facts["points"]
    assert facts["manifests_without_row"] == 0, facts
    assert facts["manifests_without_row_after_sweep"] == 0, facts

    # Work resumes: the next backup completes.
    again = operator.post(f"{site.base}/api/v1/vaults/{VAULT}/items/{ITEM}/backup/", timeout=30)
    assert again.status_code == 202, again.text
    next_job = again.json()["id"]
    _poll(lambda: job_finished(site.database_url, next_job), timeout=60, what="the next backup")
    assert job_row(site.database_url, next_job) == ("completed", ""), site.log_tail()
    print(
        f"creates: {len(load.created)} attempted, {len(created)} answered 201, "
        f"{len(names)} exist ({len(set(names) - created)} of them answered 503)"
    )
