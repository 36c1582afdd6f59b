"""Display-only figures the database keeps for the Backup center at scale (issue 15): each
vault's newest backup, job counts per ten minutes and status, and protected items per RPO
deadline. Kept by triggers whatever writes the rows (services, workers, sweeps, bulk loads),
in the writing transaction, so a reader never sees a stale figure.

Nothing the gate decides on is read from here: the application's database role could write
these rows (it writes jobs and items anyway), and the worst it could do is misreport the
portfolio's "Last backup" column or a tile count, which the lists those tiles link to (read
from the jobs and items themselves) would contradict.

SQLite (the embedded quick start) keeps the vault columns with row-level triggers
(``sqlite_tally_triggers``); the tiles count jobs and RPO directly there (a few rows).
"""

# Trigger bodies are fixed SQL written here; no value from a request ever reaches them.
# ruff: noqa: S608

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pgtrigger
from django.db import connections

from policies.rules import DEFAULT_INTERVAL_HOURS, HOURLY_INTERVALS

from .statement_triggers import statement_triggers

# --- each vault's newest backup job (the portfolio's "Last backup" column and sort) --------

_NEWEST = (
    "(SELECT j.id, j.status, j.created_at FROM public.vaults_job j WHERE j.vault_id = v.id "
    "AND j.kind = 'backup' ORDER BY j.created_at DESC, j.id DESC LIMIT 1)"
)
_COLUMNS = "(last_backup_job_id, last_backup_status, last_backup_at)"


def _recompute(vault_ids: str) -> str:
    return f"UPDATE public.vaults_vault v SET {_COLUMNS} = {_NEWEST} WHERE v.id IN ({vault_ids});"


# A new backup replaces a vault's newest only when it is newer, compared on the locked vault
# row (so two workers inserting at once cannot leave the older one shown); a status change
# reaches the vault only while that job is still its newest.
LAST_BACKUP_TRIGGERS = [
    pgtrigger.Trigger(
        name="job_last_backup_insert",
        when=pgtrigger.After,
        operation=pgtrigger.Insert,
        level=pgtrigger.Statement,
        referencing=pgtrigger.Referencing(new="new_jobs"),
        func=(
            "UPDATE public.vaults_vault v SET last_backup_job_id = d.id, "
            "last_backup_status = d.status, last_backup_at = d.created_at FROM "
            "(SELECT DISTINCT ON (n.vault_id) n.vault_id, n.id, n.status, n.created_at "
            "FROM new_jobs n WHERE n.kind = 'backup' AND n.vault_id IS NOT NULL "
            "ORDER BY n.vault_id, n.created_at DESC, n.id DESC) AS d WHERE v.id = d.vault_id "
            "AND (v.last_backup_job_id IS NULL "
            "OR (d.created_at, d.id) > (v.last_backup_at, v.last_backup_job_id)); RETURN NULL;"
        ),
    ),
    pgtrigger.Trigger(
        name="job_last_backup_update",
        when=pgtrigger.After,
        operation=pgtrigger.Update,
        level=pgtrigger.Statement,
        referencing=pgtrigger.Referencing(old="old_jobs", new="new_jobs"),
        func=(
            "UPDATE public.vaults_vault v SET last_backup_status = n.status FROM new_jobs n "
            "JOIN old_jobs o ON o.id = n.id WHERE v.id = n.vault_id "
            "AND v.last_backup_job_id = n.id AND n.status IS DISTINCT FROM o.status; "
            # A job moved to another vault, kind or time (never done today): recompute both.
            + _recompute(
                "SELECT x.vault_id FROM new_jobs n JOIN old_jobs o ON o.id = n.id "
                "CROSS JOIN LATERAL (VALUES (o.vault_id), (n.vault_id)) AS x(vault_id) "
                "WHERE (o.kind = 'backup' OR n.kind = 'backup') "
                "AND (o.vault_id IS DISTINCT FROM n.vault_id OR o.kind IS DISTINCT FROM n.kind "
                "OR o.created_at IS DISTINCT FROM n.created_at)"
            )
            + " RETURN NULL;"
        ),
    ),
    pgtrigger.Trigger(
        name="job_last_backup_delete",
        when=pgtrigger.After,
        operation=pgtrigger.Delete,
        level=pgtrigger.Statement,
        referencing=pgtrigger.Referencing(old="old_jobs"),
        func=_recompute(
            "SELECT o.vault_id FROM old_jobs o JOIN public.vaults_vault w "
            "ON w.id = o.vault_id AND w.last_backup_job_id = o.id"
        )
        + " RETURN NULL;",
    ),
]


