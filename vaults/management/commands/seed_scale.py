"""``manage.py seed_scale``: a large, realistic portfolio for benchmarks, loaded in seconds.

    manage.py seed_scale --vaults 10000 --items 100000 --points 1000000 [--yes-i-know]

A load generator, not a data path: it writes rows directly (PostgreSQL ``COPY``; batched
``INSERT`` on SQLite), bypassing the services and the operation gate, and writes no audit
records. It refuses to run on a database that already holds vaults unless ``--yes-i-know``
is given. Every run uses a fresh name prefix, so runs add to each other.

What it makes: Resource Guards (one per hundred vaults), vaults with a realistic spread of
kinds, regions, tags and security settings, one or two policies per vault, items spread
unevenly across vaults (some vaults empty), recovery points in every tier over the last 60
days, the newest backup job of each item (mostly completed, some failed or running), and a
few open alerts. ANALYZE runs at the end so the planner sees the new sizes.
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
from portal import clock, services
from portal.gate import entry_point
from portal.models import Alert
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
                if field.attname in json_fields:
                    value = json.dumps(value)
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
        rng = random.Random(options["seed"])  # noqa: S311 (synthetic data, not secrets)
        started = time.perf_counter()
        with transaction.atomic():
            timings = self._seed(rng, **counts)
        if connection.vendor == "postgresql":
            step = time.perf_counter()
            with connection.cursor() as cursor:
                for model in (Vault, Policy, ProtectedItem, RecoveryPoint, Job, ResourceGuard):
                    cursor.execute(f'ANALYZE "{model._meta.db_table}"')
            timings.append(("analyze", 0, time.perf_counter() - step))
        for name, rows, seconds in timings:
            self.stdout.write(f"{name:>16}: {rows:>9} rows in {seconds:6.2f} s")
        self.stdout.write(f"{'total':>16}: {time.perf_counter() - started:6.2f} s")

    def _seed(
        self, rng: random.Random, *, vaults: int, items: int, points: int
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
        guard_ids = list(
            ResourceGuard.objects.filter(name__startswith=f"{prefix}-guard-").values_list(
                "pk", flat=True
            )
        )
        timed("vaults", Vault, self._vaults(rng, prefix, vaults, guard_ids, now))
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
        timed("items", ProtectedItem, self._items(rng, vault_ids, per_vault, policies, now))
        item_rows = list(
            ProtectedItem.objects.filter(vault_id__in=vault_ids)
            .order_by("pk")
            .values_list("pk", "vault_id", "last_backup_at", "protection_state")
        )
        per_item = _spread(rng, points, len(item_rows))
        timed("recovery points", RecoveryPoint, self._points(rng, item_rows, per_item, now))
        timed("jobs", Job, self._jobs(rng, item_rows, now))
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
                    "created_at": now - dt.timedelta(days=90),
                }

    def _points(
        self,
        rng: random.Random,
        items: list[tuple[int, int, dt.datetime | None, str]],
        per_item: list[int],
        now: dt.datetime,
    ) -> Iterator[dict[str, Any]]:
        for (item_id, vault_id, last, _state), count in zip(items, per_item, strict=True):
            newest = last or now - dt.timedelta(days=2)
            for n in range(count):
                created = newest - dt.timedelta(hours=n * 24 + rng.random())
                tier = _weighted(rng, TIERS)
                if created < now - dt.timedelta(days=60) and tier != "vault_archive":
                    created = now - dt.timedelta(days=rng.uniform(0, 60))
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
