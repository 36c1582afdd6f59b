"""What a vault's storage was told to keep: the notes that follow a point's manifest.

A point's manifest records its terms when it is written (`manifest.Terms`: retain-until,
whether its vault was locked). What changes afterwards, through an operation the gate
allowed, is written here by the service that made the change, inside the gate's
transaction: a new retain-until for the point, a release of a point deleted before its
date, and the moment the vault's immutability was locked. Nothing here is ever derived
from the database later: whoever holds only the database can forge every row a sweep
reads, but cannot write to the storage (SPEC 8.3, docs/storage.md "What the storage was
told to keep").

    holds/<point_id>/<ns>-<rand>.json   a note: {"format", "point_id", "at",
                                        "retain_until"} or {..., "release": true}
    vault/locked.json                   {"format", "locked_at"}: immutability locked then
    vault/stamped.json                  every point older than its terms was noted once

Notes are never overwritten, only added, and are replayed in time order (`keep`). A point
held by a locked vault (its manifest says so, or the vault's lock was recorded before the
note) only ever has its date raised: a release or an earlier date written after the lock is
ignored, whoever wrote it. Before that, the latest note wins (a retention reduction or an
early delete the gate allowed in a vault that is not locked).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from .backends import Backend, Retention
from .errors import ObjectLocked, ObjectNotFound, StorageError
from .manifest import Terms, check_point_id, parse_utc

NOTE_FORMAT = "holdfast.hold"
HOLDS_PREFIX = "holds/"
LOCK_KEY = "vault/locked.json"
STAMP_KEY = "vault/stamped.json"


@dataclass(frozen=True)
class Note:
    """One thing the storage was told about a point after its backup."""

    point_id: str
    at: datetime
    retain_until: datetime | None = None
    release: bool = False
    key: str = ""  # where it is stored: breaks ties between notes of the same instant


@dataclass(frozen=True)
class Keep:
    """The storage's own answer to "until when does this point stay?"."""

    until: datetime | None  # None: nothing the storage holds gives a date
    locked: bool = False  # only ever raised; releases before `until` are not honoured
    released: bool = False

    @property
    def dated(self) -> bool:
        """Whether the storage knows anything: otherwise (a manifest written before points
        recorded their terms, never noted since) the caller decides as it always did."""
        return self.until is not None or self.released

    def allows_delete(self, now: datetime) -> bool:
        if not self.dated:
            return True
        return self.released or (self.until is not None and self.until <= now)


