"""The audit log's hash chain: every record seals the hash of the one before it.

A record's ``hash`` is SHA-256 over its predecessor's hash followed by the canonical JSON of
the record's own fields (everything but ``id`` and ``hash``); the first record's predecessor
hash is :data:`GENESIS`, the empty string. Changing, removing or inserting a record anywhere
but at the very end therefore breaks a link that :func:`verify` finds, even when whoever did
it could bypass the append-only trigger (a database superuser). Every record is chained: an
empty hash is a break like any other (installations upgraded from before the chain had their
old records chained by the migration ``chain_old_audit_records``).

The hash is unkeyed, so the chain alone cannot see a log rewritten consistently from some
record on, or shortened at the end. Anchors can (``portal/anchors.py``): the head is written
outside the database every hour (:func:`anchor`), and :func:`verify` checks the log against
the latest anchor of every store. Records after the latest anchor are *unanchored*: an
attacker who may only INSERT (the application's database role) can append forged records
there, but cannot change or remove anything an anchor covers.

Appends are serialised so the chain stays linear. On PostgreSQL the gate's records are linked
right after their transaction commits, in short batches under a transaction-scoped advisory
lock (``portal/audit_link.py``: version 2 records, hashed over a body PostgreSQL renders), so
writers no longer hold the lock for their whole transaction; record ids still grow in chain
order. :func:`seal` (version 1, Python's canonical JSON) takes the same lock and holds it
until the sealing transaction commits: SQLite's gate and bulk seeding use it. On SQLite the
``IMMEDIATE`` transaction mode of the settings already makes writers take turns; on other
databases the last row is locked with ``SELECT ... FOR UPDATE``.

:func:`verify` reads the log as COPY text on PostgreSQL, in id ranges checked by worker
processes when it is long (``portal/audit_scan.py``), reporting progress as it goes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction

from . import audit_link, audit_scan, clock
from .alerts import raise_alert
from .anchors import (
    Anchor,
    AnchorStore,
    StoreReading,
    WriteOutcome,
    anchor_stores,
    read_latest,
    write_anchor,
)
from .models import AuditRecord

# Arbitrary, fixed 63-bit keys for pg_advisory_xact_lock: "holdfast audit chain" and the
# anchoring run's own, so anchoring never waits for appends (nor the other way round).
ADVISORY_LOCK_KEY = audit_link.CHAIN_LOCK_KEY
ANCHOR_LOCK_KEY = 0x486F6C64416E6368 & 0x7FFFFFFFFFFFFFFF
CHAIN_VERSION = 1
# The first record's prev_hash. Empty, as it always was, so chains written before anchors
# existed still verify; blanking hashes is found anyway, since no record hashes to "".
GENESIS = ""

HASHED_FIELDS = (
    "at",
    "actor_id",
    "actor_name",
    "operation",
    "outcome",
    "code",
    "reason",
    "vault_name",
    "target",
    "source",
    "before",
    "after",
    "details",
)


def _json_value(value: Any) -> Any:
    # What the JSON column gives back (tuples become lists, keys become strings), so a record
    # hashes the same before it is saved and after it is read back.
    return json.loads(json.dumps(value))


def canonical_bytes(record: Any) -> bytes:
    """The record's fields as canonical JSON: sorted keys, no spaces, UTF-8, UTC times.

    ``record`` is an ``AuditRecord`` (or the migrations' historical model of it)."""
    payload: dict[str, Any] = {"v": CHAIN_VERSION}
    for name in HASHED_FIELDS:
        value = getattr(record, name)
        if name == "at":
            value = value.astimezone(UTC).isoformat()
        elif name in {"before", "after", "details"}:
            value = _json_value(value)
        payload[name] = value
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record: Any) -> str:
    """The hash ``record`` (saved or not) should have, by its ``version``."""
    if getattr(record, "version", 1) == 2 and connection.vendor == "postgresql":
        return hashlib.sha256((record.prev_hash + body_v2(record)).encode()).hexdigest()
    digest = hashlib.sha256()
    digest.update(record.prev_hash.encode("ascii"))
    digest.update(canonical_bytes(record))
    return digest.hexdigest()


