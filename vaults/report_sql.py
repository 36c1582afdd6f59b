"""The compliance report's SQL (vaults/reports.py; what each figure means: docs/reports.md).

Each statement aggregates in PostgreSQL so the report runs the same few queries for two vaults
or ten thousand. ``{where}`` is the vault filter on ``v`` (vaults/reports.py `_vault_filter`),
``%(start)s``/``%(end)s`` the period, ``%(since)s`` the start less the longest RPO.
"""

# Fixed SQL written here; no value from a request is formatted into it.
# ruff: noqa: S608

from __future__ import annotations

from typing import Any

# Every per-item figure of the chosen vaults (or of one window of their items, in report
# order), each a grouped CTE joined once; the SELECTs below read ``figures``.
FIGURES_SQL = """
WITH items AS (
    SELECT i.id, i.vault_id, v.name AS vault_name, i.name, i.protection_state,
           p.name AS policy, GREATEST(%(start)s::timestamptz, i.created_at) AS lower,
           {window} AS rpo
    FROM vaults_protecteditem i
    JOIN vaults_vault v ON v.id = i.vault_id
    JOIN policies_policy p ON p.id = i.policy_id
    WHERE {where}
    {window_of_items}
),
runs AS (
    -- Each backup that ended, and for a success the end of the item's next success (kept on
    -- the job: job_next_success_*), so the period's jobs are read in one scan, unsorted.
    SELECT j.item_id, j.status, j.ended_at AS done, items.rpo, items.lower,
           j.next_success_at AS next_done
    FROM vaults_job j JOIN items ON items.id = j.item_id
    WHERE j.kind = 'backup' AND j.status IN ('completed', 'failed')
      AND j.ended_at >= %(since)s AND j.ended_at < %(end)s
),
jobs AS (
    -- Covered time summed as intervals (exact to the microsecond), converted once per item.
    SELECT r.item_id,
           COUNT(*) FILTER (WHERE r.status = 'completed' AND r.done >= %(start)s) AS succeeded,
           COUNT(*) FILTER (WHERE r.status = 'failed' AND r.done >= %(start)s) AS failed,
           1000000 * EXTRACT(EPOCH FROM SUM(GREATEST(INTERVAL '0',
               LEAST(COALESCE(r.next_done, 'infinity'), r.done + r.rpo, %(end)s::timestamptz)
               - GREATEST(r.done, r.lower))) FILTER (WHERE r.status = 'completed'))
               AS covered
    FROM runs r
    GROUP BY r.item_id
),
drills AS (
    -- Only drilled points, from point_item_drill_idx in item order (a point's vault is its
    -- item's vault).
    SELECT DISTINCT ON (d.item_id) d.item_id, d.at, d.seconds FROM (
        SELECT p.item_id, (p.drill->>'at')::timestamptz AS at,
               (p.drill->>'seconds')::float AS seconds
        FROM vaults_recoverypoint p
        WHERE {drilled} AND p.drill IS NOT NULL AND p.drill->>'status' = 'passed'
    ) d WHERE d.at <= %(end)s
    ORDER BY d.item_id, d.at DESC, d.seconds DESC  -- two at once: the answer is the same
),
figures AS (
    SELECT items.id, items.vault_id, items.vault_name, items.name, items.policy,
           items.protection_state,
           COALESCE(jobs.succeeded, 0) AS succeeded, COALESCE(jobs.failed, 0) AS failed,
           COALESCE(jobs.covered, 0)::bigint AS covered,
           GREATEST(0, 1000000 * EXTRACT(EPOCH FROM (%(end)s::timestamptz - items.lower)))::bigint
               AS judged,
           (1000000 * EXTRACT(EPOCH FROM drills.at))::bigint AS drill_us,
           drills.seconds AS drill_seconds
    FROM items
    LEFT JOIN jobs ON jobs.item_id = items.id
    LEFT JOIN drills ON drills.item_id = items.id
)
"""

# One row per item (every item, or the window's).
ITEMS_SELECT = """
SELECT id, vault_id, name, policy, protection_state, succeeded, failed, covered, judged,
       drill_us, drill_seconds
FROM figures ORDER BY vault_name, name, id
"""

