"""Verifying the audit chain fast on PostgreSQL (issue 20): ``COPY`` text, id ranges in parallel.

:func:`portal.audit.verify` walks the log in id order and stops at the first broken link. On
PostgreSQL the rows come as ``COPY (SELECT ...) TO STDOUT`` text (one bytes line a row, no
per-field conversion by the driver), and the walk is split into id ranges checked by worker
processes, each with its own connection to the server, so both the verifier's Python and the
server's work use every core. Nothing is weaker than the one-process walk:

- every record's hash is recomputed from its fields. A version 2 record's by the server, in
  the COPY's query, with the linker's own expression (SHA-256 of ``prev_hash`` and
  :func:`portal.audit_link.body_sql`, ``pg_catalog`` functions only: the search path is
  pinned, so no function or operator the application role could create is called); the line
  carries whether it matches the stored hash. A version 1 record's line carries its fields'
  text instead, and Python's canonical JSON is recomputed here
  (:func:`portal.audit.record_hash`). The server renders every field's text either way (the
  verifier used to rebuild the body from that same text): only the concatenation and the
  SHA-256 moved, which cost the verifier's Python 7 to 11 us a record;
- every ``prev_hash`` is compared here with the hash of the record before it: inside a range
  by its worker, across two ranges by the parent, which reports the *first* break in id order
  with the one-process walk's reasons;
- every worker reads the same snapshot as the parent (``pg_export_snapshot``), so the ranges
  together are exactly the log the one-process walk would have read;
- memory stays flat: a worker keeps one line and the previous hash, the parent one small
  result a range.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection

from . import audit_link

BLANK = "its hash is blank: the log was blanked, or the record was written around the chain"
UNLINKED = (
    "its prev_hash does not match the hash of the record before it: a record "
    "before it was removed, inserted or rewritten"
)
ALTERED = "its contents do not match its hash: the record was altered"
RANGE_LOST = (
    "a process checking a range of the audit log died (killed, or out of memory) before it "
    "answered: the check proves nothing either way; run it again"
)


class RangeLost(RuntimeError):
    """A worker process died before answering for its range (:data:`RANGE_LOST`)."""


HEAD = ("id", "version", "prev_hash", "hash")
RANGE_ROWS = 100_000  # ids a worker's range spans (settings.HOLDFAST_AUDIT_VERIFY_RANGE)
# The verifying transactions' search path: pg_catalog's functions and operators, nothing else.
SEARCH_PATH = "pg_catalog, pg_temp"

_ESCAPED = re.compile(rb"\\(.)", re.DOTALL)
_ESCAPES = {b"\\": b"\\", b"t": b"\t", b"n": b"\n", b"r": b"\r", b"b": b"\b", b"f": b"\f"}
_ESCAPES[b"v"] = b"\v"


def _unescape(field: bytes) -> str | None:
    if field == b"\\N":
        return None
    if b"\\" in field:
        field = _ESCAPED.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), field)
    return field.decode()


# Columns whose text the body would render twice (length, then text): rendered once, in a
# lateral subquery of their own (OFFSET 0 keeps it from being folded back in), 16% of the
# server's CPU a record.
RENDERED_ONCE = ("at", "before", "after", "details")
RENDER_ONCE = (
    "CROSS JOIN LATERAL (SELECT "
    + ", ".join(f'r."{name}"::text AS "{name}"' for name in RENDERED_ONCE)
    + " OFFSET 0) t"
)


def _matches() -> str:
    """Whether a version 2 record's stored hash is the linker's hash of its fields (NULL for
    any other version): the linker's expression (portal/audit_link.py), as it computes it,
    with the texts of :data:`RENDERED_ONCE` read from the lateral ``t``."""
    body = audit_link.body_sql("r", {name: f't."{name}"' for name in RENDERED_ONCE})
    return (
        "CASE WHEN r.version = 2 THEN r.hash = pg_catalog.encode(pg_catalog.sha256("
        f"pg_catalog.convert_to(r.prev_hash || {body}, 'UTF8')), 'hex') END"
    )


def query(first_id: int, end_id: int | None) -> str:
    """The COPY of the records with ids from ``first_id`` up to (not including) ``end_id``:
    id, version, prev_hash, hash, whether a version 2 record's hash matches, then (for any
    other version only) the text of every content field. Run with :data:`SEARCH_PATH` and
    the linker's TimeZone and DateStyle (:func:`set_session`)."""
    fields = ", ".join(
        f'CASE WHEN r.version <> 2 THEN r."{name}"::text END' for name in audit_link.CONTENT_COLUMNS
    )
    upper = "" if end_id is None else f" AND r.id < {int(end_id)}"
    head = ", ".join(f'r."{name}"' for name in HEAD)
    return (
        f"COPY (SELECT {head}, {_matches()}, {fields} "  # noqa: S608 (constants only)
        f"FROM public.portal_auditrecord r {RENDER_ONCE} WHERE r.id >= {int(first_id)}{upper} "
        "ORDER BY r.id) TO STDOUT"
    )