def body_v2(record: Any) -> str:
    """A version 2 record's body as the linker renders it (one query; PostgreSQL only)."""
    casts = ["timestamptz", "integer"] + ["text"] * 8 + ["jsonb"] * 3
    values = [getattr(record, name) for name in audit_link.CONTENT_COLUMNS]
    values[-3:] = [json.dumps(value) for value in values[-3:]]
    placeholders = ", ".join(f"%s::{cast}" for cast in casts)
    columns = ", ".join(f'"{name}"' for name in audit_link.CONTENT_COLUMNS)
    with transaction.atomic(), connection.cursor() as cursor:
        audit_scan.set_session(cursor.execute)
        cursor.execute(
            f"SELECT {audit_link.body_sql()} FROM (VALUES ({placeholders})) AS v({columns})",  # noqa: S608
            values,
        )
        body = str(cursor.fetchone()[0])
        transaction.set_rollback(True)  # a savepoint's SET LOCALs end with it
        return body


def _advisory_lock(key: int) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _serialise_appends() -> None:
    if connection.vendor == "postgresql":
        _advisory_lock(ADVISORY_LOCK_KEY)
    elif connection.vendor != "sqlite":
        list(AuditRecord.objects.select_for_update().order_by("-id")[:1])


def seal(record: AuditRecord) -> AuditRecord:
    """Make an unsaved record the chain's next link: set its ``prev_hash`` and ``hash``.

    Call it inside the transaction that then inserts the record (the gate's): the lock it
    takes is released only when that transaction ends, so keep the work after it short.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("audit.seal() needs the transaction that inserts the record")
    _serialise_appends()
    last = AuditRecord.objects.order_by("-id").values_list("hash", flat=True).first()
    record.prev_hash = GENESIS if last is None else last
    record.hash = record_hash(record)
    return record


def contains_hash(value: str) -> bool:
    """Whether a record with this hash is in the log (a head kept elsewhere by hand)."""
    return bool(value) and AuditRecord.objects.filter(hash=value).exists()


# --- verification -------------------------------------------------------------------------


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


@dataclass
class AnchorCheck:
    """One store's latest anchor against the log: ``problem`` is empty when they agree."""

    store: str
    anchor: Anchor
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem


@dataclass
class ChainStatus:
    """The outcome of :func:`verify`: the chain's links, then the log against each anchor."""

    checked: int = 0
    head: str = ""
    broken_id: int | None = None
    reason: str = ""
    partial: bool = False
    remote_checked: bool = True
    anchors: list[AnchorCheck] = field(default_factory=list)
    # Anchors that are not well-formed: nobody but Holdfast writes there, so a failure.
    invalid_anchors: list[str] = field(default_factory=list)
    # What could not be checked (no anchor yet, an unreadable store): said, not failed.
    warnings: list[str] = field(default_factory=list)
    unanchored: int = 0
    # Why the check did not finish (a range's worker died): no verdict either way.
    unfinished: str = ""

    @property
    def chain_ok(self) -> bool:
        return self.broken_id is None

    @property
    def failures(self) -> list[str]:
        found = []
        if not self.chain_ok:
            found.append(f"Record {self.broken_id} fails verification: {self.reason}.")
        found += [
            f"{check.problem} (anchor in {check.store})." for check in self.anchors if check.problem
        ]
        found += self.invalid_anchors
        return found

    @property
    def ok(self) -> bool:
        return not self.failures and not self.unfinished

    @property
    def anchored(self) -> AnchorCheck | None:
        """The newest anchor the log agrees with."""
        matching = [check for check in self.anchors if check.ok]
        return max(matching, key=lambda check: check.anchor.record_id, default=None)


Progress = Callable[[int, int], None]
PROGRESS_EVERY = 100_000
BLANK, UNLINKED, ALTERED = audit_scan.BLANK, audit_scan.UNLINKED, audit_scan.ALTERED