def backfill_last_backup_sql() -> str:
    return (
        f"UPDATE vaults_vault SET {_COLUMNS} = (SELECT j.id, j.status, j.created_at "
        "FROM vaults_job j WHERE j.vault_id = vaults_vault.id AND j.kind = 'backup' "
        "ORDER BY j.created_at DESC, j.id DESC LIMIT 1)"
    )


# --- jobs per ten minutes and status (the "Jobs, last 24 hours" tile) ----------------------

# A bucket is the start of the ten minutes a job was created in. The tile sums the buckets
# wholly inside its window and counts the jobs of the one bucket the window cuts (at most
# ten minutes of jobs, through the index on (created_at, status)): exact, and the same cost
# at 100 vaults and at 10,000 once jobs come every ten minutes.
JOB_BUCKET = "date_bin('10 minutes', {alias}.created_at, TIMESTAMPTZ '2000-01-01')"


def _job_deltas(rows: str) -> str:
    """Add ``rows`` (bucket, status, n) to the tally, in a fixed order (no deadlocks)."""
    return (
        "INSERT INTO public.vaults_jobtally AS t (bucket, status, n) "
        f"SELECT bucket, status, SUM(n) FROM ({rows}) AS d GROUP BY bucket, status "
        "HAVING SUM(n) <> 0 ORDER BY bucket, status "
        "ON CONFLICT (bucket, status) DO UPDATE SET n = t.n + EXCLUDED.n; RETURN NULL;"
    )


def _job_rows(alias: str, table: str, sign: str) -> str:
    bucket = JOB_BUCKET.format(alias=alias)
    return f"SELECT {bucket} AS bucket, {alias}.status, {sign}1 AS n FROM {table} {alias}"


JOB_TALLY_TRIGGERS = statement_triggers(
    "job_tally",
    "jobs",
    _job_deltas,
    _job_rows,
    (
        f"SELECT x.* FROM new_jobs n JOIN old_jobs o ON o.id = n.id CROSS JOIN LATERAL "
        f"(VALUES ({JOB_BUCKET.format(alias='o')}, o.status, -1), "
        f"({JOB_BUCKET.format(alias='n')}, n.status, 1)) AS x(bucket, status, n) "
        "WHERE o.status IS DISTINCT FROM n.status OR o.created_at IS DISTINCT FROM n.created_at"
    ),
)


def backfill_job_tally_sql() -> str:
    return (
        "INSERT INTO vaults_jobtally (bucket, status, n) SELECT "
        f"{JOB_BUCKET.format(alias='j')}, j.status, COUNT(*) FROM vaults_job j GROUP BY 1, 2"
    )


# --- protected items per RPO deadline (the "Protected items" tile) ------------------------

# An item's RPO deadline (``ProtectedItem.rpo_due_at``): its last good backup plus its
# policy's window and the hour of grace, as vaults.selectors.rpo_window says; NULL when it
# never had one. Set before every insert and every change of the backup time or policy, and
# again for a policy's items when its frequency or interval changes.
# An hourly policy on an interval rpo_met_q does not know has no window (never met).
_HOURS = f"COALESCE(p.interval_hours, {DEFAULT_INTERVAL_HOURS})"
_WINDOW = (
    "(CASE WHEN p.frequency = 'weekly' THEN interval '7 days' "
    f"WHEN p.frequency <> 'hourly' THEN interval '1 day' "
    f"WHEN {_HOURS} IN ({', '.join(map(str, HOURLY_INTERVALS))}) "
    f"THEN make_interval(hours => {_HOURS}) END + interval '1 hour')"
)

# The same window for SQL elsewhere (vaults/reports.py), over a policy aliased ``p``.
RPO_WINDOW_SQL = _WINDOW


def rpo_due_triggers() -> list[pgtrigger.Trigger]:
    window = _WINDOW
    return [
        pgtrigger.Trigger(
            name="item_rpo_due",
            when=pgtrigger.Before,
            operation=pgtrigger.Insert | pgtrigger.Update,
            func=(
                "IF TG_OP = 'INSERT' OR NEW.last_backup_at IS DISTINCT FROM OLD.last_backup_at "
                "OR NEW.policy_id IS DISTINCT FROM OLD.policy_id "
                "OR NEW.rpo_due_at IS DISTINCT FROM OLD.rpo_due_at THEN "
                f"SELECT NEW.last_backup_at + {window} INTO NEW.rpo_due_at "
                "FROM public.policies_policy p WHERE p.id = NEW.policy_id; END IF; RETURN NEW;"
            ),
        ),
    ]


