"""The backup dispatcher (beat, every minute): every protected item's slots due in
(now - lookback, now] get their backup job, once, in a number of statements that does not
grow with the items.

1. One read of the schedules of the policies that have items to back up; each distinct
   schedule (a fleet has a few dozen among thousands of policies) is evaluated once in
   Python by ``policies.rules``, the same tz-aware, DST-correct code as every other
   schedule question, giving (policy, slot, tier) rows.
2. Through the gate (``backup_dispatch``, one transaction): the vaults of the items due are
   locked ``FOR KEY SHARE`` in id order, so a service changing an item (stop protection,
   soft delete: the gate locks its vault ``FOR UPDATE``) is decided wholly before or after
   this tick; then one ``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING`` re-checks
   each item under those locks (protected, not a replica, its vault there) and creates the
   jobs on the (item, slot) unique key. Racing dispatchers agree through that key: each
   creates only the jobs the other has not.
3. One audit record per tick, naming every job it created (job, vault, item, slot, tier); a
   tick that created nothing writes none: the log says what was done, not what was found.
4. After commit, the jobs are sent by ``sending.enqueue_many`` (each host's many jobs as
   batches its workers fan out, one message per job, by the same send path as every job).
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Exists, Model, OuterRef
from django.db.models.expressions import RawSQL

from policies import rules as policy_rules
from policies.models import SCHEDULE_FIELDS, Policy, schedule_of
from portal import clock, gate
from portal.gate import Check

from ..models import Job, ProtectedItem, RecoveryPoint, Vault
from .sending import enqueue_many

# A slot missed for up to this long (beat down, a deploy) still runs once; older ones don't.
DISPATCH_LOOKBACK = timedelta(hours=1)
# What the tick's audit record lists for each job it created (``after["jobs"]``).
AUDIT_COLUMNS = ["job", "vault", "item", "slot", "tier"]

State = ProtectedItem.State
Tier = RecoveryPoint.Tier
Due = tuple[int, datetime, str]  # (policy id, slot, tier)
M = TypeVar("M", bound=Model)


def _backup_tier(schedule: policy_rules.Schedule, slot: datetime) -> str:
    """Enhanced intra-day runs are operational snapshots; the day's last run and every
    standard-policy run also land in the vault tier (SPEC 3.6)."""
    if policy_rules.is_vault_tier_run(schedule, slot):
        return Tier.SNAPSHOT_AND_VAULT
    return Tier.SNAPSHOT


def _backed_up() -> Any:
    """Items the schedule backs up: protected, and not a replica (whose points arrive by copy
    jobs, SPEC 3.10). The insert says the same in SQL (``_ITEM_RULES``)."""
    return ProtectedItem.objects.filter(protection_state=State.PROTECTED).exclude(
        source_kind=ProtectedItem.SourceKind.REPLICA
    )


def due_slots(now: datetime) -> list[Due]:
    """(policy, slot, tier) for every policy with items to back up and a slot in
    (now - lookback, now]; each distinct schedule is evaluated once."""
    start = now - DISPATCH_LOOKBACK + timedelta(microseconds=1)
    end = now + timedelta(microseconds=1)
    rows = (
        Policy.objects.filter(Exists(_backed_up().filter(policy=OuterRef("pk"))))
        .order_by()
        .values_list("pk", *SCHEDULE_FIELDS)
    )
    policies: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for pk, *fields in rows:
        fields[3] = tuple(fields[3] or ())  # weekdays: a JSON list, hashable as a tuple
        policies[tuple(fields)].append(pk)
    due: list[Due] = []
    for (frequency, zone, at, weekdays, interval, window, hours), policy_ids in policies.items():
        schedule = schedule_of(frequency, zone, at, list(weekdays), interval, window, hours)
        for slot in policy_rules.scheduled_slots(schedule, start, end):
            tier = _backup_tier(schedule, slot)
            due.extend((pk, slot, tier) for pk in policy_ids)
    return due


# --- the statements --------------------------------------------------------------------------

_JOB, _ITEM, _VAULT = Job._meta.db_table, ProtectedItem._meta.db_table, Vault._meta.db_table
# The rules an item is backed up under, re-checked by the insert under the vaults' locks.
_ITEM_RULES = (
    f"i.protection_state = '{State.PROTECTED.value}' "
    f"AND i.source_kind <> '{ProtectedItem.SourceKind.REPLICA.value}'"
)
_COLUMNS = (
    "kind, status, vault_id, item_id, slot, params, created_at, heartbeat_at, bytes_done, "
    "bytes_total, files_done, files_total, error, worker, host"
)
# The (item, slot) key of scheduled backups (Job.Meta: job_one_backup_per_item_slot).
_ON_CONFLICT = "ON CONFLICT (item_id, slot) WHERE kind = 'backup' AND slot IS NOT NULL DO NOTHING"

# PostgreSQL: the due rows as three arrays.
_PG_DUE = "unnest(%s::bigint[], %s::timestamptz[], %s::text[]) AS d(policy_id, slot, tier)"
_PG_LOCK = (
    f"SELECT count(*) FROM (SELECT v.id FROM {_VAULT} v WHERE v.id IN (SELECT i.vault_id "  # noqa: S608
    f"FROM {_PG_DUE} JOIN {_ITEM} i ON i.policy_id = d.policy_id WHERE {_ITEM_RULES}) "
    "ORDER BY v.id FOR KEY SHARE OF v) AS locked"
)
_PG_INSERT = (
    f"INSERT INTO {_JOB} ({_COLUMNS}) SELECT 'backup', 'queued', i.vault_id, i.id, d.slot, "  # noqa: S608
    "jsonb_build_object('tier', d.tier, 'on_demand', false), %s, %s, 0, 0, 0, 0, '', '', "
    f"i.source_host FROM {_PG_DUE} JOIN {_ITEM} i ON i.policy_id = d.policy_id "
    f"JOIN {_VAULT} v ON v.id = i.vault_id WHERE {_ITEM_RULES} "
    f"ORDER BY i.vault_id, i.id, d.slot {_ON_CONFLICT} "
    "RETURNING id, vault_id, item_id, slot, params->>'tier', host"
)
# SQLite (the embedded default): the due rows as one JSON array; writers are serialised by
# the database itself, so there is nothing to lock.
_SQLITE_INSERT = (
    f"INSERT INTO {_JOB} ({_COLUMNS}) SELECT 'backup', 'queued', i.vault_id, i.id, "  # noqa: S608
    "json_extract(d.value, '$[1]'), json_object('tier', json_extract(d.value, '$[2]'), "
    "'on_demand', json('false')), %s, %s, 0, 0, 0, 0, '', '', i.source_host "
    f"FROM json_each(%s) AS d JOIN {_ITEM} i ON i.policy_id = json_extract(d.value, '$[0]') "
    f"JOIN {_VAULT} v ON v.id = i.vault_id WHERE {_ITEM_RULES} "
    f"ORDER BY i.vault_id, i.id, json_extract(d.value, '$[1]') {_ON_CONFLICT} "
    "RETURNING id, vault_id, item_id, slot, json_extract(params, '$.tier'), host"
)


# The item fields loaded with the created jobs (the audit record's name, the send path's
# routing): a field read on the send path belongs here, or it costs a query per job.
SENT_ITEM_FIELDS = ("vault_id", "name", "source_kind", "source_path", "source_host")


def _chosen(ids: set[int]) -> RawSQL:
    """``ids`` as one array or JSON parameter, not a placeholder per id."""
    if connection.vendor == "postgresql":
        return RawSQL("SELECT unnest(%s::bigint[])", [sorted(ids)])
    return RawSQL("SELECT value FROM json_each(%s)", [json.dumps(sorted(ids))])


def rows_by_id(model: type[M], ids: set[int], *fields: str) -> dict[int, M]:
    """Rows by id in one statement whatever their number."""
    rows = model._default_manager.filter(pk__in=_chosen(ids)).only(*fields).order_by()
    return {row.pk: row for row in rows}


def values_by_id(model: type[Any], ids: set[int], *fields: str) -> dict[int, tuple[Any, ...]]:
    """``fields`` of rows by id in one statement, as tuples (no model instances)."""
    rows = model._default_manager.filter(pk__in=_chosen(ids)).order_by()
    return {pk: tuple(values) for pk, *values in rows.values_list("pk", *fields)}


def _utc(value: datetime | str) -> datetime:
    """A returned slot as an aware datetime (SQLite answers a naive one, or its text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _insert(due: list[Due], now: datetime) -> list[Job]:
    """Lock the vaults of the due items, then create the jobs still missing; those jobs,
    built from the inserted values (no read back), with their items and vaults."""
    adapt = connection.ops.adapt_datetimefield_value
    stamp = adapt(now)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            arrays = [list(column) for column in zip(*due, strict=True)]
            cursor.execute(_PG_LOCK, arrays)
            cursor.execute(_PG_INSERT, [stamp, stamp, *arrays])
        else:
            rows = [[pk, adapt(slot), tier] for pk, slot, tier in due]
            cursor.execute(_SQLITE_INSERT, [stamp, stamp, json.dumps(rows)])
        created = cursor.fetchall()
    if not created:
        return []
    # What the audit record and the send path read of them; any other field loads on use.
    items = rows_by_id(ProtectedItem, {row[2] for row in created}, *SENT_ITEM_FIELDS)
    vaults = rows_by_id(Vault, {row[1] for row in created}, "name")
    # Each job as Django would load it (positional values, the fast path), from what was
    # inserted; every other column is its default.
    fields = [field.attname for field in Job._meta.concrete_fields]
    row: dict[str, Any] = dict.fromkeys(fields)
    row.update(kind=Job.Kind.BACKUP, status=Job.Status.QUEUED, created_at=now, heartbeat_at=now)
    row.update(bytes_done=0, bytes_total=0, files_done=0, files_total=0, error="", worker="")
    jobs = []
    for pk, vault_id, item_id, slot, tier, host in sorted(created):
        # The job names its item's host as inserted (SPEC 3.13): the send path routes by it.
        row.update(id=pk, vault_id=vault_id, item_id=item_id, slot=_utc(slot), host=host)
        row["params"] = {"tier": tier, "on_demand": False}
        job = Job.from_db(connection.alias, fields, [row[name] for name in fields])
        job.vault, job.item = vaults[vault_id], items[item_id]
        job.item.vault = job.vault
        jobs.append(job)
    return jobs


def _audit_after(jobs: list[Job]) -> dict[str, Any]:
    return {
        "created": len(jobs),
        "columns": AUDIT_COLUMNS,
        "jobs": [
            [
                job.pk,
                job.vault.name if job.vault else None,
                job.item.name if job.item else None,
                job.slot.isoformat() if job.slot else None,
                job.params.get("tier"),
            ]
            for job in jobs
        ],
    }


def backups_dispatch(*, now: datetime | None = None) -> list[Job]:
    """Create (once) and enqueue the backup of every protected item's slots due in
    (now - lookback, now]; the jobs this call created. Safe to run any number of times,
    concurrently."""
    now = now or clock.now()
    due = due_slots(now)
    if not due:
        return []

    def change(check: Check) -> list[Job]:
        jobs = _insert(due, check.now)
        enqueue_many(jobs)
        return jobs

    return gate.execute(
        "backup_dispatch",
        actor=None,
        target=f"tick:{now.isoformat(timespec='seconds')}",
        before={},
        change=change,
        after=_audit_after,
        audit_when=bool,
    )