def _walk(
    status: ChainStatus,
    *,
    last: int | None,
    start: Anchor | None,
    progress: Progress | None = None,
) -> None:
    """Check every link in id order from the chain's start, from ``start`` (an anchor the
    log has been checked against), or for the ``last`` records; stop at the first break."""
    first_id: int | None = None
    expected_prev = GENESIS
    if start is not None:
        first_id = start.record_id + 1
        expected_prev = start.hash
    elif last is not None:
        window = list(AuditRecord.objects.order_by("-id").values_list("id", flat=True)[:last])
        if not window:
            return
        first_id = window[-1]
        before = (
            AuditRecord.objects.filter(id__lt=window[-1])
            .order_by("-id")
            .values_list("hash", flat=True)
            .first()
        )
        expected_prev = GENESIS if before is None else before
    if connection.vendor == "postgresql":
        _scan(status, first_id or 0, expected_prev, progress)
        return
    total = 0
    if progress is not None:
        total = AuditRecord.objects.filter(id__gte=first_id or 0).count()
    rows = _orm_rows(first_id)
    with contextlib.closing(rows):
        _check_links(status, rows, expected_prev, progress, total)


def _scan(status: ChainStatus, first_id: int, expected: str, progress: Progress | None) -> None:
    """PostgreSQL: the log as COPY text, checked in id ranges by worker processes when it is
    long, in this process otherwise (``portal/audit_scan.py``), in one snapshot."""
    with transaction.atomic(savepoint=False):
        planned = audit_scan.plan(first_id)
        total = 0
        if planned is not None:
            snapshot, low, high, total = planned
        elif progress is not None:
            total = AuditRecord.objects.filter(id__gte=first_id).count()

        def tick(checked: int) -> None:
            if progress is not None:
                progress(checked, total)

        if planned is not None and audit_scan.workers() > 1:
            outcome = audit_scan.check_parallel(
                snapshot, low, high, expected.encode(), record_hash, tick
            )
        else:
            # In a savepoint rolled back after: its SET LOCALs (the pinned search path) end
            # with it, not with a caller's transaction that goes on reading.
            with transaction.atomic(), connection.cursor() as setup:
                audit_scan.set_session(setup.execute)
                lines = audit_scan.copy_lines(connection.connection, first_id, None)
                with contextlib.closing(lines):
                    outcome = audit_scan.check_lines(
                        lines, expected.encode(), record_hash, tick, PROGRESS_EVERY
                    )
                transaction.set_rollback(True)
    status.checked += outcome.checked
    status.head = outcome.head.decode() if outcome.head else status.head
    if outcome.broken_id is not None:
        status.broken_id, status.reason = outcome.broken_id, outcome.reason
    elif progress is not None and status.checked >= PROGRESS_EVERY:
        progress(status.checked, total)  # the last line, for a log long enough to report on


def _check_links(
    status: ChainStatus, rows: Any, expected_prev: str, progress: Progress | None, total: int
) -> None:
    for pk, version, prev_hash, digest, body, record in rows:
        status.checked += 1
        if progress is not None and status.checked % PROGRESS_EVERY == 0:
            progress(status.checked, total)
        reason = ""
        if not digest:
            reason = BLANK
        elif prev_hash != expected_prev:
            reason = UNLINKED
        elif version == 2 and body is not None:
            if digest != hashlib.sha256((prev_hash + body).encode()).hexdigest():
                reason = ALTERED
        elif digest != record_hash(record()):
            reason = ALTERED
        if reason:
            status.broken_id, status.reason = pk, reason
            return
        expected_prev = digest
        status.head = digest
    if progress is not None and status.checked >= PROGRESS_EVERY:
        progress(status.checked, total)  # the last line, for a log long enough to report on


def _orm_rows(first_id: int | None) -> Any:
    records = AuditRecord.objects.order_by("id").filter(id__gte=first_id or 0)
    for record in records.iterator(chunk_size=2000):
        yield (
            record.pk,
            record.version,
            record.prev_hash,
            record.hash,
            None,
            lambda record=record: record,
        )