def policy_rpo_triggers() -> list[pgtrigger.Trigger]:
    # Touching rpo_due_at makes item_rpo_due compute it again from the policy's new values.
    return [
        pgtrigger.Trigger(
            name="policy_rpo_due",
            when=pgtrigger.After,
            operation=pgtrigger.Update,
            condition=pgtrigger.Condition(
                "OLD.frequency IS DISTINCT FROM NEW.frequency "
                "OR OLD.interval_hours IS DISTINCT FROM NEW.interval_hours"
            ),
            func=(
                "UPDATE public.vaults_protecteditem SET rpo_due_at = NULL "
                "WHERE policy_id = NEW.id AND last_backup_at IS NOT NULL; RETURN NULL;"
            ),
        ),
    ]


# Protected items per ten minutes of RPO deadline (NULL: never backed up). The tile's
# "protected" is the sum of every bucket; "met" sums the buckets after the one ``now`` falls
# in and counts that one bucket's items (the partial index on rpo_due_at).
RPO_BUCKET = "date_bin('10 minutes', {alias}.rpo_due_at, TIMESTAMPTZ '2000-01-01')"


def _rpo_deltas(rows: str) -> str:
    return (
        "INSERT INTO public.vaults_rpotally AS t (bucket, n) "
        f"SELECT bucket, SUM(n) FROM ({rows}) AS d GROUP BY bucket HAVING SUM(n) <> 0 "
        "ORDER BY bucket ON CONFLICT (bucket) DO UPDATE SET n = t.n + EXCLUDED.n; RETURN NULL;"
    )


def _rpo_rows(alias: str, table: str, sign: str) -> str:
    return (
        f"SELECT {RPO_BUCKET.format(alias=alias)} AS bucket, {sign}1 AS n FROM {table} {alias} "
        f"WHERE {alias}.protection_state = 'protected'"
    )


RPO_TALLY_TRIGGERS = statement_triggers(
    "item_rpo_tally",
    "items",
    _rpo_deltas,
    _rpo_rows,
    (
        "SELECT x.* FROM new_items n JOIN old_items o ON o.id = n.id CROSS JOIN LATERAL "
        f"(VALUES ({RPO_BUCKET.format(alias='o')}, "
        "CASE WHEN o.protection_state = 'protected' THEN -1 ELSE 0 END), "
        f"({RPO_BUCKET.format(alias='n')}, "
        "CASE WHEN n.protection_state = 'protected' THEN 1 ELSE 0 END)) AS x(bucket, n) "
        "WHERE o.protection_state IS DISTINCT FROM n.protection_state "
        "OR o.rpo_due_at IS DISTINCT FROM n.rpo_due_at"
    ),
)


def backfill_rpo_sql() -> list[str]:
    window = _WINDOW
    return [
        f"UPDATE vaults_protecteditem i SET rpo_due_at = i.last_backup_at + {window} "
        "FROM policies_policy p WHERE p.id = i.policy_id AND i.last_backup_at IS NOT NULL",
        "INSERT INTO vaults_rpotally (bucket, n) SELECT "
        f"{RPO_BUCKET.format(alias='i')}, COUNT(*) FROM vaults_protecteditem i "
        "WHERE i.protection_state = 'protected' GROUP BY 1",
    ]


# --- vaults per security setting (the security level and settings tiles) -----------------

# At most 18 rows (3 immutability states x 3 soft delete states x guarded or not): the tiles
# read them instead of every vault. Only a change of one of the three settings moves a count
# (the storage totals' updates of a vault row do not).
_VAULT_KEY = "{a}.immutability, {a}.soft_delete_state, {a}.resource_guard_id IS NOT NULL"


def _vault_deltas(rows: str) -> str:
    return (
        "INSERT INTO public.vaults_vaulttally AS t (immutability, soft_delete_state, guarded, n) "
        f"SELECT immutability, soft_delete_state, guarded, SUM(n) FROM ({rows}) AS d "
        "GROUP BY 1, 2, 3 HAVING SUM(n) <> 0 ORDER BY 1, 2, 3 "
        "ON CONFLICT (immutability, soft_delete_state, guarded) "
        "DO UPDATE SET n = t.n + EXCLUDED.n; RETURN NULL;"
    )


