"""PostgreSQL databases as protected items (SPEC 3.13): a real database on the local server
dumped by a real Celery worker through the chunker, deduplicated across points, restored
into a new database with identical contents, drilled; pg_dump's own failures; the restore
request's refusals (Holdfast's own database, an existing one, hostile names); the same gate
on the points (immutability); no pg_dump outliving a killed worker.

The server is reached as the worker would: PG* variables in the environment (libpq's own),
never stored in Holdfast. Every scratch database is dropped at teardown.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection
from psycopg import sql

from policies import services as policy_services
from portal.models import AuditRecord
from tests.conftest import api_client_for
from tests.factories import make_vault
from tests.test_jobs import SLOT, backup_now, people, storage, wait_for, worker  # noqa: F401
from tests.test_replica_workers import _poll
from tests.test_worker import worker_process  # noqa: F401  (fixture)
from vaults import locations
from vaults import services as vault_services
from vaults.jobs import requests, runner
from vaults.models import Job, ProtectedItem, RecoveryPoint
from vaults.workloads import postgres

PREFIX = "hf_pgwl_"
TABLES = ("customers", "orders", "events")


def _admin_conn(dbname: str = "postgres") -> psycopg.Connection[Any]:
    return psycopg.connect(dbname=dbname, autocommit=True)


@pytest.fixture
def pg_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """libpq's variables as a worker's host would set them (the test server: trust auth)."""
    if connection.vendor != "postgresql":
        pytest.skip("needs the local PostgreSQL server")
    settings = connection.settings_dict
    monkeypatch.setenv("PGHOST", settings.get("HOST") or "127.0.0.1")
    monkeypatch.setenv("PGPORT", str(settings.get("PORT") or 5432))
    monkeypatch.setenv("PGUSER", settings["USER"])
    for name in ("PGSERVICE", "PGDATABASE", "PGPASSWORD"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def databases(pg_env: None) -> Iterator[Callable[[str], str]]:
    """Names of scratch databases (dropped at teardown, whoever created them)."""
    token = uuid.uuid4().hex[:8]
    made: list[str] = []

    def name(label: str) -> str:
        made.append(f"{PREFIX}{token}_{label}")
        return made[-1]

    yield name
    with _admin_conn() as conn:
        for db in made:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(db)))


def _create(name: str, rows: int) -> str:
    """A database of three tables, ``rows`` rows in all, with keys, an index and a view."""
    with _admin_conn() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    customers, events = rows // 5, rows // 10
    orders = rows - customers - events
    with _admin_conn(name) as conn:
        conn.execute(
            "CREATE TABLE customers AS SELECT g AS id, 'name-' || g AS name, md5(g::text) AS "
            "email, (g * 7) %% 1000 AS region FROM generate_series(1, %s) g",
            (customers,),
        )
        conn.execute(
            "CREATE TABLE orders AS SELECT g AS id, (g %% %s) + 1 AS customer_id, "
            "((g * 13) %% 10007) / 100.0 AS amount, timestamp '2026-01-01' + g * interval "
            "'1 second' AS at FROM generate_series(1, %s) g",
            (customers, orders),
        )
        conn.execute(
            "CREATE TABLE events AS SELECT g AS id, repeat(md5(g::text), 2) AS payload "
            "FROM generate_series(1, %s) g",
            (events,),
        )
        for table in TABLES:
            key = sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (id)")
            conn.execute(key.format(sql.Identifier(table)))
        conn.execute("CREATE INDEX orders_customer ON orders (customer_id)")
        conn.execute(
            "ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) "
            "REFERENCES customers (id)"
        )
        conn.execute(
            "CREATE VIEW order_totals AS SELECT customer_id, sum(amount) FROM orders GROUP BY 1"
        )
    return name


def _contents(name: str) -> dict[str, tuple[Any, ...]]:
    """Per table: row count, sums, and the md5 of every row in key order."""
    found: dict[str, tuple[Any, ...]] = {}
    with _admin_conn(name) as conn:
        for table in TABLES:
            row = conn.execute(
                sql.SQL(
                    "SELECT count(*), sum(id), md5(string_agg(t::text, '|' ORDER BY id)) FROM {} t"
                ).format(sql.Identifier(table))
            ).fetchone()
            assert row is not None
            found[table] = tuple(row)
        view = conn.execute("SELECT count(*), sum(sum) FROM order_totals").fetchone()
        assert view is not None
        found["order_totals"] = tuple(view)
    return found


def _protect_database(admin: Any, vault: Any, database: str, name: str = "sales") -> ProtectedItem:
    policy = policy_services.policy_create(
        actor=admin, vault=vault, name=f"p-{name}", daily_days=30, time=SLOT.time()
    )
    return vault_services.item_protect(
        actor=admin,
        vault=vault,
        name=name,
        source_kind="postgres",
        source_path=database,
        policy=policy,
    )


def _restore_to(point: RecoveryPoint, actor: Any, target: str) -> Job:
    job = requests.restore_request(actor=actor, point=point, target_database=target)
    (done,) = wait_for(job.pk, timeout=180)
    return done


def _pg_dumps_of(database: str) -> list[int]:
    """Pids of pg_dump processes dumping ``database``, whoever their parent."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"pg_dump") and any(database.encode() in a for a in argv):
            found.append(int(pid))
    return found