# One row per vault with items: its items' figures summed in PostgreSQL, so a fleet's
# 100,000 items never reach Python (the page lists one window of them). Of two drills at
# the same moment, the first item's by name, as _roll_up picks.
VAULTS_SELECT = """
SELECT vault_id, COUNT(*), SUM(succeeded)::bigint, SUM(failed)::bigint,
       SUM(covered)::bigint, SUM(judged)::bigint, COUNT(drill_us),
       (ARRAY_AGG(drill_us ORDER BY drill_us DESC, name, id)
            FILTER (WHERE drill_us IS NOT NULL))[1],
       (ARRAY_AGG(drill_seconds ORDER BY drill_us DESC, name, id)
            FILTER (WHERE drill_us IS NOT NULL))[1]
FROM figures GROUP BY vault_id
"""

WINDOW_OF_ITEMS = "ORDER BY v.name, i.name, i.id LIMIT %(limit)s OFFSET %(offset)s"

# Per day (UTC) of the chosen vaults: backups by outcome.
DAILY_SQL = """
SELECT (j.ended_at AT TIME ZONE 'UTC')::date, j.status, COUNT(*)
FROM vaults_job j
WHERE {chosen} AND j.kind = 'backup' AND j.status IN ('completed', 'failed')
  AND j.ended_at >= %(start)s AND j.ended_at < %(end)s
GROUP BY 1, 2
"""

# Storage growth by tier (stored bytes of the points created in the period) per item, per
# vault and per UTC day, in one scan of the points: a point's vault is its item's vault
# (a replica's point belongs to the replica's own item), so the chosen vaults' points are
# exactly their items' points.
GROWTH_SQL = """
SELECT {keys},
       COALESCE(SUM(p.stored_bytes) FILTER (WHERE p.tier = 'snapshot'), 0)::bigint,
       COALESCE(SUM(p.stored_bytes) FILTER (WHERE p.tier NOT IN ('snapshot', 'vault_archive')),
                0)::bigint,
       COALESCE(SUM(p.stored_bytes) FILTER (WHERE p.tier = 'vault_archive'), 0)::bigint
FROM vaults_recoverypoint p
WHERE {chosen} AND p.created_at >= %(start)s AND p.created_at < %(end)s
GROUP BY {groups}
"""
DAY = "(p.created_at AT TIME ZONE 'UTC')::date"
# (keys, groups): per item, vault and day; per vault and day; per item of a window.
GROWTH_ALL = (f"p.item_id, p.vault_id, {DAY}",
               f"GROUPING SETS ((p.item_id), (p.vault_id), ({DAY}))")  # fmt: skip
GROWTH_VAULTS = (f"NULL::bigint, p.vault_id, {DAY}", f"GROUPING SETS ((p.vault_id), ({DAY}))")
GROWTH_WINDOW = ("p.item_id, NULL::bigint, NULL::date", "p.item_id")


CHOSEN_SQL = "{column} IN (SELECT v.id FROM vaults_vault v WHERE {where})"


# --- each successful backup's next success (the RPO share without a window function) ------

# A completed backup job's ``next_success_at`` is the end of the item's next completed backup
# (ties in order of id, as a window ordered by (ended_at, id) would see them), or NULL for the
# newest. The report's covered time then sums each success's interval in one grouped scan of
# the period's jobs, with no sort and no window over a million rows. Kept by one statement
# trigger whatever writes the jobs (workers, sweeps, bulk loads, the app role by hand): any
# statement that adds, removes or changes a completed backup, or writes the column itself,
# recomputes the column over its items' completed backups, under a per-item advisory lock
# taken before reading (two workers finishing backups of one item see each other's rows), so
# a value written by hand is overwritten by the true one in the same statement.
NEXT_SUCCESS_LOCK = 0x486F6C644E657874 & 0x7FFFFFFF
BULK_ITEMS = 1000
_SUCCESS = "{a}.kind = 'backup' AND {a}.status = 'completed' AND {a}.item_id IS NOT NULL"