def _vault_rows(alias: str, table: str, sign: str) -> str:
    key = _VAULT_KEY.format(a=alias)
    return f"SELECT {key} AS guarded, {sign}1 AS n FROM {table} {alias}"


VAULT_TALLY_TRIGGERS = statement_triggers(
    "vault_tally",
    "vaults",
    _vault_deltas,
    _vault_rows,
    (
        "SELECT x.* FROM new_vaults n JOIN old_vaults o ON o.id = n.id CROSS JOIN LATERAL "
        f"(VALUES ({_VAULT_KEY.format(a='o')}, -1), ({_VAULT_KEY.format(a='n')}, 1)) "
        "AS x(immutability, soft_delete_state, guarded, n) "
        "WHERE o.immutability IS DISTINCT FROM n.immutability "
        "OR o.soft_delete_state IS DISTINCT FROM n.soft_delete_state "
        "OR (o.resource_guard_id IS NULL) <> (n.resource_guard_id IS NULL)"
    ),
)


def backfill_vault_tally_sql() -> str:
    return (
        "INSERT INTO vaults_vaulttally (immutability, soft_delete_state, guarded, n) "
        f"SELECT {_VAULT_KEY.format(a='v')}, COUNT(*) FROM vaults_vault v GROUP BY 1, 2, 3"
    )


def sqlite_tally_triggers() -> list[str]:
    """Each vault's newest backup on SQLite, row by row (the tiles count directly there)."""
    recompute = (
        "UPDATE vaults_vault SET (last_backup_job_id, last_backup_status, last_backup_at) = "
        "(SELECT j.id, j.status, j.created_at FROM vaults_job j WHERE j.vault_id = {v} "
        "AND j.kind = 'backup' ORDER BY j.created_at DESC, j.id DESC LIMIT 1) WHERE id = {v};"
    )
    return [
        "CREATE TRIGGER IF NOT EXISTS job_last_backup_insert AFTER INSERT ON vaults_job "
        f"WHEN NEW.kind = 'backup' BEGIN {recompute.format(v='NEW.vault_id')} END",
        "CREATE TRIGGER IF NOT EXISTS job_last_backup_update AFTER UPDATE OF status, kind, "
        "vault_id, created_at ON vaults_job WHEN OLD.kind = 'backup' OR NEW.kind = 'backup' "
        f"BEGIN {recompute.format(v='OLD.vault_id')} {recompute.format(v='NEW.vault_id')} END",
        "CREATE TRIGGER IF NOT EXISTS job_last_backup_delete AFTER DELETE ON vaults_job "
        f"WHEN OLD.kind = 'backup' BEGIN {recompute.format(v='OLD.vault_id')} END",
    ]


# --- reading the tallies (the tiles) --------------------------------------------------------

BUCKET = timedelta(minutes=10)
_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)


def bucket_after(moment: datetime) -> datetime:
    """The first bucket boundary at or after ``moment``."""
    past = (moment - _ORIGIN) % BUCKET
    return moment if not past else moment - past + BUCKET


def job_counts_since(since: datetime, using: str) -> dict[str, int]:
    """Jobs created at or after ``since`` by status, as ``Job.objects.filter(created_at__gte=
    since)`` counts them: the tally's buckets from the first boundary on, and the jobs of the
    few minutes before it. One query."""
    edge = bucket_after(since)
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT status, SUM(n) FROM (SELECT status, n FROM vaults_jobtally WHERE bucket >= %s "
            "UNION ALL SELECT status, 1 FROM vaults_job WHERE created_at >= %s "
            "AND created_at < %s) AS d GROUP BY status",
            [edge, since, edge],
        )
        return {status: int(n) for status, n in cursor.fetchall() if n}


def rpo_counts(now: datetime, using: str) -> tuple[int, int]:
    """(protected items, those meeting their RPO at ``now``: deadline at or after it), as
    ``selectors.rpo_met_q`` judges them. One query."""
    edge = bucket_after(now)
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(SUM(n), 0), COALESCE(SUM(n) FILTER (WHERE bucket >= %s), 0) + "
            "(SELECT COUNT(*) FROM vaults_protecteditem WHERE protection_state = 'protected' "
            "AND rpo_due_at >= %s AND rpo_due_at < %s) FROM vaults_rpotally",
            [edge, now, edge],
        )
        protected, met = cursor.fetchone()
        return int(protected), int(met)
