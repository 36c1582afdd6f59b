"""The audit log's hash chain: every record seals the hash of the one before it.

A record's ``hash`` is SHA-256 over its predecessor's hash followed by the canonical JSON of
the record's own fields (everything but ``id`` and ``hash``). Changing, removing or inserting
a record anywhere but at the very end therefore breaks a link that :func:`verify` finds, even
when whoever did it could bypass the append-only trigger (a database superuser).

Appends are serialised so the chain stays linear: on PostgreSQL a transaction-scoped advisory
lock is taken before the last hash is read and held until the appending transaction commits,
so the next appender reads the committed record (Django runs at READ COMMITTED). On SQLite
the ``IMMEDIATE`` transaction mode of the settings already makes writers take turns; on other
databases the last row is locked with ``SELECT ... FOR UPDATE``.

Records written before the chain existed (an installation upgraded from an earlier version)
have an empty hash; they form an unchained prefix that :func:`verify` counts but cannot vouch
for.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from django.db import connection

from .models import AuditRecord

# An arbitrary, fixed 63-bit key for pg_advisory_xact_lock: "holdfast audit chain".
ADVISORY_LOCK_KEY = 0x486F6C6446617374 & 0x7FFFFFFFFFFFFFFF
CHAIN_VERSION = 1

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


def canonical_bytes(record: AuditRecord) -> bytes:
    """The record's fields as canonical JSON: sorted keys, no spaces, UTF-8, UTC times."""
    payload: dict[str, Any] = {"v": CHAIN_VERSION}
    for name in HASHED_FIELDS:
        value = getattr(record, name)
        if name == "at":
            value = value.astimezone(UTC).isoformat()
        elif name in {"before", "after", "details"}:
            value = _json_value(value)
        payload[name] = value
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record: AuditRecord) -> str:
    digest = hashlib.sha256()
    digest.update(record.prev_hash.encode("ascii"))
    digest.update(canonical_bytes(record))
    return digest.hexdigest()


def _serialise_appends() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])
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
    record.prev_hash = last or ""
    record.hash = record_hash(record)
    return record


def contains_hash(value: str) -> bool:
    """Whether a record with this hash is in the log (an anchor kept outside the database)."""
    return bool(value) and AuditRecord.objects.filter(hash=value).exists()


@dataclass
class ChainStatus:
    """The outcome of :func:`verify`."""

    checked: int = 0
    unchained: int = 0
    head: str = ""
    broken_id: int | None = None
    reason: str = ""
    partial: bool = False

    @property
    def ok(self) -> bool:
        return self.broken_id is None


def verify(*, last: int | None = None) -> ChainStatus:
    """Walk the chain in id order and stop at the first broken link.

    ``last`` checks only the most recent records (the audit page's quick check), starting
    from the hash of the record just before them.
    """
    status = ChainStatus(partial=last is not None)
    records = AuditRecord.objects.order_by("id")
    expected_prev: str | None = None
    chain_started = False
    if last is not None:
        window = list(AuditRecord.objects.order_by("-id").values_list("id", flat=True)[:last])
        if not window:
            return status
        start = window[-1]
        before = AuditRecord.objects.filter(id__lt=start).order_by("-id").first()
        records = records.filter(id__gte=start)
        if before is not None:
            expected_prev = before.hash
            chain_started = bool(before.hash)
        else:
            expected_prev = ""
    else:
        expected_prev = ""
    for record in records.iterator(chunk_size=2000):
        if not chain_started and not record.hash and not record.prev_hash:
            status.unchained += 1  # written before the chain existed
            expected_prev = ""
            continue
        chain_started = True
        status.checked += 1
        if record.prev_hash != expected_prev:
            status.broken_id = record.pk
            status.reason = (
                "its prev_hash does not match the hash of the record before it: a record "
                "before it was removed, inserted or rewritten"
            )
            return status
        if record.hash != record_hash(record):
            status.broken_id = record.pk
            status.reason = "its contents do not match its hash: the record was altered"
            return status
        expected_prev = record.hash
        status.head = record.hash
    return status