_NEXT = (
    "(SELECT s.ended_at FROM public.vaults_job s WHERE s.item_id = j.item_id "
    "AND s.kind = 'backup' AND s.status = 'completed' AND s.ended_at >= j.ended_at "
    "AND (s.ended_at, s.id) > (j.ended_at, j.id) ORDER BY s.ended_at, s.id LIMIT 1)"
)


def _next_success_func(affected: str) -> str:
    return (
        f"SELECT array_agg(DISTINCT x.item_id ORDER BY x.item_id) INTO items FROM ({affected}) x "
        "WHERE x.item_id IS NOT NULL; "
        "IF items IS NULL THEN RETURN NULL; END IF; "
        # Per item, under the whole table's lock shared; a bulk load takes that one alone,
        # exclusive (a lock per item of 100,000 would overflow the lock table).
        f"IF cardinality(items) > {BULK_ITEMS} THEN "
        f"PERFORM pg_advisory_xact_lock({NEXT_SUCCESS_LOCK}, -1); ELSE "
        f"PERFORM pg_advisory_xact_lock_shared({NEXT_SUCCESS_LOCK}, -1); "
        f"PERFORM pg_advisory_xact_lock({NEXT_SUCCESS_LOCK}, (i % 2147483647)::int) "
        "FROM unnest(items) AS i ORDER BY i; END IF; "
        # One index probe a row (job_item_backup_next_idx), not a join to a window: no plan
        # can turn a bulk load's statement quadratic, whatever the statistics say.
        f"UPDATE public.vaults_job j SET next_success_at = {_NEXT} WHERE j.item_id = ANY(items) "
        "AND j.kind = 'backup' AND j.status = 'completed' AND j.ended_at IS NOT NULL "
        f"AND j.next_success_at IS DISTINCT FROM {_NEXT}; RETURN NULL;"
    )


_CHANGED = (
    "SELECT x.item_id FROM new_jobs n JOIN old_jobs o ON o.id = n.id "
    "CROSS JOIN LATERAL (VALUES (o.item_id), (n.item_id)) AS x(item_id) "
    "WHERE (o.kind = 'backup' OR n.kind = 'backup') "
    "AND (o.status = 'completed' OR n.status = 'completed') "
    "AND (o.status IS DISTINCT FROM n.status OR o.ended_at IS DISTINCT FROM n.ended_at "
    "OR o.item_id IS DISTINCT FROM n.item_id OR o.kind IS DISTINCT FROM n.kind "
    # Written by hand (at depth 1): put back. This trigger's own writes are at depth 2.
    "OR (pg_trigger_depth() = 1 AND o.next_success_at IS DISTINCT FROM n.next_success_at))"
)


def next_success_triggers() -> list[Any]:
    import pgtrigger

    common: dict[str, Any] = {
        "when": pgtrigger.After,
        "level": pgtrigger.Statement,
        "declare": [("items", "bigint[]")],
    }
    return [
        pgtrigger.Trigger(
            name="job_next_success_insert",
            operation=pgtrigger.Insert,
            referencing=pgtrigger.Referencing(new="new_jobs"),
            func=_next_success_func(
                "SELECT n.item_id FROM new_jobs n WHERE " + _SUCCESS.format(a="n")
            ),
            **common,
        ),
        pgtrigger.Trigger(
            name="job_next_success_update",
            operation=pgtrigger.Update,
            referencing=pgtrigger.Referencing(old="old_jobs", new="new_jobs"),
            func=_next_success_func(_CHANGED),
            **common,
        ),
        pgtrigger.Trigger(
            name="job_next_success_delete",
            operation=pgtrigger.Delete,
            referencing=pgtrigger.Referencing(old="old_jobs"),
            func=_next_success_func(
                "SELECT o.item_id FROM old_jobs o WHERE " + _SUCCESS.format(a="o")
            ),
            **common,
        ),
    ]


# The migration's backfill: the same values for every completed backup, by the same probe.
BACKFILL_NEXT_SUCCESS_SQL = (
    f"UPDATE public.vaults_job j SET next_success_at = {_NEXT} WHERE j.kind = 'backup' "
    "AND j.status = 'completed' AND j.item_id IS NOT NULL AND j.ended_at IS NOT NULL"
)
