"""``manage.py seed_scale``: a large, realistic portfolio for benchmarks, loaded in seconds.

    manage.py seed_scale --vaults 10000 --items 100000 --points 1000000 [--yes-i-know]
    manage.py seed_scale ... --days 90 --history 9      # what a 90-day compliance report reads

A load generator, not a data path: it writes rows directly (PostgreSQL ``COPY``; batched
``INSERT`` on SQLite), bypassing the services and the operation gate. It refuses to run on a
database that already holds vaults unless ``--yes-i-know`` is given. Every run uses a fresh
name prefix, so runs add to each other.

What it makes: Resource Guards (one per hundred vaults), vaults with a realistic spread of
kinds, regions, tags and security settings, one or two policies per vault, items spread
unevenly across vaults (some vaults empty), recovery points in every tier over the last
``--days`` days (60 by default; archived points reach further back), the newest backup job of
each protected item (mostly completed, some failed or running), and a few open alerts.
ANALYZE runs at the end so the planner sees the new sizes.

For the compliance report (SPEC 3.12), which reads history over a period:

- ``--history N`` adds N earlier backup jobs per item, spread evenly over the span with some
  jitter (about 7% failed; before ``stopped_at`` for items no longer protected). A job per
  item per day would be 9,000,000 rows at 100,000 items over 90 days, far beyond what the
  report needs to prove it aggregates in SQL; ``--history 9`` gives about 1,000,000 jobs
  there, one every ten days per item. They have no slot (so the one-backup-per-slot rule is
  not involved) and no recovery point.
- Every seventh recovery point of an item (roughly a weekly drill) carries a ``drill``
  result: passed, or failed (about 5%, naming a first bad file), with its duration.
- One vault in a hundred changed its immutability or soft-delete setting within the span:
  the change that led to its current setting is written to the audit log (operation, before,
  after; ``details`` says ``seed_scale``), and ``immutability_changed_at`` matches it. Those
  records are chained like any other (:func:`portal.audit.seal` links the first to the
  chain's head under its lock, the rest follow it) and loaded in one ``COPY``, so
  ``verify_audit`` still passes; they are a few hundred at 10,000 vaults.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, models, transaction

from guards.models import ResourceGuard
from policies.models import Policy
from portal import audit, clock, services
from portal.gate import entry_point
from portal.models import Alert, AuditRecord
from vaults.models import Job, ProtectedItem, RecoveryPoint, Vault

REGIONS = ["westeurope", "northeurope", "eastus", "eastus2", "westus", "southeastasia",
           "uksouth", "japaneast", "brazilsouth", "australiaeast"]  # fmt: skip
TEAMS = ["web", "db", "finance", "legal", "data", "platform", "hr", "sales"]
ENVS = [("prod", 5), ("stage", 2), ("dev", 3)]
KINDS = [("recovery_services", 6), ("backup", 3), ("archive", 1)]
IMMUTABILITY = [("disabled", 50), ("enabled", 35), ("locked", 15)]
SOFT_DELETE = [("enabled", 75), ("disabled", 10), ("always_on", 15)]
TIERS = [("snapshot", 10), ("snapshot_and_vault", 20), ("vault_standard", 60),
         ("vault_archive", 10)]  # fmt: skip
JOB_STATUS = [("completed", 90), ("failed", 7), ("running", 3)]
ITEM_STATE = [("protected", 90), ("protection_stopped", 7), ("soft_deleted", 3)]
HISTORY_STATUS = [("completed", 93), ("failed", 7)]
DRILL_EVERY = 7  # every seventh point of an item carries a drill result (about weekly)
CHANGED_EVERY = 100  # one vault in a hundred changed a setting within the span
# The audited operation that leads to each current setting, and the setting before it.
SETTING_CHANGES = {
    ("immutability", "disabled"): ("immutability_disable", "enabled"),
    ("immutability", "enabled"): ("immutability_enable", "disabled"),
    ("immutability", "locked"): ("immutability_lock", "enabled"),
    ("soft_delete", "enabled"): ("soft_delete_enable", "disabled"),
    ("soft_delete", "disabled"): ("soft_delete_disable", "enabled"),
    ("soft_delete", "always_on"): ("soft_delete_always_on", "enabled"),
}
BATCH = 5000


def _weighted(rng: random.Random, table: Sequence[tuple[str, int]]) -> str:
    return rng.choices([v for v, _ in table], weights=[w for _, w in table])[0]


def _spread(rng: random.Random, total: int, buckets: int, empty_share: float = 0.0) -> list[int]:
    """Split ``total`` over ``buckets`` unevenly (a few large, many small, some empty)."""
    if buckets == 0:
        return []
    weights = [
        0.0 if rng.random() < empty_share else rng.paretovariate(1.5) for _ in range(buckets)
    ]
    if not any(weights):
        weights[0] = 1.0
    scale = total / sum(weights)
    counts = [int(w * scale) for w in weights]
    remainder = total - sum(counts)
    live = [i for i, w in enumerate(weights) if w] or [0]
    for i in range(remainder):
        counts[live[i % len(live)]] += 1
    return counts


def _drill(rng: random.Random, created: dt.datetime, now: dt.datetime, size: int) -> dict[str, Any]:
    """A drill result as ``RecoveryPoint.drill`` holds it (SPEC 3.12): passed, or failed
    (about one in twenty) naming the first bad file."""
    at = min(now, created + dt.timedelta(hours=rng.uniform(1, 72)))
    result: dict[str, Any] = {
        "status": "passed",
        "at": at.isoformat(),
        "files": rng.randrange(10, 50_000),
        "bytes": size,
        "seconds": round(rng.lognormvariate(4, 1), 1),
    }
    if rng.random() < 0.05:
        result.update(status="failed", error="Chunk hash mismatch.", first_bad="etc/app.conf")
    return result


def _audit_state(row: dict[str, Any], guards: dict[int, str]) -> dict[str, Any]:
    """``Vault.audit_state()`` of a vault row not yet saved (what the gate records)."""
    return {
        "name": row["name"],
        "kind": row["kind"],
        "region": row["region"],
        "immutability": row["immutability"],
        "soft_delete": {
            "state": row["soft_delete_state"],
            "retention_days": row["soft_delete_retention_days"],
        },
        "resource_guard": guards.get(row["resource_guard_id"]),
        "mute_job_alerts": False,
        "replica": None,
    }


class Loader:
    """Writes rows of a model straight to its table: COPY on PostgreSQL, INSERT elsewhere."""

    def __init__(self) -> None:
        self.postgres = connection.vendor == "postgresql"

    def load(self, model: type[models.Model], rows: Iterable[dict[str, Any]]) -> int:
        fields = [f for f in model._meta.concrete_fields if not f.primary_key]
        columns = [f.column for f in fields]
        table = model._meta.db_table
        defaults = {f.attname: f.get_default() for f in fields}
        json_fields = {f.attname for f in fields if isinstance(f, models.JSONField)}

        def values(row: dict[str, Any]) -> tuple[Any, ...]:
            out = []
            for field in fields:
                value = row.get(field.attname, defaults[field.attname])
                if field.attname in json_fields and not (value is None and field.null):
                    value = json.dumps(value)  # a nullable JSON column's None is SQL NULL
                out.append(value)
            return tuple(out)

        count = 0
        with connection.cursor() as cursor:
            if self.postgres:
                quoted = ", ".join(f'"{c}"' for c in columns)
                with cursor.cursor.copy(f'COPY "{table}" ({quoted}) FROM STDIN') as copy:
                    for row in rows:
                        copy.write_row(values(row))
                        count += 1
                return count
            placeholders = ", ".join(["%s"] * len(columns))
            # Table and column names come from the model's _meta, never from input.
            sql = f'INSERT INTO "{table}" ({", ".join(columns)}) VALUES ({placeholders})'  # noqa: S608
            batch: list[tuple[Any, ...]] = []
            for row in rows:
                batch.append(values(row))
                if len(batch) >= BATCH:
                    cursor.executemany(sql, batch)
                    count += len(batch)
                    batch = []
            if batch:
                cursor.executemany(sql, batch)
                count += len(batch)
        return count


class Command(BaseCommand):
    help = (
        "LOAD GENERATOR FOR BENCHMARKS: writes a large synthetic portfolio straight into the "
        "database, bypassing the operation gate and the audit log. Refuses to run on a "
        "database that already holds vaults unless --yes-i-know is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--vaults", type=int, default=10_000)
        parser.add_argument("--items", type=int, default=100_000)
        parser.add_argument("--points", type=int, default=1_000_000)
        parser.add_argument("--seed", type=int, default=6)
        parser.add_argument(
            "--days", type=int, default=60, help="The span of points, history and changes."
        )
        parser.add_argument(
            "--history",
            type=int,
            default=0,
            help="Earlier backup jobs per item, spread over the span (for reports).",
        )
        parser.add_argument(
            "--yes-i-know",
            action="store_true",
            help="Write into a database that already holds vaults (nothing is deleted).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if Vault.objects.exists() and not options["yes_i_know"]:
            raise CommandError(
                "This database already holds vaults. seed_scale writes synthetic rows around "
                "the gate and the audit log; run it on an empty benchmark database, or pass "
                "--yes-i-know to add to this one."
            )
        counts = {k: options[k] for k in ("vaults", "items", "points")}
        if min(counts.values()) < 0 or (counts["items"] and not counts["vaults"]):
            raise CommandError("Counts must be positive, and items need vaults.")
        if counts["points"] and not counts["items"]:
            raise CommandError("Recovery points need items.")
        if not 1 <= options["days"] <= 3650 or not 0 <= options["history"] <= 1000:
            raise CommandError("--days: 1 to 3650; --history: 0 to 1000.")
        rng = random.Random(options["seed"])  # noqa: S311 (synthetic data, not secrets)
        # The report's rows (history, drills, changes) draw from their own generator, so the
        # rest is the same portfolio as before they existed, for the same seed.
        extra = random.Random(f"{options['seed']}-report")  # noqa: S311
        span = dt.timedelta(days=options["days"])
        started = time.perf_counter()
        with transaction.atomic():
            timings = self._seed(rng, extra, span, options["history"], **counts)
        if connection.vendor == "postgresql":
            step = time.perf_counter()
            with connection.cursor() as cursor:
                for model in (Vault, Policy, ProtectedItem, RecoveryPoint, Job, ResourceGuard,
                              AuditRecord):  # fmt: skip
                    cursor.execute(f'ANALYZE "{model._meta.db_table}"')
            timings.append(("analyze", 0, time.perf_counter() - step))
        for name, rows, seconds in timings:
            self.stdout.write(f"{name:>16}: {rows:>9} rows in {seconds:6.2f} s")
        self.stdout.write(f"{'total':>16}: {time.perf_counter() - started:6.2f} s")

    def _seed(
        self,
        rng: random.Random,
        extra: random.Random,
        span: dt.timedelta,
        history: int,
        *,
        vaults: int,
        items: int,
        points: int,
    ) -> list[tuple[str, int, float]]:
        loader = Loader()
        now = clock.now()
        prefix = f"scale-{secrets.token_hex(3)}"
        timings: list[tuple[str, int, float]] = []

        def timed(name: str, model: type[models.Model], rows: Iterable[dict[str, Any]]) -> None:
            step = time.perf_counter()
            count = loader.load(model, rows)
            timings.append((name, count, time.perf_counter() - step))

        owner = self._owner()
        guard_count = max(1, vaults // 100) if vaults else 0
        all_ops = [op.value for op in ResourceGuard.Operation]
        timed("resource guards", ResourceGuard, (
            {"name": f"{prefix}-guard-{i}", "owner_id": owner, "created_at": now,
             "protected_operations": all_ops} for i in range(guard_count)
        ))  # fmt: skip
        guards = dict(
            ResourceGuard.objects.filter(name__startswith=f"{prefix}-guard-").values_list(
                "pk", "name"
            )
        )
        changes: list[AuditRecord] = []
        vault_rows = self._vaults(rng, prefix, vaults, list(guards), now)
        timed("vaults", Vault, self._changed(extra, vault_rows, guards, span, now, changes))
        vault_ids = list(
            Vault.objects.filter(name__startswith=f"{prefix}-")
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        timed("policies", Policy, self._policies(rng, vault_ids, now))
        policies: dict[int, list[tuple[int, str, int | None]]] = {}
        for pk, vault_id, frequency, interval in Policy.objects.filter(
            vault_id__in=vault_ids
        ).values_list("pk", "vault_id", "frequency", "interval_hours"):
            policies.setdefault(vault_id, []).append((pk, frequency, interval))
        per_vault = _spread(rng, items, len(vault_ids), empty_share=0.05)
        timed("items", ProtectedItem, self._items(rng, vault_ids, per_vault, policies, span, now))
        item_rows = list(
            ProtectedItem.objects.filter(vault_id__in=vault_ids)
            .order_by("pk")
            .values_list("pk", "vault_id", "last_backup_at", "protection_state")
        )
        per_item = _spread(rng, points, len(item_rows))
        timed("recovery points", RecoveryPoint, self._points(rng, extra, item_rows, per_item,
                                                             span, now))  # fmt: skip
        timed("jobs", Job, self._jobs(rng, item_rows, now))
        if history:
            if connection.vendor == "postgresql":
                # Statistics first: the jobs' next-success trigger probes an index per row
                # (vaults/report_sql.py) only if the planner knows the table is not tiny.
                with connection.cursor() as cursor:
                    cursor.execute("ANALYZE vaults_job")
            timed("job history", Job, self._history(extra, item_rows, history, span, now))
        timed("audit changes", AuditRecord, self._chained(changes))
        alerted = rng.sample(vault_ids, min(len(vault_ids), max(1, vaults // 50)))
        names = list(Vault.objects.filter(pk__in=alerted).values_list("name", flat=True))
        timed("alerts", Alert, self._alerts(rng, names, now))
        return timings

    def _owner(self) -> int:
        """The Resource Guards' owner: an existing security admin, else any user, else one."""
        user_model = get_user_model()
        existing = (
            user_model.objects.filter(groups__name="security_admin").first()
            or user_model.objects.order_by("pk").first()
        )
        if existing is not None:
            return int(existing.pk)
        with entry_point("command"):
            user = services.user_create(
                actor=None,
                username="seed-scale",
                role="security_admin",
                password=secrets.token_urlsafe(24),
            )
        return int(user.pk)

    def _vaults(
        self, rng: random.Random, prefix: str, count: int, guards: list[int], now: dt.datetime
    ) -> Iterator[dict[str, Any]]:
        for i in range(count):
            kind = _weighted(rng, KINDS)
            region = rng.choice(REGIONS)
            env = _weighted(rng, ENVS)
            tags = {"env": env, "team": rng.choice(TEAMS)}
            if rng.random() < 0.2:
                tags["cost-center"] = str(rng.randrange(1000, 1100))
            if rng.random() < 0.05:
                tags["legal-hold"] = ""
            immutability = _weighted(rng, IMMUTABILITY)
            created = now - dt.timedelta(days=rng.randrange(30, 900))
            yield {
                "name": f"{prefix}-{env}-{region}-{i:05d}",
                "kind": kind,
                "region": region,
                "tags": tags,
                "storage_location": f"/var/lib/holdfast/vaults/{prefix}-{i:05d}",
                "immutability": immutability,
                "immutability_changed_at": None if immutability == "disabled" else created,
                "soft_delete_state": _weighted(rng, SOFT_DELETE),
                "soft_delete_retention_days": rng.choice([14, 14, 14, 30, 90]),
                "resource_guard_id": rng.choice(guards) if guards and rng.random() < 0.3 else None,
                "created_at": created,
            }

    def _policies(
        self, rng: random.Random, vault_ids: list[int], now: dt.datetime
    ) -> Iterator[dict[str, Any]]:
        for vault_id in vault_ids:
            yield {"vault_id": vault_id, "name": "daily", "frequency": "daily",
                   "time": dt.time(rng.randrange(24), 0), "daily_days": rng.choice([30, 90]),
                   "weekly_weeks": 12, "monthly_months": 12,
                   "created_at": now, "updated_at": now}  # fmt: skip
            if rng.random() < 0.3:
                yield {"vault_id": vault_id, "name": "enhanced", "kind": "enhanced",
                       "frequency": "hourly", "interval_hours": rng.choice([4, 6, 8, 12]),
                       "window_start": dt.time(8, 0), "window_hours": 24,
                       "instant_restore_days": 7, "created_at": now, "updated_at": now}  # fmt: skip
            if rng.random() < 0.1:
                yield {"vault_id": vault_id, "name": "weekly", "frequency": "weekly",
                       "weekdays": ["sunday"], "weekly_weeks": 52, "daily_days": 7,
                       "created_at": now, "updated_at": now}  # fmt: skip

    def _items(
        self,
        rng: random.Random,
        vault_ids: list[int],
        per_vault: list[int],
        policies: dict[int, list[tuple[int, str, int | None]]],
        span: dt.timedelta,
        now: dt.datetime,
    ) -> Iterator[dict[str, Any]]:
        for vault_id, count in zip(vault_ids, per_vault, strict=True):
            choices = policies[vault_id]
            for n in range(count):
                policy_id, frequency, interval = rng.choice(choices)
                window = {"hourly": dt.timedelta(hours=interval or 4), "daily": dt.timedelta(1),
                          "weekly": dt.timedelta(7)}[frequency]  # fmt: skip
                # Most items are inside their RPO window; some lag behind; a few never ran.
                roll = rng.random()
                if roll < 0.02:
                    last = None
                elif roll < 0.1:
                    last = now - window * rng.uniform(1.1, 4)
                else:
                    last = now - window * rng.uniform(0, 0.95)
                state = _weighted(rng, ITEM_STATE)
                yield {
                    "vault_id": vault_id,
                    "name": f"item-{n:05d}",
                    "source_path": f"/srv/data/{vault_id}/{n}",
                    "policy_id": policy_id,
                    "protection_state": state,
                    "stopped_at": now - dt.timedelta(days=3) if state != "protected" else None,
                    "soft_deleted_at": now - dt.timedelta(days=1)
                    if state == "soft_deleted"
                    else None,
                    "purge_at": now + dt.timedelta(days=13) if state == "soft_deleted" else None,
                    "last_backup_at": last,
                    "created_at": now - max(span, dt.timedelta(days=90)),
                }

    def _points(
        self,
        rng: random.Random,
        extra: random.Random,
        items: list[tuple[int, int, dt.datetime | None, str]],
        per_item: list[int],
        span: dt.timedelta,
        now: dt.datetime,
    ) -> Iterator[dict[str, Any]]:
        for (item_id, vault_id, last, _state), count in zip(items, per_item, strict=True):
            newest = last or now - dt.timedelta(days=2)
            for n in range(count):
                created = newest - dt.timedelta(hours=n * 24 + rng.random())
                tier = _weighted(rng, TIERS)
                if created < now - span and tier != "vault_archive":
                    created = now - span * rng.random()
                keep = dt.timedelta(days=365 if tier == "vault_archive" else rng.choice([30, 90]))
                logical = int(rng.lognormvariate(20, 1.5))
                yield {
                    "vault_id": vault_id,
                    "item_id": item_id,
                    "tier": tier,
                    "created_at": created,
                    "expires_at": created + keep,
                    "tags": ["daily"],
                    "logical_bytes": logical,
                    "stored_bytes": int(logical * rng.uniform(0.2, 0.7)),
                    "digest": f"{rng.getrandbits(128):032x}",
                    "storage_key": f"{rng.getrandbits(64):016x}",
                    "archived_at": created + dt.timedelta(days=90)
                    if tier == "vault_archive"
                    else None,
                    "drill": _drill(extra, created, now, logical) if n % DRILL_EVERY == 0 else None,
                }

    def _jobs(
        self, rng: random.Random, items: list[tuple[int, int, dt.datetime | None, str]], now: Any
    ) -> Iterator[dict[str, Any]]:
        for item_id, vault_id, last, state in items:
            if state != "protected":
                continue
            status = "failed" if last is None else _weighted(rng, JOB_STATUS)
            if status == "completed" and last is not None:
                created = last - dt.timedelta(minutes=10)  # the run that made the last point
            else:
                created = now - dt.timedelta(minutes=rng.randrange(5, 24 * 60))
            started = created + dt.timedelta(seconds=5)
            total = int(rng.lognormvariate(20, 1.5))
            yield {
                "kind": "backup",
                "status": status,
                "vault_id": vault_id,
                "item_id": item_id,
                "bytes_done": total if status == "completed" else total // 3,
                "bytes_total": total,
                "created_at": created,
                "started_at": started,
                "ended_at": None if status == "running" else started + dt.timedelta(minutes=9),
                "heartbeat_at": started + dt.timedelta(minutes=1),
                "error": "Source path is not readable." if status == "failed" else "",
            }

    def _history(
        self,
        rng: random.Random,
        items: list[tuple[int, int, dt.datetime | None, str]],
        per_item: int,
        span: dt.timedelta,
        now: dt.datetime,
    ) -> Iterator[dict[str, Any]]:
        """``per_item`` finished backup jobs per item, evenly over the span with some jitter
        (an item no longer protected stopped three days ago: none after that)."""
        stopped = now - dt.timedelta(days=3)
        for item_id, vault_id, _last, state in items:
            until = now if state == "protected" else stopped
            step = (until - (now - span)) / per_item
            for k in range(per_item):
                created = now - span + step * (k + rng.uniform(0.05, 0.95))
                status = _weighted(rng, HISTORY_STATUS)
                total = int(rng.lognormvariate(20, 1.5))
                started = created + dt.timedelta(seconds=5)
                yield {
                    "kind": "backup",
                    "status": status,
                    "vault_id": vault_id,
                    "item_id": item_id,
                    "bytes_done": total if status == "completed" else total // 3,
                    "bytes_total": total,
                    "created_at": created,
                    "started_at": started,
                    "ended_at": started + dt.timedelta(minutes=rng.randrange(2, 40)),
                    "heartbeat_at": started + dt.timedelta(minutes=1),
                    "error": "Source path is not readable." if status == "failed" else "",
                }

    def _changed(
        self,
        rng: random.Random,
        vaults: Iterator[dict[str, Any]],
        guards: dict[int, str],
        span: dt.timedelta,
        now: dt.datetime,
        changes: list[AuditRecord],
    ) -> Iterator[dict[str, Any]]:
        """Pass the vault rows through; every hundredth changed its immutability or soft
        delete within the span: note the audited change that led to its current setting
        (unsaved, in ``changes``) and set ``immutability_changed_at`` to match."""
        for i, row in enumerate(vaults):
            if i % CHANGED_EVERY:
                yield row
                continue
            at = max(
                now - span * rng.uniform(0.05, 0.95),
                row["created_at"] + (now - row["created_at"]) / 2,
            )
            setting = rng.choice(["immutability", "soft_delete"])
            current = row["immutability" if setting == "immutability" else "soft_delete_state"]
            op, previous = SETTING_CHANGES[setting, current]
            after = _audit_state(row, guards)
            before = json.loads(json.dumps(after))
            if setting == "immutability":
                before["immutability"] = previous
                row["immutability_changed_at"] = at
            else:
                before["soft_delete"]["state"] = previous
            changes.append(
                AuditRecord(at=at, actor_name="seed_scale", operation=op, outcome="allowed",
                            vault_name=row["name"], target=f"vault:{row['name']}",
                            source="command", before=before, after=after,
                            details={"synthetic": "seed_scale"})
            )  # fmt: skip
            yield row

    def _chained(self, records: list[AuditRecord]) -> list[dict[str, Any]]:
        """The records as rows that continue the audit hash chain, oldest first: the first
        is sealed against the chain's head (under the appenders' lock, held until this
        transaction ends), each next one against the one before; COPY gives them ids in
        that order. Sealed before the COPY starts: seal() reads the head on this connection."""
        rows, previous = [], None
        for record in sorted(records, key=lambda r: r.at):
            if previous is None:
                audit.seal(record)
            else:
                record.prev_hash = previous.hash
                record.hash = audit.record_hash(record)
            previous = record
            rows.append(
                {f.attname: getattr(record, f.attname) for f in AuditRecord._meta.concrete_fields}
            )
        return rows

    def _alerts(
        self, rng: random.Random, vault_names: list[str], now: dt.datetime
    ) -> Iterator[dict[str, Any]]:
        kinds = [("backup_failed", "job", "warning"), ("immutability_disabled", "security",
                 "critical"), ("upcoming_purge", "security", "info")]  # fmt: skip
        for name in vault_names:
            kind, category, severity = rng.choice(kinds)
            yield {"kind": kind, "category": category, "severity": severity, "status": "open",
                   "vault_name": name, "target": "", "message": f"Synthetic {kind}.",
                   "count": rng.randrange(1, 5), "first_at": now, "last_at": now}  # fmt: skip