def _anchor_problem(anchor: Anchor, counts: dict[int, tuple[str | None, int]]) -> str:
    """Why the log no longer matches ``anchor``; empty when it does."""
    if anchor.record_id not in counts:
        stored = (
            AuditRecord.objects.filter(pk=anchor.record_id).values_list("hash", flat=True).first()
        )
        counts[anchor.record_id] = (
            stored,
            AuditRecord.objects.filter(pk__lte=anchor.record_id).count(),
        )
    stored, count = counts[anchor.record_id]
    where = f"Record {anchor.record_id}, anchored on {_when(anchor.at)},"
    if stored is None:
        return (
            f"{where} is missing: the log was truncated or the record deleted ({count} of "
            f"the {anchor.count} anchored record(s) up to it are left)"
        )
    if stored != anchor.hash:
        return (
            f"{where} no longer has the anchored hash: it or a record before it was altered, "
            "removed or blanked"
        )
    if count != anchor.count:
        change = "removed" if count < anchor.count else "inserted"
        return (
            f"Up to record {anchor.record_id}, anchored on {_when(anchor.at)}, the log holds "
            f"{count} record(s) instead of {anchor.count}: records were {change}"
        )
    return ""


def _check_anchors(status: ChainStatus, readings: list[StoreReading]) -> None:
    counts: dict[int, tuple[str | None, int]] = {}
    for reading in readings:
        if reading.error:
            status.warnings.append(
                f"Could not read the anchors in {reading.store}: {reading.error}"
            )
        elif reading.invalid:
            status.invalid_anchors.append(
                f"In {reading.store}, {reading.invalid}: something other than Holdfast wrote there."
            )
        elif reading.latest is None:
            status.warnings.append(
                f"No anchor in {reading.store}: the hourly anchoring task has not written one "
                "there yet (manage.py audit_anchor writes one now), or they were deleted."
            )
        else:
            problem = _anchor_problem(reading.latest, counts)
            status.anchors.append(AnchorCheck(reading.store, reading.latest, problem))
    newest = max((check.anchor.record_id for check in status.anchors), default=None)
    for check in status.anchors:
        # A store whose latest anchor lags behind another's missed anchors, or lost them.
        if newest is not None and check.ok and check.anchor.record_id < newest:
            status.warnings.append(
                f"The latest anchor in {check.store} (record {check.anchor.record_id}) is older "
                f"than the newest elsewhere (record {newest}): writing there failed, or newer "
                "anchors were deleted."
            )
    anchored = status.anchored
    if anchored is not None:
        status.unanchored = AuditRecord.objects.filter(id__gt=anchored.anchor.record_id).count()
    if not readings:
        status.warnings.append(
            "No anchor store is configured: the log is checked only against itself."
        )


def verify(
    *,
    last: int | None = None,
    remote: bool = True,
    readings: list[StoreReading] | None = None,
    start: Anchor | None = None,
    progress: Progress | None = None,
) -> ChainStatus:
    """Check the chain's links, then the log against the latest anchor of every store.

    ``last`` checks only the links of the most recent records (the Audit page's quick
    check), starting from the hash of the record just before them; anchors are checked
    either way (a lookup and a count each). ``remote=False`` reads only local anchor stores.
    ``progress(checked, total)`` is called every :data:`PROGRESS_EVERY` records and at the
    end (if it was called before).
    Records committed but not linked yet (``portal/audit_link.py``) are a warning: whoever
    verifies links them first (``audit_verify``, anchoring).
    """
    if readings is None:
        readings = [read_latest(store) for store in anchor_stores(remote=remote)]
    status = ChainStatus(partial=last is not None or start is not None, remote_checked=remote)
    _walk(status, last=last, start=start, progress=progress)
    _check_anchors(status, readings)
    pending = audit_link.pending_count()
    if pending:
        status.warnings.append(
            f"{pending} audit record(s) are committed but not linked into the chain yet (a "
            "process stopped between its commit and the linker): the next gate decision, "
            "manage.py audit_verify or the anchoring task links them."
        )
    return status