def set_session(execute: Callable[[str], Any]) -> None:
    """The verifying transaction's settings: the linker's TimeZone and DateStyle (how a time
    prints in the body) and the pinned search path. Until the transaction ends (or the
    savepoint is rolled back): nothing unqualified may be read after it."""
    for name, value in audit_link.SESSION:
        execute(f"SET LOCAL {name} TO '{value}'")
    execute(f"SET LOCAL search_path TO {SEARCH_PATH}")
    # The ranges are the parallelism: a Gather Merge under each range's COPY moved every row
    # through a shared-memory queue and tripled the server's CPU a record.
    execute("SET LOCAL max_parallel_workers_per_gather TO 0")


@dataclass
class Outcome:
    """What checking a run of records found. ``first_prev`` is the first record's
    ``prev_hash``, whose link a worker leaves to the parent (``expected`` None); ``head`` is
    the hash of the last record that verified."""

    checked: int = 0
    broken_id: int | None = None
    reason: str = ""
    head: bytes = b""
    first_id: int | None = None
    first_prev: bytes = b""


def check_lines(
    lines: Iterable[Any],
    expected: bytes | None,
    record_hash: Callable[[Any], str],
    tick: Callable[[int], None] | None = None,
    every: int = 0,
) -> Outcome:
    """Check COPY lines in id order: blank hash, then the link to ``expected`` (the previous
    hash; for the first line, unless ``expected`` is None), then the hash; stop at the first
    break. ``tick(checked)`` is called every ``every`` records."""
    out = Outcome()
    checked = 0
    for data in lines:
        pk, version, prev, digest, matches, _fields = bytes(data).split(b"\t", 5)
        checked += 1
        if out.first_id is None:
            out.first_id, out.first_prev = int(pk), prev
            if expected is None:
                expected = prev
        if tick is not None and checked % every == 0:
            tick(checked)
        reason = ""
        if not digest:
            reason = BLANK
        elif prev != expected:
            reason = UNLINKED
        elif version == b"2":
            if matches != b"t":
                reason = ALTERED
        elif record_hash(v1_record(bytes(data))) != digest.decode():
            reason = ALTERED
        if reason:
            out.checked, out.broken_id, out.reason = checked, int(pk), reason
            return out
        expected = digest
        out.head = digest
    out.checked = checked
    return out


def v1_record(line: bytes) -> Any:
    """A version 1 record's fields, parsed back from its line's text for Python's canonical
    JSON: id, version, prev_hash, hash, the (empty) match, then CONTENT_COLUMNS' texts."""
    import json
    from datetime import datetime
    from types import SimpleNamespace

    texts = [_unescape(field) for field in line.rstrip(b"\n").split(b"\t")]
    del texts[len(HEAD)]
    values: dict[str, Any] = dict(zip((*HEAD, *audit_link.CONTENT_COLUMNS), texts, strict=True))
    values["id"], values["version"] = int(values["id"]), int(values["version"])
    values["at"] = datetime.fromisoformat(values["at"])
    values["actor_id"] = None if values["actor_id"] is None else int(values["actor_id"])
    for name in ("before", "after", "details"):
        values[name] = json.loads(values[name])
    return SimpleNamespace(**values)


def copy_lines(raw: Any, first_id: int, end_id: int | None) -> Generator[Any, None, None]:
    """The COPY lines of a range, on ``raw`` (a psycopg connection in a transaction set up by
    :func:`set_session`)."""
    with raw.cursor() as cursor, cursor.copy(query(first_id, end_id)) as copy:
        yield from copy


def _own_copy_lines(raw: Any, first_id: int, end_id: int | None) -> Iterator[memoryview]:
    """:func:`copy_lines` on a worker's own connection, read straight from libpq: psycopg's
    COPY iterator costs more a line than checking it."""
    from psycopg import pq

    pgconn = raw.pgconn
    pgconn.send_query(query(first_id, end_id).encode())
    result = pgconn.get_result()
    if result is None or result.status != pq.ExecStatus.COPY_OUT:
        message = result.error_message.decode() if result is not None else "no result"
        raise RuntimeError(f"COPY of the audit log failed: {message}")
    get = pgconn.get_copy_data
    while True:
        size, data = get(0)
        if size < 0:
            break
        yield data
    while (result := pgconn.get_result()) is not None:
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise RuntimeError(f"COPY of the audit log failed: {result.error_message.decode()}")