# --- backup, dedup, restore, drill -----------------------------------------------------------


def test_a_database_backs_up_deduplicates_a_one_percent_change_and_restores_identically(
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    worker: Any,  # noqa: F811
    databases: Callable[[str], str],
) -> None:
    admin, operator = people["admin"], people["operator"]
    source = _create(databases("src"), 1_000_000)
    vault = make_vault(admin, name="databases")
    item = _protect_database(admin, vault, source)

    first = backup_now(item, operator)
    with _admin_conn(source) as conn:
        version = conn.execute("SHOW server_version").fetchone()
    assert first.workload is not None and version is not None
    assert first.workload["kind"] == "postgres" and first.workload["database"] == source
    assert first.workload["server_version"] == version[0]
    assert first.workload["database_size"] > 50 * 1024 * 1024
    store = locations.vault_store(vault)
    manifest = store.manifest(first.storage_key)
    (dump,) = [node for node in manifest.nodes if node.path]
    assert dump.path == f"{source}.pgdump" and dump.size == first.logical_bytes > 40 * 1024**2
    assert manifest.file_count == 1

    # 1% of the rows change: the second point stores a small fraction of the first.
    with _admin_conn(source) as conn:
        conn.execute("UPDATE orders SET amount = amount + 1 WHERE id <= 10000")
    expected = _contents(source)
    second = backup_now(item, operator)
    assert second.logical_bytes > 40 * 1024**2
    assert second.stored_bytes < first.stored_bytes / 10, (first.stored_bytes, second.stored_bytes)

    target = databases("restored")
    job = _restore_to(second, operator, target)
    assert job.status == "completed", job.error
    assert job.params == {"target_database": target}
    assert job.bytes_done == second.logical_bytes
    assert _contents(target) == expected

    # The API shows the item's database and the point's workload facts.
    client = api_client_for(operator)
    body = client.get("/api/v1/vaults/databases/items/sales/").json()
    assert body["source"] == {"kind": "postgres", "database": source, "host": ""}
    points = client.get("/api/v1/vaults/databases/items/sales/recovery-points/").json()["results"]
    assert points[0]["workload"]["database"] == source
    assert points[0]["workload"]["server_version"] == version[0]

    # Drills and verification treat the dump like any file.
    (drill,) = wait_for(requests.drill_request(actor=operator, point=second).pk, timeout=180)
    assert drill.status == "completed", drill.error
    second.refresh_from_db()
    assert second.drill is not None and second.drill["status"] == "passed"
    assert (second.drill["files"], second.drill["bytes"]) == (1, second.logical_bytes)
    (verify,) = wait_for(requests.verify_request(actor=operator, point=first).pk, timeout=180)
    assert verify.status == "completed", verify.error


