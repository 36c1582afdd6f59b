"""Verifying the audit chain fast on PostgreSQL (issue 20): ``COPY`` text, id ranges in parallel.

:func:`portal.audit.verify` walks the log in id order and stops at the first broken link. On
PostgreSQL the rows come as ``COPY (SELECT ...) TO STDOUT`` text (one bytes line a row, no
per-field conversion by the driver), and the walk is split into id ranges checked by worker
processes, each with its own connection to the server, so both the verifier's Python and the
server's rendering use every core. Nothing is weaker than the one-process walk:

- every record's hash is recomputed here from its fields (version 2: the body
  :func:`portal.audit_link.body_sql` renders, rebuilt byte for byte; version 1: Python's
  canonical JSON, :func:`portal.audit.record_hash`), and every ``prev_hash`` is compared with
  the hash of the record before it: inside a range by its worker, across two ranges by the
  parent, which reports the *first* break in id order with the one-process walk's reasons;
- every worker reads the same snapshot as the parent (``pg_export_snapshot``), so the ranges
  together are exactly the log the one-process walk would have read;
- memory stays flat: a worker keeps one line and the previous hash, the parent one small
  result a range.

A line's fields are COPY's text: PostgreSQL's own output of each column (the same text
``::text`` gives, so the same bytes the linker hashed), with ``\\``, tab, newline, carriage
return, backspace, form feed and vertical tab escaped and NULL as ``\\N``. A line without a
backslash (but ``actor_id``'s ``\\N``, which comes last) needs no unescaping and is hashed as
bytes; an ASCII line's lengths are its fields' byte lengths, any other line's are counted in
characters as PostgreSQL's ``length()`` does. A line with a backslash anywhere goes the slow
way: unescaped field by field, then :func:`portal.audit_link.body_of`.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
from collections.abc import Callable, Generator, Iterable, Iterator
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

# actor_id last: its \N (NULL) is then the line's last field, and a backslash before it
# means a field needs unescaping.
TEXT_COLUMNS = tuple(c for c in audit_link.CONTENT_COLUMNS if c != "actor_id")
COLUMNS = ("id", "version", "prev_hash", "hash", *TEXT_COLUMNS, "actor_id")
V1_ORDER = ("at", "actor_id", *TEXT_COLUMNS[1:])  # audit_link.CONTENT_COLUMNS's order
RANGE_ROWS = 100_000  # ids a worker's range spans (settings.HOLDFAST_AUDIT_VERIFY_RANGE)

_sha256 = hashlib.sha256
_ESCAPED = re.compile(rb"\\(.)", re.DOTALL)
_ESCAPES = {b"\\": b"\\", b"t": b"\t", b"n": b"\n", b"r": b"\r", b"b": b"\b", b"f": b"\f"}
_ESCAPES[b"v"] = b"\v"
_BODY = b"%b2|%d:%b|%b|" + b"|".join([b"%d:%b"] * 11)  # prev_hash, then the body


def _unescape(field: bytes) -> str | None:
    if field == b"\\N":
        return None
    if b"\\" in field:
        field = _ESCAPED.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), field)
    return field.decode()


def query(first_id: int, end_id: int | None) -> str:
    """The COPY of the records with ids from ``first_id`` up to (not including) ``end_id``."""
    names = ", ".join(f'"{name}"' for name in COLUMNS)
    upper = "" if end_id is None else f" AND id < {int(end_id)}"
    return (
        f"COPY (SELECT {names} FROM portal_auditrecord WHERE id >= {int(first_id)}{upper} "  # noqa: S608
        "ORDER BY id) TO STDOUT"
    )


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
    body = _BODY
    sha = _sha256
    checked = 0
    for data in lines:
        data = bytes(data)
        (pk, version, prev, digest, at, name, op, res, code, why, vault, target, source,
         before, after, details, actor) = data[:-1].split(b"\t")  # fmt: skip
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
        elif version != b"2" or data.find(b"\\", 0, len(data) - 3) != -1:
            reason = _slow(version, pk, prev, digest, data, record_hash)
        else:
            who = b"N" if actor == b"\\N" else b"%d:%b" % (len(actor), actor)
            if data.isascii():
                text = body % (
                    prev, len(at), at, who, len(name), name, len(op), op, len(res), res,
                    len(code), code, len(why), why, len(vault), vault, len(target), target,
                    len(source), source, len(before), before, len(after), after,
                    len(details), details,
                )  # fmt: skip
            else:  # lengths in characters, as PostgreSQL counts them
                n = [*map(len, data.decode().split("\t"))]
                text = body % (
                    prev, n[4], at, who, n[5], name, n[6], op, n[7], res, n[8], code, n[9],
                    why, n[10], vault, n[11], target, n[12], source, n[13], before, n[14],
                    after, n[15], details,
                )  # fmt: skip
            if sha(text).hexdigest().encode() != digest:
                reason = ALTERED
        if reason:
            out.checked, out.broken_id, out.reason = checked, int(pk), reason
            return out
        expected = digest
        out.head = digest
    out.checked = checked
    return out


def _slow(
    version: bytes,
    pk: bytes,
    prev: bytes,
    digest: bytes,
    data: bytes,
    record_hash: Callable[[Any], str],
) -> str:
    """A line with escapes or NULLs, or a version 1 record: the reason it fails, or ""."""
    fields = [_unescape(field) for field in data[:-1].split(b"\t")]
    texts = dict(zip(COLUMNS, fields, strict=True))
    ordered = [texts[name] for name in audit_link.CONTENT_COLUMNS]
    prev_text, digest_text = prev.decode(), digest.decode()
    if version == b"2":
        body = audit_link.body_of(ordered)
        computed = _sha256((prev_text + body).encode()).hexdigest()
    else:
        row = (int(pk), int(version), prev_text, digest_text, *ordered)
        computed = record_hash(v1_record(row))
    return "" if computed == digest_text else ALTERED


def v1_record(row: tuple[Any, ...]) -> Any:
    """A version 1 record's fields, parsed back from their text for Python's canonical JSON:
    ``row`` is id, version, prev_hash, hash, then CONTENT_COLUMNS' texts."""
    import json
    from datetime import datetime
    from types import SimpleNamespace

    names = ("id", "version", "prev_hash", "hash", *audit_link.CONTENT_COLUMNS)
    values = dict(zip(names, row, strict=True))
    values["at"] = datetime.fromisoformat(values["at"])
    values["actor_id"] = None if values["actor_id"] is None else int(values["actor_id"])
    for name in ("before", "after", "details"):
        values[name] = json.loads(values[name])
    return SimpleNamespace(**values)


def copy_lines(raw: Any, first_id: int, end_id: int | None) -> Generator[Any, None, None]:
    """The COPY lines of a range, on ``raw`` (a psycopg connection in a transaction whose
    TimeZone and DateStyle are the linker's)."""
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
    if connection.savepoint_ids:
        return None  # a subtransaction (a test's) exports no snapshot
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
        for name, value in audit_link.SESSION:
            raw.execute(f"SET LOCAL {name} TO '{value}'")
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
    context = multiprocessing.get_context("fork")
    with context.Pool(min(workers(), len(jobs))) as pool:
        for part in pool.imap(_check_range, jobs):
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
                pool.terminate()
                return total
            total.head = part.head
            if progress is not None:
                progress(total.checked)
    return total
