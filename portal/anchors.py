"""Anchors of the audit chain, kept outside the database (SPEC 8.4).

An anchor is a small JSON object naming the chain's head at one moment: the newest record's
id and hash and how many records the log held up to it. Anchors are written once and never
overwritten, to places the database's administrators cannot write: an ``audit-anchors/``
directory on the storage host, and S3 under Object Lock. The chain itself only shows that
records link to each other; an anchor fixes *which* chain it was, so rewriting every record
from some point on (the hash is unkeyed, anyone can recompute it) or dropping records at the
end is found by comparing the log with the latest anchor (:func:`portal.audit.verify`).

The kernel knows the format and the order of anchors, not where they live: apps register
*anchor stores* (``register_anchor_stores``); the vaults app registers local disk and S3,
built on its storage backends. A store raises :class:`AnchorStoreError` with a sentence when
it cannot be read or written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

FORMAT = "holdfast-audit-anchor/1"
# <record id, zero-padded so names sort by id>-<head hash>.json
_NAME_RE = re.compile(r"(?P<id>[0-9]{20})-(?P<hash>[0-9a-f]{64})\.json")


class AnchorStoreError(Exception):
    """A store could not be read or written; the message is a sentence to show."""


class AnchorUntrusted(AnchorStoreError):
    """An anchor was read but cannot be trusted (it fails authentication, or was written in
    plaintext where anchors are sealed): as bad as a malformed one, a failure to name."""


@dataclass(frozen=True)
class Anchor:
    """The chain's head at ``at``: record ``record_id`` with ``hash``, the log holding
    ``count`` records up to it."""

    record_id: int
    hash: str
    count: int
    at: datetime

    @property
    def name(self) -> str:
        return f"{self.record_id:020d}-{self.hash}.json"

    def to_bytes(self) -> bytes:
        payload = {
            "format": FORMAT,
            "record_id": self.record_id,
            "hash": self.hash,
            "count": self.count,
            "at": self.at.astimezone(UTC).isoformat(),
        }
        return json.dumps(payload, sort_keys=True, indent=1).encode() + b"\n"

    @classmethod
    def from_bytes(cls, name: str, data: bytes) -> Anchor:
        """Parse an anchor read from a store; a ValueError with a sentence if it is not one
        (wrong format, or contents that disagree with its name)."""
        try:
            payload: dict[str, Any] = json.loads(data)
            anchor = cls(
                record_id=int(payload["record_id"]),
                hash=str(payload["hash"]),
                count=int(payload["count"]),
                at=datetime.fromisoformat(str(payload["at"])),
            )
            well_formed = payload.get("format") == FORMAT and anchor.at.tzinfo is not None
        except (ValueError, TypeError, KeyError, AttributeError):
            well_formed = False
        if not well_formed or anchor.name != name:
            raise ValueError(f"the anchor {name} is not a well-formed Holdfast audit anchor")
        return anchor


def record_id_of(name: str) -> int | None:
    """The record id an anchor's name stands for; None for a name that is not an anchor's."""
    match = _NAME_RE.fullmatch(name)
    return int(match["id"]) if match else None


class AnchorStore(Protocol):
    """One place anchors are kept. ``name`` says where, for messages."""

    name: str
    # Local stores are read on every Audit page view; remote ones (S3) only by the full check,
    # ``manage.py audit_verify`` and the anchoring task.
    remote: bool

    def write_once(self, name: str, data: bytes) -> bool:
        """Store the anchor unless ``name`` exists; whether it was written. Where objects
        can be locked, the (new or existing) anchor's lock is extended to the full term."""

    def names(self) -> Iterable[str]:
        """Every object name in the store (anchors and anything else)."""

    def read(self, name: str) -> bytes: ...


# Called with ``remote``: whether to include remote stores (finding them may cost a query).
StoreProvider = Callable[[bool], Iterable[AnchorStore]]
_providers: list[StoreProvider] = []


def register_anchor_stores(provider: StoreProvider) -> None:
    """Called by an app's ``ready()``: ``provider(remote)`` returns its stores when anchors
    are written or checked (so they follow settings and, for S3 vaults, the vault list)."""
    if provider not in _providers:
        _providers.append(provider)


def anchor_stores(*, remote: bool = True) -> list[AnchorStore]:
    stores = [store for provider in _providers for store in provider(remote)]
    return stores if remote else [store for store in stores if not store.remote]


@dataclass
class StoreReading:
    """What one store holds: its latest anchor, or why it could not be told."""

    store: str
    remote: bool
    latest: Anchor | None = None
    error: str = ""  # the store could not be read
    invalid: str = ""  # the latest anchor's object is not a valid anchor
    ignored: list[str] = field(default_factory=list)


def read_latest(store: AnchorStore) -> StoreReading:
    """The anchor with the highest record id in ``store``.

    Only the latest one matters: the chain links every earlier record to it, so it vouches
    for all of them. Names that are not anchors are listed as ignored."""
    reading = StoreReading(store=store.name, remote=store.remote)
    try:
        candidates: list[tuple[int, str]] = []
        for name in store.names():
            record_id = record_id_of(name)
            if record_id is None:
                reading.ignored.append(name)
            else:
                candidates.append((record_id, name))
        if not candidates:
            return reading
        _, name = max(candidates)
        data = store.read(name)
    except AnchorUntrusted as exc:
        reading.invalid = str(exc)
        return reading
    except AnchorStoreError as exc:
        reading.error = str(exc)
        return reading
    try:
        reading.latest = Anchor.from_bytes(name, data)
    except ValueError as exc:
        reading.invalid = str(exc)
    return reading


@dataclass
class WriteOutcome:
    written: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)  # this head was anchored there already
    failed: list[tuple[str, str]] = field(default_factory=list)  # (store, sentence)


def write_anchor(anchor: Anchor, stores: Iterable[AnchorStore]) -> WriteOutcome:
    """Write ``anchor`` to every store; one failing store does not stop the others."""
    outcome = WriteOutcome()
    data = anchor.to_bytes()
    for store in stores:
        try:
            if store.write_once(anchor.name, data):
                outcome.written.append(store.name)
            else:
                outcome.present.append(store.name)
        except AnchorStoreError as exc:
            outcome.failed.append((store.name, str(exc)))
    return outcome