def test_a_pg_dump_failure_fails_the_job_with_its_own_message_and_records_nothing(
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    worker: Any,  # noqa: F811
    databases: Callable[[str], str],
) -> None:
    admin, operator = people["admin"], people["operator"]
    missing = databases("never_created")
    item = _protect_database(admin, make_vault(admin, name="nodb"), missing)
    (job,) = wait_for(requests.backup_request(actor=operator, item=item).pk, timeout=120)
    assert job.status == "failed"
    assert f"The dump of database {missing} failed: pg_dump failed (exit status 1)" in job.error
    assert f'database "{missing}" does not exist' in job.error
    assert not RecoveryPoint.objects.filter(item=item).exists()
    assert locations.vault_store(item.vault).points() == []
    assert _pg_dumps_of(missing) == []


def test_a_restore_that_pg_restore_refuses_fails_with_its_message_and_drops_the_new_database(
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    databases: Callable[[str], str],
) -> None:
    admin, operator = people["admin"], people["operator"]
    source = _create(databases("grants"), 1000)
    role = f"{PREFIX}{uuid.uuid4().hex[:8]}_reader"
    with _admin_conn(source) as conn:
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT SELECT ON customers TO {}").format(sql.Identifier(role)))
    try:
        item = _protect_database(admin, make_vault(admin, name="grants"), source)
        backup = runner.job_run(job_id=requests.backup_request(actor=admin, item=item).pk)
        assert backup is not None and backup.status == "completed", backup and backup.error
        point = RecoveryPoint.objects.get(item=item)
    finally:  # the dump grants to a role this server no longer has
        with _admin_conn(source) as conn:
            conn.execute(sql.SQL("REVOKE ALL ON customers FROM {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    target = databases("refused")
    job = runner.job_run(
        job_id=requests.restore_request(actor=operator, point=point, target_database=target).pk
    )
    assert job is not None and job.status == "failed"
    assert f"The restore into database {target} failed: pg_restore failed" in job.error
    assert f'role "{role}" does not exist' in job.error
    assert "The database it created was removed." in job.error
    assert not postgres.database_exists(target)


# --- the request's refusals --------------------------------------------------------------------


@pytest.fixture
def db_point(
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    databases: Callable[[str], str],
) -> RecoveryPoint:
    admin = people["admin"]
    source = _create(databases("small"), 3000)
    item = _protect_database(admin, make_vault(admin, name="small-db"), source)
    job = runner.job_run(job_id=requests.backup_request(actor=admin, item=item).pk)
    assert job is not None and job.status == "completed", job.error
    return RecoveryPoint.objects.select_related("vault", "item").get(item=item)


def _restore_url(point: RecoveryPoint) -> str:
    return (
        f"/api/v1/vaults/{point.vault.name}/items/{point.item.name}/recovery-points/"
        f"{point.pk}/restore/"
    )


@pytest.mark.parametrize(
    "target",
    [
        "x; DROP DATABASE postgres",
        "x'; DROP DATABASE postgres; --",
        'x"y',
        "$(touch /tmp/hf-pwned)",
        "`id`",
        "a b",
        "host=evil dbname=x",
        "postgresql://evil/x",
        "-Fp",
        "../x",
        "a" * 64,
        "",
    ],
)
def test_a_hostile_or_empty_target_database_is_refused_and_nothing_runs(
    people: dict[str, Any],  # noqa: F811
    db_point: RecoveryPoint,
    target: str,
) -> None:
    answer = api_client_for(people["operator"]).post(
        _restore_url(db_point), {"target_database": target}, format="json"
    )
    assert answer.status_code == 400, answer.content
    body = answer.json()
    assert body["code"] == "validation_error" and body["detail"].startswith("target_database: ")
    assert not Job.objects.filter(kind="restore").exists()
    assert not Path("/tmp/hf-pwned").exists()


def test_holdfasts_own_database_an_existing_or_a_system_one_is_refused(
    people: dict[str, Any],  # noqa: F811
    db_point: RecoveryPoint,
    databases: Callable[[str], str],
) -> None:
    client = api_client_for(people["operator"])
    own = connection.settings_dict["NAME"]
    existing = db_point.workload["database"] if db_point.workload else ""
    other = _create(databases("other"), 10)
    for target, why in [
        (own, "is Holdfast's own database"),
        (own.upper(), "is Holdfast's own database"),
        (existing, "already exists on the server"),
        (other, "already exists on the server"),
        ("template1", "one of the server's own databases"),
        ("postgres", "one of the server's own databases"),
    ]:
        answer = client.post(_restore_url(db_point), {"target_database": target}, format="json")
        assert answer.status_code == 400, (target, answer.content)
        assert why in answer.json()["detail"], (target, answer.json())
    assert not Job.objects.filter(kind="restore").exists()
    refused = AuditRecord.objects.filter(operation="restore_start", outcome="refused")
    assert refused.count() == 6


def test_a_database_point_refuses_a_directory_and_a_directory_point_a_database(
    people: dict[str, Any],  # noqa: F811
    db_point: RecoveryPoint,
    storage: Path,  # noqa: F811
    databases: Callable[[str], str],
) -> None:
    client = api_client_for(people["operator"])
    answer = client.post(
        _restore_url(db_point), {"target_path": str(storage / "restores")}, format="json"
    )
    assert answer.status_code == 400
    assert answer.json()["detail"].startswith("target_path: recovery point")
    assert "restores into a new database (target_database)" in answer.json()["detail"]
    answer = client.post(
        _restore_url(db_point),
        {"target_database": databases("x"), "sub_path": "anything"},
        format="json",
    )
    assert answer.status_code == 400 and "restores whole" in answer.json()["detail"]

    # A directory item's point, in the same vault.
    from tests.test_jobs import protect, write_tree

    item = protect(people["admin"], db_point.vault, write_tree(storage / "files"), "files")
    job = runner.job_run(job_id=requests.backup_request(actor=people["admin"], item=item).pk)
    assert job is not None and job.status == "completed", job.error
    files_point = RecoveryPoint.objects.get(item=item)
    answer = client.post(
        _restore_url(files_point), {"target_database": databases("y")}, format="json"
    )
    assert answer.status_code == 400
    assert "is a copy of files, not of a database" in answer.json()["detail"]
    assert not Job.objects.filter(kind="restore").exists()


def test_a_database_point_in_an_immutable_vault_cannot_be_deleted(
    people: dict[str, Any],  # noqa: F811
    db_point: RecoveryPoint,
) -> None:
    admin = people["admin"]
    vault_services.immutability_set(actor=admin, vault=db_point.vault, state="enabled")
    url = _restore_url(db_point).removesuffix("restore/")
    answer = api_client_for(admin).delete(url)
    assert answer.status_code == 409 and answer.json()["code"] == "immutable_vault"
    assert RecoveryPoint.objects.filter(pk=db_point.pk).exists()
    assert locations.vault_store(db_point.vault).has_point(db_point.storage_key)


def test_an_item_refuses_a_hostile_database_name_and_echoes_a_good_one(
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    pg_env: None,
) -> None:
    admin = people["admin"]
    vault = make_vault(admin, name="items-db")
    policy_services.policy_create(actor=admin, vault=vault, name="daily", daily_days=7)
    client = api_client_for(admin)
    url = "/api/v1/vaults/items-db/items/"
    own = connection.settings_dict["NAME"]
    for bad in ["x; DROP TABLE y", "host=evil dbname=x", "", "a" * 64, own, own.upper()]:
        answer = client.post(
            url,
            {"name": "db", "source": {"kind": "postgres", "database": bad}, "policy": "daily"},
            format="json",
        )
        assert answer.status_code == 400, (bad, answer.content)
        assert answer.json()["detail"].startswith("source.database: ")
    answer = client.post(
        url,
        {"name": "db", "source": {"kind": "postgres", "database": "sales-2026"}, "policy": "daily"},
        format="json",
    )
    assert answer.status_code == 201, answer.content
    assert answer.json()["source"] == {"kind": "postgres", "database": "sales-2026", "host": ""}
    assert ProtectedItem.objects.get(name="db").source_path == "sales-2026"


# --- no orphan pg_dump ---------------------------------------------------------------------------


def test_a_worker_killed_mid_dump_leaves_no_pg_dump_running(
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    worker_process: Any,  # noqa: F811
    databases: Callable[[str], str],
) -> None:
    admin, operator = people["admin"], people["operator"]
    source = _create(databases("locked"), 1000)
    item = _protect_database(admin, make_vault(admin, name="killed-dump"), source)
    # A lock pg_dump waits behind: the dump stays in flight until the worker is killed.
    with _admin_conn(source) as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        job = requests.backup_request(actor=operator, item=item)
        _poll(
            lambda: Job.objects.get(pk=job.pk).status == "running" and bool(_pg_dumps_of(source)),
            timeout=120,
            what="the worker's pg_dump to start",
        )
        (dump_pid,) = _pg_dumps_of(source)
        os.kill(worker_process.pid, signal.SIGKILL)  # the worker only, not its group
        worker_process.wait(timeout=30)
        _poll(lambda: not _pg_dumps_of(source), timeout=30, what="pg_dump to die with its worker")
        holder.execute("ROLLBACK")
    assert dump_pid not in _pg_dumps_of(source)

    def sessions() -> int:
        with _admin_conn() as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                "AND application_name = 'pg_dump'",
                (source,),
            ).fetchone()
        return row[0] if row else 0

    _poll(lambda: sessions() == 0, timeout=30, what="pg_dump's server session to end")
    assert not RecoveryPoint.objects.filter(item=item).exists()


# --- the pages -------------------------------------------------------------------------------


def _client(user: Any) -> Any:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


def test_the_restore_page_of_a_database_point_asks_for_a_new_database_and_refuses_in_place(
    people: dict[str, Any],  # noqa: F811
    db_point: RecoveryPoint,
    databases: Callable[[str], str],
) -> None:
    from django.urls import reverse

    client = _client(people["operator"])
    url = reverse("jobs:restore", args=[db_point.pk])
    page = client.get(url).content.decode()
    source = db_point.workload["database"] if db_point.workload else ""
    assert 'name="target_database"' in page and 'name="root"' not in page
    assert 'name="target_host"' in page  # restored on the item's host, or one named here
    assert f"A dump of PostgreSQL database <code>{source}</code>" in page

    refused = client.post(url, {"target_database": source})
    assert refused.status_code == 400
    text = refused.content.decode()
    assert 'id="target-database-error"' in text and "already exists on the server" in text
    assert not Job.objects.filter(kind="restore").exists()

    target = databases("from_page")
    started = client.post(url, {"target_database": target})
    assert started.status_code == 302
    job = Job.objects.get(kind="restore")
    assert job.params == {"target_database": target} and job.recovery_point_id == db_point.pk
    done = runner.job_run(job_id=job.pk)
    assert done is not None and done.status == "completed", done.error
    assert _contents(target) == _contents(source)
    detail = client.get(reverse("jobs:detail", args=[job.pk])).content.decode()
    assert f"new PostgreSQL database <code>{target}</code>" in detail


def test_the_item_form_protects_a_database_by_name_and_refuses_a_hostile_one(
    people: dict[str, Any],  # noqa: F811
    pg_env: None,
) -> None:
    from django.urls import reverse

    admin = people["admin"]
    vault = make_vault(admin, name="form-db")
    policy = policy_services.policy_create(actor=admin, vault=vault, name="daily", daily_days=7)
    client = _client(admin)
    url = reverse("vaults:item-protect", args=[vault.name])
    page = client.get(url).content.decode()
    assert '<option value="postgres">PostgreSQL database</option>' in page
    assert 'name="database"' in page

    form = {"name": "db", "source_kind": "postgres", "policy": policy.pk}
    refused = client.post(url, {**form, "database": "x; DROP DATABASE y"})
    assert refused.status_code == 400
    assert "is not a database name Holdfast accepts" in refused.content.decode()
    assert not ProtectedItem.objects.filter(vault=vault).exists()

    made = client.post(url, {**form, "database": "sales", "source_path": "/ignored"})
    assert made.status_code == 302
    item = ProtectedItem.objects.get(vault=vault, name="db")
    assert (item.source_kind, item.source_path) == ("postgres", "sales")
    shown = client.get(reverse("vaults:item", args=[vault.name, item.pk])).content.decode()
    assert "PostgreSQL database <code>sales</code>" in shown


def test_a_database_point_copied_to_a_replica_restores_from_there(
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    databases: Callable[[str], str],
) -> None:
    admin, operator = people["admin"], people["operator"]
    source_db = _create(databases("replicated"), 5000)
    source = make_vault(admin, name="db-src", region="westeurope")
    replica = make_vault(admin, name="db-rep", region="eastus")
    vault_services.replica_set(actor=admin, vault=source, replica=replica)
    item = _protect_database(admin, source, source_db)
    backup = runner.job_run(job_id=requests.backup_request(actor=admin, item=item).pk)
    assert backup is not None and backup.status == "completed", backup and backup.error
    point = RecoveryPoint.objects.get(item=item)
    copy_job = Job.objects.get(kind="copy", recovery_point=point)
    copied = runner.job_run(job_id=copy_job.pk)
    assert copied is not None and copied.status == "completed", copied.error

    copy = RecoveryPoint.objects.select_related("vault", "item").get(vault=replica)
    assert copy.workload == point.workload and copy.item.source_kind == "replica"
    target = databases("from_replica")
    job = runner.job_run(
        job_id=requests.restore_request(actor=operator, point=copy, target_database=target).pk
    )
    assert job is not None and job.status == "completed", job.error
    assert _contents(target) == _contents(source_db)


def test_a_database_created_after_the_request_is_refused_by_the_worker_and_left_alone(
    people: dict[str, Any],  # noqa: F811
    db_point: RecoveryPoint,
    databases: Callable[[str], str],
) -> None:
    target = databases("raced")
    job = requests.restore_request(actor=people["operator"], point=db_point, target_database=target)
    _create(target, 10)  # someone else's, made between the request and the run
    before = _contents(target)
    done = runner.job_run(job_id=job.pk)
    assert done is not None and done.status == "failed"
    assert f"Database {target} already exists on the server" in done.error
    assert _contents(target) == before  # never dropped, never written


def test_a_libpq_service_file_is_how_a_worker_reaches_the_server(
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    databases: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
) -> None:
    admin = people["admin"]
    source = _create(databases("serviced"), 2000)
    service_file = storage / "pg_service.conf"
    service_file.write_text(
        f"[holdfast-test]\nhost={os.environ['PGHOST']}\nport={os.environ['PGPORT']}\n"
        f"user={os.environ['PGUSER']}\n"
    )
    for name in ("PGHOST", "PGPORT", "PGUSER"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("PGSERVICEFILE", str(service_file))
    settings.HOLDFAST_PG_SERVICE = "holdfast-test"
    item = _protect_database(admin, make_vault(admin, name="serviced"), source)
    job = runner.job_run(job_id=requests.backup_request(actor=admin, item=item).pk)
    assert job is not None and job.status == "completed", job.error
    point = RecoveryPoint.objects.get(item=item)
    assert point.workload is not None and point.workload["database_size"] > 0
    # An unknown service fails the dump with libpq's own words, through pg_dump.
    settings.HOLDFAST_PG_SERVICE = "no-such-service"
    failed = runner.job_run(job_id=requests.backup_request(actor=admin, item=item).pk)
    assert failed is not None and failed.status == "failed"
    assert 'definition of service "no-such-service" not found' in failed.error
    assert "pg_dump failed" in failed.error


def test_leaving_a_dump_early_kills_and_reaps_pg_dump(
    databases: Callable[[str], str],
) -> None:
    source = _create(databases("left"), 1000)
    with _admin_conn(source) as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(RuntimeError), postgres.Dump(source) as dump:
            assert dump.tool is not None
            _poll(lambda: bool(_pg_dumps_of(source)), timeout=30, what="pg_dump to start")
            raise RuntimeError("the job stopped (cancelled, or failed on our side)")
        assert dump.tool.process.returncode == -signal.SIGKILL
        assert _pg_dumps_of(source) == []
        holder.execute("ROLLBACK")
