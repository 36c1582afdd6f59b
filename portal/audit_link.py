"""Appending to the audit chain without serialising writers (issue 20, docs/security.md).

On PostgreSQL the gate does not link its record into the chain inside its own transaction
(which used to take one global lock at the audit insert and hold it to the commit, through
the commit's WAL flush, so every writer in the installation queued behind it). It inserts the
decision into ``portal_auditpending`` (:func:`pending`), in the same transaction as the change,
and right after the commit calls :func:`link_pending`, the database function
``holdfast_audit_link()``: in a short transaction of its own, under the chain's advisory lock,
it moves every committed pending row into ``portal_auditrecord`` in pending-id order, each
with the next id, the head's hash as ``prev_hash`` and ``hash`` = SHA-256 of ``prev_hash``
followed by :data:`BODY_SQL` (the record's fields as a JSON array rendered by PostgreSQL:
version 2 of the chain). One linker run links whatever is pending, so concurrent writers
share one short locked transaction (and one WAL flush) instead of each holding the lock for
its whole transaction.

The log's properties do not change: record ids still grow in chain order (they are taken
under the lock), every record is linked to the one before, the application role may still
only INSERT and SELECT both tables (the function runs as its owner, the migrations' role, and
only moves rows), and :func:`portal.audit.verify` checks every link in Python. A pending row
is what an uncommitted audit record used to be, a decision not in the chain yet: a crash
between the commit and the linker leaves it pending until the next linker run (the next gate
decision, ``audit_verify``, the anchoring task), never lost; a rolled-back transaction leaves
nothing. On SQLite (the embedded demo) the gate seals records in its own transaction as before
(:func:`portal.audit.seal`; its IMMEDIATE transactions already make writers take turns).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from .models import AuditPending, AuditRecord

# The chain's lock key (portal/audit.py's ADVISORY_LOCK_KEY, repeated: this module must not
# import audit, which imports it).
CHAIN_LOCK_KEY = 0x486F6C6446617374 & 0x7FFFFFFFFFFFFFFF
LINK_FUNCTION = "holdfast_audit_link"
CONTENT_COLUMNS = (
    "at", "actor_id", "actor_name", "operation", "outcome", "code", "reason", "vault_name",
    "target", "source", "before", "after", "details",
)  # fmt: skip


def body_sql(alias: str = "", texts: dict[str, str] | None = None) -> str:
    """Version 2's canonical body of a row (columns qualified with ``alias``): ``2``, then for
    every field ``|`` and its text as PostgreSQL prints it, prefixed with its length
    (``13:bench-audit``; ``N`` for NULL). The time prints in UTC (TimeZone UTC, DateStyle ISO:
    :data:`SESSION`), the JSON columns as normalised jsonb text. Computed in PostgreSQL on
    both sides: the linker hashes it without Python, and verification recomputes it in the
    query that reads the log (portal/audit_scan.py). ``texts`` names an expression already
    holding a column's ``::text`` (rendered once, where the body would render it twice)."""
    p = f"{alias}." if alias else ""
    texts = texts or {}
    fields = []
    for c in CONTENT_COLUMNS:
        text = texts.get(c, f'{p}"{c}"::text')
        fields.append(f"coalesce(length({text}) || ':' || {text}, 'N')")
    return "'2|' || " + " || '|' || ".join(fields)


# How a timestamptz prints in the body: the linker's SET clauses, and verification's SET LOCAL
# (portal/audit_scan.py `set_session`).
SESSION = (("TimeZone", "UTC"), ("DateStyle", "ISO, YMD"))


# Runs as its owner (SECURITY DEFINER), the role migrations run as: the application role may
# insert pending rows and call this, but neither delete pending rows nor write hashes itself.
# The DELETE ... RETURNING in one statement moves exactly the rows it links, whatever commits
# meanwhile; ids come from the log's own sequence, under the lock, so they grow in chain order.
LINK_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION {LINK_FUNCTION}() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp
SET TimeZone TO 'UTC' SET DateStyle TO 'ISO, YMD' AS $$
DECLARE
    head text;
    digest text;
    linked integer := 0;
    p record;