def verify_and_alert() -> ChainStatus:
    """The whole chain against every anchor (the daily task); a failure raises the
    ``audit_chain_broken`` security alert."""
    status = verify()
    if not status.ok:
        with transaction.atomic():
            message = "The audit log does not verify: " + " ".join(status.failures)
            raise_alert("audit_chain_broken", target="audit log", message=message)
    return status


# --- anchoring ----------------------------------------------------------------------------


@dataclass
class AnchorResult:
    """What :func:`anchor` did: the anchor and where it went, or why nothing was written."""

    anchor: Anchor | None = None
    outcome: WriteOutcome = field(default_factory=WriteOutcome)
    status: ChainStatus | None = None
    refused: str = ""

    @property
    def ok(self) -> bool:
        return not self.refused and not self.outcome.failed


def anchor() -> AnchorResult:
    """Write the chain's head to every anchor store, after checking the log against the
    latest anchors already there.

    The check comes first because only the latest anchor is compared later: anchoring a
    rewritten log on top would hide the rewrite. So the links are checked from the oldest
    of the stores' latest anchors (from the start when there is none) to the head, and a
    log that no longer matches its anchors is not anchored; it raises the
    ``audit_chain_broken`` security alert instead. Runs serialised (an advisory lock on
    PostgreSQL), so two anchoring runs never race on one name.
    """
    stores = anchor_stores()
    if not stores:
        return AnchorResult(refused="No anchor store is configured: nowhere to write the anchor.")
    audit_link.link_pending()  # what is committed is anchored, pending or not
    audit_link.make_durable()  # and no anchor names a link a crash could still undo
    readings = [read_latest(store) for store in stores]
    with transaction.atomic():
        _advisory_lock(ANCHOR_LOCK_KEY)
        head = AuditRecord.objects.order_by("-id").values_list("id", "hash").first()
        if head is None:
            return AnchorResult(refused="The audit log is empty: there is nothing to anchor yet.")
        head_id, head_hash = head
        latest = [r.latest for r in readings if r.latest and r.latest.record_id <= head_id]
        start = min(latest, key=lambda a: a.record_id, default=None)
        try:
            status = verify(readings=readings, start=start)
        except audit_scan.RangeLost as lost:
            unverified = str(lost)  # the walk's transaction is spent: alerted after it
        else:
            return _anchor_verified(status, head_id, head_hash, stores)
    # No verdict, so no anchor and no alert of a broken chain; but a run that keeps losing
    # its workers (killed on purpose, say) must not keep the log unanchored unseen: the
    # security admins get the anchor-failed alert, one open alert counting every such run.
    refused = f"The audit log was not verified: {unverified}. No anchor was written."
    with transaction.atomic():
        raise_alert(
            "audit_anchor_failed",
            target="audit log",
            message=refused + " The next anchoring run tries again.",
        )
    return AnchorResult(refused=refused)


def _anchor_verified(
    status: ChainStatus, head_id: int, head_hash: str, stores: list[AnchorStore]
) -> AnchorResult:
    """Anchor ``head`` in every store, the log up to it having been walked: ``status``."""
    if not status.ok:
        message = "The audit log does not verify: " + " ".join(status.failures)
        raise_alert("audit_chain_broken", target="audit log", message=message)
        return AnchorResult(status=status, refused=message + " No anchor was written.")
    new = Anchor(
        record_id=head_id,
        hash=head_hash,
        count=AuditRecord.objects.filter(id__lte=head_id).count(),
        at=clock.now(),
    )
    outcome = write_anchor(new, stores)
    for store, sentence in outcome.failed:
        raise_alert(
            "audit_anchor_failed",
            target=store[:255],
            message=f"The audit chain's head could not be anchored in {store}: {sentence}",
        )
    return AnchorResult(anchor=new, outcome=outcome, status=status)