def keep_of(terms: Terms | None, notes: list[Note], locked_at: datetime | None) -> Keep:
    """Replay a point's notes over its manifest's terms.

    The point is held by a locked vault from its backup when its manifest says so, or from
    `locked_at` (the vault's lock as recorded in its storage) unless it is an operational
    point, which immutability does not cover. Notes from then on may only raise the date."""
    until = terms.retain_until if terms is not None else None
    operational = terms is not None and terms.operational
    if terms is not None and terms.locked_vault:
        since: datetime | None = datetime.min.replace(tzinfo=UTC)
    elif locked_at is not None and not operational:
        since = locked_at
    else:
        since = None
    released = False
    for note in sorted(notes, key=lambda n: (n.at, n.key)):
        if since is not None and note.at >= since:
            if not note.release and note.retain_until is not None:
                until = note.retain_until if until is None else max(until, note.retain_until)
            continue
        if note.release:
            released = True
        elif note.retain_until is not None:
            until, released = note.retain_until, False
    return Keep(until=until, locked=since is not None, released=released)


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Holds:
    """The notes and the vault lock kept beside a vault's standard-tier store."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    # Writing: only the services that the gate allowed a change call these ----------------

    def note(
        self,
        point_id: str,
        *,
        at: datetime,
        retain_until: datetime | None = None,
        release: bool = False,
        retention: Retention | None = None,
    ) -> str:
        """Add a note: the point's new retain-until, or its release. Returns its key.

        `retention` locks the note like the point's own objects, on backends with object
        lock, so it stays as long as what it keeps."""
        check_point_id(point_id)
        if release == (retain_until is not None):
            raise StorageError("A note is either a new retain-until date or a release.")
        document: dict[str, object] = {
            "format": NOTE_FORMAT,
            "point_id": point_id,
            "at": _stamp(at),
        }
        if release:
            document["release"] = True
        else:
            assert retain_until is not None
            document["retain_until"] = _stamp(retain_until)
        # Unique, time-ordered keys: a note is never overwritten, so two writers racing
        # both leave theirs, and a versioned bucket keeps no hidden older version.
        key = f"{HOLDS_PREFIX}{point_id}/{time.time_ns()}-{uuid.uuid4().hex[:8]}.json"
        self.backend.put(key, json.dumps(document, sort_keys=True).encode(), retention)
        return key

    def note_many(
        self,
        notes: Sequence[tuple[str, datetime | None, Retention | None]],
        *,
        at: datetime,
        workers: int = 8,
    ) -> None:
        """`note` for many points at once, in parallel (a policy change may move thousands
        of expiries, and each note is a durable write): (point id, new retain-until or None
        for a release, lock). The first failure is raised."""

        def one(item: tuple[str, datetime | None, Retention | None]) -> str:
            point_id, until, retention = item
            return self.note(
                point_id, at=at, retain_until=until, release=until is None, retention=retention
            )

        if len(notes) <= 1:
            for item in notes:
                one(item)
            return
        with ThreadPoolExecutor(
            min(workers, len(notes)), thread_name_prefix="holdfast-hold"
        ) as pool:
            list(pool.map(one, notes))

    def lock_vault(self, at: datetime) -> bool:
        """Record that the vault's immutability is locked; the first record stays (a lock
        never ends, so the earliest date is the true one). Whether it was written now."""
        if self.backend.exists(LOCK_KEY):
            return False
        body = {"format": NOTE_FORMAT, "locked_at": _stamp(at)}
        return self.backend.put_if_absent(LOCK_KEY, json.dumps(body).encode())

    def mark_stamped(self, at: datetime) -> None:
        body = {"format": NOTE_FORMAT, "stamped_at": _stamp(at)}
        self.backend.put(STAMP_KEY, json.dumps(body).encode())

    def forget(self, point_id: str) -> int:
        """Remove the notes of a point whose data is gone from every tier; a note the
        storage still locks stays for a later sweep. Returns how many went."""
        removed = 0
        for key in list(self.backend.list(f"{HOLDS_PREFIX}{check_point_id(point_id)}/")):
            try:
                self.backend.delete(key)
            except ObjectLocked:
                continue
            removed += 1
        return removed

    # Reading ------------------------------------------------------------------------------

    def stamped(self) -> bool:
        return self.backend.exists(STAMP_KEY)

    def locked_at(self) -> datetime | None:
        try:
            document = json.loads(self.backend.get(LOCK_KEY))
            return parse_utc(str(document["locked_at"]))
        except ObjectNotFound:
            return None
        except (ValueError, KeyError, TypeError):
            # Damaged: the vault was locked at some point; hold everything from the start.
            return datetime.min.replace(tzinfo=UTC)

    def noted_points(self) -> set[str]:
        """Ids of the points that have at least one note."""
        return {key.split("/")[1] for key in self.backend.list(HOLDS_PREFIX)}

    def notes(self, point_id: str) -> list[Note]:
        found = []
        for key in self.backend.list(f"{HOLDS_PREFIX}{check_point_id(point_id)}/"):
            try:
                document = json.loads(self.backend.get(key))
                if document.get("format") != NOTE_FORMAT or document["point_id"] != point_id:
                    raise ValueError("not a note of this point")
                until = document.get("retain_until")
                found.append(
                    Note(
                        point_id=point_id,
                        at=parse_utc(str(document["at"])),
                        retain_until=parse_utc(str(until)) if until is not None else None,
                        release=bool(document.get("release", False)),
                        key=key,
                    )
                )
            except ObjectNotFound:
                continue
            except (ValueError, KeyError, TypeError) as exc:
                # Keeping is the safe side: nothing of this point goes while a note of it
                # cannot be read.
                raise StorageError(
                    f"The hold note {key} is damaged ({exc}); the point's data is kept."
                ) from None
        return found

    def keep(self, point_id: str, terms: Terms | None) -> Keep:
        """The point's keep-until as the storage knows it (terms from its manifest)."""
        return keep_of(terms, self.notes(point_id), self.locked_at())