BEGIN
    PERFORM pg_advisory_xact_lock({CHAIN_LOCK_KEY});
    SELECT hash INTO head FROM public.portal_auditrecord ORDER BY id DESC LIMIT 1;
    head := coalesce(head, '');
    FOR p IN
        WITH moved AS (DELETE FROM public.portal_auditpending RETURNING *)
        SELECT m.*, {body_sql("m")} AS body FROM moved m ORDER BY m.id
    LOOP
        digest := encode(sha256(convert_to(head || p.body, 'UTF8')), 'hex');
        INSERT INTO public.portal_auditrecord
            ({", ".join(f'"{c}"' for c in CONTENT_COLUMNS)}, version, prev_hash, hash)
        VALUES ({", ".join(f'p."{c}"' for c in CONTENT_COLUMNS)}, 2, head, digest);
        head := digest;
        linked := linked + 1;
    END LOOP;
    RETURN linked;
END
$$
"""  # noqa: S608 (constants only)


def deferred() -> bool:
    """Whether the gate's records go through the pending table (PostgreSQL)."""
    return connection.vendor == "postgresql"


def pending(record: AuditRecord) -> AuditPending:
    """The gate's (unsaved) record as the pending row its transaction inserts."""
    return AuditPending(**{f: getattr(record, f) for f in CONTENT_COLUMNS})


def link_after_commit() -> None:
    """Have the pending rows linked right after this transaction commits (once, however many
    gate decisions it holds)."""
    if getattr(settings, "HOLDFAST_AUDIT_LINK_IN_TRANSACTION", False):
        # Tests that roll their transaction back never commit: link at once, as before.
        link_pending()
    elif not any(entry[1] is link_pending for entry in connection.run_on_commit):
        transaction.on_commit(link_pending, robust=True)


def link_pending() -> int:
    """Link every committed pending record into the chain; how many were linked. Outside a
    transaction this is one short statement of its own, committed without waiting for the WAL
    flush (``synchronous_commit`` off for it alone): the lock is held only while the function
    runs. That loses nothing: the decisions were committed durably as pending rows, and WAL
    is replayed in order, so a crash can only undo the latest linking runs as a whole, whose
    rows are then pending again and linked by the next run (:func:`make_durable` before
    anything is written outside the database). Inside a transaction the lock is held until it
    ends, and the transaction commits as it would have."""
    if not deferred():
        return 0
    with connection.cursor() as cursor:
        if connection.in_atomic_block:
            cursor.execute(f"SELECT {LINK_FUNCTION}()")
        else:
            cursor.execute(
                f"SELECT {LINK_FUNCTION}(), set_config('synchronous_commit', 'off', true)"
            )
        return int(cursor.fetchone()[0])


def make_durable() -> None:
    """Wait until every linking run so far is flushed to disk (a transaction with an id
    commits with the WAL flush, and WAL is flushed in order): before anchoring a head."""
    if deferred() and not connection.in_atomic_block:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_xact_id()")


def pending_count() -> int:
    return AuditPending.objects.count() if deferred() else 0


def newest_actor(condition: Q, *, order: tuple[str, ...] = ("-at", "-id")) -> Any:
    """``actor_id`` of the newest decision matching ``condition``, pending ones included
    (they are newer than every linked record): the gate's rules that read the log."""
    for model in (AuditPending, AuditRecord):
        found = (
            model.objects.filter(condition)  # type: ignore[attr-defined]
            .order_by(*order)
            .values_list("actor_id", flat=True)[:1]
        )
        rows = list(found)
        if rows:
            return rows[0]
    return None


def exists(condition: Q) -> bool:
    return any(
        model.objects.filter(condition).exists()  # type: ignore[attr-defined]
        for model in (AuditPending, AuditRecord)
    )