# --- parallel ranges ------------------------------------------------------------------------


def workers() -> int:
    """How many processes verify ranges: HOLDFAST_AUDIT_VERIFY_WORKERS, else the cores. A
    daemonic process (a Celery prefork worker) may not start any: it walks alone."""
    if multiprocessing.current_process().daemon:
        return 1
    wanted = getattr(settings, "HOLDFAST_AUDIT_VERIFY_WORKERS", None)
    return max(1, int(wanted) if wanted else (os.cpu_count() or 1))


def range_rows() -> int:
    return max(1, int(getattr(settings, "HOLDFAST_AUDIT_VERIFY_RANGE", RANGE_ROWS)))


def plan(first_id: int) -> tuple[str, int, int, int] | None:
    """In the caller's transaction (not a savepoint's): a snapshot the workers can share,
    and the ids from ``first_id`` on (lowest, highest, count); None when the walk must stay
    in this process (this transaction wrote what the workers could not see, or the log is
    short)."""
    if any(sid is not None for sid in connection.savepoint_ids):
        # A savepoint (a test's) exports no snapshot; an atomic block that made none (the
        # walk's own, inside anchoring's transaction) leaves a None here and is no obstacle.
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_export_snapshot(), pg_current_xact_id_if_assigned() IS NULL, "
            "min(id), max(id), count(*) FROM portal_auditrecord WHERE id >= %s",
            [first_id],
        )
        snapshot, clean, low, high, count = cursor.fetchone()
    if not clean or low is None or high - low < range_rows():
        return None
    return snapshot, low, high, count


def _check_range(job: tuple[dict[str, Any], str, int, int, Callable[[Any], str]]) -> Outcome:
    """A worker: one range, in the parent's snapshot, its first link left to the parent."""
    import psycopg

    params, snapshot, first_id, end_id, record_hash = job
    raw = psycopg.connect(**params, autocommit=True)
    try:
        raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        raw.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        set_session(raw.execute)
        return check_lines(_own_copy_lines(raw, first_id, end_id), None, record_hash)
    finally:
        raw.close()  # read-only: closing (mid-COPY, after a break) ends the transaction


def _connect_params() -> dict[str, Any]:
    params = dict(connection.get_connection_params())
    for key in ("cursor_factory", "context", "prepare_threshold", "server_side_binding"):
        params.pop(key, None)
    return params


def check_parallel(
    snapshot: str,
    low: int,
    high: int,
    expected: bytes,
    record_hash: Callable[[Any], str],
    progress: Callable[[int], None] | None,
) -> Outcome:
    """Ranges of :func:`range_rows` ids from ``low`` to ``high`` checked by :func:`workers`
    processes (forked: no Django start-up), the links between them and the first break in
    id order checked here. ``progress(checked)`` after each range."""
    size = range_rows()
    params = _connect_params()
    jobs = [
        (params, snapshot, start, min(start + size, high + 1), record_hash)
        for start in range(low, high + 1, size)
    ]
    total = Outcome()
    total.head = expected
    # Not multiprocessing.Pool: its terminate(), after a break with ranges in flight, could
    # hang for good joining its handler threads (seen once in 7 runs of the tests), and a
    # worker that dies leaves its imap waiting forever. Here a break drops the queued ranges
    # and lets the running ones end (a range at most each), and a dead worker is an error.
    pool = ProcessPoolExecutor(
        min(workers(), len(jobs)), mp_context=multiprocessing.get_context("fork")
    )
    try:
        for future in [pool.submit(_check_range, job) for job in jobs]:
            try:
                part = future.result()
            except BrokenProcessPool as error:
                raise RangeLost(RANGE_LOST) from error
            if part.first_id is None:
                continue  # a gap in the ids: nothing to check there
            if total.first_id is None:
                total.first_id, total.first_prev = part.first_id, part.first_prev
            if part.broken_id == part.first_id and part.reason == BLANK:
                pass  # a blank hash is reported as such, whatever its link
            elif part.first_prev != total.head:
                part.checked, part.broken_id, part.reason = 1, part.first_id, UNLINKED
                part.head = b""
            total.checked += part.checked
            if part.broken_id is not None:
                total.broken_id, total.reason = part.broken_id, part.reason
                if part.head:
                    total.head = part.head
                return total
            total.head = part.head
            if progress is not None:
                progress(total.checked)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return total
